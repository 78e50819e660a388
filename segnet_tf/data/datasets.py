"""Finding, reading and checking segmentation datasets on disk.

These layouts are recognised in a dataset folder:

- **CamVid**: list files ``train.txt`` / ``val.txt`` / ``test.txt`` (any subset), one
  ``image label`` pair of paths relative to the folder per line (``#`` comments allowed).
- **images/labels**: ``images/`` and ``labels/`` folders whose files are paired by stem, either
  with ``train/``, ``val/``, ``test/`` subfolders in both, or as one pool that counts as ``train``.
- **Cityscapes, BDD100K, Mapillary Vistas v1.2, KITTI**: the releases' own folders
  (:mod:`segnet_tf.data.roads`; classes default to the release's, label ids mapped to them).
- **SUN RGB-D**: the 37-class release's ``SUNRGBD-train_images/``, ``SUNRGBD-test_images/`` and
  ``sunrgbd_train_test_labels/`` (:mod:`segnet_tf.data.sunrgbd`; classes default to SUN RGB-D's).

A folder written by :func:`segnet_tf.data.pack_dataset` (``dataset.json`` with a ``format`` key) is
read back transparently. The classes come from the ``config`` argument, else a ``dataset.yaml`` /
``dataset.yml`` / ``dataset.json`` in the folder, else CamVid's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import yaml

from edge_demo.images import IMAGE_SUFFIXES
from segnet_tf.data.config import CAMVID, SUNRGBD, DatasetConfig, load_dataset_config
from segnet_tf.data.io import (
    DatasetError,
    DatasetFileNotFoundError,
)
from segnet_tf.data.records import open_packed
from segnet_tf.data.roads import find_road_layout
from segnet_tf.data.samples import Dataset, Sample, SampleLike
from segnet_tf.data.sunrgbd import is_sunrgbd, sunrgbd_splits
from segnet_tf.progress import progress

SPLIT_NAMES = ("train", "val", "test")
CONFIG_FILES = ("dataset.yaml", "dataset.yml", "dataset.json")
_MAX_LISTED = 10


def open_dataset(root: str | Path, config: DatasetConfig | str | Path | None = None) -> Dataset:
    """Discover the splits of the dataset folder ``root`` (see the module docstring).

    ``config`` is a :class:`DatasetConfig`, a built-in name or a YAML/JSON path; it overrides the
    folder's own. File existence is checked here; :func:`validate` decodes every file.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetFileNotFoundError(f"dataset folder {root} does not exist")
    packed = _packed_manifest(root)
    if packed is not None:
        return open_packed(root, packed, None if config is None else _as_config(config))
    road = find_road_layout(root)
    sunrgbd = road is None and is_sunrgbd(root)
    if config is not None:
        cfg = _as_config(config)
    else:
        default = road.config(root) if road else SUNRGBD if sunrgbd else CAMVID
        cfg = _folder_config(root, default)
    if any((root / f"{s}.txt").is_file() for s in SPLIT_NAMES):
        splits = _list_file_splits(root)
    elif road is not None:
        splits = road.splits(root)
    elif (root / "images").is_dir() and (root / "labels").is_dir():
        splits = _folder_splits(root / "images", root / "labels")
    elif sunrgbd:
        splits = sunrgbd_splits(root)
    else:
        raise DatasetError(
            f"{root}: not a dataset folder; expected list files ({', '.join(SPLIT_NAMES)}.txt "
            "with 'image label' lines), images/ + labels/ folders, a Cityscapes, BDD100K, "
            "Mapillary Vistas v1.2 or KITTI release folder, SUN RGB-D's "
            "SUNRGBD-train_images/ + sunrgbd_train_test_labels/, or a packed dataset.json "
            "(see docs/datasets.md)"
        )
    return Dataset(root=root, config=cfg, splits=splits)


def _as_config(config: DatasetConfig | str | Path) -> DatasetConfig:
    return config if isinstance(config, DatasetConfig) else load_dataset_config(config)


def _folder_config(root: Path, default: DatasetConfig = CAMVID) -> DatasetConfig:
    for name in CONFIG_FILES:
        if (root / name).is_file():
            return load_dataset_config(root / name)
    return default


def _packed_manifest(root: Path) -> dict | None:
    path = root / "dataset.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not valid JSON: {e}") from e
    return data if isinstance(data, dict) and "format" in data else None


def _list_file_splits(root: Path) -> dict[str, tuple[Sample, ...]]:
    splits = {s: _read_list_file(root / f"{s}.txt", root) for s in SPLIT_NAMES}
    splits = {s: samples for s, samples in splits.items() if samples is not None}
    for s, samples in splits.items():
        missing = [p for sample in samples for p in (sample.image, sample.label) if not p.is_file()]
        if missing:
            raise DatasetFileNotFoundError(
                f"{root / f'{s}.txt'}: {len(missing)} listed file(s) not found: "
                + _listing(map(str, missing))
            )
    return splits


def _read_list_file(path: Path, root: Path) -> tuple[Sample, ...] | None:
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not a text list file ({e.reason} at byte {e.start})") from None
    samples = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.replace("\t", " ").isprintable():  # NUL, escapes: in no file name we read
            raise DatasetError(f"{path}:{lineno}: control characters in the line")
        parts = line.split()
        if len(parts) != 2:
            raise DatasetError(
                f"{path}:{lineno}: expected 'image label' (two paths without spaces), got {line!r}"
            )
        samples.append(Sample(root / parts[0], root / parts[1]))
    if not samples:
        raise DatasetError(f"{path}: list file has no 'image label' lines")
    return tuple(samples)


def _folder_splits(images: Path, labels: Path) -> dict[str, tuple[Sample, ...]]:
    subdirs = [s for s in SPLIT_NAMES if (images / s).is_dir()]
    if not subdirs:
        return {"train": _pair_by_stem(images, labels)}
    if _image_files(images):
        raise DatasetError(
            f"{images}: has both split folders ({', '.join(subdirs)}) and loose images; "
            "use one or the other"
        )
    return {s: _pair_by_stem(images / s, labels / s) for s in subdirs}


def _image_files(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
            if p.stem in files:
                raise DatasetError(
                    f"{folder}: two files share the stem {p.stem!r}: {files[p.stem].name}, {p.name}"
                )
            files[p.stem] = p
    return files


def _pair_by_stem(images: Path, labels: Path) -> tuple[Sample, ...]:
    if not labels.is_dir():
        raise DatasetFileNotFoundError(f"{labels}: label folder for {images} not found")
    image_files, label_files = _image_files(images), _image_files(labels)
    if not image_files:
        raise DatasetError(f"{images}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    no_label = sorted(set(image_files) - set(label_files))
    if no_label:
        raise DatasetFileNotFoundError(
            f"{labels}: no label file for {len(no_label)} image(s) in {images}: "
            + _listing(image_files[s].name for s in no_label)
        )
    no_image = sorted(set(label_files) - set(image_files))
    if no_image:
        raise DatasetError(
            f"{images}: no image for {len(no_image)} label file(s) in {labels}: "
            + _listing(label_files[s].name for s in no_image)
        )
    return tuple(Sample(image_files[s], label_files[s]) for s in sorted(image_files))


def _listing(items) -> str:
    items = list(items)
    more = f", ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return ", ".join(items[:_MAX_LISTED]) + more


def validate(dataset: Dataset, split: str | None = None) -> int:
    """Decode every image and label of ``split`` (default: all splits) and check them.

    Returns the number of samples checked; raises :class:`DatasetError` listing every problem
    (unreadable files, size mismatches, ids outside the classes) with the file it is in.
    """
    names = list(dataset.splits) if split is None else [split]
    samples = [s for name in names for s in dataset.split(name)]

    def problem(sample: SampleLike) -> str | None:
        try:
            sample.load(dataset.config)
        except DatasetError as e:
            return str(e)
        return None

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        found = progress(pool.map(problem, samples), "check", total=len(samples))
        problems = [p for p in found if p is not None]
    if problems:
        shown = "\n  - ".join(problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise DatasetError(
            f"{len(problems)} of {len(samples)} samples in {dataset.root or dataset.config.name} "
            f"({', '.join(names)}) have problems:\n  - {shown}{more}"
        )
    return len(samples)


def save_dataset(
    dataset: Dataset, out_dir: str | Path, splits: Sequence[str] | None = None
) -> Path:
    """Write ``dataset`` as PNG files in the CamVid layout (``<split>/``, ``<split>annot/``,
    ``<split>.txt``) plus its ``dataset.yaml``, so :func:`open_dataset` reads it back."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for split in splits or list(dataset.splits):
        samples = dataset.split(split)
        names = [s.name for s in samples]
        if len(set(names)) != len(names):
            raise DatasetError(f"split {split!r}: sample names are not unique, cannot save")
        (out / split).mkdir(exist_ok=True)
        (out / f"{split}annot").mkdir(exist_ok=True)
        lines = []
        for sample in samples:
            image, label = sample.load(dataset.config)
            rel_image, rel_label = f"{split}/{sample.name}.png", f"{split}annot/{sample.name}.png"
            _write_png(out / rel_image, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            _write_png(out / rel_label, label)
            lines.append(f"{rel_image} {rel_label}\n")
        (out / f"{split}.txt").write_text("".join(lines))
    config = dataset.config.mapped().to_dict()  # the PNGs hold class ids
    (out / "dataset.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def _write_png(path: Path, array: np.ndarray) -> None:
    if not cv2.imwrite(str(path), array):
        raise OSError(f"{path}: could not write PNG")
