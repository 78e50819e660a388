"""tf.data pipeline: shapes, dtypes, exact labels, augmentation geometry, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from segnet_tf.data import (
    CAMVID,
    DatasetError,
    load_image,
    load_label,
    make_dataset,
    open_dataset,
    pipeline,
)

VOID = CAMVID.void_id


def _batches(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


@pytest.fixture
def two_ids(tmp_path, files):
    """Four 20x24 pairs whose labels hold only ids 0 and 10 in blocks: any interpolation of a
    label would create ids in between."""
    rng = np.random.default_rng(0)
    lines = []
    for i in range(4):
        blocks = rng.choice(np.array([0, 10], np.uint8), (5, 6))
        label = np.kron(blocks, np.ones((4, 4), np.uint8))
        image = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
        files.image(tmp_path / "img" / f"{i}.png", image)
        files.label(tmp_path / "lab" / f"{i}.png", label)
        lines.append(f"img/{i}.png lab/{i}.png")
    (tmp_path / "train.txt").write_text("\n".join(lines))
    return open_dataset(tmp_path)


def test_eval_native_size_is_exact(camvid_layout):
    ds = open_dataset(camvid_layout)
    batches = _batches(make_dataset(ds, split="val", input_size=None, batch_size=1, training=False))
    assert len(batches) == 2
    for (x, y), sample in zip(batches, ds.split("val"), strict=True):
        assert x.dtype == np.float32 and y.dtype == np.int32
        np.testing.assert_array_equal(x[0], load_image(sample.image).astype(np.float32))
        np.testing.assert_array_equal(y[0], load_label(sample.label, CAMVID))


def test_eval_resize_label_nearest_image_bilinear(tmp_path, files):
    label = np.array([[0, 1], [2, VOID]], np.uint8)
    files.image(tmp_path / "i.png", np.full((2, 2, 3), 77, np.uint8))
    files.label(tmp_path / "l.png", label)
    (tmp_path / "val.txt").write_text("i.png l.png\n")
    [(x, y)] = _batches(
        make_dataset(tmp_path, split="val", input_size=(4, 4), batch_size=4, training=False)
    )
    np.testing.assert_array_equal(y[0], np.kron(label, np.ones((2, 2), np.uint8)))
    np.testing.assert_array_equal(x[0], np.full((4, 4, 3), 77.0))


def test_training_shapes_dtypes_and_ranges(two_ids):
    ds = make_dataset(
        two_ids, split="train", input_size=(12, 16), batch_size=3, training=True, seed=0
    )
    for _ in range(3):
        batches = _batches(ds)
        assert len(batches) == 1  # 4 samples, batch 3: the incomplete batch is dropped
        x, y = batches[0]
        assert x.shape == (3, 12, 16, 3) and x.dtype == np.float32
        assert y.shape == (3, 12, 16) and y.dtype == np.int32
        assert 0.0 <= x.min() and x.max() <= 255.0


def test_eval_keeps_incomplete_batch(two_ids):
    ds = make_dataset(two_ids, split="train", input_size=(12, 16), batch_size=3, training=False)
    assert [x.shape[0] for x, _ in _batches(ds)] == [3, 1]


def test_augmented_labels_are_never_interpolated(two_ids):
    ds = make_dataset(
        two_ids,
        split="train",
        input_size=(14, 18),
        batch_size=4,
        training=True,
        seed=1,
        scale_range=(0.4, 2.5),
    )
    values = set()
    for _ in range(8):
        for _, y in _batches(ds):
            values.update(np.unique(y).tolist())
    assert values == {0, 10, VOID}  # scales below 1 pad with void


def test_no_void_config_never_pads(tmp_path, files, no_void):
    rng = np.random.default_rng(0)
    for i in range(3):
        image, label = files.pair(rng, 20, 24, ids=(0, 1, 2))
        files.image(tmp_path / "images" / f"{i}.png", image)
        files.label(tmp_path / "labels" / f"{i}.png", label)
    ds = open_dataset(tmp_path, config=no_void)
    ds = make_dataset(
        ds,
        split="train",
        input_size=(20, 24),
        batch_size=3,
        training=True,
        seed=0,
        scale_range=(0.3, 0.5),
    )
    for _ in range(5):
        [(x, y)] = _batches(ds)
        assert set(np.unique(y)) <= {0, 1, 2}


def test_padding_is_black_and_void(two_ids, monkeypatch):
    ds = make_dataset(
        two_ids,
        split="train",
        input_size=(20, 24),
        batch_size=4,
        training=True,
        seed=2,
        scale_range=(0.5, 0.5),
    )
    [(x, y)] = _batches(ds)
    padded = y == VOID
    assert padded.mean() == pytest.approx(0.75, abs=0.02)  # half height x half width is kept
    assert np.all(x[padded] == 0.0)


def test_augmentation_keeps_image_and_label_aligned(tmp_path, files, monkeypatch):
    """With colour jitter off, every pixel's colour still names its label after scale/crop/flip."""
    monkeypatch.setattr(pipeline, "_jitter_colours", lambda image, seed, aug: image)
    rng = np.random.default_rng(3)
    palette = np.array([[250, 0, 0], [0, 250, 0], [0, 0, 250]], np.uint8)
    for i in range(2):
        label = np.kron(rng.integers(0, 3, (4, 5)).astype(np.uint8), np.ones((6, 6), np.uint8))
        files.image(tmp_path / "images" / f"{i}.png", palette[label])
        files.label(tmp_path / "labels" / f"{i}.png", label)
    ds = make_dataset(
        tmp_path,
        split="train",
        input_size=(18, 24),
        batch_size=2,
        training=True,
        seed=5,
        scale_range=(0.8, 1.6),
    )
    checked = 0
    for _ in range(4):
        for x, y in _batches(ds):
            for img, lab in zip(x, y, strict=True):
                # pixels whose 8 neighbours share their label: bilinear colour = label colour
                inner = np.ones_like(lab, bool)
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        inner &= np.roll(lab, (dy, dx), (0, 1)) == lab
                inner[[0, -1], :] = inner[:, [0, -1]] = False
                inner &= lab != VOID
                np.testing.assert_allclose(img[inner], palette[lab[inner]], atol=1.0)
                checked += inner.sum()
    assert checked > 1000


def test_seeded_training_is_deterministic_and_epochs_differ(two_ids):
    def epochs(seed):
        ds = make_dataset(
            two_ids, split="train", input_size=(12, 16), batch_size=2, training=True, seed=seed
        )
        return [_batches(ds) for _ in range(2)]

    a, b, c = epochs(7), epochs(7), epochs(8)
    for epoch_a, epoch_b in zip(a, b, strict=True):
        for (xa, ya), (xb, yb) in zip(epoch_a, epoch_b, strict=True):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a[0][0][0], a[1][0][0])
    assert not np.array_equal(a[0][0][0], c[0][0][0])


def test_argument_errors(two_ids, tmp_path):
    samples = two_ids.split("train")
    with pytest.raises(ValueError, match="needs the dataset config"):
        make_dataset(samples, input_size=(8, 8), batch_size=1, training=False)
    with pytest.raises(ValueError, match=r"pass split= \(one of train\)"):
        make_dataset(two_ids, input_size=(8, 8), batch_size=1, training=False)
    with pytest.raises(ValueError, match="training needs an input_size"):
        make_dataset(two_ids, split="train", input_size=None, batch_size=1, training=True)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        make_dataset(two_ids, split="train", input_size=(8, 8), batch_size=0, training=False)
    with pytest.raises(DatasetError, match="no samples"):
        make_dataset([], CAMVID, input_size=(8, 8), batch_size=1, training=False)
    samples[2].image.unlink()
    with pytest.raises(FileNotFoundError, match=r"1 dataset file\(s\) not found: .*img/2\.png"):
        make_dataset(samples, CAMVID, input_size=(8, 8), batch_size=1, training=False)


def test_corrupt_file_error_unwrapped(camvid_layout):
    (camvid_layout / "val" / "val1.png").write_bytes(b"junk")
    ds = make_dataset(camvid_layout, split="val", input_size=None, batch_size=1, training=False)
    with pytest.raises(Exception) as err:
        _batches(ds)
    unwrapped = pipeline.unwrap_dataset_error(err.value)
    assert type(unwrapped) is DatasetError
    assert (
        str(unwrapped) == f"{camvid_layout / 'val' / 'val1.png'}: cannot decode image: "
        "not a PNG, JPEG, BMP, TIFF or WebP file"
    )
    other = ValueError("DatasetError: not from the pipeline")
    assert pipeline.unwrap_dataset_error(other) is other


def test_real_camvid_through_pipeline(camvid):
    ds = open_dataset(camvid)
    samples = ds.split("val")[:3]
    [(x, y)] = _batches(
        make_dataset(samples, ds.config, input_size=None, batch_size=3, training=False)
    )
    assert x.shape == (3, 360, 480, 3) and y.shape == (3, 360, 480)
    np.testing.assert_array_equal(y[1], load_label(samples[1].label, CAMVID))
    train = make_dataset(
        ds.split("train")[:4], ds.config, input_size=(180, 240), batch_size=2, training=True, seed=0
    )
    for x, y in _batches(train):
        assert x.shape == (2, 180, 240, 3) and y.shape == (2, 180, 240)
        assert set(np.unique(y)) <= set(range(12)) and len(np.unique(y)) >= 5
        assert 0 <= x.min() and x.max() <= 255 and x.std() > 20


def test_crops_are_taken_at_the_input_scale(two_ids):
    """Scale 1.0 is the image at input_size (20x24 -> 40x48 here); a 10x12 crop of it shows label
    blocks twice as large as the source's 4x4."""
    ds = make_dataset(
        two_ids,
        split="train",
        input_size=(40, 48),
        crop_size=(10, 12),
        batch_size=4,
        training=True,
        seed=0,
        scale_range=(1.0, 1.0),
    )
    x, y = _batches(ds)[0]
    assert x.shape == (4, 10, 12, 3) and y.shape == (4, 10, 12)
    for lab in y:  # blocks of 8x8 pixels: no 1-pixel run inside a crop away from its edges
        runs = np.flatnonzero(np.diff(lab[5]) != 0)
        assert np.all(np.diff(runs) >= 8)


def test_strong_augmentation_keeps_pixels_in_range_and_labels_exact(two_ids):
    ds = make_dataset(
        two_ids, split="train", input_size=(20, 24), batch_size=4, training=True, seed=1,
        augment="strong",
    )  # fmt: skip
    for x, y in _batches(ds) * 3:
        assert 0.0 <= x.min() and x.max() <= 255.0
        assert set(np.unique(y)) <= {0, 10, VOID}


def test_augmentation_names_and_old_run_flags_resolve():
    assert pipeline.resolve_augmentation(True) == pipeline.AUGMENTATIONS["default"]
    assert pipeline.resolve_augmentation(False) is None
    assert pipeline.resolve_augmentation("strong").scale_range == (0.5, 2.0)
    with pytest.raises(ValueError, match="--augment 'wild': choose one of none, default, strong"):
        pipeline.resolve_augmentation("wild")


def test_noise_and_blur_change_a_flat_image_within_their_bounds():
    import tensorflow as tf

    flat = tf.fill([16, 16, 3], 128.0)
    aug = pipeline.Augmentation(blur=1.0, noise=8.0)
    out = pipeline._degrade(flat, tf.constant([3, 4], tf.int64), aug).numpy()
    assert out.std() > 0.5  # the noise is there ...
    assert np.abs(out - 128.0).max() < 8.0 * 6  # ... within six of its largest sigma
    blurred = pipeline._degrade(
        flat, tf.constant([3, 4], tf.int64), pipeline.Augmentation(blur=1.0)
    )
    np.testing.assert_allclose(blurred.numpy()[4:-4, 4:-4], 128.0, atol=1e-3)  # blur keeps flat
