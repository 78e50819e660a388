#!/usr/bin/env bash
# Rebuild this folder: segnet-lite for 360x480 input, trained from scratch on all three drives of
# CamVid train + val (468 frames) with the recipe chosen on a held-out drive (screen.sh, MODEL_CARD.md):
# stage 1, EPOCHS_1 epochs on whole frames at half scale (180x240); stage 2, EPOCHS_2 epochs on
# 240x320 crops at the full 360x480 scale from stage 1's last weights (a fresh warmup + cosine).
# The epoch with the best val mIoU is shipped (best.keras, the fixed-size model export needs); val is
# drive 0016E5, seen in training, so it picks a well-fitted epoch, not a generalising one.
# Usage: bash models/segnet-lite-camvid/reproduce.sh [CAMVID_DIR] [RUNS_DIR] [EPOCHS_1] [EPOCHS_2]
set -euo pipefail
cd "$(dirname "$0")/../.."
data=${1:-../shared/camvid}
runs=${2:-runs/segnet-lite-camvid}
epochs1=${3:-40}
epochs2=${4:-20}
# train = every frame of train + val; val = CamVid's val. The split tool's list
# files point back at $data from $runs/split-0006R0, so a sibling folder can reuse them as they are.
split="$runs/split-0006R0" all="$runs/all-drives"
[ -f "$split/val.txt" ] || segnet-tf data split --data "$data" --by-drive --holdout 0006R0 --out "$split"
mkdir -p "$all"
cp "$split/dataset.yaml" "$all/"
cat "$split/train.txt" "$split/val.txt" > "$all/train.txt"
grep " [^ ]*valannot/" "$all/train.txt" > "$all/val.txt"
common=(--data "$all" --model segnet-lite --batch-size 8 --lr 1e-3 --class-weights sqrt-median
  --augment default)
stage1="$runs/stage1-180x240-$epochs1" run="$runs/stage2-360x480-$((epochs1 + epochs2))"
for out in "$stage1" "$run"; do
  if [ -f "$out/state.json" ]; then segnet-tf train --out "$out" --resume; continue; fi
  if [ "$out" = "$stage1" ]; then
    segnet-tf train "${common[@]}" --input-size 180x240 --crop 180x240 --epochs "$epochs1" \
      --seed 0 --out "$out"
  else
    segnet-tf train "${common[@]}" --input-size 360x480 --crop 240x320 --epochs "$epochs2" \
      --seed 1 --init-weights "$stage1/last.keras" --out "$out"
  fi
done
segnet-tf export --model "$run/best.keras" --out "$run/export" --int8 --fp16 --target edgetpu \
  --calib-data "$data" --calib-samples 200 --parity-samples 101
dest=models/segnet-lite-camvid
cp "$run/best.keras" "$dest/model.keras"
cp "$run/config.json" "$run/history.csv" "$dest/"
cp "$stage1/history.csv" "$dest/history_stage1.csv"
cp "$run/export/model_int8.tflite" "$run/export/labels.json" "$run/export/report.json" "$dest/"
