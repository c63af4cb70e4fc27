"""Nightly incremental run: only new, changed or previously failed videos are processed; the rest skipped.

    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml -- python jobs/nightly.py --config examples/nightly.yaml [--set key=value ...]

Exit code: 0 complete, 3 some videos failed (see errors/), 2 bad config, 1 crashed (run it again: it resumes).
"""
from _entry import main

if __name__ == "__main__":
    main(["--incremental"], __doc__)
