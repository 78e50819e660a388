"""Model side of the edge demo: quantisation by hand, the model contract, labels and delegates."""

import json
import typing

import cv2
import numpy as np
import pytest

from edge_demo import DemoError, DemoFileNotFoundError, runtime, tflite_backend
from edge_demo.contract import (
    class_map,
    dequantise,
    input_lut,
    preprocess,
    quantise,
    smooth_scores,
)
from edge_demo.runtime import load_model, resolve_model_path
from edge_demo.tflite_backend import litert


def test_quantise_rounds_half_to_even_and_saturates():
    # x / 2 = [0, 0.5, 1.25, 2.5, 127.5] -> round [0, 0, 1, 2, 128] -> + 3 -> int8 clip at 127
    q = quantise(np.array([0.0, 1.0, 2.5, 5.0, 255.0]), np.int8, 2.0, 3)
    np.testing.assert_array_equal(q, [3, 3, 4, 5, 127])
    assert q.dtype == np.int8
    # x / 2 = [-0.5, -1.5, -2.5, -3, -300] -> round [0, -2, -2, -3, -300] -> int8 clip at -128
    np.testing.assert_array_equal(
        quantise(np.array([-1.0, -3.0, -5.0, -6.0, -600.0]), np.int8, 2.0, 0), [0, -2, -2, -3, -128]
    )
    # x / 0.5 = [0, 2, 5, 10, 510] -> + 10 -> uint8 clip at 255
    np.testing.assert_array_equal(
        quantise(np.array([0.0, 1.0, 2.5, 5.0, 255.0]), np.uint8, 0.5, 10), [10, 12, 15, 20, 255]
    )


def test_quantise_rounds_as_tflites_own_quantize_kernel(edge_models):
    """The probe model quantises its float input with TFLite's own QUANTIZE kernel (scale 0.5,
    zero point 0) and reshapes the codes: ties (x / 0.5 = k + 0.5) and arbitrary values."""
    interpreter = litert()[0](model_path=str(edge_models["int8"].parent / "quantise_probe.tflite"))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero_point = out["quantization"]
    assert (scale, zero_point) == (0.5, 0)
    n = inp["shape"][1]
    ties = (np.arange(n) - n // 2) / 2 + 0.25  # x / 0.5 = -31.5, -30.5, ..., 32.5
    values = np.random.default_rng(0).uniform(-80, 80, (3, n))
    for x in (ties, *values):
        x = x.astype(np.float32)[None]
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        tflite = interpreter.get_tensor(out["index"]).reshape(x.shape)
        np.testing.assert_array_equal(quantise(x, np.int8, scale, zero_point), tflite)


def test_input_lut_of_our_int8_exports_is_pixel_minus_128():
    np.testing.assert_array_equal(input_lut(np.int8, 1.0, -128), np.arange(256) - 128)
    np.testing.assert_array_equal(input_lut(np.uint8, 0.0, 0), np.arange(256))
    with pytest.raises(DemoError, match="without quantisation"):
        input_lut(np.int8, 0.0, 0)


def test_preprocess_swaps_to_rgb_and_quantises_by_hand():
    bgr = [[[10, 20, 30], [40, 50, 60]], [[70, 80, 90], [250, 251, 252]]]
    frame = np.array(bgr, np.uint8)
    x = preprocess(frame, (2, 2), input_lut(np.int8, 2.0, 3))
    # RGB (30, 20, 10) / 2 + 3 = (18, 13, 8); (252, 251, 250) / 2 + 3 > 127 saturates
    expected = [[[18, 13, 8], [33, 28, 23]], [[48, 43, 38], [127, 127, 127]]]
    assert x.shape == (1, 2, 2, 3) and x.dtype == np.int8
    np.testing.assert_array_equal(x[0], expected)
    xf = preprocess(frame, (2, 2), None)
    assert xf.dtype == np.float32
    np.testing.assert_array_equal(xf[0], frame[..., ::-1])


def test_int8_model_quantises_input_with_its_own_params(edge_models, clip_frames, input_size):
    model = load_model(edge_models["int8"])
    scale, zero_point = model.interpreter.get_input_details()[0]["quantization"]
    assert model.input_dtype == np.int8 and scale > 0
    frame = clip_frames[0]
    rgb = cv2.resize(frame, input_size[::-1], interpolation=cv2.INTER_LINEAR)[..., ::-1]
    expected = np.clip(np.rint(rgb / scale) + zero_point, -128, 127).astype(np.int8)
    np.testing.assert_array_equal(model.preprocess(frame)[0], expected)
    # Our exporter's contract: scale ~1, zero point -128, i.e. pixel - 128.
    np.testing.assert_array_equal(expected, rgb.astype(np.int16) - 128)


def test_float_model_sees_rgb_pixels(edge_models, clip_frames, input_size):
    """The demo's output equals a plain interpreter fed RGB 0..255, so no channel or scale slip."""
    model = load_model(edge_models["float"])
    frame = cv2.resize(clip_frames[0], input_size[::-1])
    ours = model.scores(model.infer(model.preprocess(frame)))
    interpreter = litert()[0](model_path=str(edge_models["float"]))
    interpreter.allocate_tensors()
    interpreter.set_tensor(
        interpreter.get_input_details()[0]["index"], frame[None, ..., ::-1].astype(np.float32)
    )
    interpreter.invoke()
    reference = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]
    assert ours.shape == (*input_size, 11)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_int8_scores_track_float_scores(edge_models, clip_frames):
    fmodel, qmodel = load_model(edge_models["float"]), load_model(edge_models["int8"])
    frame = clip_frames[0]
    fscores = fmodel.scores(fmodel.infer(fmodel.preprocess(frame)))
    raw = qmodel.infer(qmodel.preprocess(frame))
    assert raw.dtype == np.int8
    qscores = qmodel.scores(raw)
    scale, zero = qmodel.output_quant
    np.testing.assert_allclose(qscores, (raw.astype(np.float32) - zero) * scale, rtol=1e-6)
    # an untrained network: the int8 scores follow the float ones, not to the last step
    assert np.corrcoef(qscores.ravel(), fscores.ravel())[0, 1] > 0.8
    # argmax on the raw int8 scores equals argmax on the dequantised ones
    np.testing.assert_array_equal(class_map(raw), class_map(qscores))


def test_dequantise_by_hand():
    raw = np.array([-128, 8, 127], np.int8)
    np.testing.assert_allclose(dequantise(raw, 0.5, 8), [-68.0, 0.0, 59.5])


def test_smooth_scores_is_an_ema_with_span_k():
    first = np.array([[2.0, 0.0]], np.float32)
    state = smooth_scores(None, first, k=3)  # alpha = 2 / (3 + 1) = 0.5
    np.testing.assert_array_equal(state, [[2.0, 0.0]])
    assert state is not first
    state = smooth_scores(state, np.array([[0.0, 4.0]]), k=3)
    np.testing.assert_array_equal(state, [[1.0, 2.0]])
    state = smooth_scores(state, np.array([[0.0, 4.0]]), k=3)
    np.testing.assert_array_equal(state, [[0.5, 3.0]])
    np.testing.assert_array_equal(class_map(state[None]), [[1]])
    # k = 1 keeps only the newest scores
    np.testing.assert_array_equal(smooth_scores(state, np.array([[7.0, 1.0]]), k=1), [[7.0, 1.0]])


def test_labels_that_do_not_match_the_model_are_rejected(edge_models, tmp_path):
    exported = json.loads((edge_models["int8"].parent / "labels.json").read_text())

    def _write_labels(path, **changes):
        path.write_text(json.dumps({**exported, **changes}))
        return path

    names = [f"c{i}" for i in range(12)]
    twelve = _write_labels(
        tmp_path / "twelve.json", class_names=names, colours=[[0, 0, 0]] * 12, num_classes=12
    )
    with pytest.raises(DemoError, match="labels list 12 classes but model_int8.tflite outputs 11"):
        load_model(edge_models["int8"], labels=twelve)
    size = _write_labels(tmp_path / "size.json", input_size=[96, 128])
    with pytest.raises(DemoError, match=r"input_size \[96, 128\] does not match .* \[48, 64\]"):
        load_model(edge_models["int8"], labels=size)
    colours = _write_labels(tmp_path / "colours.json", colours=[[0, 0, 0]] * 10)
    with pytest.raises(DemoError, match="11 class names but 10 RGB colours"):
        load_model(edge_models["int8"], labels=colours)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(DemoError, match="broken.json: not a valid labels file"):
        load_model(edge_models["int8"], labels=tmp_path / "broken.json")


def test_model_errors_are_clear(edge_models, tmp_path, monkeypatch):
    with pytest.raises(DemoFileNotFoundError, match="missing.tflite: file not found"):
        load_model(tmp_path / "missing.tflite")
    (tmp_path / "fake.tflite").write_bytes(b"\x00" * 64)
    with pytest.raises(DemoError, match="not a TFLite flatbuffer"):
        load_model(tmp_path / "fake.tflite")
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "model.tflite").write_bytes(edge_models["float"].read_bytes())
    with pytest.raises(DemoFileNotFoundError, match="labels.json not found.*--labels"):
        load_model(lonely)
    monkeypatch.setattr(runtime, "DEFAULT_MODEL_DIR", tmp_path / "models" / "segnet-lite-camvid")
    with pytest.raises(DemoFileNotFoundError, match="segnet-tf export --int8"):
        load_model(None)


def test_resolve_model_path_picks_the_file_for_the_target(tmp_path):
    for name in ("model.tflite", "model_int8.tflite", "model_edgetpu.tflite"):
        (tmp_path / name).write_bytes(b"")
    assert resolve_model_path(tmp_path).name == "model_int8.tflite"
    gpu = "/usr/lib/aarch64-linux-gnu/libtensorflowlite_gpu_delegate.so"
    assert resolve_model_path(tmp_path, delegate=gpu).name == "model.tflite"
    (tmp_path / "model_fp16.tflite").write_bytes(b"")
    assert resolve_model_path(tmp_path, delegate=gpu).name == "model_fp16.tflite"
    assert resolve_model_path(tmp_path, delegate="libvx_delegate.so").name == "model_int8.tflite"
    assert resolve_model_path(tmp_path, edgetpu=True).name == "model_edgetpu.tflite"
    (tmp_path / "model_edgetpu_edgetpu.tflite").write_bytes(b"")  # edgetpu_compiler's output
    assert resolve_model_path(tmp_path, edgetpu=True).name == "model_edgetpu_edgetpu.tflite"
    (tmp_path / "model_int8.tflite").unlink()
    assert resolve_model_path(tmp_path).name == "model.tflite"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DemoFileNotFoundError, match="folder has none of"):
        resolve_model_path(empty)
    (empty / "model_int8.tflite").write_bytes(b"")  # the shipped folder: no Edge TPU model
    with pytest.raises(
        DemoFileNotFoundError,
        match=r"--edgetpu: .*empty has no Edge TPU model \(model_edgetpu_edgetpu.tflite or "
        r"model_edgetpu.tflite\); export one with `segnet-tf export --target edgetpu`",
    ):
        resolve_model_path(empty, edgetpu=True)


def test_missing_edgetpu_delegate_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(tflite_backend.EDGETPU_LIBRARIES, "Linux", "libedgetpu-absent.so.1")
    monkeypatch.setattr(tflite_backend.platform, "system", lambda: "Linux")
    with pytest.raises(DemoError, match="Edge TPU delegate libedgetpu-absent.so.1 could not be"):
        tflite_backend.load_delegates(edgetpu=True)


def test_delegate_that_is_not_a_tflite_delegate_is_rejected(tmp_path):
    not_delegate = (
        np._core._multiarray_umath.__file__
    )  # a real shared library without the plugin API
    with pytest.raises(DemoError, match="is not a TFLite external delegate library"):
        tflite_backend.load_delegates(delegate=not_delegate)
    with pytest.raises(DemoFileNotFoundError, match="--delegate .*: file not found"):
        tflite_backend.load_delegates(delegate=str(tmp_path / "libgpu.so"))


def test_edgetpu_compiled_models_need_the_flag_and_the_flag_needs_them(
    edge_models, tmp_path, monkeypatch, caplog
):
    # edgetpu_compiler output holds the custom op's name; the demo reads it from the file
    compiled = tmp_path / "model_edgetpu.tflite"
    compiled.write_bytes(edge_models["int8"].read_bytes() + b"edgetpu-custom-op")
    labels = edge_models["int8"].parent / "labels.json"
    with pytest.raises(DemoError, match="model_edgetpu.tflite is compiled for the Edge TPU: pass"):
        load_model(compiled, labels=labels)
    monkeypatch.setattr(tflite_backend, "load_delegates", lambda *args: [])  # no Edge TPU here
    with caplog.at_level("WARNING"):
        model = load_model(edge_models["int8"], edgetpu=True)
    assert model.num_classes == 11
    assert "model_int8.tflite has no Edge TPU ops" in caplog.text


def test_the_tflite_onnx_and_web_view_models_are_what_the_loop_takes(edge_models):
    """One typed interface (contract.SegModel): camera_loop says it takes it, and each backend's
    model and the web view's shared model have every member of it."""
    from edge_demo.camera import camera_loop
    from edge_demo.contract import SegModel
    from edge_demo.onnx_backend import OnnxModel
    from edge_demo.server import SharedModel
    from edge_demo.tflite_backend import TFLiteModel

    assert typing.get_type_hints(camera_loop)["model"] is SegModel
    model = load_model(edge_models["int8"])
    assert isinstance(model, TFLiteModel)
    assert isinstance(model, SegModel) and isinstance(SharedModel(model), SegModel)
    members = {"path", "labels", "input_size", "num_classes", "precision", "runtime", "device"}
    members |= {"preprocess", "infer", "scores"}
    assert members == set(SegModel.__annotations__) | {
        name for name in vars(SegModel) if not name.startswith("_")
    }
    # the ONNX model's instance attributes: tests/edge_demo/test_onnx_runtime.py
    assert all(hasattr(OnnxModel, name) for name in members - set(SegModel.__annotations__))

    class NoScores:
        path, labels, input_size, num_classes = model.path, model.labels, (1, 1), 11
        precision = runtime = device = "x"

        def preprocess(self, frame): ...

        def infer(self, x): ...

    assert not isinstance(NoScores(), SegModel)
