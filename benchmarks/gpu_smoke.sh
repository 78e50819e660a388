#!/usr/bin/env bash
# GPU smoke test: the paths the CPU test suite cannot run. From a checkout, on a machine with an
# NVIDIA GPU and the CUDA build installed (pip install -e ".[gpu,dev]"):
#
#   bash benchmarks/gpu_smoke.sh [OUT_DIR]
#
# 1. TensorFlow sees the GPU(s).
# 2. A short training run on the synthetic scenes turns mixed precision on by itself; its loss is
#    finite and falls, best.keras is float32 and last.keras mixed_float16 with a loss-scale
#    optimizer.
# 3. With 2+ GPUs: the mirrored strategy (global-batch loss, synchronized batch norm) trains.
# 4. Two local workers (--workers 2, NCCL or ring collectives between processes) train.
# 5. evaluate and export --int8 work on the GPU-trained model.
# Each step prints what it checked; the script stops at the first failure (set -e).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-$(mktemp -d -t segnet-gpu-smoke-XXXX)}
mkdir -p "$OUT"
CLI=(python -m segnet_tf.cli)
SMALL=(--input-size 96x128 --batch-size 8)

GPUS=$(python - <<'PY'
import sys
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
assert gpus, "TensorFlow sees no GPU: install the CUDA build, pip install -e '.[gpu,dev]'"
for gpu in gpus:
    print(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name), file=sys.stderr)
print(len(gpus))
PY
)
echo "== $GPUS GPU(s); results in $OUT"

echo "== mixed precision training (default on a GPU)"
"${CLI[@]}" train --out "$OUT/mixed" --epochs 3 "${SMALL[@]}"
python - "$OUT/mixed" <<'PY'
import csv, json, math, sys
from pathlib import Path
import segnet_tf  # first: it sets TensorFlow's log level
import keras
from segnet_tf.training import global_dtype_policy

run = Path(sys.argv[1])
assert json.loads((run / "config.json").read_text())["train"]["precision"] == "mixed_float16"
loss = [float(r["loss"]) for r in csv.DictReader((run / "history.csv").open())]
assert all(math.isfinite(v) for v in loss) and loss[-1] < loss[0], loss
best = segnet_tf.load_model(run)
assert best.get_layer("block1_conv1").compute_dtype == "float32"
assert {w.dtype for w in best.weights} == {"float32"}
with global_dtype_policy("mixed_float16"):
    last = keras.models.load_model(run / "last.keras")
assert last.get_layer("block1_conv1").compute_dtype == "float16"
assert type(last.optimizer).__name__ == "LossScaleOptimizer"
print(f"OK: loss {loss[0]:.3f} -> {loss[-1]:.3f}, best.keras float32, last.keras mixed")
PY

if [ "$GPUS" -ge 2 ]; then
  echo "== mirrored over $GPUS GPUs"
  "${CLI[@]}" train --strategy mirrored --out "$OUT/mirrored" --epochs 2 "${SMALL[@]}"
  python -c "import json,sys; s=json.load(open(sys.argv[1]))['strategy']; assert s['replicas']==$GPUS, s; print('OK:', s)" \
    "$OUT/mirrored/config.json"
fi

echo "== two local workers (each mirrors over every GPU; memory growth lets them share)"
TF_FORCE_GPU_ALLOW_GROWTH=true "${CLI[@]}" train --workers 2 --out "$OUT/workers" --epochs 2 \
  "${SMALL[@]}" --join-timeout 300
python -c "import json,sys; s=json.load(open(sys.argv[1]))['strategy']; assert s['replicas']==2*$GPUS, s; print('OK:', s)" \
  "$OUT/workers/config.json"

echo "== evaluate and export"
"${CLI[@]}" evaluate --model "$OUT/mixed" --json "$OUT/mixed/val.json"
"${CLI[@]}" export --model "$OUT/mixed" --out "$OUT/export" --int8 --calib-samples 50 --parity-samples 5
echo "GPU smoke test passed: $OUT"
