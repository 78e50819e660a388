"""``--view uncertainty``: Bayesian SegNet's uncertainty beside the classes, computed on the board
from a Monte Carlo model's mean probabilities."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_demo import DemoError, DemoFileNotFoundError, camera
from edge_demo.render import Renderer, uncertainty_heatmap
from edge_demo.runtime import load_model
from edge_demo.uncertainty import normalised_entropy
from segnet_tf.prediction import normalised_entropy as library_entropy

NAMES = ("sky", "road", "car")
COLOURS = ((128, 128, 128), (128, 64, 128), (64, 0, 128))  # RGB
CLASSES = np.array([[0, 1], [2, 1]], np.uint8)
INFERNO = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_INFERNO)[:, 0]


def run_demo(*argv) -> dict:
    return camera.run(camera.build_parser().parse_args([str(a) for a in argv]))


def test_entropy_is_the_librarys_and_renormalises_quantised_probabilities():
    probs = np.random.default_rng(0).dirichlet(np.full(11, 0.3), (5, 6)).astype(np.float32)
    np.testing.assert_allclose(normalised_entropy(probs), library_entropy(probs), atol=1e-6)
    # int8 probabilities sum to about 1: each pixel is renormalised first
    np.testing.assert_allclose(normalised_entropy(1.02 * probs), library_entropy(probs), atol=1e-6)
    by_hand = np.array([[[0.25, 0.25, 0.25, 0.25], [1, 0, 0, 0], [0.5, 0.5, 0, 0]]])
    np.testing.assert_allclose(normalised_entropy(by_hand), [[1.0, 0.0, 0.5]], atol=1e-6)


def test_the_view_is_the_overlay_beside_the_heat_map():
    frame = np.full((4, 4, 3), 100, np.uint8)
    uncertainty = np.array([[0.0, 0.5], [1.0, 0.25]], np.float32)
    renderer = Renderer(NAMES, COLOURS, view="uncertainty", legend="none")
    out = renderer.segmentation(frame, CLASSES, uncertainty)
    assert out.shape == (4, 8, 3)
    overlay = Renderer(NAMES, COLOURS, view="overlay", legend="none").segmentation(frame, CLASSES)
    np.testing.assert_array_equal(out[:, :4], overlay)
    np.testing.assert_array_equal(out[:, 4:], uncertainty_heatmap(uncertainty, (4, 4)))
    # bilinear 2x upscaling keeps the corners: inferno colours 0, round(127.5), 255, round(63.75)
    corners = out[0, 4], out[0, 7], out[3, 4], out[3, 7]
    np.testing.assert_array_equal(corners, INFERNO[[0, 128, 255, 64]])
    with pytest.raises(ValueError, match="needs an uncertainty map"):
        renderer.segmentation(frame, CLASSES)


@pytest.mark.slow
def test_the_demo_draws_the_monte_carlo_models_uncertainty(
    monte_carlo_export, image_dir, clip_frames, tmp_path
):
    out = tmp_path / "frames"
    summary = run_demo(
        "--model", monte_carlo_export, "--view", "uncertainty", "--source", image_dir,
        "--headless", "--output", f"{out}/", "--image-format", "png", "--legend", "all",
    )  # fmt: skip
    assert summary["model"].endswith("model_mc_int8.tflite")  # a folder: its Monte Carlo model
    assert summary["monte_carlo_samples"] == 4 and summary["precision"] == "int8"
    files = sorted(out.iterdir())
    assert len(files) == 5
    image = cv2.imread(str(files[0]))
    assert image.shape == (120, 320, 3)  # the 160-wide frame twice
    # Below the key, the right half is the heat map of the model's probabilities for the frame.
    model = load_model(monte_carlo_export / "model_mc_int8.tflite")
    probs = model.scores(model.infer(model.preprocess(clip_frames[0])))
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=0.05)
    heat = uncertainty_heatmap(normalised_entropy(probs), (160, 120))
    np.testing.assert_array_equal(image[40:, 160:], heat[40:])

    summary = run_demo(
        "--model", monte_carlo_export / "model_mc.tflite", "--view", "uncertainty",
        "--source", image_dir, "--headless", "--smooth", "3",
    )  # fmt: skip
    assert summary["frames"] == 5 and summary["precision"] == "float32"


@pytest.mark.slow
def test_the_view_needs_a_monte_carlo_model(monte_carlo_export, image_dir, tmp_path, capsys):
    args = ("--view", "uncertainty", "--source", image_dir, "--headless")
    with pytest.raises(DemoError, match="needs a Monte Carlo model.*model.tflite as one"):
        run_demo("--model", monte_carlo_export / "model.tflite", *args)
    with pytest.raises(DemoFileNotFoundError, match="has none of model_mc_int8.tflite"):
        run_demo("--model", tmp_path, *args)
    assert camera.main(["--model", str(tmp_path), *map(str, args)]) == 1
    assert capsys.readouterr().err.count("\n") == 1  # one line, no traceback
