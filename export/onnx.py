"""ONNX export of the lowered network, for TensorRT (Jetson GPUs) and ONNX Runtime.

TensorRT's ONNX parser cannot take SegNet's reference graph: tf2onnx turns
``tf.nn.max_pool_with_argmax`` into MaxPool with its ``Indices`` output and ``tf.scatter_nd`` into
ScatterND, and TensorRT's parser rejects MaxPool's indices output and has no MaxUnpool
(onnx-tensorrt ``docs/operators.md``). The lowered network (:mod:`segnet_tf.export.lowering`) has
neither. Its ``exact`` lowering is the one exported: its Equal/Where comparison holds in
TensorRT's FP16 mode, whereas the float32 TFLite's step gain of 2^126 is infinite in float16 and
turns every tie into ``inf * 0 = nan`` (:func:`float16_copy` shows it without a GPU).

The graph is checked against :data:`TENSORRT_OPS`, the parser's support matrix for TensorRT 8.5
(JetPack 5.1; later releases only add to it), before anything is written; where ``trtexec`` is
installed, it builds and times an FP16 engine of the file (:func:`build_engine`).

Two layouts. ``nhwc`` (the default) is the TFLite files' contract: ``image`` ``[1, H, W, 3]`` raw
RGB 0..255, ``scores`` ``[1, H, W, C]``. ``jetson-inference`` is what that project's segNet feeds
and reads (``c/segNet.cpp``, ``Process`` and ``classify``): ``input_0`` ``[1, 3, H, W]`` of
``(rgb / 255 - mean) / std`` with ImageNet's :data:`SEGNET_MEAN` and :data:`SEGNET_STD`, and
``output_0`` ``[1, C, H, W]``. Our models normalise raw pixels inside, ``(p - m) / s`` with the
Caffe means; segNet's tensor is ``p = 255 (std x + mean)``, so the composite is again one affine
map of the same form, ``(x - (m - 255 mean) / (255 std)) / (s / (255 std))``, and
:func:`fold_segnet_normalisation` gives the model's own normalisation layer those constants: no
op is added, and none is folded into the first convolution (whose zero padding would then pad
with the wrong value at the borders).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_demo.contract import MODEL_FILES

ONNX_OPSET = 17  # the newest opset TensorRT 8.5's parser takes
TENSORRT_VERSION = "8.5"
INSTALL_HINT = "pip install 'segnet-tf[onnx]' (tf2onnx, onnx, onnxruntime)"
INPUT_NAME, OUTPUT_NAME = "image", "scores"  # as in the SavedModel's serving signature
LAYOUTS = ("nhwc", "jetson-inference")
JETSON_INPUT, JETSON_OUTPUT = "input_0", "output_0"  # segNet's default --input-blob/--output-blob
# segNet's ONNX preprocessing (c/segNet.cpp: cudaTensorNormMeanRGB, range [0, 1], RGB)
SEGNET_MEAN = (0.485, 0.456, 0.406)
SEGNET_STD = (0.229, 0.224, 0.225)
ENGINE_FILE = "model_fp16.engine"  # trtexec's FP16 engine: tied to one TensorRT and one GPU
ENGINE_TIMEOUT_S = 3600  # building takes minutes on a Jetson

_FP = ("FLOAT", "FLOAT16")
_ANY = ("FLOAT", "FLOAT16", "INT32", "INT8", "BOOL")
# Element types TensorRT 8.5's ONNX parser takes per op: the "Supported: Y" rows of onnx-tensorrt
# docs/operators.md, its TensorRT 8.5 revision (commit 6d0ab7b of github.com/onnx/onnx-tensorrt).
# An op missing here is unsupported, e.g. MaxUnpool, ConvInteger, IsInf, Sequence*, Unique.
TENSORRT_OPS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        "Acos Acosh Asin Asinh Atan Atanh BatchNormalization Ceil Celu Cos Cosh CumSum Dropout "
        "Einsum Erf Exp Floor GridSample GRU ImageScaler InstanceNormalization Log LogSoftmax LRN "
        "LSTM LpNormalization MatMul MeanVarianceNormalization NonMaxSuppression NonZero Pow "
        "RandomNormal RandomNormalLike RandomUniform RandomUniformLike Reciprocal ReduceL1 "
        "ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum "
        "ReduceSumSquare Resize ReverseSequence RNN RoiAlign Scan Sin Sinh Softmax Sqrt Tan TopK "
        "Upsample ArgMax ArgMin".split(),
        _FP,
    ),
    **dict.fromkeys(
        "Abs Add Div Equal Greater GreaterOrEqual IsNaN Less LessOrEqual Max Mean Min Mod Mul Neg "
        "Range Shrink Sub Sum DepthToSpace SpaceToDepth".split(),
        (*_FP, "INT32"),
    ),
    **dict.fromkeys(
        "AveragePool Pad".split(),
        (*_FP, "INT8", "INT32"),
    ),
    **dict.fromkeys(
        "Clip Conv ConvTranspose Elu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool HardSigmoid "
        "HardSwish LeakyRelu LpPool MaxPool ParametricSoftplus PRelu Relu Round ScaledTanh Selu "
        "Sigmoid Softplus Softsign Tanh ThresholdedRelu".split(),
        (*_FP, "INT8"),
    ),
    **dict.fromkeys(
        "Gather GatherElements GatherND".split(),
        (*_FP, "INT8", "INT32", "BOOL"),
    ),
    **dict.fromkeys(
        "Scatter ScatterElements ScatterND Sign".split(),
        (*_FP, "INT8", "INT32"),
    ),
    **dict.fromkeys(
        "Expand EyeLike Flatten If Loop OneHot Split Tile Where".split(),
        (*_FP, "INT32", "BOOL"),
    ),
    **dict.fromkeys(
        "Cast Concat Constant Identity Reshape Shape Size Slice Squeeze Transpose Trilu "
        "Unsqueeze".split(),
        _ANY,
    ),
    **dict.fromkeys("And Not Or Xor".split(), ("BOOL",)),
    "ConstantOfShape": ("FLOAT",),
    "DequantizeLinear": ("INT8",),
    "QuantizeLinear": _FP,
}
# TensorRT narrows these to the type in the value (with clamping): "limited support".
_NARROWED = {"INT64": "INT32", "DOUBLE": "FLOAT"}
_RESIZE_MODES = ("nearest", "linear")
_AXES_INPUT = {"Slice": 3, "Squeeze": 1, "Unsqueeze": 1}  # which input holds the axes


class OnnxExportError(ValueError):
    """The ONNX graph would not run where it is meant to (missing packages, unsupported ops)."""


@dataclass(frozen=True)
class OnnxInfo:
    """What a .onnx file contains: op histogram, opset and its input and output shapes."""

    ops: dict[str, int]
    opset: int
    tensor_types: dict[str, int]  # of every tensor the graph computes or holds, by element type
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_name: str
    output_name: str


def require_onnx() -> None:
    """Fail with the install line when the ONNX toolchain is missing."""
    import importlib.util

    missing = [m for m in ("tf2onnx", "onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise OnnxExportError(f"{MODEL_FILES['onnx']} needs {', '.join(missing)}: {INSTALL_HINT}")


def convert(lowered, opset: int = ONNX_OPSET, layout: str = "nhwc") -> bytes:
    """tf2onnx of a lowered Keras model with a static batch of 1: ``image`` -> ``scores``, or in
    the ``jetson-inference`` layout ``input_0`` -> ``output_0``, both NCHW (tf2onnx then drops
    the transposes it would put around the NHWC graph's ends)."""
    import logging

    import tensorflow as tf
    import tf2onnx

    require_onnx()
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    shape = (1, *lowered.inputs[0].shape[1:])
    jetson = layout == "jetson-inference"
    if jetson:
        fold_segnet_normalisation(lowered)
    name = JETSON_INPUT if jetson else INPUT_NAME
    spec = (tf.TensorSpec(shape, tf.float32, name=name),)
    nchw = {"inputs_as_nchw": [name], "outputs_as_nchw": lowered.output_names} if jetson else {}
    proto, _ = tf2onnx.convert.from_keras(lowered, input_signature=spec, opset=opset, **nchw)
    rename_output(proto, JETSON_OUTPUT if jetson else OUTPUT_NAME)
    return proto.SerializeToString()


def fold_segnet_normalisation(lowered) -> None:
    """Give the model's input normalisation segNet's tensor ``(rgb / 255 - mean) / std`` in place
    of raw pixels: new constants for the same layer, exactly the composite map (module docstring).

    ``lowered`` must be a rebuilt copy (as :func:`segnet_tf.export.lowering.lower_model` makes):
    its layer is changed in place.
    """
    import keras

    first = [layer for layer in lowered.layers if isinstance(layer, keras.layers.Normalization)]
    if not first or lowered.layers.index(first[0]) != 1:
        raise OnnxExportError(
            "--layout jetson-inference: the model does not start with its input normalisation "
            "(a keras Normalization layer), so segNet's cannot be folded into it"
        )
    layer = first[0]
    ours_mean = np.asarray(layer.mean, np.float64)
    ours_std = np.sqrt(np.asarray(layer.variance, np.float64))
    scale = 255.0 * np.asarray(SEGNET_STD).reshape(ours_mean.shape)
    offset = 255.0 * np.asarray(SEGNET_MEAN).reshape(ours_mean.shape)
    layer.mean = keras.ops.convert_to_tensor((ours_mean - offset) / scale, "float32")
    layer.variance = keras.ops.convert_to_tensor((ours_std / scale) ** 2, "float32")


def segnet_input(image_rgb: np.ndarray) -> np.ndarray:
    """segNet's input tensor ``[1, 3, H, W]`` of an RGB image at the network's size (0..255)."""
    x = np.asarray(image_rgb, np.float32) * np.float32(1.0 / 255.0)
    x = (x - np.float32(SEGNET_MEAN)) / np.float32(SEGNET_STD)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def rename_output(model, name: str) -> None:
    """Give the graph's single output ``name`` (tf2onnx names it after the last layer)."""
    old = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [name if o == old else o for o in node.output]
        node.input[:] = [name if i == old else i for i in node.input]
    model.graph.output[0].name = name


def _shape(value_info) -> tuple[int, ...]:
    return tuple(d.dim_value if d.HasField("dim_value") else -1 for d in _dims(value_info))


def _dims(value_info):
    return value_info.type.tensor_type.shape.dim


def _type_names() -> dict[int, str]:
    import onnx

    return {v: k for k, v in onnx.TensorProto.DataType.items()}


def element_types(model) -> dict[str, str]:
    """Element type name of every named tensor: inputs, initializers, computed values."""
    import onnx

    names = _type_names()
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {t.name: names[t.data_type] for t in graph.initializer}
    for vi in (*graph.input, *graph.value_info, *graph.output):
        types[vi.name] = names[vi.type.tensor_type.elem_type]
    for node in graph.node:  # Constant nodes' outputs, in case inference left any out
        for attr in node.attribute:
            if node.op_type == "Constant" and attr.type == onnx.AttributeProto.TENSOR:
                types.setdefault(node.output[0], names[attr.t.data_type])
    return types


def inspect_model(content: bytes) -> OnnxInfo:
    import onnx

    model = onnx.load_from_string(content)
    types = element_types(model)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return OnnxInfo(
        ops=dict(Counter(n.op_type for n in model.graph.node).most_common()),
        opset=int(opset),
        tensor_types=dict(Counter(types.values()).most_common()),
        input_shape=_shape(model.graph.input[0]),
        output_shape=_shape(model.graph.output[0]),
        input_name=model.graph.input[0].name,
        output_name=model.graph.output[0].name,
    )


def tensorrt_problems(model) -> list[str]:
    """Why TensorRT's ONNX parser would reject ``model``: one line per offending node, naming it.

    Checks each op against :data:`TENSORRT_OPS`, the element type of each of its inputs, and the
    parser's stated restrictions that an exporter can meet or miss (MaxPool's indices output,
    constant ``axes``, Resize modes).
    """
    import onnx

    problems = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset > ONNX_OPSET:
        problems.append(f"opset {opset}: TensorRT {TENSORRT_VERSION} parses opsets up to 17")
    types = element_types(model)
    constants = {t.name for t in model.graph.initializer} | {
        n.output[0] for n in model.graph.node if n.op_type == "Constant"
    }
    for node in model.graph.node:
        where = f"node {node.name or '(unnamed)'!r} ({node.op_type})"
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{where}: custom domain {node.domain!r}")
            continue
        allowed = TENSORRT_OPS.get(node.op_type)
        if allowed is None:
            problems.append(f"{where}: {node.op_type} is not supported")
            continue
        for name in filter(None, node.input):
            dtype = types.get(name)
            if dtype is not None and dtype not in allowed and _NARROWED.get(dtype) not in allowed:
                problems.append(f"{where}: input {name!r} is {dtype}, not {'/'.join(allowed)}")
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "MaxPool" and len([o for o in node.output if o]) > 1:
            problems.append(f"{where}: the Indices output is not supported")
        index = _AXES_INPUT.get(node.op_type)
        axes = node.input[index] if index is not None and len(node.input) > index else ""
        if axes and axes not in constants:
            problems.append(f"{where}: axes {axes!r} must be a constant")
        if node.op_type == "Resize" and attrs.get("mode", b"nearest").decode() not in _RESIZE_MODES:
            problems.append(f"{where}: mode {attrs['mode'].decode()!r} is not supported")
    return problems


def check_tensorrt(content: bytes, filename: str) -> None:
    import onnx

    problems = tensorrt_problems(onnx.load_from_string(content))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise OnnxExportError(
            f"{filename}: TensorRT {TENSORRT_VERSION}'s ONNX parser would reject "
            f"{problems[0]}{more}"
        )


def float16_copy(model):
    """The graph computed in float16: every float32 initializer, constant, cast and input/output
    converted by a plain cast, as TensorRT's ``--fp16`` stores its tensors (the ``[1, H, W, 3]``
    input then takes float16 pixels). Values beyond float16's range become ``inf``, unclamped."""
    import onnx
    from onnx import TensorProto, numpy_helper

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph

    def half(tensor):
        if tensor.data_type == TensorProto.FLOAT:
            with np.errstate(over="ignore"):
                values = numpy_helper.to_array(tensor).astype(np.float16)
            tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))

    for tensor in graph.initializer:
        half(tensor)
    for value in (*graph.input, *graph.output):
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            value.type.tensor_type.elem_type = TensorProto.FLOAT16
    del graph.value_info[:]
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
            elif attr.type == onnx.AttributeProto.TENSOR:
                half(attr.t)
    onnx.checker.check_model(copy)
    return copy


class OnnxModel:
    """A .onnx segmentation model on ONNX Runtime's CPU provider: ``[H, W, 3]`` RGB 0..255 in,
    class scores ``[H, W, C]`` out (float32 or float16, as the graph's input), in either
    layout (the ``jetson-inference`` one gets segNet's preprocessing, :func:`segnet_input`)."""

    def __init__(self, content: bytes, num_threads: int | None = None, layout: str = "nhwc"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(content, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0]
        self.dtype = np.float16 if self.input.type == "tensor(float16)" else np.float32
        self.jetson = layout == "jetson-inference"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self.jetson:
            x = segnet_input(image).astype(self.dtype)
            return self.session.run(None, {self.input.name: x})[0][0].transpose(1, 2, 0)
        x = np.asarray(image, np.float32).astype(self.dtype)[None]
        return self.session.run(None, {self.input.name: x})[0][0]

    def timed(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        out = self(image)
        return out, time.perf_counter() - start


def runtime_name() -> str:
    import onnxruntime as ort

    return f"onnxruntime {ort.__version__} CPUExecutionProvider"


def build(lowered, path: Path, layout: str = "nhwc") -> tuple[bytes, OnnxInfo]:
    """Convert, check for TensorRT and write ``path``; returns the file's bytes and contents."""
    try:
        content = convert(lowered, layout=layout)
    except OnnxExportError:
        raise
    except Exception as e:
        raise OnnxExportError(f"{path.name}: tf2onnx conversion failed: {e}") from e
    check_tensorrt(content, path.name)
    path.write_bytes(content)
    return content, inspect_model(content)


def build_engine(onnx_path: Path, out_dir: Path, trtexec: str | None = None) -> dict:
    """Build and time an FP16 TensorRT engine of ``onnx_path`` with ``trtexec`` when it is
    installed (on PATH, or JetPack's ``/usr/src/tensorrt/bin``); the report entry either way."""
    trtexec = trtexec or shutil.which("trtexec") or shutil.which("/usr/src/tensorrt/bin/trtexec")
    if trtexec is None:
        return {
            "built": False,
            "reason": "trtexec not found (TensorRT: on PATH, or /usr/src/tensorrt/bin on a Jetson)",
        }
    command = [trtexec, f"--onnx={onnx_path}", "--fp16", f"--saveEngine={out_dir / ENGINE_FILE}"]
    entry: dict = {"command": " ".join(command)}
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=ENGINE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return {**entry, "built": False, "reason": f"trtexec did not finish: {e}"}
    log = done.stdout + done.stderr
    if done.returncode != 0 or not (out_dir / ENGINE_FILE).is_file():
        tail = " | ".join(log.strip().splitlines()[-3:])
        return {**entry, "built": False, "reason": f"trtexec exit {done.returncode}: {tail}"}
    return {**entry, "built": True, "file": ENGINE_FILE, **trtexec_timings(log)}


def trtexec_timings(log: str) -> dict:
    """TensorRT's version, throughput and GPU compute time from trtexec's performance summary."""
    found: dict = {}
    if version := re.search(r"TensorRT v(\d+)", log):
        found["tensorrt_version"] = version.group(1)
    if qps := re.search(r"Throughput: ([\d.]+) qps", log):
        found["throughput_qps"] = float(qps.group(1))
    if gpu := re.search(r"GPU Compute Time: (.*)", log):
        stats = dict(re.findall(r"(\w+) = ([\d.]+) ms", gpu.group(1)))
        for k in ("mean", "median"):
            if k in stats:
                found[f"gpu_compute_ms_{k}"] = float(stats[k])
    return found
