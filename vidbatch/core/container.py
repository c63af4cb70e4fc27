"""Open a video container from any fsspec URL with PyAV."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import av
import av.container
import av.video.stream
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from vidbatch.config import RetryConfig
from vidbatch.core import retry


class RetryingReader:
    """A remote file whose reads survive transient store errors. PyAV turns an exception raised inside a read
    into a generic InvalidDataError, losing what caused it, so retries must happen here, below FFmpeg."""

    def __init__(self, f: Any, cfg: RetryConfig):
        self.f, self.cfg = f, cfg

    def _read_at(self, pos: int, n: int) -> bytes:
        self.f.seek(pos)
        return self.f.read(n)

    def read(self, n: int = -1) -> bytes:
        return retry.call(self.cfg, self._read_at, self.f.tell(), n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.f.seek(offset, whence)

    def tell(self) -> int:
        return self.f.tell()

    def seekable(self) -> bool:  # PyAV only seeks (e.g. to an MP4's trailing moov) in files that say they can
        return True

    def readable(self) -> bool:
        return True


@contextmanager
def open_container(
    uri: str, storage_options: dict[str, Any] | None = None, retry_cfg: RetryConfig | None = None
) -> Iterator[av.container.InputContainer]:
    """Local files go straight to FFmpeg (its own I/O is fastest); remote ones through an fsspec file object."""
    fs, path = url_to_fs(uri, **(storage_options or {}))
    if isinstance(fs, LocalFileSystem):
        with av.open(path, mode="r") as container:
            yield container
        return
    cfg = retry_cfg or RetryConfig()
    # readahead cache: demuxing reads mostly forward, with occasional seeks back to a keyframe
    f = retry.call(cfg, fs.open, path, "rb", block_size=8 * 2**20, cache_type="readahead")
    with f, av.open(RetryingReader(f, cfg), mode="r") as container:
        yield container


def open_video_stream(container: av.container.InputContainer, threads: int = 0) -> av.video.stream.VideoStream:
    """The first video stream, decoding with `threads` FFmpeg threads (0: FFmpeg chooses)."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    if threads:
        stream.codec_context.thread_count = threads
    return stream
