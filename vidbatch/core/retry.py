"""Retry transient object-store failures (5xx, throttling, timeouts, dropped connections) with backoff.

Only the store's hiccups are retried: a missing file, a permission error or a corrupt video fail at once, so a
bad input costs one attempt and becomes an error row. tenacity does the waiting; this module decides what is
transient.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from vidbatch.config import RetryConfig

T = TypeVar("T")

TRANSIENT_TYPES: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
# exception classes of botocore/aiohttp/urllib3/http.client, matched by name so none of them must be importable
TRANSIENT_NAMES = frozenset({
    "EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError", "ConnectTimeoutError",
    "ResponseStreamingError", "IncompleteReadError", "IncompleteRead", "ProtocolError", "ServerDisconnectedError",
    "ClientConnectionError", "ClientPayloadError", "ClientOSError", "RemoteDisconnected",
})
TRANSIENT_CODES = frozenset({
    "SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling", "ThrottlingException",
    "RequestTimeTooSkewed", "503", "500", "502", "504",
})
TRANSIENT_TEXT = ("SlowDown", "Service Unavailable", "ServiceUnavailable", "InternalError", "Internal Server Error",
                  "Bad Gateway", "Gateway Timeout", "Connection reset", "Server disconnected")
PERMANENT_TYPES: tuple[type[BaseException], ...] = (FileNotFoundError, PermissionError, IsADirectoryError)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_transient(exc: BaseException) -> bool:
    """True when the failure (or what caused it) is the store's, not the input's."""
    for e in _chain(exc):
        if isinstance(e, PERMANENT_TYPES):
            return False
        if isinstance(e, TRANSIENT_TYPES) or type(e).__name__ in TRANSIENT_NAMES:
            return True
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status >= 500 or status == 429 or response.get("Error", {}).get("Code") in TRANSIENT_CODES:
                return True
        if any(t in str(e) for t in TRANSIENT_TEXT):
            return True
    return False


def retrying(cfg: RetryConfig) -> Retrying:
    return Retrying(
        stop=stop_after_attempt(cfg.attempts),
        wait=wait_exponential_jitter(multiplier=cfg.initial_backoff_s, max=cfg.max_backoff_s),
        retry=retry_if_exception(is_transient),
        reraise=True,
    )


def call(cfg: RetryConfig, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """fn(*args, **kwargs), retried while it fails transiently; the last error propagates."""
    return retrying(cfg)(fn, *args, **kwargs)


def backoff_s(cfg: RetryConfig, attempt: int) -> float:
    """Wait before retry number `attempt` (1-based), for loops that cannot use tenacity (generators that yield)."""
    return min(cfg.max_backoff_s, cfg.initial_backoff_s * 2 ** (attempt - 1))
