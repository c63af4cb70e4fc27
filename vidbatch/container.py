"""Open a video container from any fsspec URL with PyAV."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import av
import av.container
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem


@contextmanager
def open_container(uri: str, storage_options: dict[str, Any] | None = None) -> Iterator[av.container.InputContainer]:
    """Local files go straight to FFmpeg (its own I/O is fastest); remote ones through an fsspec file object."""
    fs, path = url_to_fs(uri, **(storage_options or {}))
    if isinstance(fs, LocalFileSystem):
        with av.open(path, mode="r") as container:
            yield container
        return
    # readahead cache: demuxing reads mostly forward, with occasional seeks back to a keyframe
    with fs.open(path, "rb", block_size=8 * 2**20, cache_type="readahead") as f, av.open(f, mode="r") as container:
        yield container
