"""`vidbatch` command line. Exit codes: 0 all ok, 3 finished with failed inputs, 2 bad usage/config, 1 crashed."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vidbatch.config import ConfigError, load_config
from vidbatch.manifest import EXIT_USAGE, RunSummary

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


def _clip_table(summary: RunSummary, limit: int, storage_options: dict) -> str:
    """Read the run's clips back from Parquet: what is printed is what was written."""
    import pyarrow.dataset as pads
    from fsspec.core import url_to_fs

    files = summary.files.get("clips", [])
    if not files or limit == 0:
        return ""
    fs, _ = url_to_fs(summary.output, **storage_options)
    dataset = pads.dataset(files, format="parquet", filesystem=fs)
    wanted = ["video_uri", "clip_index", "start_s", "end_s", "labels", "scores"]
    table = dataset.to_table(columns=[c for c in wanted if c in dataset.schema.names])
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
        if not cfg.output:
            raise ConfigError("output: required (-o/--output or `output:` in the config)")
        if not cfg.inputs:
            raise ConfigError("inputs: required (ARCHIVE arguments or `inputs:` in the config)")
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
    from vidbatch.schema import schema_markdown

    typer.echo(schema_markdown())

