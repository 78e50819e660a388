"""``segnet-tf export``: one trained model in, every deployable artifact out, each verified.

The format table below is the one place that says which files exist, how each is built and which
options ask for it. Every artifact is written into a staging folder beside ``out`` that replaces
``out`` whole only when all of them converted and passed their checks (:mod:`.staging`), so a
failed or killed export leaves nothing half-written behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np

from edge_demo.bundle import BUNDLE_SUFFIX, write_bundle
from edge_demo.contract import MC_OUTPUT, MODEL_FILES, REPORT_FILE
from segnet_tf.export.calibration import (
    CalibrationError,
    calibration_images,
    calibration_source,
    load_image_array,
    representative_dataset,
)
from segnet_tf.export.edgetpu import check_edgetpu, compile_edgetpu
from segnet_tf.export.labels import jetson_label_lines, write_jetson_labels, write_labels
from segnet_tf.export.lowering import (
    activation_peaks,
    equalize_activations,
    lower_model,
)
from segnet_tf.export.montecarlo import (
    dropout_masks,
    mask_values,
    masked_activation_peaks,
    masked_network,
    sample_mean_model,
)
from segnet_tf.export.onnx import LAYOUTS, OnnxExportError
from segnet_tf.export.parity import check_parity
from segnet_tf.export.savedmodel import save_serving_model
from segnet_tf.export.staging import staging_folder, swap_in
from segnet_tf.export.tflite import convert, inspect_model
from segnet_tf.layers import FLOAT_STEP_GAIN, STEP_GAIN
from segnet_tf.models import load_model
from segnet_tf.models.blocks import encoder_stages, pool_name
from segnet_tf.runs import RunFolder, model_classes

# What each flag of the format table stands for in the options (see Format.asked_by).
FLAGS: dict[str, Callable[[ExportOptions], bool]] = {
    "--fp16": lambda o: o.fp16,
    "--int8": lambda o: bool(o.int8),
    "--target edgetpu": lambda o: o.target == "edgetpu",
    "--mc-samples N": lambda o: o.mc_samples > 0,
    "--onnx": lambda o: o.onnx,
}


@dataclass(frozen=True)
class Format:
    name: str
    filename: str
    precision: str  # float32 | float16 | int8
    lowering: str  # see segnet_tf.layers.LOWERINGS
    description: str
    # the flags that ask for the file: any one of these sets, every flag of the set (() always)
    asked_by: tuple[tuple[str, ...], ...] = ((),)
    gain: float = STEP_GAIN  # of the step comparison (see segnet_tf.layers)
    monte_carlo: bool = False  # N fixed dropout masks, mean probabilities (export/montecarlo.py)
    runtime: str = "tflite"  # tflite | onnx: which converter builds it and what checks parity

    def asked(self, options: ExportOptions) -> bool:
        return any(all(FLAGS[flag](options) for flag in flags) for flags in self.asked_by)

    @property
    def flags(self) -> str:
        """Who asks for it, as the help says: ``always``, ``--fp16``, ``--int8 | --target ...``."""
        return " | ".join(" ".join(flags) for flags in self.asked_by) or "always"


QUANTIZED = (("--int8",), ("--target edgetpu",))  # an int8 model: asked, or the target needs it
FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            "tflite",
            MODEL_FILES["tflite"],
            "float32",
            "step-conv",
            "float32, builtin ops",
            gain=FLOAT_STEP_GAIN,
        ),
        Format(
            "fp16",
            MODEL_FILES["fp16"],
            "float16",
            "exact",
            "float16 weights (GPU delegate)",
            (("--fp16",),),
        ),
        Format(
            "int8",
            MODEL_FILES["int8"],
            "int8",
            "step",
            "full int8 (ARM CPU, XNNPACK, NNAPI)",
            QUANTIZED,
        ),
        Format(
            "edgetpu",
            MODEL_FILES["edgetpu"],
            "int8",
            "edgetpu",
            "full int8, Edge TPU ops only",
            (("--target edgetpu",),),
        ),
        # on the CPU only: TILE and the N-sample batch are not Edge TPU work
        Format(
            "mc",
            MODEL_FILES["mc"],
            "float32",
            "step-conv",
            "Monte Carlo dropout, N fixed masks: mean probabilities",
            (("--mc-samples N",),),
            FLOAT_STEP_GAIN,
            monte_carlo=True,
        ),
        Format(
            "mc-int8",
            MODEL_FILES["mc-int8"],
            "int8",
            "step",
            "the same, full int8",
            tuple(("--mc-samples N", *flags) for flags in QUANTIZED),
            monte_carlo=True,
        ),
        # exact: Equal/Where hold in TensorRT's FP16 mode, where the 2^126 step gain overflows
        Format(
            "onnx",
            MODEL_FILES["onnx"],
            "float32",
            "exact",
            "float32 ONNX (TensorRT, ONNX Runtime: Jetson GPU)",
            (("--onnx",),),
            runtime="onnx",
        ),
    )
}
TARGETS = ("cpu", "edgetpu")


class ExportError(ValueError):
    """The model or the options cannot be exported as asked."""


@dataclass
class ExportOptions:
    model: Path
    out: Path
    int8: bool | None = None  # None: int8 only when the target needs it
    fp16: bool = False
    onnx: bool = False
    target: str = "cpu"
    calib_data: Path | None = None
    calib_samples: int = 200
    parity_samples: int = 20
    threads: int | None = None
    seed: int = 0
    equalize: bool = True  # rescale every ReLU channel to [0, 6] before int8 quantisation
    mc_samples: int = 0  # > 0: also the Monte Carlo dropout model(s) with this many masks
    layout: str = "nhwc"  # of model.onnx: nhwc, or jetson-inference (export/onnx.py)
    bundle: bool = False  # also the board's files as one OUT.tar.gz with its .sha256

    def formats(self) -> list[Format]:
        """The artifacts these options ask for; rejects combinations that make no sense."""
        if self.target not in TARGETS:
            raise ExportError(f"--target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if self.target == "edgetpu" and self.int8 is False:
            raise ExportError("--target edgetpu runs int8 models only; drop --no-int8")
        if self.target == "edgetpu" and not self.equalize:
            raise ExportError("--target edgetpu needs equalized activations; drop --no-equalize")
        if self.layout not in LAYOUTS:
            raise ExportError(f"--layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.layout != "nhwc" and not self.onnx:
            raise ExportError(
                f"--layout {self.layout} is the layout of {FORMATS['onnx'].filename}: add --onnx"
            )
        if self.parity_samples < 1:
            raise ExportError(f"--parity-samples must be >= 1, got {self.parity_samples}")
        if self.mc_samples == 1 or self.mc_samples < 0:
            raise ExportError(
                f"--mc-samples must be 0 (none) or >= 2 dropout masks, got {self.mc_samples}"
            )
        formats = [f for f in FORMATS.values() if f.asked(self)]
        if any(f.runtime == "onnx" for f in formats):
            _require_onnx()
        return formats


def _require_onnx() -> None:
    from segnet_tf.export.onnx import require_onnx

    try:
        require_onnx()
    except OnnxExportError as e:
        raise ExportError(f"--onnx: {e}") from None


@dataclass
class Artifact:
    file: str
    size_bytes: int
    ops: dict[str, int]
    tensor_types: dict[str, int]
    seconds_to_build: float
    parity: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def export_model(options: ExportOptions, log=print) -> dict:
    """Export ``options.model`` into ``options.out``; returns the report (also ``report.json``)."""
    formats = options.formats()
    model = load_segnet(options.model)
    input_size = static_input_size(model, options.model)
    config = model_classes(int(model.outputs[0].shape[-1]), options.model)
    masks = _monte_carlo_masks(model, options)
    if options.layout == "jetson-inference":
        _jetson_label_lines(config)  # a class name segNet would misread fails before any work
    needs_calibration = any(f.precision == "int8" for f in formats)

    out = Path(options.out)
    staging = staging_folder(out)
    try:
        dataset = calibration_source(_data_dir(options), config)
        calib = None
        if needs_calibration:
            calib = _calibration(options, dataset, input_size)
            log(
                f"calibration: {len(calib)} crops of {input_size[0]}x{input_size[1]} "
                f"from {dataset.root or 'the built-in synthetic scenes'}"
            )
        report = _build_all(model, formats, calib, staging, options, log, masks)
        monte_carlo = _monte_carlo_info(masks, options, formats)
        write_labels(staging, config, model.name, input_size, monte_carlo)
        if options.layout == "jetson-inference":
            write_jetson_labels(staging, config)
        report["parity"] = check_parity(
            model,
            staging,
            {n: (a, FORMATS[n]) for n, a in report["artifacts"].items() if n in FORMATS},
            dataset,
            input_size,
            samples=options.parity_samples,
            threads=options.threads or os.cpu_count(),
            layout=options.layout,
            masks=masks,
            log=log,
        )
        report.update(
            model=model.name,
            # relative to the export folder: no machine's paths in a shipped report
            source=os.path.relpath(Path(options.model).resolve(), Path(options.out).resolve()),
            input_size=list(input_size),
            num_classes=config.num_classes,
            target=options.target,
            **({"monte_carlo": monte_carlo} if monte_carlo else {}),
        )
        (staging / REPORT_FILE).write_text(json.dumps(report, indent=2))
        if options.bundle:
            _bundle(staging, out.name, log)
        swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(format_report(report))
    return report


def load_segnet(path: Path) -> keras.Model:
    try:
        model = load_model(path)
    except (FileNotFoundError, ValueError) as e:
        raise ExportError(str(e)) from e
    if not encoder_stages(model):  # any decoder's encoder
        raise ExportError(
            f"model {str(path)!r} is not a segnet-tf model: it has no SegNet encoder "
            f"(pooling layer {pool_name(1)!r})"
        )
    return model


def _jetson_label_lines(config) -> None:
    try:
        jetson_label_lines(config)
    except ValueError as e:
        raise ExportError(f"--layout jetson-inference: {e}") from e


def _monte_carlo_masks(model: keras.Model, options: ExportOptions) -> dict | None:
    if not options.mc_samples:
        return None
    try:
        return dropout_masks(model, options.mc_samples, options.seed)
    except ValueError as e:
        raise ExportError(f"--mc-samples {options.mc_samples}: {e}") from e


def _monte_carlo_info(masks, options: ExportOptions, formats) -> dict | None:
    """What labels.json tells the demo about the Monte Carlo files (None without any)."""
    if masks is None:
        return None
    return {
        "samples": options.mc_samples,
        "seed": options.seed,
        "output": MC_OUTPUT,
        "files": [f.filename for f in formats if f.monte_carlo],
        "mask_values": mask_values(masks),
    }


def static_input_size(model: keras.Model, path: Path) -> tuple[int, int]:
    h, w, c = model.inputs[0].shape[1:]
    if h is None or w is None or c != 3:
        raise ExportError(
            f"model {str(path)!r} has input shape {tuple(model.inputs[0].shape)}; export needs a "
            "fixed (H, W, 3): rebuild it with build_model(..., input_shape=(H, W, 3))"
        )
    return int(h), int(w)


def _data_dir(options: ExportOptions) -> Path | None:
    """Images for calibration and parity: --calib-data, else the data the run was trained on."""
    if options.calib_data is not None:
        return None if Path(options.calib_data).suffix == ".npy" else Path(options.calib_data)
    run = RunFolder.of(options.model).train_config()
    data = None if run is None else run.data
    return Path(data) if data and Path(data).is_dir() else None


def _calibration(options: ExportOptions, dataset, input_size) -> np.ndarray:
    if options.calib_data is not None and Path(options.calib_data).suffix == ".npy":
        return load_image_array(Path(options.calib_data), input_size)
    try:
        return calibration_images(dataset, input_size, options.calib_samples, options.seed)
    except CalibrationError:
        raise
    except ValueError as e:
        raise CalibrationError(f"--calib-data: {e}") from e


def _build_all(model, formats, calib, staging: Path, options, log, masks=None) -> dict:
    report: dict = {"artifacts": {}}
    start = time.perf_counter()
    save_serving_model(model, staging / "saved_model")
    report["artifacts"]["saved_model"] = {
        "file": "saved_model/",
        "size_bytes": _dir_size(staging / "saved_model"),
        "seconds_to_build": round(time.perf_counter() - start, 2),
    }
    lowered_dirs: dict[tuple[str, float, bool, bool], Path] = {}
    peaks = activation_peaks(model, calib) if calib is not None and options.equalize else None
    with tempfile.TemporaryDirectory(dir=staging) as tmp:  # lowered models, not artifacts
        for fmt in (f for f in formats if f.runtime == "tflite"):
            start = time.perf_counter()
            int8 = fmt.precision == "int8"
            # the int8 step gain assumes equalized [0, 6] activations; without them, compare exactly
            lowering = fmt.lowering if options.equalize or not int8 else "exact"
            key = (lowering, fmt.gain, int8, fmt.monte_carlo)
            if key not in lowered_dirs:
                if fmt.monte_carlo:
                    lowered = masked_network(model, masks, lowering, fmt.gain)
                else:
                    lowered = lower_model(model, lowering, gain=fmt.gain)
                if int8 and options.equalize:  # float exports stay bit-exact
                    equalize_activations(
                        lowered,
                        masked_activation_peaks(model, masks, calib) if fmt.monte_carlo else peaks,
                    )
                if fmt.monte_carlo:
                    lowered = sample_mean_model(lowered, options.mc_samples)
                lowered_dirs[key] = Path(tmp) / fmt.name
                save_serving_model(lowered, lowered_dirs[key], batch_size=1)
            rep = representative_dataset(calib) if int8 else None
            try:
                content = convert(lowered_dirs[key], fmt.precision, rep)
            except Exception as e:
                raise ExportError(f"{fmt.filename}: TFLite conversion failed: {e}") from e
            info = inspect_model(content)
            _check(fmt, info)
            path = staging / fmt.filename
            path.write_bytes(content)
            artifact = _artifact(fmt, content, info, start, log)
            if fmt.name == "edgetpu":
                artifact.extra["edgetpu_compiler"] = compile_edgetpu(path, staging)
            report["artifacts"][fmt.name] = asdict(artifact)
    for fmt in (f for f in formats if f.runtime == "onnx"):
        artifact = _build_onnx(model, fmt, staging, log, options.layout)
        report["artifacts"][fmt.name] = asdict(artifact)
    return report


def _build_onnx(model, fmt: Format, staging: Path, log, layout: str = "nhwc") -> Artifact:
    """tf2onnx of the lowered network, checked against TensorRT's ONNX parser, and an FP16
    engine built and timed by trtexec where TensorRT is installed."""
    from segnet_tf.export import onnx as onnx_export

    start = time.perf_counter()
    lowered = lower_model(model, fmt.lowering, batch_size=1)
    try:
        content, info = onnx_export.build(lowered, staging / fmt.filename, layout)
    except OnnxExportError as e:
        raise ExportError(str(e)) from e
    artifact = _artifact(fmt, content, info, start, log)
    engine = onnx_export.build_engine(staging / fmt.filename, staging)
    log(
        f"TensorRT FP16 engine {engine['file']}: GPU compute "
        f"{engine.get('gpu_compute_ms_median', float('nan')):.2f} ms median"
        if engine["built"]
        else f"no TensorRT engine: {engine['reason']}"
    )
    artifact.extra.update(
        layout=layout,
        opset=info.opset,
        input_name=info.input_name,
        output_name=info.output_name,
        input_shape=list(info.input_shape),
        output_shape=list(info.output_shape),
        tensorrt_parser="every op on onnx-tensorrt's list for TensorRT "
        f"{onnx_export.TENSORRT_VERSION}",
        tensorrt_engine=engine,
    )
    return artifact


def _bundle(staging: Path, name: str, log) -> None:
    """The board's files of ``staging`` as ``NAME.tar.gz`` and its ``.sha256`` (edge_demo)."""
    bundle = staging / f"{name}{BUNDLE_SUFFIX}"
    digest = write_bundle(staging, bundle)
    log(f"wrote {bundle.name}: {bundle.stat().st_size / 1e6:.2f} MB, sha256 {digest}")


def _artifact(fmt: Format, content: bytes, info, start: float, log) -> Artifact:
    """The report entry of a file just written (size, ops, build time), logged."""
    artifact = Artifact(
        fmt.filename,
        len(content),
        info.ops,
        info.tensor_types,
        round(time.perf_counter() - start, 2),
    )
    log(
        f"wrote {fmt.filename}: {len(content) / 1e6:.2f} MB, {sum(info.ops.values())} ops, "
        f"{artifact.seconds_to_build:.1f} s"
    )
    return artifact


def _check(fmt: Format, info) -> None:
    """Builtin ops only, and int8 end to end where asked; the Edge TPU's full constraint list."""
    if not info.builtin_only:
        raise ExportError(f"{fmt.filename}: custom ops {info.custom_ops} would not run on a board")
    if fmt.precision == "int8":
        floats = {t: n for t, n in info.tensor_types.items() if t.startswith("float")}
        if floats:
            raise ExportError(f"{fmt.filename}: float tensors {floats} left in an int8 model")
    if fmt.lowering == "edgetpu":
        check_edgetpu(info)


def format_report(report: dict) -> str:
    """The printed table: size, op count and parity of every artifact."""
    rows = [
        f"{'artifact':<24}{'size MB':>9}{'ops':>6}{'agree %':>9}{'mIoU':>7}{'dmIoU':>7}{'ms':>8}"
    ]
    for art in report["artifacts"].values():
        p = art.get("parity") or {}
        ops = sum(art.get("ops", {}).values()) if "ops" in art else "-"
        rows.append(
            f"{art['file']:<24}{art['size_bytes'] / 1e6:>9.2f}{ops!s:>6}"
            + (
                f"{100 * p['pixel_agreement']:>9.2f}{100 * p['miou']:>7.2f}"
                f"{p['miou_delta_points']:>+7.2f}{p['latency_ms_median']:>8.1f}"
                if p
                else ""
            )
        )
    par = report.get("parity", {})
    rows.append(
        f"Keras reference mIoU {100 * par.get('keras_miou', 0):.2f} on {par.get('images')} "
        f"{par.get('split')} images"
    )
    if "keras_mc_miou" in par:
        mc = report["monte_carlo"]
        rows.append(
            f"Monte Carlo models ({mc['samples']} fixed masks, seed {mc['seed']}) are compared "
            f"with Keras under the same masks: mIoU {100 * par['keras_mc_miou']:.2f}"
        )
    return "\n".join(rows)


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
