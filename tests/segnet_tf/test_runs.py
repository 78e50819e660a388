"""Which classes a model has: its run's config.json, else an assumption that must fit."""

from __future__ import annotations

import json

import pytest

from segnet_tf.data import CAMVID, DatasetConfig
from segnet_tf.runs import model_classes

TWO = DatasetConfig(name="two", class_names=("a", "b"), colours=((0, 0, 0), (9, 9, 9)), void_id=2)


def run_dir(tmp_path, config: DatasetConfig):
    (tmp_path / "config.json").write_text(
        json.dumps({"train": {"data": None}, "dataset": config.to_dict()})
    )
    return tmp_path / "best.keras"


def test_a_run_names_its_classes(tmp_path):
    model = run_dir(tmp_path, TWO)
    assert model_classes(2, model) == TWO
    assert model_classes(2, tmp_path) == TWO  # the run folder itself
    assert model_classes(2, model, default=CAMVID) == TWO  # the run wins over any assumption
    with pytest.raises(ValueError, match="predicts 11 classes but its config.json names 2"):
        model_classes(11, model)


def test_without_a_run_the_assumption_must_fit(tmp_path):
    bare = tmp_path / "model.keras"
    assert model_classes(11, bare) == CAMVID
    assert model_classes(11, None) == CAMVID
    assert model_classes(2, bare, default=TWO) == TWO
    with pytest.raises(ValueError, match=r"predicts 2 classes but 'camvid' \(no config.json\)"):
        model_classes(2, bare)
    with pytest.raises(ValueError, match="the model predicts 11 classes but 'two'"):
        model_classes(11, None, default=TWO)
