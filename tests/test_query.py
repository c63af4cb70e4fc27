"""`vidbatch query`: DuckDB views over real output, local and on S3 (moto), every output format, bad SQL."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from vidbatch.cli import app
from vidbatch.read.query import run_query
from vidbatch.store.committed import read_table, run_manifests

pytestmark = pytest.mark.e2e


def test_views_match_the_written_tables(kinds_output):
    out, _, kinds, summary = kinds_output
    assert read_table(str(out), "clips").num_rows >= 1 and read_table(str(out), "shots") is None
    counts = run_query(str(out), "SELECT (SELECT count(*) FROM clips) AS clips, (SELECT count(*) FROM videos) AS videos,"
                                 " (SELECT count(*) FROM errors) AS errors").to_pylist()[0]
    assert counts == {"clips": summary.counts.clips, "videos": len(kinds) + 1, "errors": 1}
    runs = run_query(str(out), "SELECT run_id, status, clips, wall_s FROM runs").to_pylist()
    assert runs == [{"run_id": summary.run_id, "status": "partial", "clips": 18, "wall_s": pytest.approx(summary.wall_s)}]
    assert [m["run_id"] for m in run_manifests(str(out))] == [summary.run_id]


def test_cli_formats(kinds_output, tmp_path):
    out = str(kinds_output[0])
    sql = "SELECT video_uri, count(*) AS clips FROM clips GROUP BY 1 ORDER BY 1"
    runner = CliRunner()
    table = runner.invoke(app, ["query", out, sql])
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["video_uri", "clips"] and lines[-1] == "(6 rows)"
    assert len({len(line) for line in lines[2:-1]}) == 1  # aligned: every row as wide as the widest
    assert lines[2].split()[0] == "gradient0.mp4" and "/" not in table.stdout  # file names, not whole paths
    narrow = runner.invoke(app, ["query", out, "SELECT video_uri, labels FROM clips LIMIT 2"], env={"COLUMNS": "50"})
    assert narrow.exit_code == 0 and max(map(len, narrow.stdout.splitlines())) <= 50 and "…" in narrow.stdout

    as_csv = runner.invoke(app, ["query", out, sql, "--format", "csv"])
    assert as_csv.stdout.splitlines()[0] == "video_uri,clips" and as_csv.stdout.splitlines()[1].endswith(",3")

    as_json = json.loads(runner.invoke(app, ["query", out, sql, "-f", "json"]).stdout)
    assert len(as_json) == 6 and all(r["clips"] == 3 for r in as_json)

    target = tmp_path / "result.parquet"
    assert runner.invoke(app, ["query", out, sql, "-f", "parquet", "-o", str(target)]).exit_code == 0
    assert pq.read_table(target).num_rows == 6
    no_file = runner.invoke(app, ["query", out, sql, "-f", "parquet"])
    assert no_file.exit_code == 2 and "-o" in no_file.stderr


def test_bad_query_is_duckdbs_message_and_exit_2(kinds_output):
    result = CliRunner().invoke(app, ["query", str(kinds_output[0]), "SELECT nope FROM clips"])
    assert result.exit_code == 2
    assert "nope" in result.stderr and "Binder Error" in result.stderr
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)  # a clean exit, no crash


def test_query_on_s3(kinds_output):
    """Object stores through fsspec/pyarrow (no DuckDB httpfs download), against a local moto S3 server."""
    import s3fs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        options = {"key": "test", "secret": "test", "client_kwargs": {"endpoint_url": f"http://{host}:{port}", "region_name": "eu-west-1"}}
        fs = s3fs.S3FileSystem(**options)
        fs.mkdir("outputs")
        fs.put(str(kinds_output[0]), "outputs/nightly", recursive=True)
        result = run_query("s3://outputs/nightly", "SELECT count(*) AS n FROM clips WHERE embedding IS NOT NULL", options)
        assert result.to_pylist() == [{"n": 18}]
        cli = CliRunner().invoke(
            app, ["query", "s3://outputs/nightly", "SELECT count(*) AS n FROM runs", "-f", "csv",
                  "--storage-option", "key=test", "--storage-option", "secret=test",
                  "--storage-option", f"client_kwargs={json.dumps(options['client_kwargs'])}"],
        )
        assert cli.exit_code == 0, cli.output
        assert cli.stdout.split() == ["n", "1"]
    finally:
        server.stop()


def test_a_missing_view_lists_the_views_that_exist(kinds_output):
    result = CliRunner().invoke(app, ["query", str(kinds_output[0]), "SELECT * FROM shots"])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: no view 'shots' in {kinds_output[0]}; its views: clips, errors, ledger, runs, videos"


def test_python_api_reads_the_committed_tables(kinds_output, tmp_path):
    import polars

    import vidbatch

    out, _, _, summary = kinds_output
    clips = vidbatch.read(str(out))
    assert clips.num_rows == summary.counts.clips == 18 and "embedding" in clips.column_names
    assert clips.num_rows == run_query(str(out), "SELECT count(*) AS n FROM clips").to_pylist()[0]["n"]
    frame = vidbatch.read(str(out), table="videos", columns=["video_uri", "status"], as_polars=True)
    assert isinstance(frame, polars.DataFrame) and frame.shape == (7, 2)
    assert vidbatch.read(str(out), "runs", columns=["run_id"]).to_pylist() == [{"run_id": summary.run_id}]
    with pytest.raises(ValueError, match="has no 'shots' table; it has: clips, videos, errors, ledger, runs"):
        vidbatch.read(str(out), "shots")
    with pytest.raises(ValueError, match="holds no vidbatch output"):
        vidbatch.read(str(tmp_path / "nothing"))
    from vidbatch.read.query import run_query as still_a_submodule

    assert still_a_submodule is run_query  # the package stays a package
