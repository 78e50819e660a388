r"""The SegNet paper's decoder study (Table 1), rerun: every SegNet-Basic decoder trained with one
recipe on CamVid, scored with G / C / mIoU / BF, beside what each costs (parameters, the encoder
memory it keeps, forward time) and the paper's own figures in a separate, labelled column.

Each variant trains through :func:`segnet_tf.training.train` (the code ``segnet-tf train`` runs)
into ``OUT/<decoder>/``, a run folder like any other: ``--resume`` continues the unfinished ones
and skips the finished, so a killed study loses at most an epoch. With a test split, the run's
``best.keras`` (selected on val) is scored on test; without one, val cannot both select and score,
so the last epoch's ``last.keras`` is scored on val. Point ``--data`` at a drive-held-out split
(``segnet-tf data split``) to score on a road training never saw.

Our numbers are not the paper's: it trains at 360x480 until convergence and scores on CamVid's
233 test images; the default here is a reduced size and epoch count that fits a 2-core CPU (see
docs/decoders.md), so only comparisons between our own rows mean something.

Run from the repository root:
    segnet-tf data split --data ../shared/camvid --holdout 0006R0 --out runs/split-0006R0
    python -m benchmarks.decoder_study --data runs/split-0006R0 --out runs/decoder-study
    python -m benchmarks.decoder_study --data runs/split-0006R0 --out runs/decoder-study --resume
    # full scale (GPU): the paper's size
    python -m benchmarks.decoder_study --data runs/split-0006R0 --out runs/decoder-study-full \
        --input-size 360x480 --epochs 100 --batch-size 12
    # smoke (a minute): 2 variants, 1 epoch, 32x32 synthetic scenes, everything under --out
    python -m benchmarks.decoder_study --smoke --out /tmp/decoder-study
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from benchmarks.report import fmt, table
from benchmarks.run import size_arg
from benchmarks.timing import environment
from segnet_tf.config import TrainConfig
from segnet_tf.data import open_dataset
from segnet_tf.evaluation import evaluate
from segnet_tf.models import build_model
from segnet_tf.models.costs import forward_ms, forward_peak_mb
from segnet_tf.models.decoders import BASIC_DECODERS, DECODERS, TABLE_1, kept_bytes
from segnet_tf.progress import progress, quiet
from segnet_tf.runs import RunFolder
from segnet_tf.training import train

REPO = Path(__file__).resolve().parents[1]
PRESET = "segnet-basic"
PAPER_SIZE = (360, 480)
NUM_CLASSES = 11  # CamVid's, and the synthetic scenes' of the smoke run
DEFAULTS = {"input_size": (120, 160), "epochs": 20, "batch_size": 8}
SMOKE = {
    "input_size": (32, 32),
    "epochs": 1,
    "batch_size": 4,
    "synthetic_train": 8,
    "synthetic_val": 4,
}
SMOKE_DECODERS = ("indices", "fcn")


def parse_decoders(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in BASIC_DECODERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"{text!r}: choose from {', '.join(BASIC_DECODERS)} (comma-separated)"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.decoder_study",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "camvid")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "decoder-study")
    parser.add_argument("--decoders", type=parse_decoders, default=None)
    parser.add_argument("--input-size", type=size_arg, default=None, help="default 120x160")
    parser.add_argument("--epochs", type=int, default=None, help="default 20")
    parser.add_argument("--batch-size", type=int, default=None, help="default 8")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reps", type=int, default=3, help="timed forward passes per variant")
    parser.add_argument("--resume", action="store_true", help="continue or skip existing runs")
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic run (tests)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--figure", type=Path, default=None)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the defaults of a full run or a smoke run (outputs under ``--out`` for a smoke)."""
    base = SMOKE if args.smoke else DEFAULTS
    args.input_size = args.input_size or base["input_size"]
    args.epochs = args.epochs or base["epochs"]
    args.batch_size = args.batch_size or base["batch_size"]
    args.decoders = args.decoders or (SMOKE_DECODERS if args.smoke else BASIC_DECODERS)
    results = args.out if args.smoke else REPO / "benchmarks" / "results"
    args.json = args.json or results / "decoder-study.json"
    args.markdown = args.markdown or results / "decoder-study.md"
    args.figure = args.figure or (args.out if args.smoke else REPO / "docs") / "decoder_study.png"
    if args.smoke:
        args.data, args.reps = None, min(args.reps, 1)
    elif not args.data.is_dir():
        raise SystemExit(f"--data {args.data}: no such dataset folder (CamVid: see README)")
    return args


def train_config(args: argparse.Namespace, decoder: str) -> TrainConfig:
    """The one recipe every variant trains with (median-frequency class weights as the paper)."""
    return TrainConfig(
        out=str(args.out / decoder),
        data=None if args.data is None else str(args.data),
        model=PRESET,
        decoder=decoder,
        input_size=args.input_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        class_weights="median",
        lr=args.lr,
        seed=args.seed,
        **({k: SMOKE[k] for k in ("synthetic_train", "synthetic_val")} if args.smoke else {}),
    )


def selects_on_val(split: str) -> bool:
    """Whether the scored checkpoint is the one best on val: only when val is not the split
    being scored (val cannot both choose a checkpoint and score it)."""
    return split != "val"


def run_variant(
    args: argparse.Namespace, decoder: str, split: str, cost_size: tuple[int, int], log
) -> dict:
    """Train (or resume, or skip) one variant, score it and measure its costs; the row is kept in
    ``OUT/<decoder>/study.json``, so resuming a finished study only redraws the table and figure."""
    config = train_config(args, decoder)
    run_dir = Path(config.out)
    cache = run_dir / "study.json"
    resume = args.resume and RunFolder(run_dir).config.is_file()
    done = json.loads(cache.read_text()) if resume and cache.is_file() else {}
    start = time.perf_counter()
    log(f"{decoder}: {'resuming' if resume else 'training'} {run_dir}")
    result = train(TrainConfig(out=config.out, resume=True) if resume else config, verbose=0)
    seconds = done.get("train_seconds", 0.0) + time.perf_counter() - start
    if done.get("epochs") == result.epochs and done.get("split") == split and "params" in done:
        return done
    best = selects_on_val(split) and result.best_path.is_file()
    model_path = result.best_path if best else result.last_path
    scores = evaluate(model_path, None, split=split, batch_size=args.batch_size)
    row = {
        "decoder": decoder,
        "paper_name": DECODERS[decoder].paper_name,
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "train_seconds": round(seconds, 1),
        "split": split,
        "checkpoint": model_path.name,  # in OUT/<decoder>/
        **{k: scores[k] for k in ("global_accuracy", "class_accuracy", "miou", "bf_score")},
        "per_class_iou": scores["per_class_iou"],
        **costs(decoder, cost_size, args.reps),
    }
    cache.write_text(json.dumps(row, indent=2))
    return row


def costs(decoder: str, size: tuple[int, int], reps: int) -> dict:
    """Parameters, kept encoder memory and forward time (batch 1) at ``size``."""
    model = build_model(PRESET, (*size, 3), NUM_CLASSES, decoder=decoder)
    ms = forward_ms(model, size, reps) if reps > 0 else None
    peak = forward_peak_mb(PRESET, decoder, size, NUM_CLASSES) if reps > 0 else None
    return {
        "params": model.count_params(),
        "kept_bytes": kept_bytes(model, decoder),
        "forward_ms": ms,
        "peak_mb": peak,
    }


def markdown(result: dict) -> str:
    s, env = result["settings"], result["environment"]
    size = "x".join(map(str, s["cost_size"]))
    header = [
        "decoder",
        "paper name",
        "params M",
        f"kept MB ({size})",
        "ms (this machine)",
        "G",
        "C",
        "mIoU",
        "BF",
        "paper: params M",
        "paper: storage x",
        "paper: G",
        "paper: C",
        "paper: mIoU",
        "paper: BF",
    ]
    rows = []
    for r in result["rows"]:
        p = result["paper"].get(r["decoder"]) or {}
        rows.append(
            [
                f"`{r['decoder']}`",
                r["paper_name"],
                fmt(r["params"] / 1e6, ".3f"),
                fmt(r["kept_bytes"] / 1e6, ".2f"),
                fmt(r["forward_ms"], ".0f"),
                *(fmt(pct(r[k])) for k in ("global_accuracy", "class_accuracy", "miou")),
                fmt(pct(r["bf_score"])),
                fmt(p.get("params_m"), ".3f"),
                fmt(p.get("storage_multiplier"), "g", "n/a"),
                *(fmt(p.get(k)) for k in ("global_accuracy", "class_accuracy", "miou")),
                fmt(p.get("bf"), ".2f"),
            ]
        )
    return "\n".join(
        [
            f"Decoder study: {PRESET} on {s['data'] or 'synthetic scenes'}, trained at "
            f"{s['input_size'][0]}x{s['input_size'][1]} for {epochs(s)} (batch "
            f"{s['batch_size']}, AdamW lr {s['lr']}, median-frequency class weights), the "
            f"{s['checkpoint']} scored on {scored_on(s)} at the training size, in %.",
            "",
            "The paper's columns: CamVid test split, 360x480, trained to convergence (Table 1, "
            "median-frequency balancing); ours are on another split and size, so compare our rows "
            "with each other, not with the paper's.",
            "",
            table(header, rows),
            "",
            f"Command: `{result['command']}`  ",
            f"Machine: {env['cpu']} ({', '.join(env['cpu_flags'])}), {env['cores']} cores; "
            f"{env['date']}",
        ]
    )


def epochs(settings: dict) -> str:
    n = settings["epochs"]
    return f"{n} epoch{'s' if n != 1 else ''}"


def scored_on(settings: dict) -> str:
    """The scored split, with the dataset folder it belongs to (a drive split names its drive)."""
    data = settings["data"]
    return settings["split"] + (f" of {Path(data).name}" if data else "")


def pct(v: float | None) -> float | None:
    return None if v is None else 100 * v


# --------------------------------------------------------------------------- the picture

FAMILY_COLOURS = {"indices": "#1e5ab4", "fcn": "#e6781e", "bilinear": "#3ca03c"}
LEGEND = {"indices": "index unpooling", "fcn": "learned upsampling", "bilinear": "fixed bilinear"}
FIGURE_SIZE = (11.2, 4.4)  # inches, at segnet_tf.plots.DPI


def family(decoder: str) -> str:
    return (
        "fcn" if decoder.startswith("fcn") else "bilinear" if decoder == "bilinear" else "indices"
    )


def panel(ax, points: list[tuple[str, float, float]], title: str, x_label: str) -> None:
    """One scatter plot: mIoU (%) against kept memory on a symmetric log axis (0 included),
    labelled points (:func:`label_groups`, :func:`label_position`)."""
    from matplotlib.ticker import FuncFormatter

    for key, text in LEGEND.items():
        ours = [(x, y) for name, x, y in points if family(name) == key]
        if ours:
            ax.scatter(
                *zip(*ours, strict=True),
                s=55,
                color=FAMILY_COLOURS[key],
                label=text,
                zorder=3,
                clip_on=False,  # the points at 0 sit on the axis
            )
    ys = [y for _, _, y in points]
    decades = int(np.ceil(np.log10(max([x for _, x, _ in points] + [10.0]))))
    ax.set_xscale("symlog", linthresh=1, linscale=0.5)
    ax.set_xlim(0, 10**decades)
    ax.set_xticks([0, *(10**k for k in range(decades + 1))])
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_ylim(
        5 * np.floor((min(ys, default=0) - 2) / 5), 5 * np.ceil((max(ys, default=100) + 2) / 5)
    )
    ax.grid(axis="y", alpha=0.4)
    ax.set_xlabel(x_label)
    ax.set_ylabel("mIoU %")
    ax.set_title(title, loc="left", fontsize=10, pad=22)
    ax.legend(
        loc="lower left",
        bbox_to_anchor=(0, 1.0),
        ncol=3,
        frameon=False,
        fontsize=8,
        borderaxespad=0.2,
        handletextpad=0.2,
    )
    _label_points(ax, points)


def _label_points(ax, points: list[tuple[str, float, float]]) -> None:
    """Labels placed in screen pixels (y down, as :func:`label_position` counts): coinciding
    points share one, none covers another or a point, a leader where one had to move."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    height = fig.bbox.height
    box = ax.get_window_extent(renderer)

    def screen(x: float, y: float) -> tuple[int, int]:
        u, v = ax.transData.transform((x, y))
        return int(round(u)), int(round(height - v))

    placed = [(u - 6, v - 6, u + 6, v + 6) for u, v in (screen(x, y) for _, x, y in points)]
    for name, (u, v) in label_groups([(n, screen(x, y)) for n, x, y in points]):
        probe = ax.text(0, 0, name, fontsize=8)
        extent = probe.get_window_extent(renderer)
        probe.remove()
        tw, th = int(np.ceil(extent.width)), int(np.ceil(extent.height))
        left, top, moved = label_position(u, v, tw, th, placed, (int(box.x0), int(box.x1)))
        placed.append((left, top, left + tw, top + th))
        x, y = ax.transData.inverted().transform((u, height - v))
        ax.annotate(
            name,
            (x, y),
            xytext=(left, height - top - th),
            textcoords="figure pixels",
            fontsize=8,
            va="bottom",
            ha="left",
            arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.8} if moved else None,
        )


def label_groups(points: list[tuple[str, tuple[int, int]]]) -> list[tuple[str, tuple[int, int]]]:
    """Labels from the top of the plot down; points that (nearly) coincide on screen share one
    label, "a / b", top point first, so no label sits beside the wrong point."""
    groups: list[tuple[str, tuple[int, int]]] = []
    for name, (u, v) in sorted(points, key=lambda p: p[1][1]):
        last = groups[-1] if groups else None
        if last and abs(last[1][0] - u) <= 6 and abs(last[1][1] - v) <= 8:
            groups[-1] = (f"{last[0]} / {name}", last[1])
        else:
            groups.append((name, (u, v)))
    return groups


def label_position(
    u: int, v: int, tw: int, th: int, placed: list, span: tuple
) -> tuple[int, int, bool]:
    """Top-left corner of a point's label and whether it moved off the point's level: level with
    the point, right then left, on the first side that overlaps no label already placed and stays
    inside the plot; where points crowd, a line further down or up."""
    step, level = th + 6, v - th // 2
    rows = [level + d for k in range(5) for d in ((k * step, -k * step) if k else (0,))]
    candidates = [(x, y) for y in rows for x in (u + 9, u - 9 - tw)]
    inside = [c for c in candidates if span[0] <= c[0] and c[0] + tw <= span[1]] or candidates
    for x, y in inside:
        if not any(x < x1 and x + tw > x0 and y < y1 and y + th > y0 for x0, y0, x1, y1 in placed):
            return x, y, y != level
    return *inside[0], False


def draw_tradeoff(result: dict, path: Path) -> None:
    """Ours beside the paper's: mIoU against the encoder memory each decoder keeps."""
    from segnet_tf.plots import DPI, pyplot

    plt = pyplot()
    s = result["settings"]
    size = "x".join(map(str, s["cost_size"]))
    ours = [(r["decoder"], r["kept_bytes"] / 1e6, 100 * r["miou"]) for r in result["rows"]]
    theirs = [
        (name, row["storage_multiplier"] or 0, row["miou"]) for name, row in result["paper"].items()
    ]
    # fixed margins, not a layout engine: labels are placed in figure pixels after the axes are
    fig, (left, right) = plt.subplots(1, 2, figsize=FIGURE_SIZE, dpi=DPI)
    fig.subplots_adjust(left=0.06, right=0.985, bottom=0.14, top=0.83, wspace=0.16)
    panel(
        left,
        ours,
        f"this run: {s['input_size'][0]}x{s['input_size'][1]}, {epochs(s)}, {scored_on(s)}",
        f"kept encoder memory, MB per {size} image (log scale)",
    )
    panel(
        right,
        theirs,
        "paper, Table 1: 360x480, CamVid test",
        "storage multiplier, SegNet-Basic = 1 (log scale)",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def run(args: argparse.Namespace, log=print) -> dict:
    args = resolve(args)
    split = "val"
    if args.data is not None:
        splits = open_dataset(args.data).splits
        split = "test" if "test" in splits else "val"
    cost_size = args.input_size if args.smoke else PAPER_SIZE
    rows = []
    for decoder in progress(args.decoders, "decoder study", unit="decoder"):
        row = run_variant(args, decoder, split, cost_size, log)
        rows.append(row)
        log(
            f"{decoder}: G {pct(row['global_accuracy']):.1f}  C {pct(row['class_accuracy']):.1f}  "
            f"mIoU {pct(row['miou']):.1f}  BF {fmt(pct(row['bf_score']))}  "
            f"kept {row['kept_bytes'] / 1e6:.2f} MB"
        )
    result = {
        "settings": {
            "preset": PRESET,
            "data": None if args.data is None else str(args.data),
            "input_size": list(args.input_size),
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "seed": args.seed,
            "split": split,
            "checkpoint": "checkpoint best on val" if selects_on_val(split) else "last epoch",
            "cost_size": list(cost_size),
        },
        "rows": rows,
        "paper": {d: asdict(row) for d, row in TABLE_1.items()},
        "command": " ".join(["python -m benchmarks.decoder_study", *args.argv]),
        "environment": environment(threads=os.cpu_count() or 1),
    }
    text = markdown(result)
    for path, content in ((args.json, json.dumps(result, indent=2)), (args.markdown, text)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content + "\n")
    draw_tradeoff(result, args.figure)
    log(text)
    log(f"wrote {args.json}, {args.markdown} and {args.figure}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with quiet(args.quiet):
            run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"decoder_study: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
