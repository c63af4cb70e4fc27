"""List input videos through fsspec and fingerprint each one.

An input that cannot be read is returned as an error row, never skipped: users must be able to see
every path the job was asked for and did not process.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from fnmatch import fnmatch
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
from fsspec.core import url_to_fs

from vidbatch.config import InputConfig, RetryConfig
from vidbatch.core import retry
from vidbatch.core.errors import ErrorRow
from vidbatch.core.ids import fingerprint_for, video_id_for

GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class VideoSource:
    """One input video as listed: where it is and what version of it we saw."""

    uri: str
    size: int
    version: str  # ETag for object stores, mtime for file systems: changes when the content may have changed

    @property
    def video_id(self) -> str:
        return video_id_for(self.uri)

    @property
    def fingerprint(self) -> str:
        return fingerprint_for(self.uri, self.size, self.version)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _version(info: dict[str, Any]) -> str:
    for key in ("ETag", "etag", "mtime", "LastModified", "last_modified", "updated", "created"):
        if info.get(key) is not None:
            return str(info[key]).strip('"')
    return ""


def _full_uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    return path if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)) else fs.unstrip_protocol(path)


def _source(fs: fsspec.AbstractFileSystem, path: str, info: dict[str, Any]) -> VideoSource:
    return VideoSource(uri=_full_uri(fs, path), size=int(info.get("size") or 0), version=_version(info))


def _has_suffix(path: str, suffixes: tuple[str, ...]) -> bool:
    return path.lower().endswith(tuple(s.lower() for s in suffixes))


def _expand(url: str, cfg: InputConfig, storage_options: dict[str, Any] | None) -> tuple[list[VideoSource], list[str], int]:
    """One input: (videos found, manifest lines still to expand, files ignored for their suffix)."""
    fs, path = url_to_fs(url, **(storage_options or {}))
    if any(c in path for c in GLOB_CHARS):
        found = fs.glob(path, detail=True)
        if not found:
            raise FileNotFoundError(f"glob matched nothing: {url}")
        entries = {p: i for p, i in found.items() if i.get("type") != "directory"}
    elif fs.isdir(path):
        entries = fs.find(path, detail=True)
        if not any(_has_suffix(p, cfg.extensions) for p in entries):
            raise FileNotFoundError(f"no file with a video suffix {list(cfg.extensions)} under {url}")
    elif _has_suffix(path, cfg.manifest_suffixes):
        with fs.open(path, "rt") as f:
            lines = [ln.strip() for ln in f]
        return [], [ln for ln in lines if ln and not ln.startswith("#")], 0
    else:
        return [_source(fs, path, fs.info(path))], [], 0
    videos = [_source(fs, p, entries[p]) for p in sorted(entries) if _has_suffix(p, cfg.extensions)]
    return videos, [], len(entries) - len(videos)


def list_videos(
    inputs: list[str], cfg: InputConfig, storage_options: dict[str, Any] | None = None, retry_cfg: RetryConfig | None = None
) -> tuple[list[VideoSource], list[ErrorRow], int]:
    """Expand files, directories (recursive), globs and manifests into sources.

    Returns (sources in a stable order without duplicates, error rows for unreadable inputs,
    count of files under directories/globs ignored because of their suffix). Transient store failures are
    retried; an input that still cannot be read is an error row.
    """
    sources: dict[str, VideoSource] = {}
    errors: list[ErrorRow] = []
    ignored = 0
    pending = list(inputs)
    seen: set[str] = set()  # an input named twice, or a manifest that lists itself, is read once
    while pending:
        url = pending.pop(0)
        if url in seen:
            continue
        seen.add(url)
        try:
            found, more, skipped = retry.call(retry_cfg or RetryConfig(), _expand, url, cfg, storage_options)
        except Exception as e:  # noqa: BLE001 - any failure to list an input is reported as data
            errors.append(ErrorRow.from_exception(uri=url, stage="list", exc=e))
            continue
        pending[0:0] = more
        ignored += skipped
        for source in found:
            sources.setdefault(source.uri, source)
    return list(sources.values()), errors, ignored


@dataclass(frozen=True)
class Scope:
    """Which URIs the inputs stand for (under a directory, matching a glob, the file itself): a ledger entry in
    scope that is no longer listed has been deleted; one out of scope was simply not asked about."""

    exact: frozenset[str]
    prefixes: tuple[str, ...]
    patterns: tuple[str, ...]

    def __call__(self, uri: str) -> bool:
        return uri in self.exact or uri.startswith(self.prefixes) or any(fnmatch(uri, p) for p in self.patterns)

    def expression(self, column: str) -> pc.Expression:
        """A scan filter that keeps at least every URI in scope (a glob by its literal head), so a reader of a large
        table sees only the rows under the inputs; the predicate itself then decides."""
        heads = [*self.prefixes, *(p[: min(p.index(c) for c in GLOB_CHARS if c in p)] for p in self.patterns)]
        expr = pc.field(column).isin(pa.array(sorted(self.exact), pa.string()))
        for head in heads:
            expr = expr | pc.starts_with(pc.field(column), pattern=head)
        return expr


def scope_of(inputs: list[str], cfg: InputConfig, storage_options: dict[str, Any] | None = None) -> Scope:
    prefixes, patterns, exact = [], [], set()
    for url in inputs:
        fs, path = url_to_fs(url, **(storage_options or {}))
        full = _full_uri(fs, path.rstrip("/"))
        if any(c in path for c in GLOB_CHARS):
            patterns.append(full)
        elif _has_suffix(path, cfg.manifest_suffixes):
            continue
        elif _has_suffix(path, cfg.extensions):
            exact.add(full)
        else:
            prefixes.append(full + "/")
    return Scope(frozenset(exact), tuple(prefixes), tuple(patterns))
