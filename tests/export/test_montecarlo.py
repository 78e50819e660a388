"""Monte Carlo dropout as one TFLite model: N seeded masks baked in, one batch of N per frame, the
mean softmax out; equal to Keras sampling under the same masks (float32), int8 end to end."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import segnet_tf
from segnet_tf.data import render_scene
from segnet_tf.export import ExportError, ExportOptions, export_model
from segnet_tf.export.montecarlo import dropout_masks, reference_model
from segnet_tf.export.tflite import TFLiteModel, inspect_model

SIZE = (48, 64)  # the shared monte_carlo_export fixture's (tests/conftest.py)
# Dropout inputs of SegNet-Basic at 48x64 with 8 filters: after the poolings of stages 2, 3, 4
# (12x16, 6x8, 3x4) and after decoder stages 4, 3, 2 (6x8, 12x16, 24x32).
DROPOUT_SHAPES = {
    "block2_dropout": (12, 16, 8),
    "block3_dropout": (6, 8, 8),
    "block4_dropout": (3, 4, 8),
    "decoder4_dropout": (6, 8, 8),
    "decoder3_dropout": (12, 16, 8),
    "decoder2_dropout": (24, 32, 8),
}


@pytest.fixture(scope="module")
def bayesian() -> keras.Model:
    keras.utils.set_random_seed(0)
    return segnet_tf.build_model("segnet-basic", (*SIZE, 3), 11, width=0.125, bayesian=True)


def images(count: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (count, *SIZE, 3)).astype(np.float32)


def test_masks_are_seeded_inverted_dropout(bayesian):
    masks = dropout_masks(bayesian, 4, seed=0)
    assert {name: m.shape for name, m in masks.items()} == {
        name: (4, *shape) for name, shape in DROPOUT_SHAPES.items()
    }
    values = np.concatenate([m.ravel() for m in masks.values()])
    assert set(np.unique(values)) == {0.0, 2.0}  # dropped, or kept and scaled by 1 / (1 - 0.5)
    assert abs(np.mean(values > 0) - 0.5) < 0.02  # 40,320 draws: 8 standard deviations
    again, other = dropout_masks(bayesian, 4, seed=0), dropout_masks(bayesian, 4, seed=1)
    assert all(np.array_equal(masks[k], again[k]) for k in masks)
    assert not any(np.array_equal(masks[k], other[k]) for k in masks)
    with pytest.raises(ValueError, match="must be >= 2"):
        dropout_masks(bayesian, 1)
    plain = segnet_tf.build_model("segnet-basic", (*SIZE, 3), 11, width=0.125)
    with pytest.raises(ValueError, match="no Monte Carlo dropout"):
        dropout_masks(plain, 4)


def test_the_reference_runs_copy_i_under_mask_i_and_averages(bayesian):
    masks = dropout_masks(bayesian, 3, seed=2)
    x = images(1)
    got = reference_model(bayesian, masks)(x).numpy()
    # one network per mask, each on its own copy of the image
    singles = [
        reference_model(bayesian, {k: m[i : i + 1] for k, m in masks.items()})(x).numpy()
        for i in range(3)
    ]
    np.testing.assert_allclose(got, np.mean(singles, axis=0), atol=1e-6)
    assert np.abs(singles[0] - singles[1]).max() > 1e-3  # the masks differ
    # masks that keep everything at scale 1 are no dropout: the model's own softmax
    ones = {k: np.ones_like(m) for k, m in masks.items()}
    want = keras.ops.softmax(bayesian(x)).numpy()
    np.testing.assert_allclose(reference_model(bayesian, ones)(x).numpy(), want, atol=1e-6)


def test_monte_carlo_options_are_checked(bayesian, tmp_path):
    def formats(**kwargs):
        options = ExportOptions(model=tmp_path / "m.keras", out=tmp_path / "out", **kwargs)
        return [f.name for f in options.formats()]

    assert formats(mc_samples=4) == ["tflite", "mc"]
    assert formats(mc_samples=4, int8=True) == ["tflite", "int8", "mc", "mc-int8"]
    with pytest.raises(ExportError, match=r"--mc-samples must be 0 \(none\) or >= 2"):
        formats(mc_samples=1)
    segnet_tf.build_model("segnet-basic", (*SIZE, 3), 11, width=0.125).save(tmp_path / "m.keras")
    with pytest.raises(ExportError, match="--mc-samples 4: model 'segnet-basic' has no Monte"):
        export_model(ExportOptions(tmp_path / "m.keras", tmp_path / "out", mc_samples=4))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_float_export_equals_keras_under_the_same_masks(monte_carlo_export):
    out = monte_carlo_export
    model = segnet_tf.load_model(out.parent / "bayes.keras")
    reference = reference_model(model, dropout_masks(model, 4, seed=0))  # the export's masks
    content = (out / "model_mc.tflite").read_bytes()
    runner = TFLiteModel(content)
    assert list(runner.input["shape"]) == [1, *SIZE, 3]  # one frame in: the batch of 4 is inside
    assert list(runner.output["shape"]) == [1, *SIZE, 11]
    x = images(3)
    got = np.stack([runner(image) for image in x])
    want = reference.predict(x, batch_size=1, verbose=0)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)  # 4e-7 measured
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)
    info = inspect_model(content)
    assert info.builtin_only
    assert {"TILE", "SOFTMAX", "MEAN"} <= set(info.ops)
    assert info.ops["MUL"] >= len(DROPOUT_SHAPES)  # one per mask

    labels = json.loads((out / "labels.json").read_text())
    per_sample = sum(np.prod(shape) for shape in DROPOUT_SHAPES.values())
    assert labels["monte_carlo"] == {
        "samples": 4,
        "seed": 0,
        "output": "mean_probabilities",
        "files": ["model_mc.tflite", "model_mc_int8.tflite"],
        "mask_values": 4 * per_sample,
    }
    parity = json.loads((out / "report.json").read_text())["parity"]["models"]["mc"]
    assert parity["reference"] == "keras_mc" and parity["max_abs_diff"] < 1e-5
    assert parity["pixel_agreement"] > 0.99


@pytest.mark.slow
def test_int8_export_is_int8_end_to_end_and_close_to_keras(monte_carlo_export):
    out = monte_carlo_export
    content = (out / "model_mc_int8.tflite").read_bytes()
    info = inspect_model(content)
    assert info.builtin_only
    assert not any(t.startswith("float") for t in info.tensor_types), info.tensor_types
    runner = TFLiteModel(content)
    assert runner.input["dtype"] == runner.output["dtype"] == np.int8
    model = segnet_tf.load_model(out.parent / "bayes.keras")
    reference = reference_model(model, dropout_masks(model, 4, seed=0))
    x = np.stack([render_scene(seed, SIZE)[0] for seed in (100, 101, 102)]).astype(np.float32)
    got = np.stack([runner(image) for image in x])
    want = reference.predict(x, batch_size=1, verbose=0)
    assert got.min() >= 0 and np.abs(got.sum(-1) - 1).max() < 0.05  # 0.013 measured
    # An untrained network's near-flat probabilities (about 1/11 each) are as close as int8 gets:
    # 0.017 apart on average, measured (the float export: 4e-7).
    assert np.abs(got - want).mean() < 0.03
