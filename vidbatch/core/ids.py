"""Deterministic identifiers: the same input and settings always give the same ids, on any machine."""
from __future__ import annotations

import hashlib


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def video_id_for(uri: str) -> str:
    """Stable identity of a path, so a re-encoded file keeps its id."""
    return _digest(uri)


def fingerprint_for(uri: str, size: int, version: str) -> str:
    """Identity of one version of a video's content; clip ids derive from it."""
    return _digest(f"{uri}|{size}|{version}")


def clip_id_for(fingerprint: str, start_s: float, end_s: float) -> str:
    """A clip is its content version plus its time range (to the microsecond)."""
    return _digest(f"{fingerprint}|{round(start_s * 1e6)}|{round(end_s * 1e6)}")
