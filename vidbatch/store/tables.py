"""The per-run tables written beside the clips: one `videos` row per input, one `shots` file per video."""
from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from vidbatch.core.errors import ErrorRow
from vidbatch.core.schema import SHOTS, VIDEOS
from vidbatch.core.storage import OutputStore
from vidbatch.plan.prepare import PreparedVideo


def videos_table(
    prepared: list[PreparedVideo], list_errors: list[ErrorRow], clip_counts: Counter, failed_ids: set[str], run_id: str
) -> pa.Table:
    """One row per input, including inputs that could not even be listed (no metadata, status failed)."""
    rows = [
        {"video_id": e.video_id, "video_uri": e.uri, "status": "failed", "clip_count": 0, "run_id": run_id}
        for e in list_errors
    ]
    for p in prepared:
        vid = p.source.video_id
        info = p.info.to_dict() if p.info else {}
        rows.append(
            {
                "video_id": vid, "video_uri": p.source.uri, "fingerprint": p.source.fingerprint,
                "size_bytes": p.source.size, "version": p.source.version,
                "status": "failed" if vid in failed_ids else "ok", "clip_count": clip_counts.get(vid, 0),
                **{k: info[k] for k in VIDEOS.names if k in info}, "run_id": run_id,
            }
        )
    return pa.Table.from_pylist(rows, schema=VIDEOS)


def write_shots(
    store: OutputStore, shots: pa.Table, prepared: list[PreparedVideo], pipeline: str, dt: str
) -> dict[str, str]:
    """One shots file per video, named like its clip files, so re-processing the video replaces it (see ledger)."""
    fingerprints = {p.source.video_id: p.source.fingerprint for p in prepared}
    files = {}
    for video_id in sorted(set(shots["video_id"].to_pylist())):
        rows = shots.filter(pc.equal(shots["video_id"], video_id)).sort_by("shot_index")
        name = f"shots/dt={dt}/pipeline={pipeline}/part-{video_id}-{fingerprints[video_id][:8]}.parquet"
        files[video_id] = store.write_parquet(name, rows.cast(SHOTS))
    return files
