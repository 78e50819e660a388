"""Prediction files, overlays and Bayesian SegNet's Monte Carlo sampling."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from segnet_tf import prediction
from segnet_tf.data import CAMVID, load_image
from segnet_tf.models import build_model
from segnet_tf.prediction import (
    colorize,
    monte_carlo_dropout_layers,
    monte_carlo_predict,
    normalised_entropy,
    overlay,
    predict_images,
    segment,
    uncertainty_heatmap,
)


def write_png(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def random_image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_overlay_blends_by_alpha():
    image = np.full((2, 3, 3), 100, np.uint8)
    mask = np.full((2, 3, 3), 200, np.uint8)
    assert (overlay(image, mask, 0.25) == 125).all()
    assert (overlay(image, mask, 0.0) == 100).all() and (overlay(image, mask, 1.0) == 200).all()
    with pytest.raises(ValueError, match="differ in shape"):
        overlay(image, mask[:1])


@pytest.fixture(scope="module")
def bayesian():
    return build_model("bayesian-segnet", (32, 32, 3), 11, width=0.125)


def test_monte_carlo_sampling_varies_and_is_switched_off_afterwards(bayesian):
    images = np.stack([random_image(32, 32, s) for s in range(2)]).astype(np.float32)
    layers = monte_carlo_dropout_layers(bayesian)
    assert len(layers) == 6  # dropout after the 3 deepest encoder and decoder stages
    first = monte_carlo_predict(bayesian, images, samples=1).probs
    second = monte_carlo_predict(bayesian, images, samples=1).probs
    assert np.abs(first - second).max() > 1e-4  # dropout was on
    result = monte_carlo_predict(bayesian, images, samples=4)
    assert result.probs.shape == (2, 32, 32, 11)
    np.testing.assert_allclose(result.probs.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(result.class_map, result.probs.argmax(-1))
    assert result.uncertainty.min() >= 0 and result.uncertainty.max() <= 1
    assert result.uncertainty.mean() > 0.01
    assert not any(layer.sampling for layer in layers)
    # Off again: plain inference is deterministic.
    np.testing.assert_array_equal(bayesian(images).numpy(), bayesian(images).numpy())


def test_monte_carlo_needs_dropout():
    with pytest.raises(ValueError, match="no Monte Carlo dropout"):
        monte_carlo_predict(
            build_model("segnet-basic", (16, 16, 3), 11, width=0.125),
            np.zeros((1, 16, 16, 3), np.float32),
        )


def test_normalised_entropy_by_hand():
    probs = np.array([[0.25, 0.25, 0.25, 0.25], [1.0, 0, 0, 0], [0.5, 0.5, 0, 0]])
    np.testing.assert_allclose(normalised_entropy(probs), [1.0, 0.0, 0.5], atol=1e-9)


def test_bayesian_prediction_writes_an_uncertainty_map(bayesian, tmp_path):
    path = write_png(tmp_path / "in" / "street.png", random_image(40, 50))
    (result,) = predict_images(bayesian, [path], tmp_path / "out", samples=3, seed=7)
    assert result.uncertainty == tmp_path / "out" / "street_uncertainty.png"
    heat = cv2.imread(str(result.uncertainty))
    assert heat.shape == (40, 50, 3)
    # The image is inferno's colour number round(255 u), u the normalised entropy of the very
    # probabilities (same seed, resized to the image) whose argmax the mask shows.
    probs, u = segment(bayesian, load_image(path), 3, seed=7)
    assert u.shape == (40, 50) and 0 <= u.min() and u.max() <= 1 and u.std() > 0
    inferno = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_INFERNO)
    np.testing.assert_array_equal(heat, inferno[np.round(255 * u).astype(int), 0])
    np.testing.assert_array_equal(load_image(result.mask), colorize(probs.argmax(-1), CAMVID))
    assert tuple(inferno[0, 0]) == (4, 0, 0) and tuple(inferno[255, 0]) == (164, 255, 252)


@pytest.mark.slow
def test_predict_images_writes_masks_and_overlays_at_input_size(tiny_run, tmp_path):
    a = write_png(tmp_path / "in" / "a.png", random_image(50, 70, 1))
    b = write_png(tmp_path / "folder" / "b.jpg", random_image(64, 96, 2))
    results = predict_images(tiny_run.best_path, [a, b.parent], tmp_path / "out")
    assert [r.image for r in results] == [a, b]
    palette = {tuple(c) for c in CAMVID.colours}
    for r, (h, w) in zip(results, [(50, 70), (64, 96)], strict=True):
        mask = load_image(r.mask)
        assert mask.shape == (h, w, 3) and r.uncertainty is None
        assert {tuple(c) for c in mask.reshape(-1, 3)} <= palette
        np.testing.assert_array_equal(load_image(r.overlay), overlay(load_image(r.image), mask))
    with pytest.raises(ValueError, match="--mc-samples 4: .* no Monte Carlo dropout"):
        predict_images(tiny_run.best_path, [a], tmp_path / "out", samples=4)


def test_input_and_default_model_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="missing.png: no such image"):
        list(prediction.input_files([tmp_path / "missing.png"]))
    a = write_png(tmp_path / "x" / "same.png", random_image(4, 4))
    b = write_png(tmp_path / "y" / "same.png", random_image(4, 4))
    with pytest.raises(ValueError, match="same output names"):
        list(prediction.input_files([a, b]))
    monkeypatch.setattr(prediction, "DEFAULT_MODEL", tmp_path / "models" / "model.keras")
    with pytest.raises(FileNotFoundError, match="not in an installed package.*pass --model"):
        predict_images(None, [a], tmp_path / "out")


# --------------------------------------------------------------------------- every model file


def tiny_onnx(path, size=(8, 8), classes=11, seed=0):
    """A per-pixel linear classifier as ONNX ([1, H, W, 3] -> [1, H, W, classes]) and its
    weights: a model whose class map is worked out by hand."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(seed).normal(size=(3, classes)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["image", "w"], ["scores"])],
        "linear",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, *size, 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, *size, classes])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return weights


def test_an_onnx_model_predicts_the_class_map_worked_out_by_hand(tmp_path):
    weights = tiny_onnx(tmp_path / "m" / "model.onnx")
    image = random_image(8, 8, seed=3)
    src = write_png(tmp_path / "in" / "frame_0042.png", image)
    (result,) = predict_images(tmp_path / "m" / "model.onnx", [src], tmp_path / "out")
    assert result.ids == tmp_path / "out" / "frame_0042_ids.png"  # the input's name kept
    ids = cv2.imread(str(result.ids), cv2.IMREAD_UNCHANGED)
    assert ids.dtype == np.uint8 and ids.shape == (8, 8)
    np.testing.assert_array_equal(ids, (image.astype(np.float32) @ weights).argmax(-1))
    mask = load_image(result.mask)
    np.testing.assert_array_equal(mask, colorize(ids, CAMVID))  # no labels.json: CamVid's 11


def test_an_exported_tflite_model_predicts_as_it_runs_in_the_export(monte_carlo_export, tmp_path):
    from segnet_tf.export.tflite import TFLiteModel

    path = monte_carlo_export / "model_int8.tflite"
    runner = TFLiteModel(path.read_bytes())
    h, w = runner.input_size
    image = random_image(h, w, seed=5)
    src = write_png(tmp_path / "street.png", image)
    (result,) = predict_images(path, [src], tmp_path / "out")
    ids = cv2.imread(str(result.ids), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(ids, runner(image).argmax(-1))


def test_exported_files_get_the_demos_checks(monte_carlo_export, tmp_path):
    src = write_png(tmp_path / "a.png", random_image(8, 8))
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="junk.tflite.*not a TFLite flatbuffer"):
        predict_images(junk, [src], tmp_path / "out")
    content = (monte_carlo_export / "model.tflite").read_bytes()
    compiled = tmp_path / "tpu" / "model_edgetpu.tflite"
    compiled.parent.mkdir()
    compiled.write_bytes(content + b"edgetpu-custom-op")
    with pytest.raises(ValueError, match="compiled for the Edge TPU"):
        predict_images(compiled, [src], tmp_path / "out")
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.tflite").write_bytes(content)
    (other / "labels.json").write_text('{"class_names": ["a", "b"], "colours": [[0,0,0],[1,1,1]]}')
    with pytest.raises(ValueError, match="labels.json lists 2 classes but model.tflite outputs 11"):
        predict_images(other / "model.tflite", [src], tmp_path / "out")
    (other / "labels.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="labels.json: not a labels.json"):
        predict_images(other / "model.tflite", [src], tmp_path / "out")
    with pytest.raises(ValueError, match="--mc-samples 4: model.tflite is an exported file"):
        predict_images(other / "model.tflite", [src], tmp_path / "out", samples=4)


@pytest.fixture(scope="module")
def basic():
    return build_model("segnet-basic", (16, 16, 3), 11, width=0.125)


def test_a_video_gives_mask_and_overlay_videos_and_a_class_id_png_per_frame(basic, tmp_path):
    video = tmp_path / "dashcam.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (24, 20))
    for k in range(3):
        writer.write(random_image(20, 24, seed=k))
    writer.release()
    (result,) = predict_images(basic, [video], tmp_path / "out")
    assert result.frames == 3
    assert sorted(p.name for p in result.ids.iterdir()) == [
        f"dashcam_{k:06d}.png" for k in range(3)
    ]
    assert cv2.imread(str(result.ids / "dashcam_000002.png"), cv2.IMREAD_UNCHANGED).shape == (
        20,
        24,
    )
    for path in (result.mask, result.overlay):
        capture = cv2.VideoCapture(str(path))
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
        assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (
            24,
            20,
        )
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(ValueError, match="broken.mp4: cannot open it as a video"):
        predict_images(basic, [broken], tmp_path / "out")


def test_globs_and_the_default_output_folder(basic, tmp_path, monkeypatch):
    write_png(tmp_path / "frames" / "a.png", random_image(16, 16))
    write_png(tmp_path / "frames" / "b.jpg", random_image(16, 16))
    (tmp_path / "frames" / "notes.txt").write_text("not an image")
    monkeypatch.chdir(tmp_path)
    first = predict_images(basic, ["frames/*"], None)
    assert [r.image.name for r in first] == ["a.png", "b.jpg"]
    assert first[0].mask == Path("runs/predict/a_mask.png")
    second = predict_images(basic, ["frames/a.*"], None)
    assert second[0].mask == Path("runs/predict2/a_mask.png")  # never overwritten
    with pytest.raises(FileNotFoundError, match=r"frames/\*\.tif: the pattern matches no images"):
        predict_images(basic, ["frames/*.tif"], None)


def test_evaluate_scores_an_onnx_model_as_its_class_maps_say(tmp_path):
    from segnet_tf.data import make_dataset, open_dataset, write_synthetic_dataset
    from segnet_tf.evaluation import evaluate_predictions
    from segnet_tf.export.evaluate import evaluate_exported

    weights = tiny_onnx(tmp_path / "m" / "model.onnx", size=(16, 16))
    data = write_synthetic_dataset(tmp_path / "data", train=2, val=3, size=(24, 32))
    scores = evaluate_exported(tmp_path / "m" / "model.onnx", data, split="val")
    batches = make_dataset(
        open_dataset(data), split="val", input_size=(16, 16), batch_size=1, training=False
    )
    pairs = [(y.numpy()[0], (x.numpy()[0] @ weights).argmax(-1)) for x, y in batches]
    want = evaluate_predictions([y for y, _ in pairs], [p for _, p in pairs], CAMVID)
    assert scores["num_images"] == 3 and scores["input_size"] == [16, 16]
    assert scores["confusion_matrix"] == want["confusion_matrix"]
    assert scores["miou"] == want["miou"]


def test_an_exported_monte_carlo_model_gives_its_uncertainty(monte_carlo_export, tmp_path):
    from segnet_tf.export.tflite import TFLiteModel

    path = monte_carlo_export / "model_mc.tflite"
    runner = TFLiteModel(path.read_bytes())
    image = random_image(*runner.input_size, seed=9)
    (result,) = predict_images(path, [write_png(tmp_path / "s.png", image)], tmp_path / "out")
    mean = runner(image)  # the samples' mean probabilities, as the export computes them
    ids = cv2.imread(str(result.ids), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(ids, mean.argmax(-1))
    heat = cv2.imread(str(result.uncertainty))
    want = uncertainty_heatmap(normalised_entropy(mean / mean.sum(-1, keepdims=True)))
    assert np.abs(heat.astype(int) - want.astype(int)).max() <= 8  # one inferno step or so
