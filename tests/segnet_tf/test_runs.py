"""Run folders: which classes a model has (its run's config.json, else an assumption that must
fit), the typed read of a run's options, and the one module that names a run's files."""

from __future__ import annotations

import ast
import json
from dataclasses import replace
from pathlib import Path

import pytest

from segnet_tf.config import TrainConfig
from segnet_tf.data import CAMVID, DatasetConfig
from segnet_tf.runs import RunFolder, model_classes

REPO = Path(__file__).resolve().parents[2]

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


def test_only_runs_py_names_the_files_of_a_run_folder():
    """Every other module of segnet_tf/ and export/ finds a run's files through RunFolder, so
    their names are written in one place (docstrings and messages included)."""
    names = [RunFolder.CONFIG, RunFolder.BEST, RunFolder.LAST, RunFolder.HISTORY, RunFolder.STATE]
    names.append(RunFolder.RESULTS)
    # other files of the same name: the member of a .keras zip that holds its layer graph
    # (Keras' name) and the class table of a Mapillary Vistas release
    keras_archive = {("models/loading.py", RunFolder.CONFIG), ("data/roads.py", RunFolder.CONFIG)}
    found = []
    for folder in ("segnet_tf", "export"):
        for path in sorted((REPO / folder).rglob("*.py")):
            where = str(path.relative_to(REPO / folder))
            if (folder, where) == ("segnet_tf", "runs.py"):
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                    continue
                text = node.value
                named = [n for n in names if n in text and (where, n) not in keras_archive]
                named += [RunFolder.TENSORBOARD] * ("tensorboard/" in text)  # not the package
                found += [f"{folder}/{where}:{node.lineno}: {n}" for n in named]
    assert found == []
    assert RunFolder("r").tensorboard == Path("r") / "tensorboard"


def test_a_run_folder_reads_its_options_typed(tmp_path):
    options = TrainConfig(out="/elsewhere/run", model="segnet-basic", input_size=(45, 61), lr=0.01)
    folder = RunFolder(tmp_path / "moved")
    folder.path.mkdir()
    folder.config.write_text(json.dumps({"train": options.to_dict(), "dataset": CAMVID.to_dict()}))
    read = RunFolder.of(folder.best).train_config()  # a model file finds its run folder
    assert read == replace(options, out=str(folder.path))  # the folder where it is now
    assert read.input_size == (45, 61)

    other = RunFolder(tmp_path / "other")
    other.path.mkdir()
    assert other.train_config() is None  # no config at all
    other.config.write_text(json.dumps({"name": "another tool's config"}))
    assert other.train_config() is None
    other.config.write_text(json.dumps({"train": [1, 2], "dataset": {}}))
    with pytest.raises(ValueError, match="'train' is not a mapping of training options"):
        other.train_config()
    other.config.write_text("{not json")
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        other.train_config()


def test_discarding_a_run_that_never_finished_an_epoch(tmp_path):
    made = RunFolder(tmp_path / "made")
    assert made.contents() is None
    made.teacher.mkdir(parents=True)
    made.config.write_text("{}")
    made.discard(None)
    assert not made.path.exists()

    mine = RunFolder(tmp_path / "mine")  # a folder that was there, with a file and a config
    mine.path.mkdir()
    (mine.path / "notes.txt").write_text("keep")
    mine.config.write_text("{}")
    before = mine.contents()
    mine.tensorboard.mkdir()
    mine.history.write_text("epoch\n")
    mine.discard(before)
    assert sorted(p.name for p in mine.path.iterdir()) == ["config.json", "notes.txt"]
