"""model.onnx: TensorRT's parser list, float16 survival, and parity with Keras on ONNX Runtime."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import segnet_tf
from segnet_tf.data import render_scene
from segnet_tf.export import ExportError, ExportOptions, export_model
from segnet_tf.export.cli import export_command
from segnet_tf.export.lowering import lower_model
from segnet_tf.export.onnx import (
    OnnxExportError,
    OnnxModel,
    check_tensorrt,
    convert,
    float16_copy,
    tensorrt_problems,
)
from segnet_tf.layers import FLOAT_STEP_GAIN

SIZE = (45, 61)


def quiet(*_):
    pass


def model_of(nodes, inputs, outputs, initializers=(), opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def tensor(name: str, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def const(name: str, values, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(values, dtype), name)


def test_reference_graph_is_rejected_naming_each_node():
    """What tf2onnx makes of the argmax network: MaxPool with Indices, then MaxUnpool."""
    window = {"kernel_shape": [2, 2], "strides": [2, 2]}
    nodes = [
        helper.make_node("MaxPool", ["x"], ["p", "i"], "enc_pool", **window),
        helper.make_node("MaxUnpool", ["p", "i"], ["y"], "dec_unpool", **window),
    ]
    model = model_of(nodes, [tensor("x", [1, 4, 8, 8])], [tensor("y", [1, 4, 8, 8])])
    problems = tensorrt_problems(model)
    assert problems == [
        "node 'enc_pool' (MaxPool): the Indices output is not supported",
        "node 'dec_unpool' (MaxUnpool): MaxUnpool is not supported",
    ]
    with pytest.raises(OnnxExportError, match=r"model.onnx: .*'enc_pool'.*\(and 1 more\)"):
        check_tensorrt(model.SerializeToString())


def test_types_opset_and_constant_axes_are_checked():
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], "shape"),
        helper.make_node("Slice", ["x", "starts", "ends", "s"], ["y"], "slice_axes_computed"),
        helper.make_node("Not", ["y"], ["z"], "not_of_float"),
    ]
    inits = [const("starts", [0], np.int64), const("ends", [1], np.int64)]
    model = model_of(
        nodes, [tensor("x", [2, 3])], [tensor("z", [1, 3], TensorProto.BOOL)], inits, opset=18
    )
    assert tensorrt_problems(model) == [
        "opset 18: TensorRT 8.5 parses opsets up to 17",
        "node 'slice_axes_computed' (Slice): axes 's' must be a constant",
        "node 'not_of_float' (Not): input 'y' is FLOAT, not BOOL",
    ]


def exact_unpool_graph() -> onnx.ModelProto:
    """The ``exact`` lowering's core: which positions hold their 2x2 window's maximum (Equal on a
    nearest 2x upsampling of MaxPool), the value kept there (Where), zero elsewhere."""
    nodes = [
        helper.make_node("MaxPool", ["x"], ["m"], "pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Concat", ["m"] * 4, ["m4"], "tile", axis=1),
        helper.make_node("DepthToSpace", ["m4"], ["up"], "up", blocksize=2),
        helper.make_node("Equal", ["x", "up"], ["is_max"], "eq"),
        helper.make_node("Where", ["is_max", "x", "zero"], ["y"], "where"),
    ]
    return model_of(
        nodes, [tensor("x", [1, 1, 2, 4])], [tensor("y", [1, 1, 2, 4])], [const("zero", 0.0)]
    )


def step_graph(gain: float) -> onnx.ModelProto:
    """The float32 TFLite's comparison: ``relu(1 - gain * (max - x))`` as a 1x1 depthwise conv."""
    nodes = [
        helper.make_node("Sub", ["max", "x"], ["gap"], "gap"),
        helper.make_node("Conv", ["gap", "w", "b"], ["lin"], "step", group=1),
        helper.make_node("Relu", ["lin"], ["y"], "relu"),
    ]
    inits = [const("max", 3.0), const("w", [[[[-gain]]]]), const("b", [1.0])]
    return model_of(nodes, [tensor("x", [1, 1, 1, 3])], [tensor("y", [1, 1, 1, 3])], inits)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # 0 * inf, on purpose
def test_float16_keeps_exact_equality_and_overflows_the_step_gain():
    # Ties and values float16 rounds: 1.0009765625 is 1 + 2^-10, float16's last bit above 1.
    x = np.array([[[[3.0, 3.0, 1.0, 1.0009765625], [2.0, 0.5, 1.0009765625, 0.0]]]], np.float32)
    exact = exact_unpool_graph()
    assert tensorrt_problems(exact) == []
    want = np.where(x == [[[[3, 3, 1.0009765625, 1.0009765625]] * 2]], x, 0)
    for model, dtype in ((exact, np.float32), (float16_copy(exact), np.float16)):
        got = ReferenceEvaluator(model).run(None, {"x": x.astype(dtype)})[0]
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, want.astype(dtype))

    step = step_graph(FLOAT_STEP_GAIN)
    values = np.array([[[[3.0, 2.0, 3.0 - 2**-20]]]], np.float32)
    got = ReferenceEvaluator(step).run(None, {"x": values})[0]
    np.testing.assert_array_equal(got, [[[[1, 0, 0]]]])  # float32: exactly EQUAL
    half = float16_copy(step)
    assert np.isinf(numpy_helper.to_array(half.graph.initializer[1])).all()  # -2^126 -> -inf
    got = ReferenceEvaluator(half).run(None, {"x": values.astype(np.float16)})[0]
    assert np.isnan(got[0, 0, 0, 0])  # the maximum itself: 0 * -inf


def test_onnx_flag_and_missing_toolchain(tmp_path, monkeypatch):
    assert "model.onnx" in CliRunner().invoke(export_command, ["--help"]).output
    (tmp_path / "m.keras").write_text("never read")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tf2onnx" else real(name, *a)
    )
    with pytest.raises(ExportError, match=r"--onnx: model.onnx needs tf2onnx: pip install"):
        export_model(ExportOptions(model=tmp_path / "m.keras", out=tmp_path / "o", onnx=True))
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------ the real model


@pytest.fixture(scope="module")
def onnx_export(trained_lite, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("onnx") / "exported"
    report = export_model(
        ExportOptions(model=trained_lite, out=out, onnx=True, parity_samples=12), log=quiet
    )
    return out, report


def held_out_scenes() -> np.ndarray:
    """Scenes the fixture never trained on (it saw seeds 0..63)."""
    return np.stack([render_scene(seed, SIZE)[0] for seed in range(1000, 1012)]).astype(np.float32)


def decided(logits: np.ndarray, margin: float) -> np.ndarray:
    """Pixels whose two best logits are more than ``margin`` apart."""
    top2 = np.sort(logits, -1)[..., -2:]
    return top2[..., 1] - top2[..., 0] > margin


@pytest.mark.slow
def test_onnx_artifact_is_tensorrt_ready_and_reported(onnx_export):
    out, report = onnx_export
    content = (out / "model.onnx").read_bytes()
    art = json.loads((out / "report.json").read_text())["artifacts"]["onnx"]
    assert art["size_bytes"] == len(content)
    assert art["extra"]["input_shape"] == [1, *SIZE, 3]  # static batch 1
    assert art["extra"]["output_shape"] == [1, *SIZE, 11]
    assert art["extra"]["opset"] == 17
    model = onnx.load_from_string(content)
    assert tensorrt_problems(model) == []
    ops = {n.op_type for n in model.graph.node}
    assert ops == set(art["ops"])
    assert {"Equal", "MaxPool", "DepthToSpace", "Conv"} <= ops  # the exact lowering
    assert not {"MaxUnpool", "ScatterND", "Mod", "ArgMax"} & ops
    assert all(len(n.output) == 1 for n in model.graph.node if n.op_type == "MaxPool")
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["scores"]
    parity = art["parity"]
    assert parity["pixel_agreement"] >= 0.998
    assert abs(parity["miou_delta_points"]) <= 0.5
    assert parity["float16_finite"] and parity["float16_pixel_agreement"] >= 0.97
    assert report["parity"]["models"]["onnx"] == parity


@pytest.mark.slow
def test_onnx_runtime_equals_keras_except_near_ties(onnx_export, trained_lite):
    out, _ = onnx_export
    images = held_out_scenes()
    want = segnet_tf.load_model(trained_lite).predict(images, verbose=0)
    runner = OnnxModel((out / "model.onnx").read_bytes())
    got = np.stack([runner(image) for image in images])
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
    agree = got.argmax(-1) == want.argmax(-1)
    assert agree.mean() >= 0.998
    # Convolution rounding differs by ~1e-5 between the runtimes: beyond a margin of 1e-3 the
    # class maps are identical.
    sure = decided(want, 1e-3)
    assert sure.mean() > 0.99
    np.testing.assert_array_equal(agree[sure], True)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_float16_graph_keeps_the_class_maps_and_the_step_gain_does_not(onnx_export, trained_lite):
    """TensorRT's --fp16, simulated: the exported graph in float16 (ONNX Runtime, and onnx's
    reference evaluator for one scene) keeps float32's classes; the float32 TFLite's 2^126 step
    gain would not survive."""
    out, _ = onnx_export
    images = held_out_scenes()
    exported = onnx.load(out / "model.onnx")
    full = OnnxModel(exported.SerializeToString())
    half = OnnxModel(float16_copy(exported).SerializeToString())
    want = np.stack([full(image) for image in images])
    got = np.stack([half(image) for image in images]).astype(np.float32)
    assert np.isfinite(got).all()
    assert (got.argmax(-1) == want.argmax(-1)).mean() >= 0.98
    # float16 keeps ~3 significant digits; where two values of a pooling window are closer than
    # that, the switch moves and a few logits nearby change by up to ~10 % of their spread (99.6 %
    # of pixels agree on an AVX2 CPU). Where float32's margin exceeds that, classes stay.
    spread = np.percentile(want, 99) - np.percentile(want, 1)
    sure = decided(want, 0.1 * spread)
    assert sure.mean() > 0.4
    assert (got.argmax(-1) == want.argmax(-1))[sure].mean() >= 0.999
    reference = ReferenceEvaluator(float16_copy(exported))
    one = reference.run(None, {"image": images[:1].astype(np.float16)})[0][0].astype(np.float32)
    assert (one.argmax(-1) == want[0].argmax(-1))[sure[0]].mean() >= 0.999

    step = lower_model(segnet_tf.load_model(trained_lite), "step-conv", gain=FLOAT_STEP_GAIN)
    stepped = onnx.load_from_string(convert(step))
    in_float32 = OnnxModel(stepped.SerializeToString())(images[0])
    assert (in_float32.argmax(-1) == want[0].argmax(-1)).mean() >= 0.998
    broken = ReferenceEvaluator(float16_copy(stepped))
    assert not np.isfinite(broken.run(None, {"image": images[:1].astype(np.float16)})[0]).all()
