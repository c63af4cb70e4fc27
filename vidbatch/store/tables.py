"""The per-run tables besides the clips: one `videos` row per input, the run's shots, each clip's frames."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vidbatch.core.errors import ErrorRow
from vidbatch.core.schema import FRAME_EMBEDDINGS_FIELD, FRAMES, SHOTS, VIDEOS
from vidbatch.core.storage import OutputStore
from vidbatch.plan.prepare import PreparedVideo
from vidbatch.store.commits import STAGING


def videos_table(
    prepared: list[PreparedVideo], list_errors: list[ErrorRow], clip_counts: Counter, failed_ids: set[str], run_id: str,
    damaged_counts: Counter | None = None,
) -> pa.Table:
    """One row per input, including inputs that could not even be listed (no metadata, status failed)."""
    damaged_counts = damaged_counts or Counter()
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
                "damaged_clips": damaged_counts.get(vid, 0),
                **{k: info[k] for k in VIDEOS.names if k in info}, "run_id": run_id,
            }
        )
    return pa.Table.from_pylist(rows, schema=VIDEOS)


def stage_shots(store: OutputStore, shots: pa.Table, run_id: str) -> str | None:
    """The run's shots, staged beside its clip rows and committed with them (replacing each video's earlier shots)."""
    if shots.num_rows == 0:
        return None
    return store.write_parquet(f"{STAGING}/{run_id}/shots.parquet", shots.sort_by([("video_id", "ascending"), ("shot_index", "ascending")]).cast(SHOTS))


def frames_table(clips: pa.Table, pipeline: str, run_id: str) -> pa.Table:
    """One frames/ row per sampled frame of the clips (result rows carrying `frame_embeddings`), in clip order."""
    embeddings = clips[FRAME_EMBEDDINGS_FIELD.name].combine_chunks()
    counts = pc.list_value_length(embeddings).fill_null(0).to_numpy()
    times = clips["frame_times_s"].combine_chunks()
    if not np.array_equal(counts, pc.list_value_length(times).to_numpy()):
        raise AssertionError("frame embeddings and frame_times_s differ in length")
    owner = np.repeat(np.arange(clips.num_rows), counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else np.zeros(0, np.int64)
    n = int(counts.sum())
    return pa.table(
        {
            "clip_id": clips["clip_id"].take(owner), "video_id": clips["video_id"].take(owner),
            "frame_index": pa.array(np.arange(n) - np.repeat(starts, counts), pa.int32()),
            "time_s": times.flatten(), "embedding": embeddings.flatten(),
            "pipeline": pa.array([pipeline] * n, pa.string()), "run_id": pa.array([run_id] * n, pa.string()),
        }
    ).cast(FRAMES)
