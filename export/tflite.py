"""TFLite conversion and inspection: float32, float16 and full-integer int8.

Conversion starts from a SavedModel of the *lowered* network (see
:mod:`segnet_tf.export.lowering`), frozen by the converter, with builtin ops only:
``SELECT_TF_OPS`` is never enabled, because Flex ops need the full TF runtime on the board (and
TF 2.21's Python interpreter ships no Flex delegate to run them).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from segnet_tf.quiet import native_notices

PRECISIONS = ("float32", "float16", "int8")
_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}


def convert(
    saved_model_dir: Path,
    precision: str,
    representative: Callable[[], Iterable[list[np.ndarray]]] | None = None,
) -> bytes:
    """Convert a SavedModel; ``int8`` needs ``representative`` (a generator of ``[image]`` lists)
    and gives int8 input (pixel - 128) and int8 output, int8 end to end."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "int8" and representative is None:
        raise ValueError("int8 conversion needs calibration images")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


@dataclass(frozen=True)
class ModelInfo:
    """What a .tflite file contains: op histogram, custom ops, tensor types and shapes."""

    ops: dict[str, int]
    custom_ops: list[str]
    tensor_types: dict[str, int]
    activation_shapes: list[tuple[int, ...]]  # tensors computed at run time, not weights
    strided_slice_strides: list[tuple[int, ...]]

    @property
    def builtin_only(self) -> bool:
        return not self.custom_ops


def inspect_model(content: bytes) -> ModelInfo:
    """Read ops and tensors from the flatbuffer (works for models no interpreter could load)."""
    model = schema.Model.GetRootAs(content, 0)
    codes = []
    custom = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        name = _OP_NAMES.get(code, str(code))
        if name == "CUSTOM":
            name = f"CUSTOM:{oc.CustomCode().decode()}"
            custom.append(name)
        codes.append(name)
    ops: Counter[str] = Counter()
    types: Counter[str] = Counter()
    shapes = []
    strides = []
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        tensors = [graph.Tensors(t) for t in range(graph.TensorsLength())]
        for t in tensors:
            types[_TYPE_NAMES.get(t.Type(), str(t.Type()))] += 1
            if model.Buffers(t.Buffer()).DataLength() == 0:
                shapes.append(
                    tuple(int(d) for d in t.ShapeSignatureAsNumpy())
                    if t.ShapeSignatureLength()
                    else tuple(int(d) for d in t.ShapeAsNumpy())
                    if t.ShapeLength()
                    else ()
                )
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            name = codes[op.OpcodeIndex()]
            ops[name] += 1
            if name == "STRIDED_SLICE":
                stride_tensor = tensors[op.Inputs(3)]
                buf = model.Buffers(stride_tensor.Buffer()).DataAsNumpy()
                if isinstance(buf, np.ndarray):  # constant strides; 0 when computed at run time
                    strides.append(tuple(np.frombuffer(buf.tobytes(), np.int32).tolist()))
    return ModelInfo(dict(ops.most_common()), sorted(set(custom)), dict(types), shapes, strides)


def quantise(values: np.ndarray, dtype: np.dtype, scale: float, zero_point: int) -> np.ndarray:
    """TFLite's affine quantisation ``q = round(x / scale) + zero_point``, saturated to ``dtype``.

    ``x / scale`` in float32, rounded half to even as TFLite quantises a float tensor on x86 and
    aarch64: XNNPACK and the builtin QUANTIZE kernel (``optimized_ops.h`` ``AffineQuantize`` ->
    ``RoundToNearest`` -> ``vcvtnq_s32_f32``) round ties to even; only the reference kernel
    (``reference/quantize.h``, ``std::round``) rounds them away from zero. The demo keeps
    an identical copy (``edge_demo.contract.quantise``; it cannot import this module): tests hold
    the two to each other (``tests/export/test_contracts.py``) and to TFLite's own kernel.
    """
    x = np.asarray(values, np.float32) / np.float32(scale)
    info = np.iinfo(dtype)
    return np.clip(np.rint(x) + zero_point, info.min, info.max).astype(dtype)


class TFLiteModel:
    """A TFLite model run on raw RGB images, with its own input/output quantisation applied."""

    def __init__(self, content: bytes, num_threads: int | None = None):
        self.interpreter = Interpreter(model_content=content, num_threads=num_threads)
        with native_notices():
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    @property
    def input_size(self) -> tuple[int, int]:
        return int(self.input["shape"][1]), int(self.input["shape"][2])

    def quantize_input(self, image: np.ndarray) -> np.ndarray:
        dtype = self.input["dtype"]
        if dtype == np.float32:
            return image.astype(np.float32)[None]
        scale, zero = self.input["quantization"]
        return quantise(image, dtype, scale, zero)[None]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Dequantised class scores ``[H, W, C]`` of one ``[H, W, 3]`` image at the input size."""
        self.interpreter.set_tensor(self.input["index"], self.quantize_input(image))
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self.output["index"])[0]
        if self.output["dtype"] != np.float32:
            scale, zero = self.output["quantization"]
            out = (out.astype(np.float32) - zero) * scale
        return out

    def timed(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        out = self(image)
        return out, time.perf_counter() - start
