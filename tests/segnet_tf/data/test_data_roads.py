"""Road-scene releases (Cityscapes, BDD100K, Mapillary Vistas v1.2, KITTI) and ``id_map``: a few
frames written here in each release's layout with known label ids (the real data cannot be
fetched on these machines), their mapping to classes, the class tables and a training step."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from segnet_tf.cli import cli
from segnet_tf.data import (
    BDD100K,
    CITYSCAPES,
    KITTI,
    DatasetConfig,
    DatasetError,
    load_dataset_config,
    make_dataset,
    open_dataset,
    pack_dataset,
    validate,
)
from segnet_tf.data.io import DatasetFileNotFoundError

H, W = 8, 16
# Cityscapes labelIds and the trainIds they must become (255: not one of the 19 classes)
LABEL_IDS = np.array([0, 1, 6, 7, 8, 9, 11, 17, 23, 24, 26, 29, 31, 33], np.uint8)
TRAIN_IDS = np.array([255, 255, 255, 0, 1, 255, 2, 5, 10, 11, 13, 255, 16, 18], np.uint8)


def label_ids(seed: int, ids: np.ndarray) -> np.ndarray:
    """An H x W label drawn from ``ids``, its first row all of them in order."""
    label = np.random.default_rng(seed).choice(ids, (H, W))
    label[0, : len(ids)] = ids
    return label


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(100 + seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


@pytest.fixture
def cityscapes(tmp_path: Path, files) -> Path:
    for k, (split, city) in enumerate(
        (("train", "aachen"), ("train", "bremen"), ("val", "lindau"))
    ):
        name = f"{city}_000000_{k:06d}"
        files.image(tmp_path / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", image(k))
        label = tmp_path / "gtFine" / split / city / f"{name}_gtFine_labelIds.png"
        files.label(label, label_ids(k, LABEL_IDS))
        # the release's other files beside it, which must be ignored
        files.label(label.with_name(f"{name}_gtFine_instanceIds.png"), np.zeros((H, W), np.uint8))
    return tmp_path


TRAIN_ID_SET = np.array([0, 1, 2, 10, 13, 18, 255], np.uint8)


@pytest.fixture
def bdd100k(tmp_path: Path, files) -> Path:
    for k, split in enumerate(("train", "train", "val")):
        files.image(tmp_path / "images" / "10k" / split / f"f{k}.jpg", image(k))
        labels = tmp_path / "labels" / "sem_seg" / "masks" / split
        files.label(labels / f"f{k}.png", label_ids(k, TRAIN_ID_SET))
    return tmp_path


VISTAS_LABELS = [  # a v1.2 config.json's entries, shortened to four
    {"readable": "Bird", "name": "animal--bird", "color": [165, 42, 42], "evaluate": True},
    {
        "readable": "Road",
        "name": "construction--flat--road",
        "color": [128, 64, 128],
        "evaluate": True,
    },
    {"readable": "Car", "name": "object--vehicle--car", "color": [0, 0, 142], "evaluate": True},
    {"readable": "Unlabeled", "name": "void--unlabeled", "color": [0, 0, 0], "evaluate": False},
]


def write_palette_png(path: Path, indices: np.ndarray, labels: list[dict]) -> None:
    """A palette PNG as the release stores its labels (the index is the label id)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    png = Image.fromarray(indices.astype(np.uint8), mode="P")
    png.putpalette([v for label in labels for v in label["color"]])
    png.save(path)


@pytest.fixture
def vistas(tmp_path: Path, files) -> Path:
    (tmp_path / "config.json").write_text(json.dumps({"labels": VISTAS_LABELS}))
    for k, folder in enumerate(("training", "training", "validation")):
        files.image(tmp_path / folder / "images" / f"v{k}.jpg", image(k))
        labels = tmp_path / folder / "labels" / f"v{k}.png"
        write_palette_png(labels, label_ids(k, np.array([0, 1, 2, 3], np.uint8)), VISTAS_LABELS)
    (tmp_path / "testing" / "images").mkdir(parents=True)  # no labels: not a split
    return tmp_path


@pytest.fixture
def kitti(tmp_path: Path, files) -> Path:
    for k in range(3):
        files.image(tmp_path / "training" / "image_2" / f"{k:06d}_10.png", image(k))
        files.label(tmp_path / "training" / "semantic" / f"{k:06d}_10.png", label_ids(k, LABEL_IDS))
    (tmp_path / "testing" / "image_2").mkdir(parents=True)
    return tmp_path


def test_the_class_table_is_cityscapes_official_one():
    assert CITYSCAPES.num_classes == 19 and CITYSCAPES.void_id == 255
    names = CITYSCAPES.class_names
    assert (names[0], names[6], names[10], names[13], names[18]) == (
        "road",
        "traffic light",
        "sky",
        "car",
        "bicycle",
    )
    assert CITYSCAPES.colours[0] == (128, 64, 128) and CITYSCAPES.colours[13] == (0, 0, 142)
    assert len(set(CITYSCAPES.colours)) == 19
    # labelIds 7..33 of the 19 classes, each once; the 15 others are void
    lut = CITYSCAPES.map_ids(np.arange(256, dtype=np.uint8))
    assert np.flatnonzero(lut != 255).tolist() == [
        7,
        8,
        11,
        12,
        13,
        17,
        19,
        20,
        21,
        22,
        23,
        24,
        25,
        26,
        27,
        28,
        31,
        32,
        33,
    ]
    assert lut[np.flatnonzero(lut != 255)].tolist() == list(range(19))
    np.testing.assert_array_equal(CITYSCAPES.map_ids(LABEL_IDS), TRAIN_IDS)
    assert BDD100K.class_names == KITTI.class_names == names and BDD100K.id_map is None
    assert load_dataset_config("Cityscapes") is CITYSCAPES


def test_cityscapes_is_found_and_its_label_ids_become_train_ids(cityscapes):
    dataset = open_dataset(cityscapes)
    assert dataset.config is CITYSCAPES and dataset.counts == {"train": 2, "val": 1}
    sample = dataset.split("train")[1]
    assert sample.label.name == "bremen_000000_000001_gtFine_labelIds.png"
    image_, label = sample.load(dataset.config)
    assert image_.shape == (H, W, 3)
    want = CITYSCAPES.map_ids(label_ids(1, LABEL_IDS))
    np.testing.assert_array_equal(label, want)
    np.testing.assert_array_equal(label[0, : len(TRAIN_IDS)], TRAIN_IDS)
    assert validate(dataset) == 3


def test_data_stats_lists_the_19_classes_by_name_with_their_pixels(cityscapes, tmp_path):
    out = tmp_path / "s.json"
    result = CliRunner().invoke(
        cli, ["data", "stats", "--data", str(cityscapes), "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    stats = json.loads(out.read_text())
    labels = [CITYSCAPES.map_ids(label_ids(k, LABEL_IDS)) for k in (0, 1)]
    counts = np.bincount(np.concatenate([x.ravel() for x in labels]), minlength=256)
    assert [c["name"] for c in stats["classes"]] == list(CITYSCAPES.class_names)
    assert [c["pixels"] for c in stats["classes"]] == counts[:19].tolist()
    assert stats["void_pixels"] == counts[255] and stats["total_pixels"] == 2 * H * W
    assert "traffic light" in result.output
    check = CliRunner().invoke(cli, ["data", "check", "--data", str(cityscapes)])
    assert check.exit_code == 0 and "3 samples OK (train 2, val 1; 19 classes" in check.output
    assert "cityscapes" in check.output


def test_a_missing_cityscapes_label_is_named(cityscapes):
    (cityscapes / "gtFine/val/lindau/lindau_000000_000002_gtFine_labelIds.png").unlink()
    with pytest.raises(DatasetFileNotFoundError, match=r"lindau_000000_000002_gtFine_labelIds"):
        open_dataset(cityscapes)


def test_bdd100k_train_ids_are_read_as_they_are(bdd100k, files):
    dataset = open_dataset(bdd100k)
    assert dataset.config is BDD100K and dataset.counts == {"train": 2, "val": 1}
    _, label = dataset.split("val")[0].load(dataset.config)
    np.testing.assert_array_equal(label, label_ids(2, TRAIN_ID_SET))
    files.label(bdd100k / "labels/sem_seg/masks/train/f1.png", np.full((H, W), 19, np.uint8))
    with pytest.raises(DatasetError, match=r"f1.png: label ids \[19\] are outside 0\.\.18"):
        validate(dataset)


def test_the_older_bdd100k_layout_is_found_too(tmp_path, files):
    files.image(tmp_path / "seg/images/train/a.jpg", image(0))
    files.label(tmp_path / "seg/labels/train/a_train_id.png", label_ids(0, TRAIN_ID_SET))
    dataset = open_dataset(tmp_path)
    assert dataset.config is BDD100K and dataset.split("train")[0].label.name == "a_train_id.png"


def test_mapillary_vistas_classes_come_from_its_config_json(vistas):
    dataset = open_dataset(vistas)
    config = dataset.config
    assert dataset.counts == {"train": 2, "val": 1}  # testing/ has no labels
    assert config.class_names == ("Bird", "Road", "Car") and config.void_id == 255
    assert config.colours == ((165, 42, 42), (128, 64, 128), (0, 0, 142))
    _, label = dataset.split("train")[1].load(config)
    want = label_ids(1, np.array([0, 1, 2, 3], np.uint8))
    np.testing.assert_array_equal(label, np.where(want == 3, 255, want))
    assert validate(dataset) == 3


def test_mapillary_v2_archive_reads_its_v1_2_labels(tmp_path, files):
    (tmp_path / "config_v1.2.json").write_text(json.dumps({"labels": VISTAS_LABELS}))
    files.image(tmp_path / "validation/images/a.jpg", image(0))
    indices = label_ids(0, np.array([0, 3], np.uint8))
    write_palette_png(tmp_path / "validation/v1.2/labels/a.png", indices, VISTAS_LABELS)
    dataset = open_dataset(tmp_path)
    _, label = dataset.split("val")[0].load(dataset.config)
    np.testing.assert_array_equal(label, np.where(indices == 3, 255, 0))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a Mapillary Vistas config"),
        ('{"labels": [{"readable": "a"}]}', "KeyError: 'color'"),
        ('{"labels": [{"readable": "a", "color": [1, 2, 300]}]}', "colours must be 0..255"),
        ('{"labels": []}', "expected 1..256 labels"),
        (" " * (1 << 20) + "{}", "not a Mapillary Vistas config .* at most 1048576"),
    ],
)
def test_a_hostile_mapillary_config_is_refused_by_name(vistas, content, message):
    (vistas / "config.json").write_text(content)
    with pytest.raises(DatasetError, match=rf"config.json: .*{message}"):
        open_dataset(vistas)


def test_a_colour_outside_the_mapillary_palette_is_named(vistas, files):
    files.image(vistas / "training/labels/v0.png", np.full((H, W, 3), 7, np.uint8))
    with pytest.raises(DatasetError, match=r"v0.png: RGB label has 1 colour\(s\) .*\(7, 7, 7\)"):
        validate(open_dataset(vistas))


def test_kitti_uses_cityscapes_label_ids(kitti):
    dataset = open_dataset(kitti)
    assert dataset.config is KITTI and dataset.counts == {"train": 3}
    _, label = dataset.split("train")[2].load(dataset.config)
    np.testing.assert_array_equal(label, CITYSCAPES.map_ids(label_ids(2, LABEL_IDS)))


@pytest.mark.parametrize("layout", ["cityscapes", "bdd100k", "vistas", "kitti"])
def test_every_layout_feeds_training_batches_of_class_ids(layout, request):
    dataset = open_dataset(request.getfixturevalue(layout))
    images, labels = next(
        iter(make_dataset(dataset, split="train", input_size=(H, W), batch_size=2, training=True))
    )
    assert images.shape == (2, H, W, 3)
    ids = set(np.unique(labels.numpy()).tolist())
    assert ids <= set(range(dataset.config.num_classes)) | {255} and len(ids) > 2


def test_a_packed_dataset_keeps_the_mapped_ids(cityscapes, tmp_path):
    packed = open_dataset(pack_dataset(open_dataset(cityscapes), tmp_path / "packed"))
    assert packed.config.id_map is None and packed.config.class_names == CITYSCAPES.class_names
    _, label = packed.split("train")[0].load(packed.config)
    np.testing.assert_array_equal(label, CITYSCAPES.map_ids(label_ids(0, LABEL_IDS)))


# --------------------------------------------------------------------------- id_map


def own_layout(root: Path, files, id_map: dict) -> Path:
    files.image(root / "images" / "a.png", image(0))
    files.label(root / "labels" / "a.png", np.array([[3, 40, 7, 0] * 4] * H, np.uint8))
    config = {"class_names": ["road", "car"], "colours": [[1, 1, 1], [2, 2, 2]], "void_id": 255}
    (root / "dataset.yaml").write_text(yaml.safe_dump({**config, "id_map": id_map}))
    return root


def test_id_map_in_dataset_yaml_maps_ids_by_number_or_name(tmp_path, files):
    dataset = open_dataset(own_layout(tmp_path, files, {3: "road", 40: 1}))
    assert dataset.config.id_map == ((3, 0), (40, 1))
    _, label = dataset.split("train")[0].load(dataset.config)
    np.testing.assert_array_equal(label[0, :4], [0, 1, 255, 255])
    again = DatasetConfig.from_dict(json.loads(json.dumps(dataset.config.to_dict())))
    assert again == dataset.config  # round trip through a run's config.json


@pytest.mark.parametrize(
    ("id_map", "message"),
    [
        ({3: "lane"}, r"3 -> 'lane', which is neither a class id nor one of the class names"),
        ({3: 2}, r"3 -> 2, which is neither a class \(0\.\.1\) nor the void id 255"),
        ({"x": 0}, r"key 'x' is not an integer label id"),
        ({70000: 0}, r"label id 70000 is outside 0\.\.65535"),
        ([3, 4], r"id_map must be a mapping"),
    ],
)
def test_a_bad_id_map_is_refused_naming_the_file(tmp_path, files, id_map, message):
    with pytest.raises(ValueError, match=rf"dataset.yaml: .*{message}"):
        open_dataset(own_layout(tmp_path, files, id_map))


def test_id_map_needs_a_void_id_and_single_channel_labels(tmp_path, files):
    with pytest.raises(ValueError, match="void_id is not set"):
        DatasetConfig("x", ("a",), ((1, 1, 1),), id_map=((1, 0),))
    root = own_layout(tmp_path, files, {3: 0})
    files.image(root / "labels" / "a.png", image(0))
    with pytest.raises(DatasetError, match=r"a.png: an RGB label, but dataset .* maps label ids"):
        validate(open_dataset(root))


@pytest.mark.slow
def test_a_training_step_on_cityscapes_folders(cityscapes, tmp_path):
    from segnet_tf.training import TrainConfig, train

    run = train(
        TrainConfig(
            out=str(tmp_path / "run"),
            data=str(cityscapes),
            model="segnet-basic",
            width=0.25,
            input_size=(16, 32),
            epochs=1,
            batch_size=2,
            class_weights="median",
        ),
        verbose=0,
    )
    info = json.loads((run.run_dir / "config.json").read_text())
    assert info["dataset"]["name"] == "cityscapes" and len(info["dataset"]["class_names"]) == 19
    assert np.isfinite(run.best_miou)
