"""Nightly incremental run: only new, changed or previously failed videos are processed; the rest skipped.

    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml -- python jobs/nightly.py --config examples/nightly.yaml [--set key=value ...]

Runs with --partial-ok (pass --no-partial-ok to turn it off): exit 0 when the night finished, also when some
videos failed (their rows are in errors/, the summary line counts them, the next night retries them); 2 bad
config, 1 crashed (run it again: it resumes). Ray Jobs and KubeRay show any non-zero exit as FAILED, so a FAILED
nightly job is a crash or a config error, never a few bad files.
"""
from _entry import main

if __name__ == "__main__":
    main(["--incremental", "--partial-ok"], __doc__)
