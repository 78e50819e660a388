"""Dataset discovery, file reading and validation (no TensorFlow)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from segnet_tf.data import CAMVID, DatasetError, load_image, load_label, open_dataset, validate
from segnet_tf.data.datasets import Sample, save_dataset
from segnet_tf.data.io import colorize

# ---------------------------------------------------------------- CamVid list files


def test_list_files_parsed_with_comments_and_blank_lines(camvid_layout):
    ds = open_dataset(camvid_layout)
    assert ds.counts == {"train": 3, "val": 2}
    assert ds.config is CAMVID
    first = ds.split("train")[0]
    assert first == Sample(
        camvid_layout / "train/train0.png", camvid_layout / "trainannot/train0.png"
    )
    assert first.name == "train0"


def test_any_subset_of_splits(camvid_layout):
    (camvid_layout / "train.txt").unlink()
    (camvid_layout / "test.txt").write_text("val/val0.png valannot/val0.png\n")
    assert open_dataset(camvid_layout).counts == {"val": 2, "test": 1}


def test_unknown_split_lists_available(camvid_layout):
    with pytest.raises(DatasetError, match=r"no split 'test'.*available: train, val"):
        open_dataset(camvid_layout).split("test")


def test_malformed_line_names_file_and_line(camvid_layout):
    (camvid_layout / "val.txt").write_text("val/val0.png valannot/val0.png\nval/val1.png\n")
    with pytest.raises(DatasetError, match=r"val\.txt:2: expected 'image label'"):
        open_dataset(camvid_layout)


def test_empty_list_file_is_an_error(camvid_layout):
    (camvid_layout / "val.txt").write_text("# nothing\n")
    with pytest.raises(DatasetError, match=r"val\.txt: list file has no"):
        open_dataset(camvid_layout)


def test_missing_listed_file_named(camvid_layout):
    (camvid_layout / "valannot" / "val1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"val\.txt: 1 listed file.*valannot/val1\.png"):
        open_dataset(camvid_layout)


def test_missing_folder_and_unknown_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_dataset(tmp_path / "nope")
    with pytest.raises(DatasetError, match="not a dataset folder"):
        open_dataset(tmp_path)


@pytest.mark.parametrize("name", ["dataset.yaml", "dataset.json"])
def test_folder_config_file_and_argument_override(camvid_layout, no_void, name):
    (camvid_layout / name).write_text(json.dumps(no_void.to_dict()))  # JSON is valid YAML
    assert open_dataset(camvid_layout).config == no_void
    assert open_dataset(camvid_layout, config="camvid").config is CAMVID


# ---------------------------------------------------------------- images/ + labels/


@pytest.fixture
def images_labels(files):
    """Write ``names`` as images/<sub>/<name>.jpg + labels/<sub>/<name>.png under ``root``."""

    def write(root, names, sub=""):
        rng = np.random.default_rng(1)
        for name in names:
            image, label = files.pair(rng)
            files.image(root / "images" / sub / f"{name}.jpg", image)
            files.label(root / "labels" / sub / f"{name}.png", label)

    return write


def test_images_labels_pool_is_train_paired_by_stem(tmp_path, images_labels):
    images_labels(tmp_path, ["b", "a", "c"])
    ds = open_dataset(tmp_path)
    assert list(ds.splits) == ["train"]
    assert [(s.image.name, s.label.name) for s in ds.split("train")] == [
        ("a.jpg", "a.png"),
        ("b.jpg", "b.png"),
        ("c.jpg", "c.png"),
    ]


def test_images_labels_split_subfolders(tmp_path, images_labels):
    images_labels(tmp_path, ["a", "b"], "train")
    images_labels(tmp_path, ["c"], "val")
    assert open_dataset(tmp_path).counts == {"train": 2, "val": 1}


def test_image_without_label_named(tmp_path, images_labels):
    images_labels(tmp_path, ["a", "b"])
    (tmp_path / "labels" / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"no label file for 1 image.*: b\.jpg"):
        open_dataset(tmp_path)


def test_label_without_image_named(tmp_path, files, images_labels):
    images_labels(tmp_path, ["a"])
    files.label(tmp_path / "labels" / "orphan.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DatasetError, match=r"no image for 1 label.*orphan\.png"):
        open_dataset(tmp_path)


def test_duplicate_stems_rejected(tmp_path, files, images_labels):
    images_labels(tmp_path, ["a"])
    files.image(tmp_path / "images" / "a.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"two files share the stem 'a'"):
        open_dataset(tmp_path)


def test_mixed_split_folders_and_loose_images_rejected(tmp_path, images_labels):
    images_labels(tmp_path, ["a"], "train")
    images_labels(tmp_path, ["b"])
    with pytest.raises(DatasetError, match="both split folders"):
        open_dataset(tmp_path)


# ---------------------------------------------------------------- reading files


def test_grayscale_and_rgba_images_become_rgb(tmp_path, files):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    files.image(tmp_path / "g.png", gray)
    assert load_image(tmp_path / "g.png").shape == (3, 4, 3)
    np.testing.assert_array_equal(load_image(tmp_path / "g.png"), np.repeat(gray[..., None], 3, 2))

    rgb = np.random.default_rng(0).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    bgra = np.dstack([rgb[..., ::-1], np.full((3, 4), 7, np.uint8)])
    assert cv2.imwrite(str(tmp_path / "a.png"), bgra)
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), rgb)


def test_unreadable_image_named(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"bad\.png: cannot decode image"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(FileNotFoundError, match=r"gone\.png: file not found"):
        load_image(tmp_path / "gone.png")


def test_label_ids_outside_classes_named(tmp_path, files):
    files.label(tmp_path / "l.png", np.array([[0, 11], [12, 200]], np.uint8))
    with pytest.raises(DatasetError, match=r"l\.png: label ids \[12, 200\] are outside 0\.\.10"):
        load_label(tmp_path / "l.png", CAMVID)


def test_16bit_label(tmp_path, files, no_void):
    files.label(tmp_path / "l.png", np.array([[0, 2], [1, 2]], np.uint16))
    label = load_label(tmp_path / "l.png", no_void)
    np.testing.assert_array_equal(label, [[0, 2], [1, 2]])


def test_rgb_label_mapped_through_palette(tmp_path, files):
    ids = np.array([[0, 3, 11], [10, 4, 0]], np.uint8)
    files.image(tmp_path / "c.png", colorize(ids, CAMVID))
    np.testing.assert_array_equal(load_label(tmp_path / "c.png", CAMVID), ids)


def test_rgb_label_unknown_colour_named(tmp_path, files):
    rgb = colorize(np.zeros((2, 3), np.uint8), CAMVID)
    rgb[1, 2] = (1, 2, 3)
    files.image(tmp_path / "c.png", rgb)
    with pytest.raises(DatasetError, match=r"c\.png: RGB label has 1 colour.*\(1, 2, 3\)"):
        load_label(tmp_path / "c.png", CAMVID)


# ---------------------------------------------------------------- validate / save


def test_validate_lists_every_problem_with_its_file(camvid_layout, files):
    ds = open_dataset(camvid_layout)
    assert validate(ds) == 5
    (camvid_layout / "train" / "train1.png").write_bytes(b"garbage")
    files.label(camvid_layout / "valannot" / "val0.png", np.zeros((5, 5), np.uint8))
    files.label(camvid_layout / "valannot" / "val1.png", np.full((12, 16), 99, np.uint8))
    with pytest.raises(DatasetError) as err:
        validate(ds)
    msg = str(err.value)
    assert "3 of 5 samples" in msg
    assert "train1.png: cannot decode image" in msg
    assert "val0.png: label is 5x5 (WxH) but its image" in msg and "is 16x12" in msg
    assert "val1.png: label ids [99]" in msg
    with pytest.raises(DatasetError, match="1 of 3 samples"):
        validate(ds, "train")


def test_save_dataset_round_trip(camvid_layout, tmp_path):
    ds = open_dataset(camvid_layout)
    out = save_dataset(ds, tmp_path / "copy")
    copy = open_dataset(out)
    assert copy.counts == ds.counts and copy.config == ds.config
    for a, b in zip(ds.split("val"), copy.split("val"), strict=True):
        for x, y in zip(a.load(CAMVID), b.load(CAMVID), strict=True):
            np.testing.assert_array_equal(x, y)
