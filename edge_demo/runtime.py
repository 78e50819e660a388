"""TFLite runtime side of the demo: labels, interpreter and delegates, pre- and postprocessing.

A ``.onnx`` model (the exporter's ``model.onnx``) runs on ONNX Runtime instead: see
:mod:`edge_demo.onnx_runtime`, which this module hands it to.

The model contract is the one ``segnet-tf export`` writes: input ``[1, H, W, 3]`` raw RGB pixels
(float32 0..255, or uint8/int8 quantised with the input tensor's own ``scale, zero_point``),
output ``[1, H, W, num_classes]`` class logits (float32, or int8/uint8 with the output tensor's
params; mean probabilities for a Monte Carlo model, see ``uncertainty.py``), and a ``labels.json``
beside the model. Quantisation always follows the tensors' own
parameters, never an assumed ``pixel - 128``, so models from other exporters work too.
"""

from __future__ import annotations

import ctypes
import functools
import json
import logging
import platform
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_demo import DemoError, DemoFileNotFoundError

log = logging.getLogger(__name__)
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "segnet-lite-camvid"
# Preference order when --model is a folder (or not given), per target. On a CPU int8 first: it
# is the fastest file on every CPU benchmarked (docs/performance.md), most of all on CPUs with
# int8 dot products, as ARM boards have, and NPU delegates want it too. A GPU delegate computes
# in float16.
MODEL_FILES = ("model_int8.tflite", "model.tflite")
# With a GPU execution provider in the installed ONNX Runtime (TensorRT, CUDA): the ONNX model.
ONNX_MODEL_FILE = "model.onnx"
GPU_MODEL_FILES = ("model_fp16.tflite", "model.tflite", "model_int8.tflite")
# With --edgetpu: edgetpu_compiler's output for model_edgetpu.tflite first (the compiler's own
# <stem>_edgetpu name, which the exporter keeps too), then the uncompiled file.
EDGETPU_MODEL_FILES = ("model_edgetpu_edgetpu.tflite", "model_edgetpu.tflite")
# The op edgetpu_compiler replaces the mapped graph with; only the Edge TPU delegate runs it.
EDGETPU_CUSTOM_OP = b"edgetpu-custom-op"
# The names pycoral loads; the Edge TPU runtime installs exactly these.
EDGETPU_LIBRARIES = {
    "Linux": "libedgetpu.so.1",
    "Darwin": "libedgetpu.1.dylib",
    "Windows": "edgetpu.dll",
}


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
            f"labels file {path} not found: put the exporter's labels.json beside the model "
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


def quantise(values: np.ndarray, dtype: np.dtype, scale: float, zero_point: int) -> np.ndarray:
    """TFLite's affine quantisation ``q = round(x / scale) + zero_point``, saturated to ``dtype``.

    ``x / scale`` in float32, rounded half to even as TFLite quantises a float tensor on x86 and
    aarch64: XNNPACK and the builtin QUANTIZE kernel (``optimized_ops.h`` ``AffineQuantize`` ->
    ``RoundToNearest`` -> ``vcvtnq_s32_f32``) round ties to even; only the reference kernel
    (``reference/quantize.h``, ``std::round``) rounds them away from zero. The exporter
    keeps an identical copy (``segnet_tf.export.tflite.quantise``; the demo imports no segnet_tf):
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


def is_gpu_delegate(delegate: str | None) -> bool:
    """Whether ``--delegate`` is TFLite's GPU delegate (libtensorflowlite_gpu_delegate.so)."""
    return delegate is not None and "gpu" in Path(delegate).name.lower()


def resolve_model_path(
    model: str | Path | None, edgetpu: bool = False, delegate: str | None = None
) -> Path:
    """The model file to load: ``model`` itself, or the best file in a model folder for the
    target (the Edge TPU, a GPU delegate, ONNX Runtime with a GPU provider, else the CPU or an
    NPU delegate)."""
    folder = DEFAULT_MODEL_DIR if model is None else Path(model)
    if folder.is_dir():
        names = (EDGETPU_MODEL_FILES if edgetpu else ()) + (
            GPU_MODEL_FILES if is_gpu_delegate(delegate) else MODEL_FILES
        )
        if not edgetpu and delegate is None and _onnx_gpu():
            names = (ONNX_MODEL_FILE, *names)
        for name in names:
            if (folder / name).is_file():
                return folder / name
        if model is None:
            raise DemoFileNotFoundError(
                f"no model given and none found in {folder}: pass --model PATH.tflite "
                "or export one with `segnet-tf export --int8`"
            )
        raise DemoFileNotFoundError(f"--model {folder}: folder has none of {', '.join(names)}")
    if model is None:
        raise DemoFileNotFoundError(
            f"no model given and the default {folder / MODEL_FILES[0]} does not exist: pass "
            "--model PATH.tflite or export one with `segnet-tf export --int8`"
        )
    if not folder.is_file():
        raise DemoFileNotFoundError(f"--model {folder}: file not found")
    return folder


@functools.cache
def litert() -> tuple[type, object, str]:
    """``(Interpreter, load_delegate, name)`` of the first TFLite runtime installed.

    LiteRT first (the supported wheel), then tflite_runtime (Coral's wheels), then full
    TensorFlow so the demo also runs on a workstation.
    """
    try:
        from ai_edge_litert import interpreter as lite

        return lite.Interpreter, lite.load_delegate, "ai_edge_litert"
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as lite

        return lite.Interpreter, lite.load_delegate, "tflite_runtime"
    except ImportError:
        pass
    try:
        import tensorflow as tf

        return tf.lite.Interpreter, tf.lite.experimental.load_delegate, "tensorflow.lite"
    except ImportError:
        raise DemoError(
            "no TFLite runtime found: pip install ai-edge-litert "
            "(or tflite-runtime on Coral boards)"
        ) from None


def _check_delegate_library(library: str, what: str, hint: str) -> None:
    # The runtimes' Delegate class prints a traceback from __del__ when its library fails to load,
    # so check with ctypes first and fail with one clear line instead.
    try:
        lib = ctypes.CDLL(library)
    except OSError as e:
        raise DemoError(f"{what} could not be loaded ({e}); {hint}") from None
    if not hasattr(lib, "tflite_plugin_create_delegate"):
        raise DemoError(f"{what} ({library}) is not a TFLite external delegate library; {hint}")


def load_delegates(edgetpu: bool = False, delegate: str | None = None) -> list:
    """Interpreter delegates: the Edge TPU and/or an external delegate ``.so`` (Jetson GPU)."""
    _, load_delegate, _ = litert()
    delegates = []
    if edgetpu:
        library = EDGETPU_LIBRARIES.get(platform.system(), EDGETPU_LIBRARIES["Linux"])
        _check_delegate_library(
            library,
            f"Edge TPU delegate {library}",
            "install the Edge TPU runtime (https://coral.ai/software/#edgetpu-runtime) "
            "or drop --edgetpu to run on the CPU",
        )
        delegates.append(load_delegate(library))
    if delegate is not None:
        if not Path(delegate).is_file():
            raise DemoFileNotFoundError(f"--delegate {delegate}: file not found")
        _check_delegate_library(
            delegate, f"--delegate {delegate}", "drop --delegate to use the CPU"
        )
        try:
            delegates.append(load_delegate(delegate))
        except (ValueError, RuntimeError) as e:
            raise DemoError(f"--delegate {delegate}: failed to create the delegate: {e}") from None
    return delegates


def _onnx_gpu() -> bool:
    from edge_demo.onnx_runtime import has_gpu_provider

    return has_gpu_provider()


def _tensor_quant(detail: dict) -> tuple[float, int] | None:
    scale, zero_point = detail["quantization"]
    return None if detail["dtype"] == np.float32 else (float(scale), int(zero_point))


class SegModel:
    """A TFLite segmentation model: BGR frames in, per-pixel class scores out.

    Everything that does not change per frame (tensor indices, the input quantisation table,
    the output parameters) is worked out once here, outside the camera loop.
    """

    def __init__(self, interpreter, path: Path, labels: Labels, device: str = "cpu") -> None:
        self.interpreter = interpreter
        self.path = path
        self.labels = labels
        self.device = device
        inp = interpreter.get_input_details()
        out = interpreter.get_output_details()
        if len(inp) != 1 or len(out) != 1:
            raise DemoError(f"{path}: expected 1 input and 1 output, got {len(inp)} and {len(out)}")
        inp, out = inp[0], out[0]
        in_shape, out_shape = tuple(inp["shape"]), tuple(out["shape"])
        if len(in_shape) != 4 or in_shape[0] != 1 or in_shape[3] != 3:
            raise DemoError(f"{path}: input shape {list(in_shape)} is not [1, H, W, 3]")
        if len(out_shape) != 4 or out_shape[0] != 1:
            raise DemoError(f"{path}: output shape {list(out_shape)} is not [1, H, W, num_classes]")
        self.input_size = (int(in_shape[1]), int(in_shape[2]))
        self.num_classes = int(out_shape[3])
        self.input_dtype = np.dtype(inp["dtype"])
        self.output_quant = _tensor_quant(out)
        in_quant = _tensor_quant(inp)
        self.input_lut = None if in_quant is None else input_lut(self.input_dtype, *in_quant)
        self._in_index = inp["index"]
        self._out_index = out["index"]
        self._buffer = np.empty((1, *self.input_size, 3), self.input_dtype)
        check_labels(labels, self)

    @property
    def precision(self) -> str:
        return self.input_dtype.name

    @property
    def runtime(self) -> str:
        return litert()[2]

    def preprocess(self, frame_bgr: np.ndarray) -> np.ndarray:
        return preprocess(frame_bgr, self.input_size, self.input_lut, out=self._buffer)

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Raw output ``[H, W, C]`` in the output tensor's own dtype."""
        self.interpreter.set_tensor(self._in_index, x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._out_index)[0]

    def scores(self, raw: np.ndarray) -> np.ndarray:
        """Real-valued class scores (logits) of a raw output."""
        return raw if self.output_quant is None else dequantise(raw, *self.output_quant)


def check_labels(labels: Labels, model: SegModel) -> None:
    """Fail early when ``labels.json`` was written for another model."""
    n = len(labels.class_names)
    if n != model.num_classes:
        raise DemoError(
            f"labels list {n} classes but {model.path.name} outputs {model.num_classes}: "
            "pass the labels.json exported with this model (--labels PATH)"
        )
    if labels.input_size is not None and labels.input_size != model.input_size:
        raise DemoError(
            f"labels.json input_size {list(labels.input_size)} does not match the model input "
            f"{list(model.input_size)} of {model.path.name}: pass the labels.json exported with it"
        )


def load_model(
    path: str | Path | None = None,
    labels: str | Path | None = None,
    threads: int | None = None,
    edgetpu: bool = False,
    delegate: str | None = None,
    provider: str = "auto",
    engine_cache: str | Path | None = None,
):
    """Load a ``.tflite`` or ``.onnx`` model (a file, a model folder, or the default) and its
    labels; ``provider`` and ``engine_cache`` are for ONNX Runtime."""
    model_path = resolve_model_path(path, edgetpu, delegate)
    if model_path.suffix.lower() == ".onnx":
        if edgetpu or delegate is not None:
            raise DemoError(
                f"--model {model_path}: an ONNX model runs on ONNX Runtime; --edgetpu and "
                "--delegate are for .tflite models"
            )
        from edge_demo.onnx_runtime import load_onnx_model

        return load_onnx_model(model_path, labels, threads, provider, engine_cache)
    content = model_path.read_bytes()
    if content[4:8] != b"TFL3":
        raise DemoError(f"--model {model_path}: not a TFLite flatbuffer (no TFL3 identifier)")
    compiled = EDGETPU_CUSTOM_OP in content
    if compiled and not edgetpu:
        raise DemoError(
            f"{model_path.name} is compiled for the Edge TPU: pass --edgetpu "
            "(or use model_int8.tflite on the CPU)"
        )
    label_set = load_labels(model_path.parent / "labels.json" if labels is None else labels)
    if threads is not None and threads < 1:
        raise DemoError(f"--threads must be >= 1, got {threads}")
    interpreter_cls, _, _ = litert()
    delegates = load_delegates(edgetpu, delegate)
    if edgetpu and not compiled:
        log.warning(
            "%s has no Edge TPU ops (not compiled by edgetpu_compiler): it runs on the CPU",
            model_path.name,
        )
    try:
        interpreter = interpreter_cls(
            model_path=str(model_path),
            experimental_delegates=delegates or None,
            num_threads=threads,
        )
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise DemoError(f"--model {model_path}: TFLite cannot load it: {e}") from None
    device = "edgetpu" if edgetpu else f"{threads} threads"
    return SegModel(interpreter, model_path, label_set, device)
