#!/usr/bin/env bash
# Screen recipe levers across drives: every run trains on the frames of drives 0001TP and 0016E5
# (CamVid train + val) and is scored on drive 0006R0, which it never sees. Same budget for all:
# EPOCHS epochs of 240x320 crops at the 360x480 scale, batch 8, a full warmup + cosine schedule.
# Usage: bash models/segnet-lite-camvid/screen.sh [CAMVID_DIR] [RUNS_DIR] [EPOCHS] [LEVER ...]
# Runs already finished are skipped and interrupted ones resumed, so rerunning continues.
set -euo pipefail
data=${1:-../shared/camvid}
runs=${2:-runs/screen}
epochs=${3:-10}
shift $(( $# < 3 ? $# : 3 ))
levers=("$@")
[ ${#levers[@]} -eq 0 ] && levers=(baseline strong-augment median-weights dropout)
split="$runs/split-0006R0"
[ -f "$split/val.txt" ] || segnet-tf data split --data "$data" --by-drive --holdout 0006R0 --out "$split"
base=(--data "$split" --model segnet-lite --input-size 360x480 --crop 240x320 --batch-size 8
  --lr 1e-3 --epochs "$epochs" --class-weights sqrt-median --augment default --seed 0)
for lever in "${levers[@]}"; do
  case $lever in
    baseline) extra=() ;;
    strong-augment) extra=(--augment strong) ;;
    median-weights) extra=(--class-weights median) ;;
    dropout) extra=(--dropout) ;;
    weight-decay) extra=(--weight-decay 5e-4) ;;
    *) echo "unknown lever $lever" >&2; exit 2 ;;
  esac
  out="$runs/$lever"
  if [ -f "$out/state.json" ]; then
    segnet-tf train --out "$out" --resume
  else
    segnet-tf train "${base[@]}" "${extra[@]}" --out "$out"
  fi
  # cross-drive scores of the last and of the best (held-out-selected) epoch
  segnet-tf evaluate --model "$out/last.keras" --data "$split" --split val --json "$out/eval_last.json"
  segnet-tf evaluate --model "$out/best.keras" --data "$split" --split val --json "$out/eval_best.json"
done
python "$(dirname "$0")/screen_table.py" "$runs" | tee "$runs/screen.md"
