"""The cross-drive table of a recipe screening (``screen.sh``): one row per run, scored on the
held-out drive, best (held-out-selected) and last epoch, with the per-class IoU of the last; the
run it started from (its ``--init-weights`` run, its ``--encoder-weights``, or ``scratch``) and its
own epochs.

Usage: python benchmarks/screen_table.py RUNS_DIR > table.md (models/*/screen.sh run it)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def row(run: Path) -> tuple[list[str], list[str]] | None:
    best, last = run / "eval_best.json", run / "eval_last.json"
    if not (best.is_file() and last.is_file()):
        return None
    b, t = json.loads(best.read_text()), json.loads(last.read_text())
    state = json.loads((run / "state.json").read_text())
    train = json.loads((run / "config.json").read_text())["train"]
    init, encoder = train["init_weights"], train.get("encoder_weights", "none")
    cells = [
        run.name,
        Path(init).parent.name if init else ("scratch" if encoder == "none" else encoder),
        str(state["epoch"]),
        f"{pct(b['miou'])} (epoch {state['best_epoch']})",
        pct(t["miou"]),
        pct(t["global_accuracy"]),
        pct(t["class_accuracy"]),
        *(pct(v) for v in t["per_class_iou"].values()),
    ]
    return cells, list(t["per_class_iou"])


def main(runs: Path) -> str:
    rows = [r for r in (row(p) for p in sorted(runs.iterdir()) if p.is_dir()) if r]
    if not rows:
        return f"{runs}: no finished screening run (eval_best.json and eval_last.json)"
    classes = rows[0][1]
    header = ["run", "from", "epochs", "best mIoU", "last mIoU", "last G", "last C", *classes]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells, _ in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/screen")))
