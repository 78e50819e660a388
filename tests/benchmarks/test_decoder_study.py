"""The decoder study (the paper's Table 1) end to end at a tiny size: both variants trained through
``segnet_tf.training.train``, scored, tabled beside the paper's figures and drawn; a rerun with
--resume trains nothing again."""

from __future__ import annotations

import json

import cv2
import pytest

from benchmarks import decoder_study


@pytest.mark.slow
def test_smoke_study_writes_table_and_picture_and_resumes(tmp_path):
    out = tmp_path / "study"
    assert decoder_study.main(["--smoke", "--out", str(out)]) == 0

    result = json.loads((out / "decoder-study.json").read_text())
    rows = {r["decoder"]: r for r in result["rows"]}
    assert list(rows) == ["indices", "fcn"]
    for row in rows.values():
        assert row["epochs"] == 1 and row["split"] == "val"
        assert 0 <= row["miou"] <= row["class_accuracy"] <= 1
        assert (out / row["decoder"] / "best.keras").is_file()
    # 32x32: four stages pool 32 -> 16 -> 8 -> 4 -> 2 with 64 channels; FCN keeps 11 of them
    assert rows["indices"]["kept_bytes"] == sum(n * n * 64 * 2 // 8 for n in (16, 8, 4, 2))
    assert rows["fcn"]["kept_bytes"] == sum(n * n * 11 * 4 for n in (16, 8, 4))
    assert len(result["paper"]) == 8

    table = (out / "decoder-study.md").read_text()
    assert "| `fcn` | FCN-Basic | 0.646 |" in table
    assert "paper: mIoU" in table and "| 47.3 | 38.11 |" in table
    picture = cv2.imread(str(out / "decoder_study.png"))
    assert picture.shape == (484, 1232, 3)  # decoder_study.FIGURE_SIZE at 110 dpi

    checkpoint = (out / "indices" / "last.keras").stat().st_mtime_ns
    assert decoder_study.main(["--smoke", "--out", str(out), "--resume"]) == 0
    assert (out / "indices" / "last.keras").stat().st_mtime_ns == checkpoint
    again = json.loads((out / "decoder-study.json").read_text())
    assert [r["miou"] for r in again["rows"]] == [r["miou"] for r in result["rows"]]
    # without --resume, existing runs are refused rather than overwritten
    assert decoder_study.main(["--smoke", "--out", str(out)]) == 1


def test_coinciding_points_share_one_label_and_labels_avoid_each_other():
    groups = decoder_study.label_groups([("a", (70, 200)), ("b", (140, 150)), ("c", (71, 204))])
    assert groups == [("b", (140, 150)), ("a / c", (70, 200))]  # top down; a and c 4 px apart

    # a label goes level with its point, right of it; blocked there, left of it; with no room on
    # the left (the plot's edge), a line (text height + 6) lower, with a leader
    first = decoder_study.label_position(100, 100, 40, 10, [], (0, 500))
    assert first == (109, 95, False)
    box = (first[0], first[1], first[0] + 40, first[1] + 10)
    assert decoder_study.label_position(100, 102, 40, 10, [box], (0, 500)) == (51, 97, False)
    assert decoder_study.label_position(100, 102, 40, 10, [box], (90, 500)) == (109, 113, True)
