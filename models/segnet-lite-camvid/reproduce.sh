#!/usr/bin/env bash
# Rebuild this folder: train segnet-lite on CamVid train (select on val) in two stages, export,
# copy the artifacts. Stage 1 trains from scratch with median-frequency class weights; stage 2
# continues from its best model with square-rooted weights and a fresh warmup + cosine schedule.
# Usage: bash models/segnet-lite-camvid/reproduce.sh [CAMVID_DIR] [EPOCHS_1] [EPOCHS_2]
set -euo pipefail
cd "$(dirname "$0")/../.."
data=${1:-../shared/camvid}
epochs1=${2:-40}
epochs2=${3:-60}
stage1=runs/segnet-lite-camvid
run=runs/segnet-lite-camvid-ft
common=(--data "$data" --model segnet-lite --input-size 180x240 --batch-size 8 --lr 1e-3)
segnet-tf train "${common[@]}" --epochs "$epochs1" --class-weights median --seed 0 --out "$stage1"
segnet-tf train "${common[@]}" --epochs "$epochs2" --class-weights sqrt-median --seed 1 \
  --init-weights "$stage1/best.keras" --out "$run"
segnet-tf export --model "$run/best.keras" --out "$run/export" --int8 --fp16 --target edgetpu \
  --calib-data "$data" --calib-samples 200 --parity-samples 101
dest=models/segnet-lite-camvid
cp "$run/best.keras" "$dest/model.keras"
cp "$run/config.json" "$run/history.csv" "$dest/"
cp "$stage1/history.csv" "$dest/history_stage1.csv"
cp "$run/export/model_int8.tflite" "$run/export/labels.json" "$run/export/report.json" "$dest/"
