#!/usr/bin/env bash
# Rebuild this folder: train segnet-lite on CamVid train (select on val), export, copy the artifacts.
# Usage: bash models/segnet-lite-camvid/reproduce.sh [CAMVID_DIR] [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/../.."
data=${1:-../shared/camvid}
epochs=${2:-40}
run=runs/segnet-lite-camvid
segnet-tf train --data "$data" --model segnet-lite --input-size 180x240 --epochs "$epochs" \
  --batch-size 8 --class-weights median --lr 1e-3 --seed 0 --out "$run"
segnet-tf export --model "$run/best.keras" --out "$run/export" --int8 --fp16 --target edgetpu \
  --calib-data "$data" \
  --calib-samples 200 --parity-samples 101
dest=models/segnet-lite-camvid
cp "$run/best.keras" "$dest/model.keras"
cp "$run/config.json" "$run/history.csv" "$dest/"
cp "$run/export/model_int8.tflite" "$run/export/labels.json" "$run/export/report.json" "$dest/"
