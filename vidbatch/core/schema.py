"""Every output table's Arrow schema, in one place.

Writers cast to these schemas (a drifting column fails loudly), and the README's schema section is generated
from `schema_markdown()` (a test keeps the two identical).
"""
from __future__ import annotations

import pyarrow as pa


def _f(
    name: str, type_: pa.DataType, doc: str, nullable: bool = True, metadata: dict[str, str] | None = None
) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"doc": doc, **(metadata or {})})


CLIP_KEY_FIELDS = [
    _f("video_id", pa.string(), "sha1 of the video URI (16 hex chars); stable across re-encodes of the same path", False),
    _f("video_uri", pa.string(), "where the video was read from (local path or fsspec URL)", False),
    _f("clip_id", pa.string(), "sha1 of the video fingerprint (uri, size, mtime/etag) and the clip's time range", False),
    _f("clip_index", pa.int32(), "0-based position of the clip in its video", False),
    _f("start_s", pa.float64(), "clip start, seconds from the video's first frame", False),
    _f("end_s", pa.float64(), "clip end, seconds from the video's first frame", False),
    _f("frame_times_s", pa.list_(pa.float64()), "presentation time of each sampled frame, seconds from the first frame", False),
]


def classify_fields(embedding_dim: int) -> list[pa.Field]:
    """Columns added by the `classify` task."""
    return [
        _f("model", pa.string(), "model that produced labels/scores/embedding, as `architecture:weights`"),
        _f("labels", pa.list_(pa.string()), "top-k class names, best first (mean of per-frame softmax over sampled frames)"),
        _f("scores", pa.list_(pa.float32()), "probabilities of `labels`, same order"),
        _f(
            "embedding",
            pa.list_(pa.float32()),
            "penultimate-layer features mean-pooled over sampled frames, L2-normalised; D floats, D = the model's "
            "feature size (Delta has no fixed-size list type: readers check D)",
            metadata={"dim": str(embedding_dim)},
        ),
    ]


THUMBNAIL_FIELD = _f(
    "thumbnail",
    pa.binary(),
    "JPEG of the clip's middle sampled frame, whole frame upright, about 160 px wide (`out.thumbnails`; null when off)",
)


def thumbnail_fields(enabled: bool) -> list[pa.Field]:
    """The clips/ thumbnail column, when the job stores thumbnails."""
    return [THUMBNAIL_FIELD] if enabled else []


def head_fields() -> list[pa.Field]:
    """Columns added to clips/ by the `head` task (a classifier trained with `vidbatch train-head`)."""
    return [
        _f("head_label", pa.string(), "the head's best class for the clip"),
        _f("head_score", pa.float32(), "the head's probability of `head_label`"),
    ]


def embed_fields(embedding_dim: int) -> list[pa.Field]:
    """Columns added by the `embed` task: classify's `model` and `embedding`, without labels (same meaning)."""
    return [f for f in classify_fields(embedding_dim) if f.name in ("model", "embedding")]


LABEL_FRACTION = pa.struct([pa.field("label", pa.string()), pa.field("fraction", pa.float32())])
MASK = pa.struct([pa.field("width", pa.int32()), pa.field("height", pa.int32()), pa.field("png", pa.binary())])
SEGMENT_FIELDS = [
    _f("seg_model", pa.string(), "segmentation model, as `architecture:weights`"),
    _f(
        "seg_class_fractions",
        pa.list_(LABEL_FRACTION),
        "fraction of image pixels per class (argmax), mean over sampled frames; classes present only, largest first",
    ),
    _f(
        "seg_masks",
        pa.list_(MASK),
        "with `masks: true`: per sampled frame, the class-index mask (8-bit grayscale PNG, pixel = class index) at the "
        "model's input size `width` x `height`, covering the whole upright source frame",
    ),
]

DETECTION = pa.struct(
    [pa.field("frame_index", pa.int32()), pa.field("label", pa.string()), pa.field("score", pa.float32())]
    + [pa.field(c, pa.float32()) for c in ("x1", "y1", "x2", "y2")]
)
LABEL_COUNT = pa.struct([pa.field("label", pa.string()), pa.field("count", pa.int32())])
DETECT_FIELDS = [
    _f("det_model", pa.string(), "detection model, as `architecture:weights`"),
    _f(
        "det_detections",
        pa.list_(DETECTION),
        "detections scoring at least `score_threshold`; `frame_index` indexes `frame_times_s`; box corners in pixels "
        "of the upright source frame (display rotation applied), origin top-left",
    ),
    _f("det_counts", pa.list_(LABEL_COUNT), "per class, the most detections in any one sampled frame, most first"),
]

ACTION_FIELDS = [
    _f("action_model", pa.string(), "video classifier, as `architecture:weights`"),
    _f(
        "action_labels",
        pa.list_(pa.string()),
        "top-k Kinetics-400 classes of a contiguous frame stack centred in the clip, at the weights' documented rate",
    ),
    _f("action_scores", pa.list_(pa.float32()), "probabilities of `action_labels`, same order"),
]


RUN_FIELD = _f("run_id", pa.string(), "run that wrote the row (see runs/<run_id>.json)", False)
PIPELINE_FIELD = _f(
    "pipeline", pa.string(), "fingerprint of the models and settings that made the row (runs/<run_id>.json has them)", False
)

# Carried from the decode and inference stages to the driver next to clip columns; never written to clips/.
RESULT_ERROR_FIELDS = [
    pa.field("error_stage", pa.string()),
    pa.field("error_type", pa.string()),
    pa.field("error_message", pa.string()),
]


# Carried from the decode stage to the driver with each clip (never written to clips/): how many of its samples
# were served by a stand-in for a frame that did not decode, or by a partly repaired frame (videos.damaged_clips).
RESULT_DAMAGE_FIELD = pa.field("damaged_frames", pa.int32())
# With out.frame_embeddings: each clip's per-frame embeddings, carried from the actor to the driver, which writes
# them to frames/ (one row per frame), never to clips/.
FRAME_EMBEDDINGS_FIELD = pa.field("frame_embeddings", pa.list_(pa.list_(pa.float32())))


def clips_schema(task_fields: list[pa.Field]) -> pa.Schema:
    return pa.schema([*CLIP_KEY_FIELDS, *task_fields, PIPELINE_FIELD, RUN_FIELD])


def result_schema(task_fields: list[pa.Field], frame_embeddings: bool = False) -> pa.Schema:
    carried = [FRAME_EMBEDDINGS_FIELD] if frame_embeddings else []
    return pa.schema([*CLIP_KEY_FIELDS, *task_fields, *carried, *RESULT_ERROR_FIELDS, RESULT_DAMAGE_FIELD])


FRAMES = pa.schema(
    [
        _f("clip_id", pa.string(), "see clips.clip_id", False),
        _f("video_id", pa.string(), "see clips.video_id", False),
        _f("frame_index", pa.int32(), "0-based position of the frame in its clip, in time order (indexes clips.frame_times_s)", False),
        _f("time_s", pa.float64(), "presentation time of the frame, seconds from the video's first frame", False),
        _f(
            "embedding",
            pa.list_(pa.float32()),
            "the frame's penultimate-layer features from the forward pass that made the clip's (model: clips.model), "
            "L2-normalised (clips.embedding normalises the mean of the features as they were before)",
            False,
        ),
        PIPELINE_FIELD,
        RUN_FIELD,
    ]
)


VIDEOS = pa.schema(
    [
        _f("video_id", pa.string(), "see clips.video_id", False),
        _f("video_uri", pa.string(), "where the video was read from", False),
        _f("fingerprint", pa.string(), "sha1 of (uri, size, mtime/etag); changes when the file does (null: input not found)"),
        _f("size_bytes", pa.int64(), "file size when listed"),
        _f("version", pa.string(), "mtime (file systems) or ETag (object stores) when listed"),
        _f("status", pa.string(), "`ok`: every planned clip written, or some lost to damaged data (`damaged_clips`) and at least one written; `failed`: see errors/ for this video_id", False),
        _f("clip_count", pa.int32(), "clips written for this video", False),
        _f("damaged_clips", pa.int32(), "clips that met undecodable data: written with the nearest decodable frame of the clip standing in for a lost one, or (no decodable frame at all) not written and listed in errors/ as `DamagedClip`"),
        _f("duration_s", pa.float64(), "duration of the video stream (its header's, checked against the last packets; never the audio's)"),
        _f("fps", pa.float64(), "average frame rate"),
        _f("frame_count", pa.int64(), "frames in the stream (container value, else duration x fps)"),
        _f("width", pa.int32(), "coded width of the first frame"),
        _f("height", pa.int32(), "coded height of the first frame"),
        _f("codec", pa.string(), "FFmpeg codec name"),
        _f("pix_fmt", pa.string(), "pixel format of decoded frames"),
        _f("rotation", pa.int32(), "display-matrix rotation in degrees, 0/90/180/270 (frames are turned upright before inference)"),
        _f("has_audio", pa.bool_(), "container has at least one audio stream"),
        _f("keyframe_interval_s", pa.float64(), "largest keyframe gap seen near the start; drives seek vs decode-through"),
        RUN_FIELD,
    ]
)

ERRORS = pa.schema(
    [
        _f("video_id", pa.string(), "sha1 of the URI the error is about", False),
        _f("video_uri", pa.string(), "input path or URL that failed", False),
        _f("stage", pa.string(), "list | probe | decode | infer (one row per failed input, see message for more failed units; and one per `DamagedClip`)", False),
        _f("error_type", pa.string(), "what failed, e.g. Unreadable, NoVideoStream, ImplausibleDuration, Timeout, DecodeError, DamagedClip, FileNotFoundError (README: hostile inputs)", False),
        _f("message", pa.string(), "the error text (truncated to 2000 chars)", False),
        _f("clip_id", pa.string(), "first clip affected, when the failure is inside a video"),
        _f("start_s", pa.float64(), "start of the first affected clip"),
        _f("end_s", pa.float64(), "end of the last affected clip (clips in between may have succeeded)"),
        RUN_FIELD,
    ]
)

SHOTS = pa.schema(
    [
        _f("video_id", pa.string(), "see clips.video_id", False),
        _f("shot_index", pa.int32(), "0-based position of the shot in its video", False),
        _f("start_s", pa.float64(), "presentation time of the shot's first frame, seconds from the video's first frame (variable frame rate: that frame's own timestamp)", False),
        _f("end_s", pa.float64(), "end of the shot's last frame: the next frame's time (the duration for the last shot)", False),
        _f("start_frame", pa.int64(), "index of the shot's first frame in presentation order", False),
        _f("end_frame", pa.int64(), "index of the shot's last frame (inclusive); transnetv2 leaves transition frames out of both shots", False),
        _f("boundary_score", pa.float32(), "score of the boundary that opens the shot: transnetv2 probability, content HSV difference; null for the first shot"),
        _f("detector", pa.string(), "shot detector from the registry (`transnetv2`, `content`)", False),
        RUN_FIELD,
    ]
)


LEDGER = pa.schema(
    [
        _f("video_id", pa.string(), "see clips.video_id", False),
        _f("video_uri", pa.string(), "the listed video", False),
        _f("size_bytes", pa.int64(), "size when listed"),
        _f("version", pa.string(), "mtime or ETag when listed; a different size or version makes the video `changed`"),
        _f("fingerprint", pa.string(), "video fingerprint (uri, size, version) the clips were computed from"),
        _f("pipeline", pa.string(), "pipeline fingerprint (models, weights, clip and sampling settings) that processed it"),
        _f("status", pa.string(), "`ok`, `failed`, `quarantined` (failed `incremental.quarantine_after` runs in a row; skipped until it changes) or `deleted` (no longer listed)", False),
        _f("reason", pa.string(), "why this run touched it: new | changed | retry | backfill | rerun | deleted", False),
        _f("consecutive_failures", pa.int32(), "runs in a row that failed on this version of the video", False),
        _f("updated_at", pa.string(), "UTC time of the run's commit (ISO 8601)", False),
        RUN_FIELD,
    ]
)


HEAD_PREDICTIONS = pa.schema(
    [
        _f("video_id", pa.string(), "see clips.video_id", False),
        _f("clip_id", pa.string(), "see clips.clip_id", False),
        _f("start_s", pa.float64(), "see clips.start_s", False),
        _f("end_s", pa.float64(), "see clips.end_s", False),
        _f("head_id", pa.string(), "sha1 of the head file (16 hex chars): which head made the prediction", False),
        _f("embedding_model", pa.string(), "clips.model the head was trained on", False),
        _f("label", pa.string(), "the head's best class", False),
        _f("score", pa.float32(), "probability of `label`", False),
        _f("class_names", pa.list_(pa.string()), "the head's classes, in the order of `scores`", False),
        _f("scores", pa.list_(pa.float32()), "probability of every class", False),
        _f("applied_at", pa.timestamp("us", tz="UTC"), "when `vidbatch apply-head` wrote the row", False),
    ]
)


EVENTS = pa.schema(
    [
        _f("video_id", pa.string(), "see clips.video_id", False),
        _f("video_uri", pa.string(), "see clips.video_uri", False),
        _f("source", pa.string(), "whose labels were merged: `classify` (clips' top-1 label) or `head` (head_predictions)", False),
        _f("head_id", pa.string(), "source `head`: the head whose predictions were merged (head_predictions.head_id)"),
        _f("event_index", pa.int32(), "0-based position of the event in its video", False),
        _f("start_s", pa.float64(), "start of the event's first clip", False),
        _f("end_s", pa.float64(), "end of the event's last clip", False),
        _f("label", pa.string(), "the label every merged clip shares", False),
        _f("score", pa.float32(), "mean score of the merged clips", False),
        _f("clip_count", pa.int32(), "consecutive clips merged into the event", False),
        _f("made_at", pa.timestamp("us", tz="UTC"), "when `vidbatch events` wrote the row", False),
    ]
)


def _table_markdown(title: str, schema: pa.Schema) -> str:
    """title: the table's folder, then an optional note (`head_predictions/ (\`vidbatch apply-head\`)`)."""
    rows = ["| column | type | description |", "|---|---|---|"]
    for f in schema:
        doc = (f.metadata or {}).get(b"doc", b"").decode()
        rows.append(f"| `{f.name}` | `{f.type}`{'' if f.nullable else ' not null'} | {doc} |")
    name, _, note = title.partition(" ")
    return f"### `{name}`{' ' + note if note else ''}\n\n" + "\n".join(rows)


def schema_markdown() -> str:
    """The README's schema section, generated from the schemas above."""
    return "\n\n".join(
        [
            _table_markdown("clips/ (with the classify task)", clips_schema(classify_fields(1280) + thumbnail_fields(True))),
            _table_markdown("clips/ columns of the embed task (instead of classify's)", pa.schema(embed_fields(1280))),
            _table_markdown("clips/ columns of the segment task", pa.schema(SEGMENT_FIELDS)),
            _table_markdown("clips/ columns of the detect task", pa.schema(DETECT_FIELDS)),
            _table_markdown("clips/ columns of the action task", pa.schema(ACTION_FIELDS)),
            _table_markdown("clips/ columns of the head task", pa.schema(head_fields())),
            _table_markdown("videos/", VIDEOS),
            _table_markdown("errors/", ERRORS),
            _table_markdown("ledger/ (one row per video: its state, replaced each time a run touches it)", LEDGER),
            _table_markdown("head_predictions/ (`vidbatch apply-head`)", HEAD_PREDICTIONS),
            _table_markdown("shots/ (with clips.clip_mode: shots)", SHOTS),
            _table_markdown("frames/ (with out.frame_embeddings: one row per sampled frame)", FRAMES),
            _table_markdown("events/ (`vidbatch events`: runs of consecutive clips that share a label)", EVENTS),
        ]
    )
