#!/usr/bin/env bash
# Screen recipe levers across drives: every run trains on the frames of drives 0001TP and 0016E5
# (CamVid train + val) and is scored on drive 0006R0, which it never sees. Same budget for all:
# EPOCHS epochs of 240x320 crops at the 360x480 scale, batch 8, a full warmup + cosine schedule;
# every score at the labels' 360x480.
# Usage: bash models/segnet-lite-camvid/screen.sh [CAMVID_DIR] [RUNS_DIR] [EPOCHS] [LEVER ...]
# Runs are named LEVER-TOTAL, TOTAL the epochs of their chain. With FROM=RUN_DIR every lever starts
# from that run's last.keras (a fresh warmup + cosine, seed 1): TOTAL = EPOCHS + FROM's TOTAL;
# NAME=TEXT names it TEXT-TOTAL instead (e.g. a 360x480 stage forked from an input-180x240 run).
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
  --lr 1e-3 --epochs "$epochs" --class-weights sqrt-median --augment default)
suffix="-$epochs" start=(--seed 0)
if [ -n "${FROM:-}" ]; then
  # the epochs FROM's chain has trained: the N of its name LEVER-N, else the rows of its history
  if [[ $(basename "$FROM") =~ -([0-9]+)$ ]]; then before=${BASH_REMATCH[1]}
  else before=$(( $(wc -l < "$FROM/history.csv") - 1 )); fi
  suffix="-$(( before + epochs ))" start=(--seed 1 --init-weights "$FROM/last.keras")
fi
for lever in "${levers[@]}"; do
  case $lever in
    baseline) extra=() ;;
    strong-augment) extra=(--augment strong) ;;
    median-weights) extra=(--class-weights median) ;;
    dropout) extra=(--dropout) ;;
    weight-decay) extra=(--weight-decay 5e-4) ;;
    input-180x240) extra=(--input-size 180x240 --crop 180x240) ;;  # stage 1 of the shipped recipe
    *) echo "unknown lever $lever" >&2; exit 2 ;;
  esac
  out="$runs/${NAME:-$lever}$suffix"
  if [ -f "$out/state.json" ]; then
    segnet-tf train --out "$out" --resume
  else
    segnet-tf train "${base[@]}" "${start[@]}" "${extra[@]}" --out "$out"
  fi
  # cross-drive scores of the last and of the best (held-out-selected) epoch, at the labels' size
  for which in last best; do
    segnet-tf evaluate --model "$out/$which.keras" --data "$split" --split val --full-res \
      --json "$out/eval_$which.json"
  done
done
python "$(dirname "$0")/../../benchmarks/screen_table.py" "$runs" | tee "$runs/screen.md"
