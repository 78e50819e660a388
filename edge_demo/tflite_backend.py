"""TFLite backend of the demo: the runtime (LiteRT, tflite_runtime, or TensorFlow's), delegates
(the Edge TPU, an external ``.so``) and :class:`TFLiteModel`.

The model contract (tensor layouts, quantisation, labels) is :mod:`edge_demo.contract`'s.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import platform
from pathlib import Path

import numpy as np

from edge_demo import DemoError, DemoFileNotFoundError
from edge_demo.contract import (
    MODEL_FILES,
    Labels,
    check_labels,
    dequantise,
    input_lut,
    load_labels,
    preprocess,
)
from edge_demo.quiet import native_output_held

log = logging.getLogger(__name__)

# The op edgetpu_compiler replaces the mapped graph with; only the Edge TPU delegate runs it.
EDGETPU_CUSTOM_OP = b"edgetpu-custom-op"
# The names pycoral loads; the Edge TPU runtime installs exactly these.
EDGETPU_LIBRARIES = {
    "Linux": "libedgetpu.so.1",
    "Darwin": "libedgetpu.1.dylib",
    "Windows": "edgetpu.dll",
}


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


def _tensor_quant(detail: dict) -> tuple[float, int] | None:
    scale, zero_point = detail["quantization"]
    return None if detail["dtype"] == np.float32 else (float(scale), int(zero_point))


class TFLiteModel:
    """A TFLite segmentation model (:class:`edge_demo.contract.SegModel`).

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


def load_tflite_model(
    model_path: Path,
    labels_path: Path,
    threads: int | None = None,
    edgetpu: bool = False,
    delegate: str | None = None,
    verbose: bool = False,
) -> TFLiteModel:
    """Load ``model_path`` on the TFLite runtime with its delegates; the runtime's own INFO lines
    (XNNPACK) are held back unless ``verbose``."""
    content = model_path.read_bytes()
    if content[4:8] != b"TFL3":
        raise DemoError(f"--model {model_path}: not a TFLite flatbuffer (no TFL3 identifier)")
    compiled = EDGETPU_CUSTOM_OP in content
    if compiled and not edgetpu:
        raise DemoError(
            f"{model_path.name} is compiled for the Edge TPU: pass --edgetpu "
            f"(or use {MODEL_FILES['int8']} on the CPU)"
        )
    labels = load_labels(labels_path)
    interpreter_cls, _, _ = litert()
    delegates = load_delegates(edgetpu, delegate)
    if edgetpu and not compiled:
        log.warning(
            "%s has no Edge TPU ops (not compiled by edgetpu_compiler): it runs on the CPU",
            model_path.name,
        )
    try:
        with native_output_held(verbose):
            interpreter = interpreter_cls(
                model_path=str(model_path),
                experimental_delegates=delegates or None,
                num_threads=threads,
            )
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise DemoError(f"--model {model_path}: TFLite cannot load it: {e}") from None
    device = "edgetpu" if edgetpu else f"{threads} threads"
    return TFLiteModel(interpreter, model_path, labels, device)
