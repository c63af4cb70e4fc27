"""`vidbatch report`: one self-contained HTML page about an output directory, readable without JavaScript.

Everything comes from the committed tables and run manifests (through DuckDB views, as `vidbatch query` sees
them); thumbnails are the stored JPEGs inlined as data: URIs, so no video is decoded and the file stands alone.
"""
from __future__ import annotations

import base64
import io
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import jinja2
import pyarrow as pa
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from vidbatch.read.query import connect
from vidbatch.read.terminal import file_name
from vidbatch.store.committed import run_manifests

MAX_LABELS = 20  # bars in the top-label histogram
SCORE_BINS = 20  # bars in the top-1 score histogram, over [0, 1]
MAX_TICKS = 8  # time-axis ticks under a clip bar
METADATA = ("width", "height", "codec", "fps", "rotation")  # videos/ columns shown under a video's heading


@dataclass
class VideoTimeline:
    video_id: str
    video_uri: str
    duration_s: float
    status: str
    clips: list[dict[str, Any]] = field(default_factory=list)
    shots: list[dict[str, Any]] = field(default_factory=list)
    hidden_clips: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    ticks: list[dict[str, Any]] = field(default_factory=list)
    unreadable: bool = False  # the input could not even be listed (no file there)
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # source -> events (`vidbatch events`)

    @property
    def name(self) -> str:
        return file_name(self.video_uri)

    @property
    def details(self) -> str:
        """`1280x720 h264, 25 fps, rotated 90°`: what the videos/ table knows of the stream."""
        m = self.metadata
        parts = []
        if m.get("width") and m.get("height"):
            parts.append(f"{m['width']}x{m['height']}")
        if m.get("codec"):
            parts.append(str(m["codec"]))
        text = " ".join(parts)
        if m.get("fps"):
            text += f"{', ' if text else ''}{m['fps']:.4g} fps"
        if m.get("rotation"):
            text += f", rotated {m['rotation']}°"
        return text


MINUTE_STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 14400)


def _clock(t: float) -> str:
    h, rest = divmod(int(round(t)), 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def time_ticks(duration_s: float) -> list[dict[str, Any]]:
    """Ticks for a clip bar, about MAX_TICKS intervals, positioned in percent of the bar: seconds at a 1/2/5 x 10^k
    step, or m:ss at whole minutes for long videos."""
    if duration_s <= 0:
        return []
    raw = duration_s / MAX_TICKS
    if raw > 30:
        step = next((m for m in MINUTE_STEPS if m >= raw), MINUTE_STEPS[-1])
        label = _clock
    else:
        magnitude = 10 ** math.floor(math.log10(raw))
        step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)

        def label(t: float) -> str:
            return f"{round(t, 10):g}"

    return [{"left": _percent(i * step, duration_s), "label": label(i * step)} for i in range(int(duration_s / step + 1e-9) + 1)]


def stage_timings(manifest: dict[str, Any]) -> dict[str, float | None]:
    """A run's phases (manifest stage_s) and Ray Data's summed task time of the decode tasks and inference actors."""
    stages = manifest.get("stage_s") or {}

    def task_time(part: str) -> float | None:
        values = [v for k, v in stages.items() if k.startswith("ray_task_s:") and part in k]
        return sum(values) if values else None

    return {
        "list": stages.get("list"), "ray": stages.get("ray"), "probe": stages.get("probe"), "shots": stages.get("shots"),
        "stream": stages.get("stream"), "decode_tasks": task_time("DecodeStage"),
        "inference_actors": task_time("ClipInferenceActor"),
    }


def _columns(con: duckdb.DuckDBPyConnection, view: str) -> set[str]:
    tables = {r[0] for r in con.sql("SELECT table_name FROM duckdb_tables() UNION SELECT view_name FROM duckdb_views()").fetchall()}
    if view not in tables:
        return set()
    return {r[0] for r in con.sql(f"DESCRIBE {view}").fetchall()}


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    return con.sql(sql).to_arrow_table().to_pylist()


def _svg(fig: Figure) -> str:
    fig.tight_layout()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


def label_histogram_svg(counts: list[tuple[str, int]]) -> str:
    """Horizontal bars of clip counts per top label, as inline SVG markup (matplotlib, no pyplot state)."""
    fig = Figure(figsize=(7, 0.3 * len(counts) + 0.9))
    ax = fig.add_subplot()
    labels = [c[0] for c in counts][::-1]
    values = [c[1] for c in counts][::-1]
    ax.barh(labels, values, color="#4c72b0")
    for y, v in enumerate(values):
        ax.text(v, y, f" {v}", va="center", fontsize=8)
    ax.set_xlabel("clips (top-1 label)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no 0.5 ticks
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def score_histogram_svg(scores: list[float]) -> str:
    """Clips per top-1 score, SCORE_BINS bins over [0, 1]: how sure the model was."""
    fig = Figure(figsize=(7, 2.6))
    ax = fig.add_subplot()
    ax.hist(scores, bins=SCORE_BINS, range=(0.0, 1.0), color="#55a868", edgecolor="white")
    ax.set_xlabel("top-1 score")
    ax.set_ylabel("clips")
    ax.set_xlim(0, 1)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def _data_uri(jpeg: bytes | None) -> str | None:
    return None if not jpeg else "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


def _percent(t: float, duration: float) -> float:
    return round(100.0 * max(0.0, min(t, duration)) / duration, 3) if duration > 0 else 0.0


def _add_events(con: duckdb.DuckDBPyConnection, timelines: dict[str, VideoTimeline]) -> None:
    """Each video's events, per source, placed on its timeline (after its duration is known)."""
    if not {"video_id", "source", "start_s", "end_s", "label"} <= _columns(con, "events"):
        return
    for e in _rows(con, "SELECT video_id, source, start_s, end_s, label, score, clip_count FROM events ORDER BY video_id, source, start_s"):
        tl = timelines.get(e["video_id"])
        if tl is not None:
            e["left"] = _percent(e["start_s"], tl.duration_s)
            e["width"] = max(0.2, _percent(e["end_s"], tl.duration_s) - e["left"])
            tl.events.setdefault(e["source"], []).append(e)


def gather(
    out: str, storage_options: dict[str, Any] | None = None, max_clips_per_video: int = 200, max_videos: int = 100
) -> dict[str, Any]:
    """Everything the page shows, as plain values (the template only lays it out)."""
    con = connect(out, storage_options)
    clip_cols, video_cols = _columns(con, "clips"), _columns(con, "videos")
    error_cols, shot_cols = _columns(con, "errors"), _columns(con, "shots")
    runs = run_manifests(out, storage_options)
    for r in runs:
        r["stages"] = stage_timings(r)

    counts: dict[str, Any] = {"inputs": 0, "ok": 0, "failed": 0, "unreadable": 0, "clips": 0, "errors": 0}
    if video_cols:
        # videos/ logs every run that touched a video: the row of the run that committed last is its state
        con.register("commit_order", pa.table({"run_id": [m["run_id"] for m in runs], "n": list(range(len(runs)))}))
        con.sql("CREATE TEMP VIEW current_videos AS SELECT videos.* FROM videos LEFT JOIN commit_order USING (run_id) "
                "QUALIFY row_number() OVER (PARTITION BY video_id ORDER BY commit_order.n DESC NULLS LAST) = 1")
        # as the CLI counts: an input that could not even be listed (no fingerprint) is unreadable, not a failed video
        counts["inputs"], counts["ok"], counts["failed"], counts["unreadable"] = con.sql(
            "SELECT count(*), count(*) FILTER (status = 'ok'), count(*) FILTER (status = 'failed' AND fingerprint IS NOT NULL),"
            " count(*) FILTER (status = 'failed' AND fingerprint IS NULL) FROM current_videos"
        ).fetchall()[0]
    if clip_cols:
        counts["clips"] = con.sql("SELECT count(*) FROM clips").fetchall()[0][0]  # committed: each clip once
    errors_by_type: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    if error_cols:
        counts["errors"] = con.sql("SELECT count(*) FROM errors").fetchall()[0][0]
        errors_by_type = _rows(con, "SELECT error_type, count(*) AS n FROM errors GROUP BY 1 ORDER BY n DESC, 1")
        errors = _rows(con, "SELECT video_uri, stage, error_type, message, start_s, end_s, run_id FROM errors ORDER BY video_uri")

    histogram = None
    if "labels" in clip_cols:
        top = con.sql(
            "SELECT labels[1] AS label, count(*) AS n FROM clips WHERE len(labels) > 0"
            f" GROUP BY 1 ORDER BY n DESC, 1 LIMIT {MAX_LABELS}"
        ).fetchall()
        histogram = label_histogram_svg(top) if top else None
    score_histogram = None
    if "scores" in clip_cols:
        scores = [r[0] for r in con.sql("SELECT scores[1] FROM clips WHERE len(scores) > 0").fetchall()]
        score_histogram = score_histogram_svg(scores) if scores else None

    timelines: dict[str, VideoTimeline] = {}
    if video_cols:
        duration = "duration_s" if "duration_s" in video_cols else "NULL"
        meta = "".join(f", {c}" for c in METADATA if c in video_cols)
        unreadable = "fingerprint IS NULL" if "fingerprint" in video_cols else "false"
        sql = (f"SELECT video_id, video_uri, {duration} AS duration_s, status, {unreadable} AS unreadable{meta} "
               "FROM current_videos ORDER BY video_uri")
        for v in _rows(con, sql):
            timelines[v["video_id"]] = VideoTimeline(
                v["video_id"], v["video_uri"], v["duration_s"] or 0.0, v["status"],
                metadata={c: v[c] for c in METADATA if c in v}, unreadable=bool(v["unreadable"]),
            )
    if clip_cols:
        extra = [c for c in ("labels", "scores", "thumbnail") if c in clip_cols]
        select = ", ".join(["video_id", "video_uri", "clip_id", "start_s", "end_s", *extra])
        for c in _rows(con, f"SELECT {select} FROM clips"):
            tl = timelines.setdefault(c["video_id"], VideoTimeline(c["video_id"], c["video_uri"], 0.0, "ok"))
            tl.clips.append(
                {
                    "start_s": c["start_s"], "end_s": c["end_s"],
                    "label": (c.get("labels") or [None])[0], "score": (c.get("scores") or [None])[0],
                    "thumbnail": _data_uri(c.get("thumbnail")),
                }
            )
    if {"video_id", "start_s", "end_s"} <= shot_cols:
        order = "shot_index" if "shot_index" in shot_cols else "start_s"
        for s in _rows(con, f"SELECT video_id, start_s, end_s FROM shots ORDER BY video_id, {order}"):
            if s["video_id"] in timelines:
                timelines[s["video_id"]].shots.append(s)
    for tl in timelines.values():
        tl.clips.sort(key=lambda c: c["start_s"])
        tl.duration_s = max([tl.duration_s, *(c["end_s"] for c in tl.clips), *(s["end_s"] for s in tl.shots)])
        for item in [*tl.clips, *tl.shots]:
            item["left"] = _percent(item["start_s"], tl.duration_s)
            item["width"] = max(0.2, _percent(item["end_s"], tl.duration_s) - item["left"])
        tl.ticks = time_ticks(tl.duration_s)
        if len(tl.clips) > max_clips_per_video:
            tl.hidden_clips = len(tl.clips) - max_clips_per_video
            tl.clips = tl.clips[:max_clips_per_video]
    _add_events(con, timelines)
    # failed videos first (they are what a reader looks for), then by file name; at most max_videos on the page
    ordered = sorted(timelines.values(), key=lambda t: (t.status == "ok", t.name, t.video_uri))
    shown, hidden_videos = ordered[:max_videos], max(0, len(ordered) - max_videos)

    by_label: dict[str, int] = defaultdict(int)
    for tl in shown:
        for c in tl.clips:
            by_label[c["label"] or ""] += 1
    palette = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd"]
    order = sorted(by_label, key=lambda k: (-by_label[k], k))
    colors = {label: palette[i % len(palette)] for i, label in enumerate(order)}
    for label in sorted({e["label"] for tl in timelines.values() for es in tl.events.values() for e in es} - set(colors)):
        colors[label] = palette[len(colors) % len(palette)]  # event labels no clip's top label has (a head's)
    legend = [{"label": label or "(no label)", "color": colors[label], "clips": by_label[label]} for label in order]
    for e in errors:
        e["name"] = file_name(e["video_uri"])
    return {
        "out": out, "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), "counts": counts,
        "errors_by_type": errors_by_type, "errors": errors, "runs": runs, "histogram": histogram,
        "score_histogram": score_histogram, "timelines": shown, "hidden_videos": hidden_videos, "colors": colors,
        "legend": legend,
    }


def render_report(
    out: str, storage_options: dict[str, Any] | None = None, max_clips_per_video: int = 200, max_videos: int = 100
) -> str:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("vidbatch.read", "templates"), autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("report.html.j2").render(**gather(out, storage_options, max_clips_per_video, max_videos))
