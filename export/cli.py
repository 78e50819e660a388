"""``segnet-tf export``: thin click wrapper over :func:`segnet_tf.export.export_model`."""

from __future__ import annotations

from pathlib import Path

import click

from edge_demo.contract import CLASSES_FILE, COLOURS_FILE, LABELS_FILE, MODEL_FILES, REPORT_FILE
from segnet_tf.errors import describe
from segnet_tf.export.exporter import FORMATS, TARGETS, ExportOptions, export_model
from segnet_tf.export.onnx import LAYOUTS
from segnet_tf.runs import RunFolder

EXAMPLE = f"""
\b
Examples:
  segnet-tf export --model runs/camvid --out exported --int8
  segnet-tf export --model runs/camvid --out jetson --int8 --onnx
  segnet-tf export --model runs/camvid --out jetson --onnx --layout jetson-inference
  segnet-tf export --model runs/camvid --out segnet-lite-camvid --int8 --bundle
  segnet-tf export --model runs/camvid --out coral --target edgetpu \\
      --calib-data ../camvid --calib-samples 300
  segnet-tf export --model runs/bayes --out bayes --int8 --mc-samples 8
\b
Artifacts: saved_model/, {LABELS_FILE}, {REPORT_FILE} and (asked for by)
""" + "\n".join(f"  {f.filename:<22} {f.description} ({f.flags})" for f in FORMATS.values())


@click.command(
    "export",
    help="Export a trained model to SavedModel, TFLite (builtin ops only) and ONNX, with a "
    "parity report.\n" + EXAMPLE,
)
@click.option(
    "--model",
    "model",
    required=True,
    type=click.Path(path_type=Path),
    help=f"Trained .keras file (or a run folder: its {RunFolder.BEST}).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Output folder; default: export/ beside the model (in the run folder).",
)
@click.option(
    "--int8/--no-int8",
    default=None,
    help=f"Also write {MODEL_FILES['int8']}, full-integer (implied by --target edgetpu).",
)
@click.option("--fp16", is_flag=True, help=f"Also write {MODEL_FILES['fp16']} (float16 weights).")
@click.option(
    "--onnx",
    "onnx",
    is_flag=True,
    help=f"Also write {MODEL_FILES['onnx']} (float32, batch 1) for TensorRT / ONNX Runtime on a "
    "GPU; with trtexec installed, also an FP16 engine, built and timed.",
)
@click.option(
    "--layout",
    type=click.Choice(LAYOUTS),
    default="nhwc",
    show_default=True,
    help=f"Of {MODEL_FILES['onnx']}. jetson-inference: NCHW input_0 taking segNet's ImageNet "
    f"normalisation, NCHW output_0, plus {CLASSES_FILE} and {COLOURS_FILE} (docs/jetson.md).",
)
@click.option(
    "--bundle",
    is_flag=True,
    help="Also pack the board's files into OUT/NAME.tar.gz with a .sha256 beside it "
    "(NAME: the --out folder's name), for edge_demo --model NAME.tar.gz.",
)
@click.option(
    "--target",
    type=click.Choice(TARGETS),
    default="cpu",
    show_default=True,
    help=f"edgetpu: also write {MODEL_FILES['edgetpu']} using Edge TPU ops only.",
)
@click.option(
    "--calib-data",
    type=click.Path(path_type=Path),
    default=None,
    help="Dataset folder (train split calibrates, val split checks parity), or a .npy "
    "of images [N,H,W,3]; default: the run's training data, else synthetic scenes.",
)
@click.option(
    "--calib-samples", type=int, default=200, show_default=True, help="Calibration crops for int8."
)
@click.option(
    "--parity-samples",
    type=int,
    default=20,
    show_default=True,
    help="Validation images for the parity report.",
)
@click.option("--threads", type=int, default=None, help="Threads for the latency figures.")
@click.option(
    "--mc-samples",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    metavar="N",
    help=f"Also write {MODEL_FILES['mc']} (and {MODEL_FILES['mc-int8']} with --int8): Monte Carlo "
    "dropout with N fixed masks, one batch of N per frame, mean probabilities out "
    "(bayesian-segnet; edge_demo --view uncertainty). Masks are drawn from --seed.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Calibration and mask seed.")
@click.option(
    "--equalize/--no-equalize",
    default=True,
    show_default=True,
    help="Rescale every ReLU channel to [0, 6] before int8 quantisation (see export/lowering.py).",
)
def export_command(
    model,
    out,
    int8,
    fp16,
    onnx,
    layout,
    bundle,
    target,
    calib_data,
    calib_samples,
    parity_samples,
    threads,
    mc_samples,
    seed,
    equalize,
):
    if out is None:
        out = (model if model.is_dir() else model.parent) / "export"
    options = ExportOptions(
        model=model,
        out=out,
        int8=int8,
        fp16=fp16,
        onnx=onnx,
        layout=layout,
        bundle=bundle,
        target=target,
        calib_data=calib_data,
        calib_samples=calib_samples,
        parity_samples=parity_samples,
        threads=threads,
        mc_samples=mc_samples,
        seed=seed,
        equalize=equalize,
    )
    try:
        export_model(options, log=click.echo)
    except (ValueError, OSError) as e:
        raise click.ClickException(describe(e)) from e
    click.echo(f"exported to {out}")
