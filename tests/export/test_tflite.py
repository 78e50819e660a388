"""TFLite inspection and running, without converting anything: a flatbuffer built by hand and
the exporter-made models committed for the demo's tests."""

from __future__ import annotations

from pathlib import Path

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from segnet_tf.export.edgetpu import edgetpu_problems
from segnet_tf.export.tflite import TFLiteModel, convert, inspect_model

FIXTURES = Path(__file__).resolve().parents[1] / "edge_demo" / "fixtures"
Op = schema.BuiltinOperator


def tensor(shape, dtype, buffer=0, signature=None):
    t = schema.TensorT()
    t.shape, t.type, t.buffer = list(shape), dtype, buffer
    t.shapeSignature = None if signature is None else list(signature)
    return t


def buffer(data: bytes | None = None):
    b = schema.BufferT()
    b.data = None if data is None else list(data)
    return b


def opcode(code: int, custom: str | None = None):
    oc = schema.OperatorCodeT()
    oc.builtinCode, oc.deprecatedBuiltinCode = code, min(code, 127)
    oc.customCode = custom
    return oc


def operator(index: int, inputs, outputs):
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = index, list(inputs), list(outputs)
    return op


def hand_built_model() -> bytes:
    """conv (int8) -> custom op (float32) -> strided slice with strides (1, 2, 2, 1), whose output
    has a dynamic batch."""
    int8, f32, i32 = schema.TensorType.INT8, schema.TensorType.FLOAT32, schema.TensorType.INT32
    graph = schema.SubGraphT()
    graph.tensors = [
        tensor((1, 8, 8, 3), int8),  # 0 input
        tensor((4, 3, 3, 3), int8, buffer=1),  # 1 weights
        tensor((1, 8, 8, 4), int8),  # 2 conv output
        tensor((1, 8, 8, 4), f32),  # 3 custom output
        tensor((4,), i32, buffer=2),  # 4 begin
        tensor((4,), i32, buffer=3),  # 5 end
        tensor((4,), i32, buffer=4),  # 6 strides
        tensor((1, 4, 4, 4), f32, signature=(-1, 4, 4, 4)),  # 7 slice output
    ]
    graph.inputs, graph.outputs = [0], [7]
    graph.operators = [
        operator(0, [0, 1], [2]),
        operator(1, [2], [3]),
        operator(2, [3, 4, 5, 6], [7]),
    ]
    model = schema.ModelT()
    model.version = 3
    model.operatorCodes = [
        opcode(Op.CONV_2D),
        opcode(Op.CUSTOM, "MyUnpool"),
        opcode(Op.STRIDED_SLICE),
    ]
    model.subgraphs = [graph]
    model.buffers = [
        buffer(),
        buffer(bytes(108)),
        buffer(np.zeros(4, np.int32).tobytes()),
        buffer(np.array([1, 8, 8, 4], np.int32).tobytes()),
        buffer(np.array([1, 2, 2, 1], np.int32).tobytes()),
    ]
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_inspect_model_reads_a_hand_built_flatbuffer():
    info = inspect_model(hand_built_model())
    assert info.ops == {"CONV_2D": 1, "CUSTOM:MyUnpool": 1, "STRIDED_SLICE": 1}
    assert info.custom_ops == ["CUSTOM:MyUnpool"] and not info.builtin_only
    assert info.tensor_types == {"int8": 3, "float32": 2, "int32": 3}
    # tensors without data, computed at run time; the signature's -1 wins over the shape's 1
    assert info.activation_shapes == [(1, 8, 8, 3), (1, 8, 8, 4), (1, 8, 8, 4), (-1, 4, 4, 4)]
    assert info.strided_slice_strides == [(1, 2, 2, 1)]
    assert [p.split(" (")[0] for p in edgetpu_problems(info)] == [
        "op CUSTOM:MyUnpool",
        "non-integer tensors {'float32': 2}: the Edge TPU needs full int8",
        "tensor shape",
        "STRIDED_SLICE with strides",
    ]


def test_inspect_model_of_the_exporters_int8_model():
    content = (FIXTURES / "model_int8.tflite").read_bytes()
    info = inspect_model(content)
    assert info.builtin_only and set(info.tensor_types) <= {"int8", "int32"}
    assert info.activation_shapes[0] == (1, 48, 64, 3)
    assert (1, 48, 64, 11) in info.activation_shapes
    interpreter = Interpreter(model_content=content)
    ops = [op["op_name"] for op in interpreter._get_ops_details()]
    assert sum(info.ops.values()) == len(ops) and set(info.ops) == set(ops)
    # the CPU model's step lowering rearranges channels: the Edge TPU cannot run it
    assert any("DEPTH_TO_SPACE" in p for p in edgetpu_problems(info))


def test_tflite_model_quantises_in_and_dequantises_out():
    content = (FIXTURES / "model_int8.tflite").read_bytes()
    model = TFLiteModel(content)
    assert model.input_size == (48, 64)
    (scale, zero), (out_scale, out_zero) = model.input["quantization"], model.output["quantization"]
    assert (scale, zero) == (pytest.approx(1.0), -128)  # the exporter's int8 input: pixel - 128
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3)).astype(np.float32)
    x = model.quantize_input(image)
    assert x.dtype == np.int8 and x.shape == (1, 48, 64, 3)
    np.testing.assert_array_equal(x[0], image - 128)
    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    interpreter.set_tensor(model.input["index"], x)
    interpreter.invoke()
    raw = interpreter.get_tensor(model.output["index"])[0]
    np.testing.assert_array_equal(model(image), (raw.astype(np.float32) - out_zero) * out_scale)
    scores, seconds = model.timed(image)
    assert scores.shape == (48, 64, 11) and seconds > 0


def test_float_model_takes_the_pixels_as_they_are():
    model = TFLiteModel((FIXTURES / "model.tflite").read_bytes())
    image = np.full((48, 64, 3), 200, np.uint8)
    x = model.quantize_input(image)
    assert x.dtype == np.float32 and x.shape == (1, 48, 64, 3) and (x == 200).all()


def test_convert_rejects_bad_arguments_before_loading_anything(tmp_path):
    with pytest.raises(ValueError, match=r"precision must be one of .*got 'int4'"):
        convert(tmp_path / "missing", "int4")
    with pytest.raises(ValueError, match="int8 conversion needs calibration images"):
        convert(tmp_path / "missing", "int8")
