"""Backfill: an incremental run that also reprocesses videos whose pipeline fingerprint differs from the current
config's (after a model or settings upgrade); their previous clip files are replaced in the same commit.

    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml -- python jobs/backfill.py --config examples/nightly.yaml [--set key=value ...]
"""
from _entry import main

if __name__ == "__main__":
    main(["--backfill"], __doc__)
