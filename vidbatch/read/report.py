"""`vidbatch report`: one self-contained HTML page about an output directory, readable without JavaScript.

Everything comes from the committed tables and run manifests (through DuckDB views, as `vidbatch query` sees
them); thumbnails are the stored JPEGs inlined as data: URIs, so no video is decoded and the file stands alone.
"""
from __future__ import annotations

import base64
import io
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import jinja2
from matplotlib.figure import Figure

from vidbatch.read.query import connect
from vidbatch.store.committed import run_manifests

MAX_LABELS = 20  # bars in the top-label histogram


@dataclass
class VideoTimeline:
    video_id: str
    video_uri: str
    duration_s: float
    status: str
    clips: list[dict[str, Any]] = field(default_factory=list)
    shots: list[dict[str, Any]] = field(default_factory=list)
    hidden_clips: int = 0
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # source -> events (`vidbatch events`)


def _columns(con: duckdb.DuckDBPyConnection, view: str) -> set[str]:
    tables = {r[0] for r in con.sql("SELECT table_name FROM duckdb_tables() UNION SELECT view_name FROM duckdb_views()").fetchall()}
    if view not in tables:
        return set()
    return {r[0] for r in con.sql(f"DESCRIBE {view}").fetchall()}


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    return con.sql(sql).to_arrow_table().to_pylist()


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
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


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


def gather(out: str, storage_options: dict[str, Any] | None = None, max_clips_per_video: int = 200) -> dict[str, Any]:
    """Everything the page shows, as plain values (the template only lays it out)."""
    con = connect(out, storage_options)
    clip_cols, video_cols = _columns(con, "clips"), _columns(con, "videos")
    error_cols, shot_cols = _columns(con, "errors"), _columns(con, "shots")
    runs = run_manifests(out, storage_options)

    counts: dict[str, Any] = {"inputs": 0, "ok": 0, "failed": 0, "clips": 0, "errors": 0}
    if video_cols:
        # videos/ logs every run that touched a video: its latest row is its state
        con.sql("CREATE TEMP VIEW current_videos AS SELECT * FROM videos QUALIFY row_number() OVER "
                "(PARTITION BY video_id ORDER BY run_id DESC) = 1")
        counts["inputs"], counts["ok"], counts["failed"] = con.sql(
            "SELECT count(*), count(*) FILTER (status = 'ok'), count(*) FILTER (status = 'failed') FROM current_videos"
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

    timelines: dict[str, VideoTimeline] = {}
    if video_cols:
        duration = "duration_s" if "duration_s" in video_cols else "NULL"
        for v in _rows(con, f"SELECT video_id, video_uri, {duration} AS duration_s, status FROM current_videos ORDER BY video_uri"):
            timelines[v["video_id"]] = VideoTimeline(v["video_id"], v["video_uri"], v["duration_s"] or 0.0, v["status"])
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
        if len(tl.clips) > max_clips_per_video:
            tl.hidden_clips = len(tl.clips) - max_clips_per_video
            tl.clips = tl.clips[:max_clips_per_video]
    _add_events(con, timelines)

    by_label: dict[str, int] = defaultdict(int)
    for tl in timelines.values():
        for c in tl.clips:
            by_label[c["label"] or ""] += 1
    palette = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd"]
    colors = {label: palette[i % len(palette)] for i, label in enumerate(sorted(by_label, key=lambda k: -by_label[k]))}
    for label in sorted({e["label"] for tl in timelines.values() for es in tl.events.values() for e in es} - set(colors)):
        colors[label] = palette[len(colors) % len(palette)]  # event labels no clip's top label has (a head's)
    return {
        "out": out, "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), "counts": counts,
        "errors_by_type": errors_by_type, "errors": errors, "runs": runs, "histogram": histogram,
        "timelines": sorted(timelines.values(), key=lambda t: t.video_uri), "colors": colors,
    }


def render_report(out: str, storage_options: dict[str, Any] | None = None, max_clips_per_video: int = 200) -> str:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("vidbatch.read", "templates"), autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("report.html.j2").render(**gather(out, storage_options, max_clips_per_video))
