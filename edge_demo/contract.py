"""The model contract between ``segnet-tf export`` and the board: file names, labels, tensors.

One home for what both sides must agree on. The exporter (``segnet_tf.export``) imports this
module; this module, like all of ``edge_demo``, never imports ``segnet_tf`` or TensorFlow.

- Files: :data:`MODEL_FILES` names every model file the exporter writes and the demo looks for,
  beside ``labels.json`` (:data:`LABELS_FILE`) and, for jetson-inference, ``classes.txt`` and
  ``colors.txt``.
- Input ``[1, H, W, 3]``: raw RGB pixels, float32 0..255, or uint8/int8 quantised with the input
  tensor's own ``scale, zero_point`` (:func:`quantise`: never an assumed ``pixel - 128``, so
  models from other exporters work too).
- Output ``[1, H, W, num_classes]``: class logits (float32, or int8/uint8 with the output
  tensor's params); a Monte Carlo model outputs mean probabilities (:data:`MC_OUTPUT`).
- :class:`SegModel`: what the camera loop, the web view and the uncertainty view need of a
  loaded model, whatever runtime runs it (``tflite_backend``, ``onnx_backend``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from edge_demo import DemoError, DemoFileNotFoundError

# Every model file of an export folder, by the exporter's format name (its --help lists them).
MODEL_FILES: dict[str, str] = {
    "tflite": "model.tflite",
    "fp16": "model_fp16.tflite",
    "int8": "model_int8.tflite",
    "edgetpu": "model_edgetpu.tflite",
    # edgetpu_compiler's <stem>_edgetpu name for the file above, which the exporter keeps
    "edgetpu-compiled": "model_edgetpu_edgetpu.tflite",
    "mc": "model_mc.tflite",
    "mc-int8": "model_mc_int8.tflite",
    "onnx": "model.onnx",
}
LABELS_FILE = "labels.json"  # class names and colours, beside the model
REPORT_FILE = "report.json"  # the exporter's sizes, ops and parity of every file
# jetson-inference's segNet reads these beside model.onnx (export --layout jetson-inference)
CLASSES_FILE, COLOURS_FILE = "classes.txt", "colors.txt"
MC_OUTPUT = "mean_probabilities"  # what labels.json says a Monte Carlo model outputs

# Preference orders when --model is a folder, per target. On a CPU int8 first: it is the
# fastest file on every CPU benchmarked (docs/performance.md), most of all on CPUs with int8 dot
# products, as ARM boards have, and NPU delegates want it too. A GPU delegate computes in float16.
CPU_ORDER = (MODEL_FILES["int8"], MODEL_FILES["tflite"])
GPU_DELEGATE_ORDER = (MODEL_FILES["fp16"], MODEL_FILES["tflite"], MODEL_FILES["int8"])
# With --edgetpu: the compiler's output first, then the uncompiled file (which runs on the CPU).
EDGETPU_ORDER = (MODEL_FILES["edgetpu-compiled"], MODEL_FILES["edgetpu"])
MC_ORDER = (MODEL_FILES["mc-int8"], MODEL_FILES["mc"])


@dataclass(frozen=True)
class Labels:
    """What ``labels.json`` says; its ``input_size`` and ``num_classes`` must match the model."""

    class_names: tuple[str, ...]
    colours: tuple[tuple[int, int, int], ...]  # RGB
    input_size: tuple[int, int] | None = None
    num_classes: int | None = None
    model: str | None = None
    monte_carlo: dict | None = None  # the exporter's --mc-samples files (edge_demo/uncertainty.py)


def load_labels(path: str | Path) -> Labels:
    """Read and validate ``labels.json`` (the exporter's copy of the dataset config)."""
    path = Path(path)
    if not path.is_file():
        raise DemoFileNotFoundError(
            f"labels file {path} not found: put the exporter's {LABELS_FILE} beside the model "
            "or pass --labels PATH"
        )
    try:
        data = json.loads(path.read_text())
        names = tuple(str(n) for n in data["class_names"])
        colours = tuple(tuple(int(v) for v in c) for c in data["colours"])
        size = data.get("input_size")
        labels = Labels(
            class_names=names,
            colours=colours,  # type: ignore[arg-type]
            input_size=None if size is None else (int(size[0]), int(size[1])),
            num_classes=None if data.get("num_classes") is None else int(data["num_classes"]),
            model=data.get("model"),
            monte_carlo=data.get("monte_carlo"),
        )
    except (KeyError, TypeError, ValueError, IndexError, OverflowError, RecursionError) as e:
        raise DemoError(
            f"{path}: not a valid labels file (needs 'class_names' and 'colours' "
            f"[[r, g, b], ...]): {e}"
        ) from e
    if len(labels.colours) != len(names) or any(len(c) != 3 for c in labels.colours):
        raise DemoError(f"{path}: {len(names)} class names but {len(labels.colours)} RGB colours")
    if not all(0 <= v <= 255 for c in labels.colours for v in c):
        raise DemoError(f"{path}: a colour has a value outside 0..255")
    if len(set(names)) != len(names):
        raise DemoError(f"{path}: a class name is given twice; each class needs its own name")
    if labels.num_classes is not None and labels.num_classes != len(names):
        raise DemoError(f"{path}: num_classes is {labels.num_classes} but {len(names)} class names")
    return labels


@runtime_checkable
class SegModel(Protocol):
    """A loaded segmentation model: BGR frames in, per-pixel class scores out.

    ``preprocess`` -> ``infer`` -> ``scores`` is one frame; ``infer``'s raw output may stay in the
    output tensor's dtype (an argmax needs no dequantisation) and ``scores`` makes it real-valued.
    """

    path: Path
    labels: Labels
    input_size: tuple[int, int]  # H, W
    num_classes: int

    @property
    def precision(self) -> str: ...

    @property
    def runtime(self) -> str: ...

    @property
    def device(self) -> str: ...

    def preprocess(self, frame_bgr: np.ndarray) -> np.ndarray: ...

    def infer(self, x: np.ndarray) -> np.ndarray: ...

    def scores(self, raw: np.ndarray) -> np.ndarray: ...


def check_labels(labels: Labels, model: SegModel) -> None:
    """Fail early when ``labels.json`` was written for another model."""
    n = len(labels.class_names)
    if n != model.num_classes:
        raise DemoError(
            f"labels list {n} classes but {model.path.name} outputs {model.num_classes}: "
            f"pass the {LABELS_FILE} exported with this model (--labels PATH)"
        )
    if labels.input_size is not None and labels.input_size != model.input_size:
        raise DemoError(
            f"{LABELS_FILE} input_size {list(labels.input_size)} does not match the model input "
            f"{list(model.input_size)} of {model.path.name}: pass the {LABELS_FILE} exported "
            "with it"
        )


def quantise(values: np.ndarray, dtype: np.dtype, scale: float, zero_point: int) -> np.ndarray:
    """TFLite's affine quantisation ``q = round(x / scale) + zero_point``, saturated to ``dtype``.

    ``x / scale`` in float32, rounded half to even as TFLite quantises a float tensor on x86 and
    aarch64: XNNPACK and the builtin QUANTIZE kernel (``optimized_ops.h`` ``AffineQuantize`` ->
    ``RoundToNearest`` -> ``vcvtnq_s32_f32``) round ties to even; only the reference kernel
    (``reference/quantize.h``, ``std::round``) rounds them away from zero. The exporter
    keeps an identical copy (``segnet_tf.export.tflite.quantise``, beside TFLite's calibration):
    tests hold the two to each other (``tests/export/test_contracts.py``) and to TFLite's own
    kernel.
    """
    x = np.asarray(values, np.float32) / np.float32(scale)
    info = np.iinfo(dtype)
    return np.clip(np.rint(x) + zero_point, info.min, info.max).astype(dtype)


def dequantise(raw: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Real values of a quantised tensor: ``(q - zero_point) * scale``, as float32."""
    return (raw.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


def input_lut(dtype: np.dtype, scale: float, zero_point: int) -> np.ndarray:
    """The quantised value of every pixel value 0..255: preprocessing becomes one table lookup."""
    if scale == 0:  # an unquantised integer input takes the pixels as they are
        if np.dtype(dtype) != np.uint8:
            raise DemoError(
                f"model input is {np.dtype(dtype).name} without quantisation parameters"
            )
        return np.arange(256, dtype=np.uint8)
    return quantise(np.arange(256), dtype, scale, zero_point)


def preprocess(
    frame_bgr: np.ndarray,
    size_hw: tuple[int, int],
    lut: np.ndarray | None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """BGR frame -> model input ``[1, H, W, 3]``: resize, BGR->RGB, quantise (``lut``) or float.

    Every step runs at the model's size, and the last writes straight into ``out`` (the input
    tensor's dtype) when given, so no frame-sized or float copy is made.
    """
    h, w = size_hw
    if frame_bgr.shape[:2] != (h, w):
        frame_bgr = cv2.resize(frame_bgr, (w, h), interpolation=cv2.INTER_LINEAR)
    rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
    if out is None:
        out = np.empty((1, h, w, 3), np.float32 if lut is None else lut.dtype)
    if lut is None:
        np.copyto(out[0], rgb)
    else:
        cv2.LUT(rgb, lut, dst=out[0])  # one table lookup per value, into the tensor's dtype
    return out


def smooth_scores(state: np.ndarray | None, scores: np.ndarray, k: float) -> np.ndarray:
    """Exponential moving average of class scores with a span of ``k`` frames (``alpha = 2/(k+1)``).

    Updates ``state`` in place (the caller owns it; no per-frame allocation of a full score map)
    and returns it; the first call starts the average from ``scores``.
    """
    if state is None:
        return np.array(scores, dtype=np.float32)
    state += (2.0 / (k + 1.0)) * (scores - state)
    return state


def class_map(scores: np.ndarray) -> np.ndarray:
    """Per-pixel argmax ``[H, W, C] -> [H, W]`` uint8, the first class on ties (as np.argmax).

    Valid on raw int8/uint8 scores too (dequantisation is monotonic), so quantised outputs need
    no conversion. np.argmax over a last axis of ~11 classes pays a call per pixel; instead one
    transpose makes a contiguous plane per class and a running maximum over the planes keeps
    the class that raised it (three SIMD passes each): about 4x faster at 360x480.
    """
    h, w, c = scores.shape
    if c > 256:
        raise DemoError(f"{c} classes do not fit a uint8 class map")
    planes = cv2.transpose(np.ascontiguousarray(scores).reshape(h * w, c))  # [C, H*W]
    best = planes[0].copy()
    classes = np.zeros(h * w, np.uint8)
    raised = np.empty(h * w, bool)
    for k in range(1, c):
        np.greater(planes[k], best, out=raised)  # strictly: ties keep the earlier class
        np.maximum(best, planes[k], out=best)
        np.maximum(classes, raised.view(np.uint8) * np.uint8(k), out=classes)  # k > earlier ids
    return classes.reshape(h, w)
