"""Bayesian SegNet's evaluation: Monte Carlo dropout sampling against weight averaging, as a curve
over the number of samples, in the library and in ``segnet-tf evaluate --mc-samples``."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from segnet_tf.cli import cli
from segnet_tf.data import synthetic_dataset, write_synthetic_dataset
from segnet_tf.evaluation import evaluate, evaluate_sampling
from segnet_tf.models import build_model
from segnet_tf.prediction import monte_carlo_predict, sampling_curve

SIZE = (32, 48)


@pytest.fixture(scope="module")
def bayesian() -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_model("bayesian-segnet", (*SIZE, 3), 11, width=0.125)


@pytest.fixture(scope="module")
def scenes():
    return synthetic_dataset(train=0, val=2, size=SIZE, seed=1)


def test_the_curve_shares_its_passes_and_one_sample_is_weight_averaging(bayesian):
    images = np.random.default_rng(0).uniform(0, 255, (2, *SIZE, 3)).astype(np.float32)
    curve = sampling_curve(bayesian, images, [1, 2, 4], seed=3)
    # n > 1: the running mean of the first n passes is n passes of monte_carlo_predict
    for n in (2, 4):
        want = monte_carlo_predict(bayesian, images, n, seed=3).probs
        np.testing.assert_allclose(curve[n], want, atol=1e-6)
    # 1: dropout off, the model's own softmax
    want = keras.ops.softmax(bayesian(images)).numpy()
    np.testing.assert_allclose(curve[1], want, atol=1e-6)
    assert np.abs(curve[4] - curve[1]).max() > 1e-3  # dropout was on for the samples
    with pytest.raises(ValueError, match="must be >= 1"):
        sampling_curve(bayesian, images, [0, 2])


def test_evaluation_over_n_with_weight_averaging_equal_to_plain_evaluation(bayesian, scenes):
    result = evaluate_sampling(bayesian, scenes, samples=(4, 1, 2, 2), batch_size=2)
    assert [row["samples"] for row in result["curve"]] == [1, 2, 4]
    assert [row["inference"] for row in result["curve"]] == [
        "weight averaging",
        "Monte Carlo dropout",
        "Monte Carlo dropout",
    ]
    plain = evaluate(bayesian, scenes, batch_size=2)
    averaged = result["scores"]["1"]
    assert averaged["confusion_matrix"] == plain["confusion_matrix"]  # pixel for pixel
    assert result["curve"][0]["miou"] == plain["miou"]
    # sampling moves pixels between classes, and the same seed moves the same ones
    sampled = result["scores"]["4"]["confusion_matrix"]
    assert sampled != plain["confusion_matrix"]
    assert np.sum(sampled) == np.sum(plain["confusion_matrix"]) == 2 * SIZE[0] * SIZE[1]
    again = evaluate_sampling(bayesian, scenes, samples=(4,), batch_size=2)
    assert again["scores"]["4"]["confusion_matrix"] == sampled
    for row in result["curve"]:
        assert 0 <= row["mean_uncertainty"] <= 1
        right, wrong = row["uncertainty_right"], row["uncertainty_wrong"]
        # the mean over all labelled pixels lies between the means over right and wrong ones
        assert min(right, wrong) - 1e-9 <= row["mean_uncertainty"] <= max(right, wrong) + 1e-9
    json.dumps(result, allow_nan=False)


def test_sampling_needs_dropout(scenes):
    plain = build_model("segnet-basic", (*SIZE, 3), 11, width=0.125)
    with pytest.raises(ValueError, match="--mc-samples 4: model 'segnet-basic' has no Monte Carlo"):
        evaluate_sampling(plain, scenes, samples=(1, 4))


def test_evaluate_samples_prints_the_curve_and_writes_json(bayesian, tmp_path):
    data = write_synthetic_dataset(tmp_path / "data", train=0, val=2, size=SIZE)
    bayesian.save(tmp_path / "bayes.keras")
    runner = CliRunner()
    args = ["evaluate", "--model", tmp_path / "bayes.keras", "--data", data, "--samples", "2,1"]
    result = runner.invoke(cli, [*map(str, args), "--json", str(tmp_path / "curve.json")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].split()[:7] == ["N", "inference", "G", "C", "mIoU", "BF", "U"]
    assert lines[2].split()[:3] == ["1", "weight", "averaging"]
    assert lines[3].split()[:4] == ["2", "Monte", "Carlo", "dropout"]
    saved = json.loads((tmp_path / "curve.json").read_text())
    assert [row["samples"] for row in saved["curve"]] == [1, 2]
    miou = saved["curve"][1]["miou"]
    assert f"{100 * miou:7.1f}" in lines[3]
    bad = runner.invoke(cli, [*map(str, args[:-1]), "0,2"])
    assert bad.exit_code == 2 and "expected sample counts >= 1" in bad.output
    both = runner.invoke(cli, [*map(str, args), "--full-res"])
    assert both.exit_code == 2 and "input size only" in both.output
