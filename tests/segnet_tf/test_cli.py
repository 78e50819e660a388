"""The ``segnet-tf`` CLI: examples in every --help, one-line errors, and the commands end to end
on a tiny synthetic dataset and run."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from segnet_tf.cli import cli
from segnet_tf.data import write_synthetic_dataset

COMMANDS = [
    [],
    ["train"],
    ["evaluate"],
    ["predict"],
    ["models"],
    ["data"],
    ["data", "stats"],
    ["data", "check"],
    ["data", "pack"],
    ["data", "split"],
    ["export"],
]
REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models" / "segnet-lite-camvid"


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_clean_error(result, code: int, message: str):
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # not a library exception


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_help_shows_an_example(command):
    result = run(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    if "Options:" in result.output:  # one layout: description, examples, then the options
        assert result.output.index("Example") < result.output.index("Options:")


def strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [s for item in items for s in strings(item)]


@pytest.mark.parametrize("name", ["config.json", "report.json", "labels.json"])
def test_the_shipped_files_hold_no_machines_paths(name):
    found = [s for s in strings(json.loads((SHIPPED / name).read_text())) if Path(s).is_absolute()]
    assert not found


def test_the_shipped_model_without_data_names_no_other_machines_folder():
    result = run("evaluate", "--model", SHIPPED)
    assert_clean_error(result, 1, "the dataset this model was trained on is not here")
    assert "where its config.json points): pass --data DIR" in " ".join(result.output.split())
    assert "/work/runs" not in result.output


def test_bad_input_size_is_a_usage_error(tmp_path):
    result = run("train", "--input-size", "96by128", "--out", tmp_path / "run")
    assert_clean_error(result, 2, "expected HEIGHTxWIDTH")


def test_missing_data_dir_and_run_dir_are_one_line_errors(tmp_path):
    result = run("train", "--data", tmp_path / "nowhere", "--out", tmp_path / "run")
    assert_clean_error(result, 1, "nowhere does not exist")
    result = run("train", "--resume", "--out", tmp_path / "empty")
    assert_clean_error(result, 1, "nothing to resume")
    result = run("evaluate", "--model", tmp_path / "none.keras", "--data", tmp_path)
    assert_clean_error(result, 1, "no such file")


@pytest.mark.slow
def test_corrupt_image_found_during_training_names_the_file(tmp_path):
    data = write_synthetic_dataset(tmp_path / "data", train=4, val=2, size=(32, 48))
    bad = sorted((data / "train").iterdir())[1]
    bad.write_bytes(b"not a png")
    result = run(
        "train",
        "--data",
        data,
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--input-size",
        "32x48",
        "--out",
        tmp_path / "run",
    )
    assert_clean_error(result, 1, bad.name)


def test_data_commands(tmp_path):
    root = write_synthetic_dataset(tmp_path / "synth", train=2, val=1, size=(24, 32))
    result = run("data", "check", "--data", root)
    assert result.exit_code == 0, result.output
    assert "3 samples OK (train 2, val 1; 11 classes of camvid)" in result.output

    result = run("data", "stats", "--data", root, "--json", tmp_path / "stats.json")
    assert result.exit_code == 0, result.output
    assert "Sky" in result.output
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["num_images"] == 2 and stats["total_pixels"] == 2 * 24 * 32

    result = run("data", "pack", "--data", root, "--out", tmp_path / "packed")
    assert result.exit_code == 0, result.output
    assert run("data", "check", "--data", tmp_path / "packed").exit_code == 0

    label = root / (root / "train.txt").read_text().split()[1]
    bad = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
    bad[0, 0] = 40
    cv2.imwrite(str(label), bad)
    result = run("data", "check", "--data", root)
    assert_clean_error(result, 1, "label ids [40] are outside 0..10")


@pytest.mark.slow
def test_models_lists_every_preset():
    result = run("models")
    assert result.exit_code == 0, result.output
    names = [line.split()[0] for line in result.output.splitlines()]
    assert names == ["segnet", "segnet-basic", "segnet-lite", "bayesian-segnet"]


@pytest.mark.slow
def test_evaluate_and_predict_a_run(tiny_run, tmp_path):
    args = ("--json", tmp_path / "val.json", "--out", tmp_path / "figures")
    result = run("evaluate", "--model", tiny_run.run_dir, *args)
    assert result.exit_code == 0, result.output
    assert "8 images (val)" in result.output and "mIoU" in result.output
    scores = json.loads((tmp_path / "val.json").read_text())
    assert scores["miou"] == pytest.approx(tiny_run.best_miou, abs=1e-6)
    pictures = {p.name: cv2.imread(str(p)) for p in (tmp_path / "figures").iterdir()}
    assert sorted(pictures) == ["confusion_matrix.png", "per_class_iou.png", "predictions.png"]
    # 6 of the 8 val images, one row each (2.6 in at 110 dpi), above the class legend
    height = pictures["predictions.png"].shape[0]
    assert 6 * 2.6 * 110 < height < (6 * 2.6 + 1.5) * 110

    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "frame.png"), image)
    result = run(
        "predict", "--model", tiny_run.run_dir, tmp_path / "frame.png", "--out", tmp_path / "pred"
    )
    assert result.exit_code == 0, result.output
    assert cv2.imread(str(tmp_path / "pred" / "frame_overlay.png")).shape == (30, 40, 3)
    assert (tmp_path / "pred" / "frame_mask.png").is_file()
    ids = cv2.imread(str(tmp_path / "pred" / "frame_ids.png"), cv2.IMREAD_UNCHANGED)
    assert ids.shape == (30, 40) and ids.dtype == np.uint8 and ids.max() < 11
