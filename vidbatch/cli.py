"""`vidbatch` command line. Exit codes: 0 all ok, 3 finished with failed inputs, 2 bad usage/config, 1 crashed."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vidbatch.config import ConfigError
from vidbatch.job import load_config, require_inputs_and_output
from vidbatch.store.manifest import EXIT_USAGE, RunSummary

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


def _clip_table(summary: RunSummary, limit: int, storage_options: dict) -> str:
    """Read the run's clips back from its committed table version: what is printed is what was written."""
    import pyarrow.dataset as pads

    from vidbatch.store.committed import table_dataset

    dataset = table_dataset(summary.output, "clips", storage_options, versions=summary.table_versions)
    if dataset is None or limit == 0:
        return ""
    wanted = ["video_uri", "clip_index", "start_s", "end_s", "labels", "scores"]
    table = dataset.to_table(
        columns=[c for c in wanted if c in dataset.schema.names], filter=pads.field("run_id") == summary.run_id
    )
    if table.num_rows == 0:
        return ""
    table = table.sort_by([("video_uri", "ascending"), ("clip_index", "ascending")]).slice(0, limit)
    has_labels = "labels" in table.column_names
    header = f"{'video':<28} {'clip':>15}  {'top label':<28} {'score':>6}"
    lines = [header, "-" * len(header)]
    for r in table.to_pylist():
        label = (r["labels"] or ["-"])[0] if has_labels else "-"
        score = f"{r['scores'][0]:.3f}" if has_labels and r["scores"] else "-"
        span = f"{r['start_s']:6.2f}-{r['end_s']:6.2f}s"
        lines.append(f"{Path(r['video_uri']).name[:28]:<28} {span:>15}  {label[:28]:<28} {score:>6}")
    shown = table.num_rows
    if shown < summary.counts.clips:
        lines.append(f"... {summary.counts.clips - shown} more clips")
    return "\n".join(lines)


@app.command("run")
def run_command(
    archive: Annotated[list[str] | None, typer.Argument(help="Video files, directories, globs or manifests (any fsspec URL); default: `inputs` of the config.")] = None,
    output: Annotated[str | None, typer.Option("-o", "--output", help="Output directory (any fsspec URL).")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML job config.")] = None,
    address: Annotated[str | None, typer.Option("--address", help="Ray cluster address (default: RAY_ADDRESS, else embedded local Ray).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config field: --set clips.clip_seconds=4")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id")] = None,
    show: Annotated[int | None, typer.Option("--show", help="Clips to print after the run.")] = None,
    incremental: Annotated[bool, typer.Option("--incremental", help="Process only videos the ledger has not seen ok (nightly runs).")] = False,
    backfill: Annotated[bool, typer.Option("--backfill", help="With --incremental: also reprocess videos of an older pipeline fingerprint.")] = False,
) -> None:
    """Split videos into clips, decode sampled frames, run the tasks' models, write Parquet.

    Started again after a crash or kill, the same command resumes the unfinished run."""
    try:
        cfg = load_config(
            config, sets=set_,
            overrides={
                "inputs": list(archive or []) or None, "output": output, "ray.address": address, "run_id": run_id,
                "out.show": show, "incremental.enabled": (incremental or backfill) or None, "incremental.backfill": backfill or None,
            },
        )
        require_inputs_and_output(cfg)
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_USAGE) from None

    from vidbatch.pipeline import run

    try:
        summary = run(cfg)
    except ConfigError as e:  # settings that only the cluster can refute (e.g. more actors than CPUs)
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    c = summary.counts
    table = _clip_table(summary, cfg.out.show, cfg.storage_options)
    if table:
        typer.echo(table)
    typer.echo(
        f"run {summary.run_id}{' (resumed)' if summary.resumed else ''}: {summary.status} - {c.listed} videos listed: "
        f"{c.new} new, {c.changed} changed, {c.skipped} skipped, {c.failed} failed, {c.quarantined} quarantined"
        f"{f', {c.deleted} deleted' if c.deleted else ''}{f', {c.unreadable_inputs} unreadable inputs' if c.unreadable_inputs else ''}; "
        f"{c.clips} clips, {c.errors} errors, {summary.wall_s:.1f}s wall, "
        f"{summary.throughput['source_frames_per_s']:.0f} source frames/s"
    )
    typer.echo(f"output: {summary.output} (manifest runs/{summary.run_id}.json)")
    raise typer.Exit(summary.exit_code)


@app.command("schema")
def schema_command() -> None:
    """Print the output tables' schema (the README section is generated from this)."""
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


@app.command("query")
def query_command(
    out: Annotated[str, typer.Argument(help="Output directory of a run (any fsspec URL).")],
    sql: Annotated[str, typer.Argument(help="SQL over the views clips, videos, errors, shots, head_predictions, runs.")],
    format_: Annotated[str, typer.Option("--format", "-f", help="table | csv | json | parquet (parquet needs -o).")] = "table",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the result to this file instead of stdout.")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Read the tables as a past run RUN_ID committed them (time travel).")] = None,
    storage_option: StorageOptions = None,
) -> None:
    """Run SQL (DuckDB) over the output tables, at the versions of the latest complete run (or --as-of RUN_ID)."""
    import duckdb

    from vidbatch.read import query

    if format_ not in query.FORMATS:
        raise _fail(f"--format {format_!r}: choose one of {', '.join(query.FORMATS)}")
    if format_ == "parquet" and output is None:
        raise _fail("--format parquet writes a binary file: give -o FILE")
    try:
        table = query.run_query(out, sql, _storage_options(storage_option), as_of)
    except (duckdb.Error, ValueError) as e:
        raise _fail(str(e)) from None
    if format_ == "parquet":
        query.write_parquet(table, str(output))
        typer.echo(f"{table.num_rows} rows written to {output}", err=True)
        return
    text = {"table": query.format_aligned, "csv": query.format_csv, "json": query.format_json}[format_](table)
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
    storage_option: StorageOptions = None,
) -> None:
    """Nearest clips by cosine similarity of their stored embeddings."""
    import json

    from vidbatch.read.search import SearchQuery, search

    if format_ not in ("table", "json"):
        raise _fail(f"--format {format_!r}: choose table or json")
    try:
        hits = search(out, SearchQuery(like, image, video, at), k, model, _storage_options(storage_option))
    except ValueError as e:
        raise _fail(str(e)) from None
    if format_ == "json":
        typer.echo(json.dumps(hits, indent=1))
        return
    header = f"{'similarity':>10}  {'video':<32} {'time':>17}  {'label':<28} clip_id"
    typer.echo(header + "\n" + "-" * len(header))
    for h in hits:
        span = f"{h['start_s']:7.2f}-{h['end_s']:7.2f}s"
        typer.echo(f"{h['similarity']:10.4f}  {Path(h['video_uri']).name[:32]:<32} {span:>17}  {(h['label'] or '-')[:28]:<28} {h['clip_id']}")


@app.command("report")
def report_command(
    out: Annotated[str, typer.Argument(help="Output directory of a run (any fsspec URL).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="HTML file to write.")] = Path("report.html"),
    max_clips: Annotated[int, typer.Option("--max-clips", min=1, help="Clip thumbnails shown per video.")] = 200,
    storage_option: StorageOptions = None,
) -> None:
    """Write one self-contained HTML page: counts, runs, top labels, per-video timelines with thumbnails, errors."""
    from vidbatch.read.report import render_report

    output.write_text(render_report(out, _storage_options(storage_option), max_clips), encoding="utf-8")
    typer.echo(f"report written to {output}")


@app.command("train-head")
def train_head_command(
    out: Annotated[str, typer.Argument(help="Output directory with clips and embeddings.")],
    labels: Annotated[Path, typer.Option("--labels", help="CSV with columns clip_id,label.")],
    output: Annotated[str, typer.Option("-o", "--output", help="Where to save the head (.pt).")],
    test_fraction: Annotated[float, typer.Option("--test-fraction", min=0.05, max=0.9, help="Labelled clips held out.")] = 0.25,
    model: Annotated[str | None, typer.Option("--model", help="Embedding model, when the clips hold several.")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    temporal: Annotated[str | None, typer.Option("--temporal", help="A temporal head over each clip's frame embeddings in time order: gru or tcn (needs a frames table: out.frame_embeddings).")] = None,
    compare: Annotated[bool, typer.Option("--compare", help="Also train a linear head on the same split and print both accuracies.")] = False,
    storage_option: StorageOptions = None,
) -> None:
    """Train a head on stored embeddings of labelled clips: logistic regression, or a temporal model (--temporal)."""
    from vidbatch.infer.head_files import write_head
    from vidbatch.read.heads import read_labels, train_head, temporal_kinds

    if temporal is not None and temporal not in temporal_kinds():
        raise _fail(f"--temporal {temporal!r}: choose one of {', '.join(temporal_kinds())}")
    so = _storage_options(storage_option)
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

    try:
        rows, version = apply_head(out, head, _storage_options(storage_option))
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
