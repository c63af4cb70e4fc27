"""A corpus of hostile video files, made with PyAV and numpy only (no ffmpeg CLI), for robustness tests.

    files = make_corpus(tmp_path)          # every kind; make_corpus(tmp_path, kinds=[...]) for a few

Each CorpusFile says what vidbatch should do with it (the target behaviour, not necessarily today's):
duration comes from the video stream only; an implausible claimed duration is corrected from the last packets
or becomes an ImplausibleDuration error row; decoding skips undecodable packets; frames are selected by
best-effort timestamp; an unreadable or non-video file becomes one typed error row and the video fails.
error_type names: Unreadable (FFmpeg cannot open it as media), InvalidData (it opens, the codec rejects the
video data), NoVideoStream, NoTimestamps, ImplausibleDuration (the stream's clock is unusable).

Clip counts assume the default ClipConfig (2 s windows, last_clip="keep", min_last_clip_seconds=0.5). Every
generator is deterministic (seeded content, single-threaded encoders, bit-exact muxers), tiny and fast.
"""
from __future__ import annotations

import io
import math
import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np

SEED = 20240611
BITEXACT = {"fflags": "+bitexact"}  # no random MKV SegmentUID, no version strings that change between runs
CLIP_SECONDS, MIN_LAST_CLIP_SECONDS = 2.0, 0.5  # vidbatch's ClipConfig defaults


@dataclass(frozen=True)
class CorpusFile:
    name: str  # file name inside the corpus directory
    path: Path
    kind: str  # unique per file
    category: Literal["valid", "bad", "hard"]
    expect: Literal["ok", "failed"]  # the video's final status
    note: str  # one line: what vidbatch should do with it (README table)
    error_stage: str | None = None  # for expect="failed": the stage of the one error row
    error_type: str | None = None  # for expect="failed": a short typed error name
    min_clips: int | None = None  # for expect="ok": bounds on the clips produced (default ClipConfig)
    max_clips: int | None = None
    video_seconds: float | None = None  # the true length of the video stream, where there is one


# ---------------------------------------------------------------- content and encoding helpers


def expected_clips(seconds: float) -> int:
    """Clips the default ClipConfig cuts from a video of this length."""
    full = math.floor(seconds / CLIP_SECONDS + 1e-6)
    rest = seconds - full * CLIP_SECONDS
    return max(1, full + (rest >= MIN_LAST_CLIP_SECONDS - 1e-6))


def clip_bounds(seconds: float, slack: float = 0.15) -> tuple[int, int]:
    """(min, max) clips for a length known to within +-slack (last-frame duration, rounding of timestamps)."""
    return expected_clips(max(seconds - slack, 1e-3)), expected_clips(seconds + slack)


def frames_rgb(n: int, width: int, height: int, seed: int = SEED) -> Iterable[np.ndarray]:
    """n frames of real content: a diagonal colour gradient drifting each frame plus three coloured squares
    moving on seeded paths (so decoders, scene detectors and models see texture and motion, not flat grey)."""
    rng = np.random.default_rng(seed)
    xs = np.arange(width, dtype=np.uint16)
    ys = np.arange(height, dtype=np.uint16)
    side = max(2, min(width, height) // 5)
    pos = rng.uniform(0, 1, (3, 2)) * [max(1, width - side), max(1, height - side)]
    vel = rng.uniform(-1, 1, (3, 2)) * max(1.0, min(width, height) / 24)
    colors = rng.integers(0, 256, (3, 3), dtype=np.uint8)
    for i in range(n):
        img = np.empty((height, width, 3), dtype=np.uint8)
        img[..., 0] = ((xs[None, :] * 200 // max(1, width)) + 7 * i) % 256
        img[..., 1] = ((ys[:, None] * 200 // max(1, height)) + 3 * i) % 256
        img[..., 2] = ((xs[None, :] + ys[:, None]) * 128 // max(1, width + height) + 11 * i) % 256
        for k in range(3):
            x, y = (pos[k] + vel[k] * i) % [max(1, width - side), max(1, height - side)]
            img[int(y) : int(y) + side, int(x) : int(x) + side] = colors[k]
        yield img


def _tone(seconds: float, rate: int = 16000, freq: float = 440.0) -> Iterable[av.AudioFrame]:
    n = round(seconds * rate)
    t = np.arange(n, dtype=np.float64) / rate
    samples = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    for start in range(0, n, 1024):
        chunk = samples[start : start + 1024]
        frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        yield frame


def encode(
    path: Path,
    *,
    n: int,
    width: int = 160,
    height: int = 96,
    fps: int = 10,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    fmt: str | None = None,
    container_options: dict[str, str] | None = None,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    rotation: int = 0,
    gop: int | None = None,
    bframes: int | None = None,
    audio_seconds: float | None = None,
    packet_hook: Callable[[list[av.Packet]], list[av.Packet]] | None = None,
    setup: Callable[[av.video.stream.VideoStream], None] | None = None,
    streamed: bool = False,
    seed: int = SEED,
) -> Path:
    """Encode n content frames; pts/time_base give explicit (e.g. variable-rate) timestamps. packet_hook sees
    all video packets before muxing (to rewrite timestamps); audio_seconds adds an AAC (Opus in WebM) tone track.
    streamed: mux into a non-seekable pipe, as a live recorder does (the muxer cannot go back to write durations
    or an index), then save the bytes."""
    opts = {"threads": "1", **(options or {})}
    if codec == "libx264":
        opts = {"preset": "ultrafast", "crf": "23", **opts}
    pipe = _Pipe() if streamed else None
    target = pipe if pipe is not None else str(path)
    with av.open(target, "w", format=fmt, container_options={**BITEXACT, **(container_options or {})}) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.thread_count = 1
        if time_base is not None:
            stream.codec_context.time_base = time_base
            stream.time_base = time_base
        if gop is not None:
            stream.codec_context.gop_size = gop
        if bframes is not None:
            stream.codec_context.max_b_frames = bframes
        if rotation:
            stream.set_display_rotation(rotation)
        stream.codec_context.flags |= 1 << 23  # AV_CODEC_FLAG_BITEXACT: no encoder version strings
        stream.options = opts
        if setup is not None:
            setup(stream)
        astream = None
        if audio_seconds:
            acodec = "libopus" if out.format.name == "webm" else "aac"
            astream = out.add_stream(acodec, rate=48000 if acodec == "libopus" else 16000, layout="mono")
        packets: list[av.Packet] = []

        def emit(ps: list[av.Packet]) -> None:
            if packet_hook is None:
                for p in ps:
                    out.mux(p)
            else:
                packets.extend(ps)

        for i, img in enumerate(frames_rgb(n, width, height, seed)):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if pts is not None:
                frame.pts = pts[i]
                frame.time_base = time_base
            emit(stream.encode(frame))
        emit(stream.encode())
        if packet_hook is not None:
            for p in packet_hook(packets):
                out.mux(p)
        if astream is not None:
            rate = astream.codec_context.sample_rate
            for af in _tone(audio_seconds, rate=rate):
                for p in astream.encode(af):
                    out.mux(p)
            for p in astream.encode():
                out.mux(p)
    if pipe is not None:
        path.write_bytes(bytes(pipe.data))
    return path


class _Pipe(io.RawIOBase):
    """A write-only, non-seekable sink (what a muxer writing to a socket or a browser's MediaRecorder sees)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.data += bytes(b)
        return len(b)


GENERATORS: dict[str, Callable[[Path], CorpusFile]] = {}  # kind -> generator, in corpus order


def kind(name: str) -> Callable[[Callable[[Path], CorpusFile]], Callable[[Path], CorpusFile]]:
    """Register a generator under its kind (the generator leaves CorpusFile.kind empty; this fills it in)."""

    def register(gen: Callable[[Path], CorpusFile]) -> Callable[[Path], CorpusFile]:
        def make(d: Path) -> CorpusFile:
            return replace(gen(d), kind=name)

        make.__name__ = make.__qualname__ = gen.__name__
        make.__doc__ = gen.__doc__
        assert name not in GENERATORS, name
        GENERATORS[name] = make
        return make

    return register


def _ok(path: Path, category: str, seconds: float, note: str, slack: float = 0.15, **exact: int) -> CorpusFile:
    """An ok file of this true video length; clip bounds from the length (or exact min_clips/max_clips)."""
    lo, hi = clip_bounds(seconds, slack)
    lo, hi = exact.get("min_clips", lo), exact.get("max_clips", hi)
    return CorpusFile(path.name, path, "", category, "ok", note, min_clips=lo, max_clips=hi, video_seconds=seconds)  # type: ignore[arg-type]


def _failed(path: Path, stage: str, error_type: str, note: str, video_seconds: float | None = None) -> CorpusFile:
    return CorpusFile(path.name, path, "", "bad", "failed", note, stage, error_type, video_seconds=video_seconds)


# ---------------------------------------------------------------- byte-level patching helpers


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterable[tuple[bytes, int, int, int]]:
    """(type, box start, payload start, box end) of the ISO-BMFF boxes in data[start:end]."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, typ = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[pos + 8 : pos + 16])[0], 16
        elif size == 0:
            size = end - pos
        yield typ, pos, pos + header, pos + size
        pos += size


MP4_CONTAINERS = {b"moov": 0, b"trak": 0, b"mdia": 0, b"minf": 0, b"stbl": 0, b"edts": 0, b"stsd": 8, b"avc1": 78}


def rewrite_mp4(data: bytes, edit: Callable[[bytes, bytes], bytes | None]) -> bytes:
    """Rebuild the box tree, letting edit(type, box bytes) replace any leaf box (None: keep). Box sizes are
    recomputed; chunk offsets are not, so only edit boxes that come after mdat (the default, non-faststart)."""

    def walk(start: int, end: int) -> bytes:
        out = []
        for typ, b0, p0, b1 in _boxes(data, start, end):
            if typ in MP4_CONTAINERS:
                pre = MP4_CONTAINERS[typ]
                body = data[p0 : p0 + pre] + walk(p0 + pre, b1)
                box = struct.pack(">I4s", 8 + len(body), typ) + body
            else:
                box = data[b0:b1]
            replaced = edit(typ, box)
            out.append(box if replaced is None else replaced)
        return b"".join(out)

    return walk(0, len(data))


def find_box(data: bytes, path: list[bytes]) -> tuple[int, int, int]:
    """(box start, payload start, box end) of the first box along path (e.g. [b"moov", b"trak", b"tkhd"])."""
    start, end = 0, len(data)
    for depth, want in enumerate(path):
        for typ, b0, p0, b1 in _boxes(data, start, end):
            if typ == want:
                if depth == len(path) - 1:
                    return b0, p0, b1
                start, end = p0 + MP4_CONTAINERS.get(typ, 0), b1
                break
        else:
            raise KeyError(f"no {want!r} box")
    raise KeyError(path)


class _Bits:
    def __init__(self, data: bytes):
        self.bits = "".join(f"{b:08b}" for b in data)
        self.pos = 0

    def u(self, n: int) -> int:
        v = int(self.bits[self.pos : self.pos + n] or "0", 2)
        self.pos += n
        return v

    def ue(self) -> int:
        zeros = 0
        while self.bits[self.pos] == "0":
            zeros += 1
            self.pos += 1
        self.pos += 1
        return (1 << zeros) - 1 + (self.u(zeros) if zeros else 0)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k % 2 else -(k // 2)


def _ue_bits(v: int) -> str:
    b = bin(v + 1)[2:]
    return "0" * (len(b) - 1) + b


def _unescape(nal: bytes) -> bytes:
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def _escape(rbsp: bytes) -> bytes:
    out, zeros = bytearray(), 0
    for b in rbsp:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def patch_sps_size(sps: bytes, width_mbs: int, height_mbs: int) -> bytes:
    """An H.264 SPS NAL (with its header byte) that claims width_mbs x height_mbs macroblocks and no cropping;
    everything else (including VUI) is copied bit for bit."""
    r = _Bits(_unescape(sps[1:]))
    profile = r.u(8)
    r.u(16)  # constraint flags, level
    r.ue()  # sps id
    if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        if r.ue() == 3:
            r.u(1)
        r.ue(), r.ue(), r.u(1)
        if r.u(1):
            raise ValueError("SPS with scaling matrices not supported")
    r.ue()  # log2_max_frame_num
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        r.u(1), r.se(), r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue(), r.u(1)  # max refs, gaps allowed
    head = r.bits[: r.pos]
    r.ue(), r.ue()
    frame_mbs_only = r.u(1)
    mid = str(frame_mbs_only) + ("" if frame_mbs_only else str(r.u(1))) + str(r.u(1))  # + direct_8x8
    if r.u(1):  # cropping: dropped
        r.ue(), r.ue(), r.ue(), r.ue()
    # tail: VUI and rbsp trailing bits (strip the old trailing bits, then re-add)
    tail = r.bits[r.pos :].rstrip("0")
    tail = tail.removesuffix("1")
    bits = head + _ue_bits(width_mbs - 1) + _ue_bits(height_mbs - 1) + mid + "0" + tail + "1"
    bits += "0" * (-len(bits) % 8)
    rbsp = int(bits, 2).to_bytes(len(bits) // 8, "big")
    return sps[:1] + _escape(rbsp)


# ---------------------------------------------------------------- the kinds: odd but valid


@kind("plain_h264_mp4")
def plain_mp4(d: Path) -> CorpusFile:
    p = encode(d / "plain.mp4", n=30)
    return _ok(p, "valid", 3.0, "control: 3 s H.264/MP4, 10 fps, 160x96 -> 2 clips")


@kind("vfr_mp4")
def vfr_mp4(d: Path) -> CorpusFile:
    rng = np.random.default_rng(SEED + 1)
    deltas = rng.choice([20, 33, 50, 100, 200], size=200, p=[0.2, 0.3, 0.2, 0.2, 0.1])
    pts = np.concatenate([[0], np.cumsum(deltas)]).astype(int)
    pts = pts[pts < 4200]  # ends near 4.2 s: 2 clips whatever the last frame's duration (the short tail is dropped)
    p = encode(d / "vfr.mp4", n=len(pts), pts=pts.tolist(), time_base=Fraction(1, 1000), fps=30)
    return _ok(p, "valid", pts[-1] / 1000, "variable frame rate (pts 20-200 ms apart; avg_rate != base_rate): clips by time, frames by timestamp", slack=0.2)


@kind("rotation_display_matrix")
def rotated_mp4(d: Path) -> CorpusFile:
    p = encode(d / "rotated90.mp4", n=30, rotation=90)
    return _ok(p, "valid", 3.0, "display matrix (rotate 90): frames turned upright (96x160 source), rotation=90 reported")


@kind("hevc_10bit")
def hevc10_mp4(d: Path) -> CorpusFile:
    p = encode(
        d / "hevc_10bit.mp4", n=30, codec="libx265", pix_fmt="yuv420p10le",
        options={"preset": "ultrafast", "x265-params": "log-level=error:pools=1:frame-threads=1:wpp=0", "tag": "hvc1"},
    )
    return _ok(p, "valid", 3.0, "10-bit HEVC Main10 (yuv420p10le, hvc1): decoded and converted to 8-bit RGB")


@kind("vp9_webm")
def vp9_webm(d: Path) -> CorpusFile:
    p = encode(d / "vp9.webm", n=30, codec="libvpx-vp9", options={"deadline": "realtime", "cpu-used": "8", "crf": "40", "b": "0"})
    return _ok(p, "valid", 3.0, "VP9 in WebM: no per-stream duration (only the segment's and a DURATION tag)")


@kind("webm_streamed_no_duration")
def webm_streamed(d: Path) -> CorpusFile:
    p = encode(d / "recorder_streamed.webm", n=30, codec="libvpx-vp9", fmt="webm", streamed=True,
               options={"deadline": "realtime", "cpu-used": "8", "crf": "40", "b": "0"})
    return _ok(p, "valid", 3.0, "WebM muxed to a pipe (browser MediaRecorder style): no Duration, no Cues: length from the packets")


@kind("av1_mkv")
def av1_mkv(d: Path) -> CorpusFile:
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its config banner to stderr otherwise
    p = encode(d / "av1.mkv", n=30, codec="libsvtav1", options={"preset": "12", "crf": "50", "svtav1-params": "lp=1"})
    return _ok(p, "valid", 3.0, "AV1 (SVT-AV1) in Matroska: decoded (libdav1d in PyAV's FFmpeg)")


@kind("odd_dimensions_33x17")
def odd_dims(d: Path) -> CorpusFile:
    p = encode(d / "odd_33x17.mp4", n=30, width=33, height=17, pix_fmt="yuv444p")
    return _ok(p, "valid", 3.0, "33x17 (odd sizes need 4:4:4 H.264): upscaled to the model size, not rejected")


@kind("tiny_16x16")
def tiny_16(d: Path) -> CorpusFile:
    p = encode(d / "tiny_16x16.mp4", n=30, width=16, height=16)
    return _ok(p, "valid", 3.0, "16x16: a valid video, upscaled, not an error")


@kind("one_frame")
def one_frame(d: Path) -> CorpusFile:
    p = encode(d / "one_frame.mp4", n=1)
    return _ok(p, "valid", 0.1, "a single frame (0.1 s): one clip holding that frame", min_clips=1, max_clips=1)


@kind("uhd_4k_3840x2160")
def uhd_4k(d: Path) -> CorpusFile:
    p = encode(d / "uhd_4k.mp4", n=2, width=3840, height=2160, options={"crf": "35"})
    return _ok(p, "valid", 0.2, "3840x2160, 2 frames: decoded and downscaled (memory: ~12 MB per decoded frame)", min_clips=1, max_clips=1)


@kind("mpeg_ts")
def mpegts(d: Path) -> CorpusFile:
    p = encode(d / "stream.ts", n=30, fmt="mpegts", container_options={"output_ts_offset": "10"})
    return _ok(p, "valid", 3.0, "MPEG-TS starting at pts 10 s (no index; seeks by bisection): clip times relative to the first frame")


@kind("mpeg_ts_pts_wrap")
def mpegts_wrap(d: Path) -> CorpusFile:
    wrap = 2**33 / 90000  # 33-bit 90 kHz clock: wraps after ~26.5 h
    p = encode(d / "pts_wrap.ts", n=30, fmt="mpegts", container_options={"output_ts_offset": repr(wrap - 1.5)})
    return _ok(p, "valid", 3.0, "MPEG-TS whose 33-bit pts wrap 1.5 s in: FFmpeg unwraps to start_time -1.5 s; clips relative, 2")


@kind("mjpeg_avi")
def mjpeg_avi(d: Path) -> CorpusFile:
    p = encode(d / "mjpeg.avi", n=30, codec="mjpeg", pix_fmt="yuvj420p", options={"q:v": "5"})
    return _ok(p, "valid", 3.0, "Motion-JPEG in AVI (intra-only, full-range yuvj420p, frame-count timing)")


@kind("non_ascii_name")
def non_ascii(d: Path) -> CorpusFile:
    p = encode(d / "vidéo_日本語_ü.mp4", n=30)
    return _ok(p, "valid", 3.0, "non-ASCII (UTF-8) file name: listed, opened, ids/URIs round-trip")


@kind("upper_case_suffix")
def upper_suffix(d: Path) -> CorpusFile:
    p = encode(d / "UPPER_CASE.MP4", n=30)
    return _ok(p, "valid", 3.0, "suffix .MP4: listed (suffix match is case-insensitive) and processed")


@kind("mp4_editlist_delay_1s")
def editlist_delay(d: Path) -> CorpusFile:
    # first pts at 1 s: the mp4 muxer writes an edit list beginning with a 1 s empty edit (stream start_time = 1 s)
    p = encode(d / "editlist_delay_1s.mp4", n=30, pts=[1000 + 100 * i for i in range(30)], time_base=Fraction(1, 1000))
    return _ok(p, "valid", 3.0, "edit list with a 1 s empty edit: first frame at 1.0 s (start_s=1); clips relative to it")


@kind("mp4_editlist_skip_1s")
def editlist_skip(d: Path) -> CorpusFile:
    # 4 s of media whose first second has negative pts: the muxer writes an edit list with media_time = 1 s, so
    # FFmpeg presents media from 1 s on (the first 10 frames are decoded for reference but dropped)
    p = encode(d / "editlist_skip_1s.mp4", n=40, pts=[-1000 + 100 * i for i in range(40)], time_base=Fraction(1, 1000),
               options={"x264-params": "keyint=40"})
    return _ok(p, "valid", 3.0, "edit list starting at media time 1 s (a trimmed file): 40 frames stored, 30 presented; 3 s, 2 clips")


@kind("mpeg2_open_gop_ps")
def mpeg2_open_gop(d: Path) -> CorpusFile:
    p = encode(d / "mpeg2_open_gop.mpg", n=75, fps=25, codec="mpeg2video", fmt="vob", gop=12, bframes=2,
               options={"flags": "-cgop", "sc_threshold": "1000000000", "b": "400k"})
    return _ok(p, "valid", 3.0, "open-GOP MPEG-2 in MPEG-PS (start_time 0.5 s, no index): leading B-frames need the previous GOP")


@kind("interlaced_tff")
def interlaced(d: Path) -> CorpusFile:
    def setup(stream: av.video.stream.VideoStream) -> None:
        stream.codec_context.field_order = 2  # AV_FIELD_TT

    p = encode(d / "interlaced_tff.mkv", n=30, options={"x264-params": "interlaced=1:tff=1"}, setup=setup)
    return _ok(p, "valid", 3.0, "interlaced H.264 (MBAFF, top field first): decoded as whole frames, no error")


# ---------------------------------------------------------------- the kinds: bad
# error_type: Unreadable = FFmpeg cannot open it as media at all; InvalidData = it opens but the codec rejects the
# video data; NoVideoStream; NoTimestamps; ImplausibleDuration = the stream's clock is unusable.


@kind("empty_file")
def empty(d: Path) -> CorpusFile:
    p = d / "empty.mp4"
    p.write_bytes(b"")
    return _failed(p, "probe", "Unreadable", "0 bytes: one probe error row, video failed")


@kind("random_bytes")
def random_bytes(d: Path) -> CorpusFile:
    p = d / "random.mp4"
    p.write_bytes(np.random.default_rng(SEED + 2).integers(0, 256, 64 * 1024, dtype=np.uint8).tobytes())
    return _failed(p, "probe", "Unreadable", "64 KB of random bytes named .mp4: one probe error row")


@kind("text_file")
def text_file(d: Path) -> CorpusFile:
    p = d / "notes_text.mp4"  # not .txt: that suffix makes it a manifest
    p.write_text("These are meeting notes, not a video.\n" * 40, encoding="utf-8")
    return _failed(p, "probe", "Unreadable", "a plain text file named .mp4: one probe error row")


HTML_403 = """<!DOCTYPE html>
<html><head><title>403 Forbidden</title></head>
<body><h1>403 Forbidden</h1><p>Request has expired. Signature expired: 20240101T000000Z is now earlier than
20240101T001500Z.</p><hr><address>nginx</address></body></html>
"""


@kind("html_error_page")
def html_page(d: Path) -> CorpusFile:
    p = d / "html_error_page.mp4"
    p.write_text(HTML_403, encoding="utf-8")
    return _failed(p, "probe", "Unreadable", "an HTTP 403 page saved as .mp4 (expired signed URL): one probe error row")


@kind("truncated_header")
def truncated_header(d: Path) -> CorpusFile:
    full = encode(d / "_faststart_tmp.mp4", n=100, container_options={"movflags": "+faststart"})
    data = full.read_bytes()
    full.unlink()
    b0, _, b1 = find_box(data, [b"moov"])
    cut = min(1536, b0 + (b1 - b0) // 2)  # inside the moov box: the sample tables are cut off
    p = d / "truncated_header.mp4"
    p.write_bytes(data[:cut])
    return _failed(p, "probe", "Unreadable", f"first {cut} B of a faststart MP4 (moov cut in half; FFmpeg: EOF): one probe error row")


@kind("audio_only")
def audio_only(d: Path) -> CorpusFile:
    p = d / "audio_only.mp4"
    with av.open(str(p), "w", format="mp4", container_options=BITEXACT) as out:
        s = out.add_stream("aac", rate=16000, layout="mono")
        s.codec_context.flags |= 1 << 23
        for af in _tone(2.0):
            for pk in s.encode(af):
                out.mux(pk)
        for pk in s.encode():
            out.mux(pk)
    return _failed(p, "probe", "NoVideoStream", "2 s AAC-only file named .mp4: one NoVideoStream probe error row")


@kind("raw_h264_annexb")
def raw_h264(d: Path) -> CorpusFile:
    p = encode(d / "raw_annexb.h264", n=30, fmt="h264")
    return _failed(p, "probe", "NoTimestamps",
                   "raw Annex-B .h264 (no container: no pts, no duration, not seekable): skipped by directory listing "
                   "(suffix); named explicitly, one probe error row", video_seconds=3.0)


@kind("huge_claimed_resolution")
def huge_resolution(d: Path) -> CorpusFile:
    tmp = encode(d / "_huge_tmp.mp4", n=10, options={"x264-params": "keyint=10"})
    data = tmp.read_bytes()
    tmp.unlink()
    mbs = 60000 // 16

    def edit(typ: bytes, box: bytes) -> bytes | None:
        if typ == b"avcC":  # the SPS inside: pic_width/height_in_mbs -> 3750 (60000 px), no cropping
            body = bytearray(box[8:])
            assert body[5] & 0x1F == 1, "one SPS"
            ln = struct.unpack(">H", body[6:8])[0]
            sps = patch_sps_size(bytes(body[8 : 8 + ln]), mbs, mbs)
            body = body[:6] + struct.pack(">H", len(sps)) + sps + body[8 + ln :]
            return struct.pack(">I4s", 8 + len(body), typ) + bytes(body)
        if typ == b"avc1":  # the visual sample entry's 16-bit width/height
            return box[:32] + struct.pack(">HH", 60000, 60000) + box[36:]
        if typ == b"tkhd":  # 16.16 fixed-point width/height, the box's last 8 bytes
            return box[:-8] + struct.pack(">II", 60000 << 16, 60000 << 16)
        return None

    assert find_box(data, [b"mdat"])[0] < find_box(data, [b"moov"])[0], "moov must follow mdat (chunk offsets stay valid)"
    p = d / "huge_resolution_60000.mp4"
    p.write_bytes(rewrite_mp4(data, edit))
    return _failed(p, "probe", "InvalidData",
                   "1 s of 160x96 H.264 whose SPS, stsd and tkhd claim 60000x60000: rejected, no huge frame buffer allocated")


def _zero_mp4_fields(data: bytearray, fields: dict[bytes, int]) -> None:
    """Zero 4-byte fields of version-0 header boxes: {box type: offset in its payload}."""
    paths = {b"mvhd": [b"moov", b"mvhd"], b"tkhd": [b"moov", b"trak", b"tkhd"], b"mdhd": [b"moov", b"trak", b"mdia", b"mdhd"]}
    for typ, off in fields.items():
        _, q0, _ = find_box(bytes(data), paths[typ])
        assert data[q0] == 0, "version-1 header box"
        data[q0 + off : q0 + off + 4] = b"\0\0\0\0"


@kind("zero_timescale")
def zero_timescale(d: Path) -> CorpusFile:
    tmp = encode(d / "_zero_ts_tmp.mp4", n=30)
    data = bytearray(tmp.read_bytes())
    tmp.unlink()
    _zero_mp4_fields(data, {b"mvhd": 12, b"mdhd": 12})  # movie and media time scales (the "time base") = 0
    p = d / "zero_timescale.mp4"
    p.write_bytes(bytes(data))
    return _failed(p, "probe", "ImplausibleDuration",
                   "MP4 whose movie/media timescale is 0: FFmpeg falls back to 1 Hz, so 30 frames claim 3000 s at 1/1024 fps",
                   video_seconds=3.0)


@kind("zero_frame_durations")
def zero_fps(d: Path) -> CorpusFile:
    tmp = encode(d / "_zero_tmp.mp4", n=30)
    data = bytearray(tmp.read_bytes())
    tmp.unlink()
    # every sample duration in stts is 0 and the movie/track/media durations are 0: every frame at t=0
    _, p0, _ = find_box(bytes(data), [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stts"])
    for k in range(struct.unpack(">I", data[p0 + 4 : p0 + 8])[0]):
        data[p0 + 8 + 8 * k + 4 : p0 + 8 + 8 * k + 8] = b"\0\0\0\0"
    _zero_mp4_fields(data, {b"mvhd": 16, b"tkhd": 20, b"mdhd": 16})
    p = d / "zero_frame_durations.mp4"
    p.write_bytes(bytes(data))
    return _failed(p, "probe", "ImplausibleDuration",
                   "MP4 whose frame durations (stts) and durations are all 0: 30 frames all at t=0, duration 0",
                   video_seconds=3.0)


# ---------------------------------------------------------------- the kinds: hard


@kind("audio_longer_than_video")
def audio_longer(d: Path) -> CorpusFile:
    p = encode(d / "audio_longer.mkv", n=40, audio_seconds=5.4)
    return _ok(p, "hard", 4.0, "MKV, 4 s video + 5.4 s audio; container duration is the audio's: clips from the video only (2, not 3)")


@kind("damaged_middle")
def damaged_middle(d: Path) -> CorpusFile:
    tmp = encode(d / "_damaged_tmp.mp4", n=100, width=320, height=180,
                 options={"crf": "18", "x264-params": "keyint=10:min-keyint=10:scenecut=0"})
    data = bytearray(tmp.read_bytes())
    tmp.unlink()
    _, p0, p1 = find_box(bytes(data), [b"mdat"])
    span = 20 * 1024
    assert p1 - p0 > 4 * span, "mdat too small for the damage to be 'in the middle'"
    start = (p0 + p1) // 2 - span // 2
    data[start : start + span] = np.random.default_rng(SEED + 3).integers(0, 256, span, dtype=np.uint8).tobytes()
    p = d / "damaged_middle.mp4"
    p.write_bytes(bytes(data))
    return _ok(p, "hard", 10.0, "10 s H.264/MP4 (1 s GOPs), 20 KB of random bytes over the middle of mdat: bad packets skipped, "
               "undamaged clips kept, video ok", min_clips=3, max_clips=5)


@kind("lying_duration_1e12s")
def lying_duration(d: Path) -> CorpusFile:
    tmp = encode(d / "_lying_tmp.mkv", n=50)
    data = bytearray(tmp.read_bytes())
    tmp.unlink()
    info = data.find(b"\x15\x49\xa9\x66")  # Segment Info
    dur = data.find(b"\x44\x89", info)  # its Duration: a float in TimestampScale units (1 ms)
    assert info > 0 and dur > 0 and data[dur + 2] in (0x84, 0x88), "Duration element not found"
    size = data[dur + 2] & 0x7F
    data[dur + 3 : dur + 3 + size] = struct.pack(">d" if size == 8 else ">f", 1e15)  # 1e12 s
    tag = data.find(b"00:00:05.000000000")  # the track's DURATION tag (FFmpeg: stream metadata) lies as well
    if tag >= 0:
        data[tag : tag + 18] = b"99999:59:59.000000"
    p = d / "lying_duration.mkv"
    p.write_bytes(bytes(data))
    return _ok(p, "hard", 5.0, "5 s MKV whose Segment Duration claims 1e12 s (and DURATION tag ~4e8 s): real end read from the "
               "last packets (seek to end), finishes quickly, 3 clips", min_clips=3, max_clips=3)


@kind("nonmonotonic_pts")
def nonmonotonic_pts(d: Path) -> CorpusFile:
    rng = np.random.default_rng(SEED + 4)
    step = 100  # 10 fps in a 1/1000 time base

    def bad_composition_offsets(packets: list[av.Packet]) -> list[av.Packet]:
        # dts (the stts decode clock) stays monotonic; composition offsets (ctts) go wrong. In presentation order:
        # frame 1 repeats frame 0's pts (so FFmpeg's best-effort guess switches to dts from frame 1 on), then every
        # frame's pts is late by a random 0..3 frames, so decoded pts jump backwards; pts >= dts is kept (mp4 needs
        # it). The last 4 frames (those the decoder flushes out with no dts) are all 3 late, so their pts still rise.
        order = sorted(range(len(packets)), key=lambda k: packets[k].pts)
        first = packets[order[0]].pts
        for rank, k in enumerate(order):
            p = packets[k]
            late = 3 if rank >= len(order) - 4 else int(rng.integers(0, 4))
            p.pts = first if rank == 1 else p.pts + step * late * (rank > 1)
            assert p.pts >= p.dts
        return packets

    p = encode(d / "nonmonotonic_pts.mp4", n=40, time_base=Fraction(1, 1000), pts=[step * i for i in range(40)], bframes=2,
               options={"x264-params": "bframes=2:b-adapt=0:scenecut=0"}, packet_hook=bad_composition_offsets)
    return _ok(p, "hard", 4.0, "H.264 B-frames with bad composition offsets: decoded frame pts go backwards, frame dts (best-effort "
               "timestamp) monotonic; frames chosen by best-effort time, 2 clips", slack=0.35)


def make_corpus(dir: Path, kinds: Iterable[str] | None = None) -> list[CorpusFile]:
    """Write the corpus into dir (created if needed) and describe it; kinds: a subset of kinds (default: all)."""
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    wanted = list(GENERATORS) if kinds is None else list(kinds)
    unknown = set(wanted) - set(GENERATORS)
    if unknown:
        raise KeyError(f"unknown kinds: {sorted(unknown)}")
    prev = av.logging.get_level()  # None: FFmpeg's log is off (PyAV's default)
    if prev is not None:
        av.logging.set_level(av.logging.PANIC)  # encoders and muxers are chatty about the deliberate oddities
    try:
        return [GENERATORS[k](dir) for k in wanted]
    finally:
        if prev is not None:
            av.logging.set_level(prev)
