"""model.onnx: TensorRT's parser list, float16 survival, and parity with Keras on ONNX Runtime."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import segnet_tf
from edge_demo.bundle import unpack_bundle
from edge_demo.contract import CLASSES_FILE, COLOURS_FILE, MODEL_FILES
from segnet_tf.data import CAMVID, render_scene
from segnet_tf.export import ExportError, ExportOptions, export_model
from segnet_tf.export.cli import export_command
from segnet_tf.export.lowering import lower_model
from segnet_tf.export.onnx import (
    ENGINE_FILE,
    SEGNET_MEAN,
    SEGNET_STD,
    OnnxExportError,
    OnnxModel,
    build_engine,
    check_tensorrt,
    convert,
    float16_copy,
    fold_segnet_normalisation,
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
        check_tensorrt(model.SerializeToString(), "model.onnx")


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


# --------------------------------------------------------- jetson-inference's segNet layout


def segnet_emulation(session, frame_rgb: np.ndarray) -> np.ndarray:
    """jetson-inference's segNet on one RGB frame, from its source (c/segNet.cpp ``Process`` and
    ``classify``, c/tensorConvert.cu ``gpuTensorNormMean``): nearest resize by truncation
    (``dx = (int)(x * in_w / out_w)``), ``(rgb * (1 / 255) - mean) / std`` band-sequential (NCHW),
    then the argmax over the class planes of ``[C, h, w]``, the first class on ties."""
    _, _, h, w = session.get_inputs()[0].shape
    in_h, in_w = frame_rgb.shape[:2]
    ys = (np.arange(h, dtype=np.float32) * np.float32(in_h / h)).astype(int)
    xs = (np.arange(w, dtype=np.float32) * np.float32(in_w / w)).astype(int)
    px = frame_rgb[ys][:, xs].astype(np.float32)
    mean, std = np.float32([0.485, 0.456, 0.406]), np.float32([0.229, 0.224, 0.225])
    tensor = ((px * np.float32(1.0 / 255.0) - mean) / std).transpose(2, 0, 1)[None]
    scores = session.run(["output_0"], {"input_0": np.ascontiguousarray(tensor)})[0][0]
    return scores.argmax(0)  # [C, h, w] -> [h, w]


def test_segnets_normalisation_folds_into_the_models_own():
    """Caffe's (p - m) / s after segNet's p = 255 (std x + mean) is one affine map: by hand, the
    first channel's mean (123.68 - 255 * 0.485) / (255 * 0.229) = 0.005 / 58.395 and its std
    58.393 / 58.395; and the folded model on segNet's tensor computes what the original does on
    raw pixels."""
    model = segnet_tf.build_model("segnet-lite", (*SIZE, 3), 11)
    lowered = lower_model(model, "exact", batch_size=1)
    fold_segnet_normalisation(lowered)
    layer = lowered.get_layer("normalize")
    mean = np.asarray(layer.mean).reshape(-1)
    std = np.sqrt(np.asarray(layer.variance)).reshape(-1)
    np.testing.assert_allclose(mean[0], 0.005 / 58.395, rtol=1e-4)
    np.testing.assert_allclose(std[0], 58.393 / 58.395, rtol=1e-6)
    np.testing.assert_allclose(mean[2], (103.939 - 255 * 0.406) / (255 * 0.225), rtol=1e-4)
    assert np.asarray(model.get_layer("normalize").mean).reshape(-1)[0] == np.float32(123.68)
    pixels = render_scene(7, SIZE)[0].astype(np.float32)[None]
    segnet = (pixels / 255 - np.float32(SEGNET_MEAN)) / np.float32(SEGNET_STD)
    np.testing.assert_allclose(lowered(segnet), model(pixels), rtol=1e-4, atol=1e-4)


def test_a_class_name_segnet_would_misread_is_refused_before_any_work(tmp_path):
    from segnet_tf.data import DatasetConfig
    from segnet_tf.export.labels import jetson_label_lines

    synset = DatasetConfig("s", ("road", "n01234567 cat"), ((0, 0, 0), (1, 2, 3)), void_id=None)
    with pytest.raises(ValueError, match="WordNet synset"):
        jetson_label_lines(synset)
    two_lines = DatasetConfig("t", ("road\nkerb",), ((0, 0, 0),), void_id=None)
    with pytest.raises(ValueError, match="a line under 500 bytes"):
        jetson_label_lines(two_lines)
    assert jetson_label_lines(CAMVID)[1][3] == "128 64 128"  # Road


def test_layout_needs_onnx(tmp_path):
    with pytest.raises(ExportError, match="--layout jetson-inference is the layout of model.onnx"):
        ExportOptions(model=tmp_path / "m.keras", out=tmp_path, layout="jetson-inference").formats()
    with pytest.raises(ExportError, match="--layout must be one of nhwc, jetson-inference"):
        ExportOptions(model=tmp_path / "m.keras", out=tmp_path, onnx=True, layout="nchw").formats()


STAND_IN_TRTEXEC = """#!/bin/sh
# stands in for TensorRT's trtexec: records its arguments, writes the engine, prints a summary
echo "$@" > "$(dirname "$0")/args.txt"
for a in "$@"; do case "$a" in --saveEngine=*) echo engine > "${a#--saveEngine=}";; esac; done
echo "&&&& RUNNING TensorRT.trtexec [TensorRT v8502] # trtexec $*"
echo "[I] Throughput: 412.5 qps"
echo "[I] GPU Compute Time: min = 2.1 ms, max = 3.9 ms, mean = 2.38 ms, median = 2.35 ms"
echo "&&&& PASSED TensorRT.trtexec [TensorRT v8502]"
"""


@pytest.fixture()
def stand_in_trtexec(tmp_path, monkeypatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "trtexec"
    script.write_text(STAND_IN_TRTEXEC)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def test_trtexec_builds_and_times_an_fp16_engine_when_installed(stand_in_trtexec, tmp_path):
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"")
    entry = build_engine(onnx_path, tmp_path)
    engine = tmp_path / ENGINE_FILE
    assert (stand_in_trtexec / "args.txt").read_text().split() == [
        f"--onnx={onnx_path}", "--fp16", f"--saveEngine={engine}"
    ]  # fmt: skip
    assert engine.is_file()
    assert entry == {
        "command": f"{stand_in_trtexec}/trtexec --onnx={onnx_path} --fp16 --saveEngine={engine}",
        "built": True,
        "file": ENGINE_FILE,
        "tensorrt_version": "8502",
        "throughput_qps": 412.5,
        "gpu_compute_ms_mean": 2.38,
        "gpu_compute_ms_median": 2.35,
    }
    (stand_in_trtexec / "trtexec").write_text("#!/bin/sh\necho '[E] parse failed' >&2\nexit 3\n")
    failed = build_engine(onnx_path, tmp_path / "elsewhere")
    assert failed["built"] is False and failed["reason"] == "trtexec exit 3: [E] parse failed"


def test_without_trtexec_the_report_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    entry = build_engine(tmp_path / "model.onnx", tmp_path)
    assert entry["built"] is False and entry["reason"].startswith("trtexec not found")


@pytest.fixture(scope="module")
def jetson_export(trained_lite, tmp_path_factory) -> tuple[Path, dict, Path]:
    """The trained fixture exported in segNet's layout, bundled, with a stand-in trtexec."""
    root = tmp_path_factory.mktemp("jetson")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    (bin_dir / "trtexec").write_text(STAND_IN_TRTEXEC)
    (bin_dir / "trtexec").chmod(0o755)
    out = root / "segnet-jetson"
    path = os.environ["PATH"]
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{path}"
    try:
        report = export_model(
            ExportOptions(
                model=trained_lite, out=out, onnx=True, layout="jetson-inference", bundle=True,
                parity_samples=6,
            ),
            log=quiet,
        )  # fmt: skip
    finally:
        os.environ["PATH"] = path
    return out, report, bin_dir


@pytest.mark.slow
def test_jetson_layout_is_what_segnet_loads(jetson_export):
    out, report, bin_dir = jetson_export
    model = onnx.load(out / MODEL_FILES["onnx"])
    assert [
        (i.name, [d.dim_value for d in i.type.tensor_type.shape.dim]) for i in model.graph.input
    ] == [("input_0", [1, 3, *SIZE])]
    assert [
        (o.name, [d.dim_value for d in o.type.tensor_type.shape.dim]) for o in model.graph.output
    ] == [("output_0", [1, 11, *SIZE])]
    assert tensorrt_problems(model) == []
    assert (out / CLASSES_FILE).read_text() == "".join(f"{n}\n" for n in CAMVID.class_names)
    colours = [
        tuple(int(v) for v in line.split())
        for line in (out / COLOURS_FILE).read_text().splitlines()
    ]
    assert colours == list(CAMVID.colours)
    art = json.loads((out / "report.json").read_text())["artifacts"]["onnx"]
    assert art["extra"]["layout"] == "jetson-inference"
    assert (art["extra"]["input_name"], art["extra"]["output_name"]) == ("input_0", "output_0")
    # the parity runner feeds segNet's tensor: the class maps still agree with Keras
    assert art["parity"]["pixel_agreement"] >= 0.998
    engine = art["extra"]["tensorrt_engine"]
    assert engine["built"] and engine["gpu_compute_ms_median"] == 2.35
    assert (out / ENGINE_FILE).is_file()
    assert (bin_dir / "args.txt").read_text().split()[1] == "--fp16"
    assert report["artifacts"]["onnx"]["extra"]["tensorrt_engine"] == engine


@pytest.mark.slow
def test_the_bundle_unpacks_to_the_board_files(jetson_export, tmp_path):
    out, _, _ = jetson_export
    bundle = out / "segnet-jetson.tar.gz"
    digest = (out / "segnet-jetson.tar.gz.sha256").read_text().split()
    assert digest[1] == bundle.name and len(digest[0]) == 64
    board = tmp_path / bundle.name
    board.write_bytes(bundle.read_bytes())
    folder = unpack_bundle(board, digest[0])
    assert folder == tmp_path / "segnet-jetson"
    names = {p.name for p in folder.iterdir()} - {".bundle-sha256"}
    assert names == {
        "model.tflite",
        "model.onnx",
        "labels.json",
        "classes.txt",
        "colors.txt",
        "report.json",
    }
    for name in names:
        assert (folder / name).read_bytes() == (out / name).read_bytes()


@pytest.mark.slow
def test_segnet_emulated_on_camvid_frames_agrees_with_keras(camvid):
    """The shipped CamVid model in segNet's layout, run as segNet runs it (numpy from its source,
    ONNX Runtime underneath), gives Keras' class map on >= 99.9 % of the pixels of val frames."""
    import onnxruntime as ort

    keras_model = segnet_tf.load_model(
        Path(__file__).resolve().parents[2] / "models" / "segnet-lite-camvid"
    )
    lowered = lower_model(keras_model, "exact", batch_size=1)
    content = convert(lowered, layout="jetson-inference")
    check_tensorrt(content, "model.onnx")
    session = ort.InferenceSession(content, providers=["CPUExecutionProvider"])
    lines = (camvid / "val.txt").read_text().split("\n")[:101:25]  # 5 frames across the drive
    agree = []
    for line in lines:
        frame = cv2.cvtColor(cv2.imread(str(camvid / line.split()[0])), cv2.COLOR_BGR2RGB)
        ours = keras_model.predict(frame[None].astype(np.float32), verbose=0)[0].argmax(-1)
        agree.append(np.mean(segnet_emulation(session, frame) == ours))
    assert len(agree) == 5
    assert np.mean(agree) >= 0.999, agree
