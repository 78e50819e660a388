"""Prediction files, overlays and Bayesian SegNet's Monte Carlo sampling."""

from __future__ import annotations

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
    with pytest.raises(ValueError, match="--samples 4: .* no Monte Carlo dropout"):
        predict_images(tiny_run.best_path, [a], tmp_path / "out", samples=4)


def test_input_and_default_model_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="missing.png: no such image"):
        list(prediction.image_files([tmp_path / "missing.png"]))
    a = write_png(tmp_path / "x" / "same.png", random_image(4, 4))
    b = write_png(tmp_path / "y" / "same.png", random_image(4, 4))
    with pytest.raises(ValueError, match="same output names"):
        list(prediction.image_files([a, b]))
    monkeypatch.setattr(prediction, "DEFAULT_MODEL", tmp_path / "models" / "model.keras")
    with pytest.raises(FileNotFoundError, match="not in an installed package.*pass --model"):
        predict_images(None, [a], tmp_path / "out")
