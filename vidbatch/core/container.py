"""Open a video container from any fsspec URL with PyAV, and read a video stream's frames the way FFmpeg's own
tools do: packets the codec rejects are skipped, and each frame gets its best-effort timestamp."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, NamedTuple

import av
import av.container
import av.video.stream
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from vidbatch.config import RetryConfig
from vidbatch.core import retry
from vidbatch.core.deadline import Deadline


class RetryingReader:
    """A remote file whose reads survive transient store errors. PyAV turns an exception raised inside a read
    into a generic InvalidDataError, losing what caused it, so retries must happen here, below FFmpeg."""

    def __init__(self, f: Any, cfg: RetryConfig, deadline: Deadline | None = None):
        self.f, self.cfg, self.deadline = f, cfg, deadline

    def _read_at(self, pos: int, n: int) -> bytes:
        self.f.seek(pos)
        return self.f.read(n)

    def read(self, n: int = -1) -> bytes:
        if self.deadline is not None:
            self.deadline.check("reading the file")  # inside FFmpeg calls too: one long seek cannot outlive it
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
    uri: str, storage_options: dict[str, Any] | None = None, retry_cfg: RetryConfig | None = None,
    deadline: Deadline | None = None,
) -> Iterator[av.container.InputContainer]:
    """Local files go straight to FFmpeg (its own I/O is fastest); remote ones through an fsspec file object.

    With a deadline, FFmpeg's opening and each packet read give up once it is spent (PyAV's timeouts), and so does
    every read of a remote file."""
    fs, path = url_to_fs(uri, **(storage_options or {}))
    remaining = deadline.remaining() if deadline is not None else None
    timeout = None if remaining is None else max(remaining, 0.001)
    if isinstance(fs, LocalFileSystem):
        with av.open(path, mode="r", timeout=timeout) as container:
            yield container
        return
    cfg = retry_cfg or RetryConfig()
    # readahead cache: demuxing reads mostly forward, with occasional seeks back to a keyframe
    f = retry.call(cfg, fs.open, path, "rb", block_size=8 * 2**20, cache_type="readahead")
    with f, av.open(RetryingReader(f, cfg, deadline), mode="r", timeout=timeout) as container:
        yield container


def open_video_stream(container: av.container.InputContainer, threads: int = 0) -> av.video.stream.VideoStream:
    """The first video stream, decoding with `threads` FFmpeg threads (0: FFmpeg chooses)."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    if threads:
        stream.codec_context.thread_count = threads
    return stream


class BestEffortClock:
    """FFmpeg's best-effort timestamp (`guess_correct_pts` in libavcodec/decode.c), which PyAV does not expose: a
    frame's pts, unless pts have gone backwards (or stood still) more often than dts, or it has none; then its dts.
    Frames the decoder flushes at the end have no dts and keep their pts. One clock per decode from a seek point:
    FFmpeg resets its counts when a seek flushes the decoder."""

    def __init__(self) -> None:
        self.faulty_pts = self.faulty_dts = 0
        self.last_pts: int | None = None
        self.last_dts: int | None = None

    def __call__(self, pts: int | None, dts: int | None) -> int | None:
        if dts is not None:
            self.faulty_dts += self.last_dts is not None and dts <= self.last_dts
            self.last_dts = dts
        elif pts is not None:
            self.last_dts = pts
        if pts is not None:
            self.faulty_pts += self.last_pts is not None and pts <= self.last_pts
            self.last_pts = pts
        elif dts is not None:
            self.last_pts = dts
        if pts is not None and (self.faulty_pts <= self.faulty_dts or dts is None):
            return pts
        return dts


def seconds(ts: int, time_base: Fraction) -> float:
    """A timestamp in seconds, computed as PyAV computes `frame.time` (so the two agree to the last bit)."""
    return float(ts) * time_base.numerator / time_base.denominator


class TimedFrame(NamedTuple):
    frame: av.VideoFrame
    time: float | None  # best-effort presentation time in seconds on the file's clock (None: no pts, no dts)
    after_damage: bool  # packets were rejected since the previous frame: frames are missing before this one


@dataclass
class PacketLog:
    """What `decodable_frames` met: packets the codec rejected (in total, and since the last frame that came out),
    and the latest packet timestamp read (where the stream's data really reaches)."""

    rejected: int = 0
    since_frame: int = 0
    last_error: str | None = None  # the last rejection, as `InvalidDataError: message`
    last_packet_time: float | None = None


def decodable_frames(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, log: PacketLog | None = None
) -> Iterator[TimedFrame]:
    """The stream's frames in presentation order from the current position, as FFmpeg's tools decode them: a packet
    the codec rejects (damaged data) is skipped and decoding resumes with the next one, where `container.decode()`
    would end the stream. A frame that was partly repaired carries `frame.is_corrupt`. Call it again after a seek:
    each call has its own best-effort clock."""
    log = log if log is not None else PacketLog()
    clock = BestEffortClock()
    tb = stream.time_base
    for packet in container.demux(stream):  # ends with an empty packet that flushes the decoder
        if packet.pts is not None and tb is not None:
            t = seconds(packet.pts, tb)
            log.last_packet_time = t if log.last_packet_time is None else max(log.last_packet_time, t)
        try:
            frames = packet.decode()
        except av.error.InvalidDataError as e:
            log.rejected += 1
            log.since_frame += 1
            log.last_error = f"{type(e).__name__}: {e}"
            continue
        for frame in frames:
            ts = clock(frame.pts, frame.dts)
            damaged, log.since_frame = log.since_frame > 0, 0
            yield TimedFrame(frame, None if ts is None or tb is None else seconds(ts, tb), damaged)
