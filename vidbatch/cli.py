"""`vidbatch` command line. Exit codes: 0 all ok, 3 finished with failed inputs, 2 bad usage/config, 1 crashed."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperGroup

import vidbatch
from vidbatch.config import ConfigError
from vidbatch.job import check_storage, load_config, require_inputs_and_output
from vidbatch.store.manifest import EXIT_USAGE, RunSummary

if TYPE_CHECKING:
    import pyarrow as pa


def _flags_as_flags(params: list) -> None:
    """typer's help prints a flag's type (`--incremental <bool>`), which reads as if it took a value: no type."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


class _Commands(TyperGroup):
    """The `vidbatch` group: every command's flags (and --help) show as flags, commands added later included."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        _flags_as_flags(params)
        return params

    def get_command(self, ctx, cmd_name):
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _flags_as_flags(command.get_params(ctx))
        return command


app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, cls=_Commands)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"vidbatch {vidbatch.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    pass


PLAIN_PROGRESS_EVERY_S = 10.0  # without a terminal, one progress line this often
ERRORS_SHOWN = 5


def _run_rows(summary: RunSummary, table: str, columns: list[str], storage_options: dict) -> pa.Table | None:
    """The run's own rows of one table, read back from the files it wrote: what is printed is what was written."""
    import pyarrow.dataset as pads

    from vidbatch.store.committed import table_dataset

    dataset = table_dataset(summary.output, table, storage_options, versions=summary.table_versions)
    if dataset is None:
        return None
    return dataset.to_table(
        columns=[c for c in columns if c in dataset.schema.names], filter=pads.field("run_id") == summary.run_id
    )


def _clip_table(summary: RunSummary, limit: int, storage_options: dict) -> str:
    from vidbatch.read.terminal import file_name, render_rows

    table = None if limit == 0 else _run_rows(
        summary, "clips", ["video_uri", "clip_index", "start_s", "end_s", "labels", "scores"], storage_options
    )
    if table is None or table.num_rows == 0:
        return ""
    table = table.sort_by([("video_uri", "ascending"), ("clip_index", "ascending")]).slice(0, limit)
    has_labels = "labels" in table.column_names
    rows = []
    for r in table.to_pylist():
        label = (r["labels"] or ["-"])[0] if has_labels else "-"
        score = f"{r['scores'][0]:.3f}" if has_labels and r["scores"] else "-"
        rows.append([file_name(r["video_uri"]), f"{r['start_s']:6.2f}-{r['end_s']:6.2f}s", label, score])
    more = summary.counts.clips - table.num_rows
    return render_rows(["video", "clip", "top label", "score"], rows, numeric={"clip", "score"},
                       footer=f"... {more} more clips" if more > 0 else None)


def _error_table(summary: RunSummary, storage_options: dict) -> str:
    """The first error rows of the run: file, stage, message (the rest: `vidbatch query OUT "SELECT * FROM errors"`)."""
    from vidbatch.read.terminal import file_name, render_rows

    table = _run_rows(summary, "errors", ["video_uri", "stage", "error_type", "message"], storage_options)
    if table is None or table.num_rows == 0:
        return ""
    table = table.sort_by([("video_uri", "ascending")])
    rows = [[file_name(r["video_uri"]), r["stage"], f"{r['error_type']}: {r['message']}".replace("\n", " ")]
            for r in table.slice(0, ERRORS_SHOWN).to_pylist()]
    more = table.num_rows - len(rows)
    footer = f"... {more} more: vidbatch query {summary.output} \"SELECT * FROM errors WHERE run_id = '{summary.run_id}'\""
    return "errors:\n" + render_rows(["file", "stage", "message"], rows, footer=footer if more > 0 else None)


def _progress(cfg, verbose: bool):
    """One live display on a terminal; plain lines every few seconds otherwise (and with -v or Ray's own bars,
    whose lines would tear a live display)."""
    import sys

    from rich.console import Console

    from vidbatch.progress import LineProgress, LiveProgress

    console = Console(stderr=True)
    if console.is_terminal and not verbose and not cfg.ray.progress_bars:
        return LiveProgress(Console(stderr=True, force_terminal=True))  # stays a terminal while Ray's noise is filtered
    return LineProgress(sys.stderr, PLAIN_PROGRESS_EVERY_S)


def _summary_lines(summary: RunSummary) -> list[str]:
    c = summary.counts
    videos = (
        f"{c.listed} videos listed: {c.new} new, {c.changed} changed{f', {c.backfill} backfilled' if c.backfill else ''}, "
        f"{c.skipped} skipped, {c.failed} failed, {c.quarantined} quarantined"
        f"{f', {c.deleted} deleted' if c.deleted else ''}{f', {c.unreadable_inputs} unreadable inputs' if c.unreadable_inputs else ''}"
    )
    if summary.committed_at is None:  # an incremental run with nothing to do
        lines = [f"nothing new - {videos}; nothing written, Ray not started ({summary.wall_s:.1f}s)"]
    else:
        lines = [
            f"run {summary.run_id}{' (resumed)' if summary.resumed else ''}: {summary.status} - {videos}; "
            f"{c.clips} clips, {c.errors} errors, {summary.wall_s:.1f}s wall, "
            f"{summary.throughput['source_frames_per_s']:.0f} source frames/s" + _partial_ok_note(summary)
        ]
    if c.older_pipeline:
        lines.append(
            f"{c.older_pipeline} video{'s' if c.older_pipeline != 1 else ''} stay on an older pipeline (clips made with "
            "other models or settings); run with --backfill to reprocess them"
        )
    if summary.committed_at is not None:
        lines.append(f"output: {summary.output} (manifest runs/{summary.run_id}.json)")
    return lines


@app.command("run")
def run_command(
    archive: Annotated[list[str] | None, typer.Argument(help="Video files, directories, globs or manifests (any fsspec URL); default: `inputs` of the config.")] = None,
    output: Annotated[str | None, typer.Option("-o", "--output", help="Output directory (any fsspec URL).")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML job config.")] = None,
    address: Annotated[str | None, typer.Option("--address", help="Ray cluster address (default: RAY_ADDRESS, else embedded local Ray).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config field: --set clips.clip_seconds=4")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Name the run (default: UTC time + random suffix); an id already committed is refused.")] = None,
    show: Annotated[int | None, typer.Option("--show", help="Clips to print after the run.")] = None,
    incremental: Annotated[bool, typer.Option("--incremental", help="Process only videos the ledger has not seen ok (nightly runs).")] = False,
    backfill: Annotated[bool, typer.Option("--backfill", help="With --incremental: also reprocess videos of an older pipeline fingerprint.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Also show Ray's own log lines (hidden by default) and plain progress lines instead of the live display.")] = False,
    partial_ok: Annotated[bool | None, typer.Option("--partial-ok/--no-partial-ok", help="Exit 0, not 3, when only inputs failed (out.partial_ok): Ray Jobs and KubeRay show any non-zero exit as FAILED.")] = None,
) -> None:
    """Split videos into clips, decode sampled frames, run the tasks' models, write Parquet.

    Started again after a crash or kill, the same command resumes the unfinished run."""
    try:
        cfg = load_config(
            config, sets=set_,
            overrides={
                "inputs": list(archive or []) or None, "output": output, "ray.address": address, "run_id": run_id,
                "out.show": show, "incremental.enabled": (incremental or backfill) or None, "incremental.backfill": backfill or None,
                "out.partial_ok": partial_ok,
            },
        )
        require_inputs_and_output(cfg)
        check_storage(cfg)
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_USAGE) from None

    from vidbatch.pipeline import run

    progress = _progress(cfg, verbose)
    try:
        summary = run(cfg, progress, verbose=verbose)
    except ConfigError as e:  # found by listing, or settings only the cluster can refute (more actors than CPUs)
        progress.done()  # the live display gives the terminal back before the message
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    finally:
        progress.done()  # however the run ended
    for block in (_clip_table(summary, cfg.out.show, cfg.storage_options), _error_table(summary, cfg.storage_options)):
        if block:
            typer.echo(block)
    typer.echo("\n".join(_summary_lines(summary)))
    raise typer.Exit(summary.exit_code)


@app.command("shots")
def shots_command(
    videos: Annotated[list[str], typer.Argument(help="Video files (any fsspec URL).")],
    detector: Annotated[str, typer.Option("--detector", "-d", help="Shot detector: content (HSV difference, no weights) or transnetv2 (the network).")] = "content",
    threshold: Annotated[float | None, typer.Option("--threshold", help="Boundary threshold (default per detector: content 27, transnetv2 0.5).")] = None,
    min_shot_frames: Annotated[int | None, typer.Option("--min-shot-frames", help="Drop a boundary closer than this to the previous one (default per detector: 15, 1).")] = None,
    device: Annotated[str, typer.Option("--device", help="transnetv2: auto | cpu | cuda.")] = "auto",
    format_: Annotated[str, typer.Option("--format", "-f", help="table | csv | json")] = "table",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the shots to this file instead of stdout.")] = None,
    storage_option: StorageOptions = None,
) -> None:
    """List the shots of videos with a shot detector, like `scenedetect list-scenes`: no Ray, no output table.

    Exit code 3 when a video could not be read (its error goes to stderr; the other videos are listed)."""
    import pyarrow as pa

    from vidbatch.job import shots_config
    from vidbatch.read import query
    from vidbatch.read.terminal import file_name, render_rows
    from vidbatch.shots.video_shots import VIDEO_SHOTS, video_shots
    from vidbatch.store.manifest import EXIT_PARTIAL

    if format_ not in ("table", "csv", "json"):
        raise _fail(f"--format {format_!r}: choose table, csv or json")
    try:
        cfg = shots_config({"detector": detector, "threshold": threshold, "min_shot_frames": min_shot_frames, "device": device})
    except ConfigError as e:
        raise _fail(str(e).replace("invalid config:\n  ", "")) from None
    so = _storage_options(storage_option)
    tables, failed = [], 0
    for uri in videos:
        try:
            tables.append(video_shots(uri, cfg, 0, so))
        except Exception as e:  # noqa: BLE001 - an unreadable video is reported and the others still listed
            failed += 1
            typer.echo(f"error: {uri}: {type(e).__name__}: {e}", err=True)
    table = pa.concat_tables(tables) if tables else VIDEO_SHOTS.empty_table()
    if format_ == "table":
        rows = [
            [file_name(r["video_uri"]), str(r["shot_index"] + 1), f"{r['start_s']:.3f}", f"{r['end_s']:.3f}",
             f"{r['length_s']:.3f}", f"{r['start_frame']}-{r['end_frame']}",
             "" if r["boundary_score"] is None else f"{r['boundary_score']:.3g}"]
            for r in table.to_pylist()
        ]
        columns = ["video", "shot", "start (s)", "end (s)", "length (s)", "frames", "boundary score"]
        text = render_rows(columns, rows, numeric=set(columns[1:]), footer=f"({table.num_rows} shots, detector {detector})")
    else:
        text = {"csv": query.format_csv, "json": query.format_json}[format_](table)
    if output is None:
        typer.echo(text.rstrip("\n"))
    else:
        output.write_text(text if text.endswith("\n") else text + "\n")
        typer.echo(f"{table.num_rows} shots of {len(tables)} videos written to {output}", err=True)
    if failed:
        raise typer.Exit(EXIT_PARTIAL)


def _partial_ok_note(summary: RunSummary) -> str:
    """Why a run with failed inputs exits 0 (out.partial_ok), with the count, so logs tell it from a clean night."""
    failed = summary.counts.failed + summary.counts.unreadable_inputs
    if summary.exit_code != 0 or not failed:
        return ""
    return f"; exit 0 with --partial-ok: {failed} input{'s' if failed != 1 else ''} failed (see errors/)"


@app.command("schema")
def schema_command() -> None:
    """Print the output tables' schema (docs/schema.md is generated from this)."""
    from vidbatch.core.schema import schema_markdown

    typer.echo(schema_markdown())



def _storage_options(values: list[str] | None) -> dict:
    """`--storage-option key=value` (value parsed as YAML) into fsspec storage options."""
    import yaml

    options = {}
    for item in values or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            typer.echo(f"error: --storage-option {item!r}: expected KEY=VALUE", err=True)
            raise typer.Exit(EXIT_USAGE)
        options[key] = yaml.safe_load(raw)
    return options


StorageOptions = Annotated[
    list[str] | None, typer.Option("--storage-option", help="fsspec option for the output, KEY=VALUE (repeatable).")
]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_USAGE)


def _require_output(out: str, storage_options: dict) -> None:
    """Readers refuse, in one line, an OUT that holds no committed vidbatch run."""
    from vidbatch.read.outputs import NotAnOutputError, committed_runs

    try:
        committed_runs(out, storage_options)
    except NotAnOutputError as e:
        raise _fail(str(e)) from None


QUERY_VIEWS = (
    "SQL (DuckDB) over the views clips, videos, errors, ledger and runs (every output has them), shots "
    "(clips.clip_mode: shots) and head_predictions (after apply-head) when they exist."
)


@app.command("query")
def query_command(
    out: Annotated[str, typer.Argument(help="Output directory of a run (any fsspec URL).")],
    sql: Annotated[str, typer.Argument(help=QUERY_VIEWS)],
    format_: Annotated[str, typer.Option("--format", "-f", help="table (file names for URI columns, cut to the terminal) | csv | json (full values) | parquet (needs -o).")] = "table",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the result to this file instead of stdout.")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Read the tables as a past run RUN_ID committed them (time travel).")] = None,
    storage_option: StorageOptions = None,
) -> None:
    """Run SQL (DuckDB) over the output tables, at the versions of the latest complete run (or --as-of RUN_ID)."""
    import duckdb

    from vidbatch.read import query
    from vidbatch.read.terminal import render_table

    if format_ not in query.FORMATS:
        raise _fail(f"--format {format_!r}: choose one of {', '.join(query.FORMATS)}")
    if format_ == "parquet" and output is None:
        raise _fail("--format parquet writes a binary file: give -o FILE")
    so = _storage_options(storage_option)
    _require_output(out, so)
    try:
        table = query.run_query(out, sql, so, as_of)
    except (duckdb.Error, ValueError) as e:
        name = query.missing_view(e) if isinstance(e, duckdb.Error) else None
        if name:
            views = ", ".join(query.view_names(query.connect(out, so)))
            raise _fail(f"no view {name!r} in {out}; its views: {views}") from None
        raise _fail(str(e)) from None
    if format_ == "parquet":
        query.write_parquet(table, str(output))
        typer.echo(f"{table.num_rows} rows written to {output}", err=True)
        return
    text = {"table": render_table, "csv": query.format_csv, "json": query.format_json}[format_](table)
    if output is None:
        typer.echo(text.rstrip("\n"))
    else:
        output.write_text(text if text.endswith("\n") else text + "\n")


@app.command("search")
def search_command(
    out: Annotated[str, typer.Argument(help="Output directory of a run (any fsspec URL).")],
    like: Annotated[str | None, typer.Option("--like", help="Clips similar to this stored clip id.")] = None,
    image: Annotated[str | None, typer.Option("--image", help="Clips similar to this image (JPEG/PNG).")] = None,
    video: Annotated[str | None, typer.Option("--video", help="Clips similar to a frame of this video (with --at).")] = None,
    at: Annotated[float | None, typer.Option("--at", help="Seconds into --video.")] = None,
    k: Annotated[int, typer.Option("-k", min=1, help="How many clips.")] = 10,
    model: Annotated[str | None, typer.Option("--model", help="Embedding model, when the clips hold several.")] = None,
    format_: Annotated[str, typer.Option("--format", "-f", help="table | json")] = "table",
    as_of: Annotated[str | None, typer.Option("--as-of", help="Search the clips as a past run RUN_ID committed them (time travel).")] = None,
    exact: Annotated[bool, typer.Option("--exact", help="Compare with every stored embedding (streamed from the table) instead of the approximate index.")] = False,
    storage_option: StorageOptions = None,
) -> None:
    """Nearest clips by cosine similarity of their stored embeddings: through the index a run builds when it
    commits (approximate, memory-mapped), or exactly (--exact, or when no index covers the snapshot)."""
    import json

    from vidbatch.read.search import SearchQuery, run_search

    if format_ not in ("table", "json"):
        raise _fail(f"--format {format_!r}: choose table or json")
    so = _storage_options(storage_option)
    _require_output(out, so)
    try:
        result = run_search(out, SearchQuery(like, image, video, at), k, model, so, as_of, exact)
    except ValueError as e:
        raise _fail(str(e)) from None
    typer.echo(result.note, err=True)
    hits = result.hits
    if format_ == "json":
        typer.echo(json.dumps(hits, indent=1))
        return
    from vidbatch.read.terminal import file_name, render_rows

    rows = [
        [f"{h['similarity']:.4f}", file_name(h["video_uri"]), f"{h['start_s']:7.2f}-{h['end_s']:7.2f}s", h["label"] or "-", h["clip_id"]]
        for h in hits
    ]
    typer.echo(render_rows(["similarity", "video", "time", "label", "clip_id"], rows, numeric={"similarity", "time"}))


@app.command("index")
def index_command(
    out: Annotated[str, typer.Argument(help="Output directory (any fsspec URL).")],
    storage_option: StorageOptions = None,
) -> None:
    """Bring the search index up to the latest clips version (a run does this when it commits; this is for an
    output written before indexes existed, or after a failed index update)."""
    from vidbatch.core.storage import OutputStore
    from vidbatch.store.delta import delta_storage_options
    from vidbatch.store.vector_index import update_indexes

    so = _storage_options(storage_option)
    _require_output(out, so)
    version = update_indexes(OutputStore(out, so), delta_storage_options(out, so))
    typer.echo("no clips with embeddings: nothing to index" if version is None else f"index covers clips version {version}")


@app.command("report")
def report_command(
    out: Annotated[str, typer.Argument(help="Output directory of a run (any fsspec URL).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="HTML file to write.")] = Path("report.html"),
    max_clips: Annotated[int, typer.Option("--max-clips", min=1, help="Clip thumbnails shown per video.")] = 200,
    max_videos: Annotated[int, typer.Option("--max-videos", min=1, help="Videos shown (failed first, then by file name); the page says how many more there are.")] = 100,
    storage_option: StorageOptions = None,
) -> None:
    """Write one self-contained HTML page: counts, runs and their stage timings, label and score histograms,
    per-video timelines with thumbnails, errors."""
    from vidbatch.read.report import render_report

    so = _storage_options(storage_option)
    _require_output(out, so)
    output.write_text(render_report(out, so, max_clips, max_videos), encoding="utf-8")
    typer.echo(f"report written to {output}")


@app.command("train-head")
def train_head_command(
    out: Annotated[str, typer.Argument(help="Output directory with clips and embeddings.")],
    labels: Annotated[Path, typer.Option("--labels", help="CSV with columns clip_id,label.")],
    output: Annotated[str, typer.Option("-o", "--output", help="Where to save the head (.pt).")],
    test_fraction: Annotated[float, typer.Option("--test-fraction", min=0.05, max=0.9, help="Labelled clips held out.")] = 0.25,
    model: Annotated[str | None, typer.Option("--model", help="Embedding model, when the clips hold several.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the held-out split.")] = 0,
    temporal: Annotated[str | None, typer.Option("--temporal", help="A temporal head over each clip's frame embeddings in time order: gru or tcn (needs a frames table: out.frame_embeddings).")] = None,
    compare: Annotated[bool, typer.Option("--compare", help="Also train a linear head on the same split and print both accuracies.")] = False,
    storage_option: StorageOptions = None,
) -> None:
    """Train a head on stored embeddings of labelled clips: logistic regression, or a temporal model (--temporal)."""
    from vidbatch.infer.head_files import write_head
    from vidbatch.read.heads import read_labels, temporal_kinds, train_head

    if temporal is not None and temporal not in temporal_kinds():
        raise _fail(f"--temporal {temporal!r}: choose one of {', '.join(temporal_kinds())}")
    so = _storage_options(storage_option)
    _require_output(out, so)
    try:
        result = train_head(out, read_labels(labels), test_fraction, seed, model, so, temporal or "linear", compare)
    except (ValueError, OSError) as e:
        raise _fail(str(e)) from None
    write_head(result.head, output, so)
    h = result.head
    typer.echo(
        f"held-out accuracy {result.held_out_accuracy:.3f} ({result.test_clips} clips; trained on {result.train_clips} "
        f"in {result.train_seconds:.1f} s); {h.kind} head; classes {h.class_names}; embedding model {h.embedding_model}; "
        f"saved {output}"
    )
    if result.baseline_accuracy is not None:
        typer.echo(
            f"compare, same split: {h.kind} {result.held_out_accuracy:.3f} ({result.train_seconds:.1f} s), "
            f"linear {result.baseline_accuracy:.3f} ({result.baseline_seconds:.1f} s)"
        )


@app.command("apply-head")
def apply_head_command(
    out: Annotated[str, typer.Argument(help="Output directory with clips and embeddings.")],
    head: Annotated[str, typer.Argument(help="Head file from `vidbatch train-head`.")],
    storage_option: StorageOptions = None,
) -> None:
    """Predict every stored clip with a head into head_predictions/ (no video is decoded)."""
    from vidbatch.read.heads import apply_head

    so = _storage_options(storage_option)
    _require_output(out, so)
    try:
        rows, version = apply_head(out, head, so)
    except ValueError as e:
        raise _fail(str(e)) from None
    typer.echo(f"{rows} predictions written to {out.rstrip('/')}/head_predictions (table version {version})")


@app.command("vacuum")
def vacuum_command(
    out: Annotated[str, typer.Argument(help="Output directory (any fsspec URL).")],
    retain_hours: Annotated[int, typer.Option("--retain-hours", min=0, help="Keep files that a table version of the last H hours needs (time travel back that far), and staging of runs younger than H.")] = 168,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")] = False,
    storage_option: StorageOptions = None,
) -> None:
    """Remove files no table version within --retain-hours references, and the staging of abandoned runs."""
    from vidbatch.store.maintenance import vacuum_output

    try:
        removed = vacuum_output(out, _storage_options(storage_option), retain_hours, dry_run)
    except ValueError as e:
        raise _fail(str(e)) from None
    verb = "would remove" if dry_run else "removed"
    for name, files in removed.items():
        typer.echo(f"{name}: {verb} {len(files)} file{'s' if len(files) != 1 else ''}")


@app.command("optimize")
def optimize_command(
    out: Annotated[str, typer.Argument(help="Output directory (any fsspec URL).")],
    zorder: Annotated[bool, typer.Option("--zorder/--no-zorder", help="Cluster rows by video_id (Z-order) while compacting.")] = False,
    storage_option: StorageOptions = None,
) -> None:
    """Compact each table's small files (each nightly run adds a few) into larger ones; old files stay until vacuum."""
    from vidbatch.store.maintenance import optimize_output

    try:
        metrics = optimize_output(out, _storage_options(storage_option), ["video_id"] if zorder else None)
    except ValueError as e:
        raise _fail(str(e)) from None
    for name, m in metrics.items():
        typer.echo(f"{name}: {m.get('numFilesRemoved', 0)} files compacted into {m.get('numFilesAdded', 0)}")


@app.command("events")
def events_command(
    out: Annotated[str, typer.Argument(help="Output directory of a run (any fsspec URL).")],
    source: Annotated[str, typer.Option("--source", help="Whose labels: classify (clips' top-1 label) or head (head_predictions).")] = "classify",
    min_seconds: Annotated[float, typer.Option("--min-seconds", min=0, help="Leave out events shorter than this.")] = 0.0,
    head_id: Annotated[str | None, typer.Option("--head-id", help="With --source head: which head (default: the one applied last).")] = None,
    show: Annotated[int, typer.Option("--show", min=0, help="Events to print.")] = 20,
    storage_option: StorageOptions = None,
) -> None:
    """Merge consecutive clips of a video that share a label into events; write the events table (replacing the
    earlier events of the same source) and print them."""
    from vidbatch.read.events import make_events

    try:
        result = make_events(out, source, min_seconds, head_id, _storage_options(storage_option))
    except ValueError as e:
        raise _fail(str(e)) from None
    rows = result.events.to_pylist()
    header = f"{'video':<28} {'time':>17}  {'label':<28} {'score':>6} {'clips':>5}"
    typer.echo(header + "\n" + "-" * len(header))
    for e in rows[:show]:
        span = f"{e['start_s']:7.2f}-{e['end_s']:7.2f}s"
        typer.echo(f"{Path(e['video_uri']).name[:28]:<28} {span:>17}  {e['label'][:28]:<28} {e['score']:6.3f} {e['clip_count']:>5}")
    if len(rows) > show:
        typer.echo(f"... {len(rows) - show} more events")
    of = f"head {result.head_id}" if result.head_id else source
    typer.echo(f"{len(rows)} events ({of}) written to {out.rstrip('/')}/events (table version {result.version})")


@app.command("export-frames")
def export_frames_command(
    out: Annotated[str, typer.Argument(help="Output directory of a run (any fsspec URL).")],
    to: Annotated[str, typer.Option("--to", help="Directory for the JPEGs and index.csv (local or any fsspec URL).")],
    thumbnails: Annotated[bool, typer.Option("--thumbnails", help="The clips' stored thumbnails (decodes nothing).")] = False,
    every: Annotated[float | None, typer.Option("--every", help="One frame every SECONDS of each video (decoded).")] = None,
    shots: Annotated[bool, typer.Option("--shots", help="The middle frame of each stored shot (decoded).")] = False,
    storage_option: StorageOptions = None,
    to_option: Annotated[list[str] | None, typer.Option("--to-option", help="fsspec option for --to, KEY=VALUE (repeatable; default: the --storage-option ones).")] = None,
) -> None:
    """Write frames as JPEG files <video>/<time>.jpg plus index.csv: stored thumbnails, or frames decoded at
    regular times or per shot with the job's own decoder."""
    from vidbatch.read.frame_export import export_frames
    from vidbatch.store.manifest import EXIT_PARTIAL

    modes = [m for m, on in (("thumbnails", thumbnails), ("every", every is not None), ("shots", shots)) if on]
    if len(modes) != 1:
        raise _fail("give exactly one of --thumbnails, --every SECONDS, --shots")
    so = _storage_options(storage_option)
    try:
        result = export_frames(out, to, modes[0], every, so, _storage_options(to_option) if to_option else so)
    except ValueError as e:
        raise _fail(str(e)) from None
    for line in result.errors:
        typer.echo(f"error: {line}", err=True)
    videos = len({r["video_id"] for r in result.rows})
    typer.echo(f"{len(result.rows)} frames of {videos} videos written to {to.rstrip('/')} (index.csv)")
    if result.errors:
        raise typer.Exit(EXIT_PARTIAL)
