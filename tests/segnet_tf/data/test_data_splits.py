"""Drive splits: whole drives held out, list files that open as a dataset of their own."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from segnet_tf.cli import cli
from segnet_tf.data import DatasetError, open_dataset
from segnet_tf.data.splits import drive_of, split_by_drive, write_drive_split

# drive -> (train frames, val frames), CamVid-style names: <drive>_<frame>.png
FRAMES = {"0001TP": (2, 0), "0006R0": (3, 0), "0016E5": (2, 2)}


@pytest.fixture
def drives_layout(tmp_path, files):
    rng = np.random.default_rng(0)
    root = tmp_path / "camvid"
    for split in ("train", "val"):
        lines = []
        for drive, counts in FRAMES.items():
            for i in range(counts[split == "val"]):
                name = f"{drive}_{split}{i:03d}.png"
                image, label = files.pair(rng)
                files.image(root / split / name, image)
                files.label(root / f"{split}annot" / name, label)
                lines.append(f"{split}/{name} {split}annot/{name}")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_drive_is_the_file_name_prefix_or_a_pattern_group():
    assert drive_of("0016E5_07959") == "0016E5"
    assert drive_of("Seq05VD_f00210") == "Seq05VD"
    assert drive_of("city-berlin-000123", r"^city-(\w+?)-") == "berlin"
    with pytest.raises(DatasetError, match="no drive"):
        drive_of("frame0001")


def test_holdout_writes_a_dataset_with_only_that_drive_in_val(drives_layout, tmp_path):
    summary = write_drive_split(drives_layout, tmp_path / "split", holdout=["0006R0"])
    split = open_dataset(tmp_path / "split")
    assert [s.name for s in split.split("val")] == [f"0006R0_train{i:03d}" for i in range(3)]
    train_names = [s.name for s in split.split("train")]
    assert len(train_names) == 2 + 2 + 2  # 0001TP train, 0016E5 train and val
    assert not any(n.startswith("0006R0") for n in train_names)
    assert summary[str(tmp_path / "split")] == {
        "train": {"0001TP": 2, "0016E5": 4},
        "val": {"0006R0": 3},
    }
    original = {s.name: s for s in open_dataset(drives_layout).split("train")}
    for sample in split.split("val"):  # the lists point back at the original files
        assert sample.image.resolve() == original[sample.name].image.resolve()
    assert split.config == open_dataset(drives_layout).config


def test_without_holdout_each_drive_is_left_out_in_turn(drives_layout, tmp_path):
    summary = write_drive_split(drives_layout, tmp_path / "loo", splits=["train"])
    assert sorted(summary) == sorted(str(tmp_path / "loo" / d) for d in FRAMES)
    for drive, (n_train, _) in FRAMES.items():
        held = open_dataset(tmp_path / "loo" / drive).split("val")
        assert len(held) == n_train and {s.name[:6] for s in held} == {drive}


def test_bad_holdouts_are_refused_with_the_drives_listed(drives_layout, tmp_path):
    samples = list(open_dataset(drives_layout).split("train"))
    with pytest.raises(DatasetError, match="0099XX: no such drive; drives: 0001TP, 0006R0, 0016E5"):
        split_by_drive(samples, ["0099XX"])
    with pytest.raises(DatasetError, match="every drive"):
        split_by_drive(samples, list(FRAMES))


def test_cli_split_reports_the_counts(drives_layout, tmp_path):
    out = tmp_path / "cli"
    args = ["data", "split", "--data", str(drives_layout), "--by-drive", "--holdout", "0001TP"]
    result = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"{out}: train 0006R0 3, 0016E5 4; val 0001TP 2" in result.output
    # drives are the default: --by-drive is accepted, not needed
    again = tmp_path / "default"
    plain = ["data", "split", "--data", str(drives_layout), "--holdout", "0001TP"]
    result = CliRunner().invoke(cli, [*plain, "--out", str(again)])
    assert result.exit_code == 0, result.output
    assert (again / "val.txt").read_text() == (out / "val.txt").read_text()
