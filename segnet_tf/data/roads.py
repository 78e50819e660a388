"""Road-scene datasets in their releases' own layouts, found by :func:`find_road_layout`.

- **Cityscapes** (Cordts et al., CVPR 2016), ``leftImg8bit_trainvaltest.zip`` and
  ``gtFine_trainvaltest.zip`` unpacked in one folder::

      <root>/leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
      <root>/gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

  The 34 ``labelIds`` become the 19 evaluated classes with cityscapesScripts' table (every other
  id void 255), so no ``createTrainIdLabelImgs`` step is needed.
- **BDD100K** semantic segmentation (Yu et al., CVPR 2020), the same 19 classes stored as train
  ids (255 ignored): ``images/10k/{train,val}/*.jpg`` +
  ``labels/sem_seg/masks/{train,val}/*.png``, or the older release's
  ``seg/images/{train,val}/*.jpg`` + ``seg/labels/{train,val}/*_train_id.png``.
- **Mapillary Vistas v1.2** (Neuhold et al., ICCV 2017): ``config.json`` (or, in the v2.0
  archive, ``config_v1.2.json``) and ``{training,validation}/images/*.jpg`` +
  ``.../labels/*.png`` (``.../v1.2/labels/`` in the v2.0 archive). The labels are palette PNGs
  whose colours are ``config.json``'s; the labels it marks ``"evaluate": true`` are the classes,
  the others void.
- **KITTI** semantic segmentation (Alhaija et al., IJCV 2018): ``training/image_2/*.png`` +
  ``training/semantic/*.png`` in Cityscapes' ``labelIds``, read as Cityscapes' are; one split,
  ``train`` (training holds out a seeded tenth for validation).

Splits without labels (Cityscapes' and BDD100K's test images, Mapillary's ``testing/``) are left
out of BDD100K and Mapillary; Cityscapes' ``gtFine/test`` holds placeholder labels (all void).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segnet_tf.data.config import BDD100K, CITYSCAPES, KITTI, DatasetConfig
from segnet_tf.data.io import (
    DatasetError,
    DatasetFileNotFoundError,
    check_label_ids,
    check_same_size,
    load_image,
    load_label,
)
from segnet_tf.data.samples import Sample

Splits = dict[str, tuple[Sample, ...]]
MAX_VISTAS_CONFIG_BYTES = 1 << 20  # the release's config.json is ~10 kB
VISTAS_SPLITS = {"training": "train", "validation": "val"}
_SHOWN = 3


@dataclass(frozen=True)
class RoadLayout:
    """A release's layout: how to recognise its folder, its classes and its samples."""

    found: Callable[[Path], bool]
    config: Callable[[Path], DatasetConfig]
    splits: Callable[[Path], Splits]


def find_road_layout(root: Path) -> RoadLayout | None:
    """The road-scene layout of the folder ``root``, if it is one of :data:`ROAD_LAYOUTS`."""
    return next((layout for layout in ROAD_LAYOUTS if layout.found(root)), None)


def _paired(
    images: Iterable[Path], label_of: Callable[[Path], Path], folder: Path, rule: str
) -> tuple[Sample, ...]:
    """Every image with its label file; a missing label is an error naming it and the rule."""
    samples = tuple(Sample(image, label_of(image)) for image in sorted(images))
    if not samples:
        raise DatasetError(f"{folder}: no images")
    missing = [s.label for s in samples if not s.label.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:_SHOWN])
        raise DatasetFileNotFoundError(
            f"{folder}: no label for {len(missing)} of {len(samples)} images (e.g. {shown}; {rule})"
        )
    return samples


# --------------------------------------------------------------------------- Cityscapes


def _cityscapes_found(root: Path) -> bool:
    return (root / "leftImg8bit").is_dir() and (root / "gtFine").is_dir()


def _cityscapes_splits(root: Path) -> Splits:
    splits = {}
    for split in ("train", "val", "test"):
        images, labels = root / "leftImg8bit" / split, root / "gtFine" / split
        if not images.is_dir():
            continue
        if not labels.is_dir():
            raise DatasetFileNotFoundError(f"{labels}: label folder for {images} not found")

        def label_of(image: Path, labels: Path = labels) -> Path:
            stem = image.name.removesuffix("_leftImg8bit.png")
            return labels / image.parent.name / f"{stem}_gtFine_labelIds.png"

        splits[split] = _paired(
            images.glob("*/*_leftImg8bit.png"),
            label_of,
            images,
            "<city>/<name>_leftImg8bit.png has label "
            "gtFine/<split>/<city>/<name>_gtFine_labelIds.png",
        )
    if not splits:
        raise DatasetError(f"{root / 'leftImg8bit'}: none of the split folders train, val, test")
    return splits


# --------------------------------------------------------------------------- BDD100K


def _bdd100k_folders(root: Path) -> tuple[Path, Path, str] | None:
    """(images, labels, label suffix) of the current or the older release's layout."""
    if (root / "images" / "10k").is_dir() and (root / "labels" / "sem_seg" / "masks").is_dir():
        return root / "images" / "10k", root / "labels" / "sem_seg" / "masks", ".png"
    if (root / "seg" / "images").is_dir() and (root / "seg" / "labels").is_dir():
        return root / "seg" / "images", root / "seg" / "labels", "_train_id.png"
    return None


def _bdd100k_splits(root: Path) -> Splits:
    images, labels, suffix = _bdd100k_folders(root)  # type: ignore[misc]
    splits = {}
    for split in ("train", "val"):
        if not (images / split).is_dir():
            continue
        splits[split] = _paired(
            (images / split).glob("*.jpg"),
            lambda image, split=split: labels / split / f"{image.stem}{suffix}",
            images / split,
            f"<name>.jpg has label {labels.relative_to(root)}/{split}/<name>{suffix}",
        )
    if not splits:
        raise DatasetError(f"{images}: neither a train nor a val folder")
    return splits


# --------------------------------------------------------------------------- Mapillary Vistas


def _vistas_config_file(root: Path) -> Path | None:
    if (root / "config_v1.2.json").is_file():  # the v2.0 archive, which carries v1.2 too
        return root / "config_v1.2.json"
    if (root / "config.json").is_file() and (root / "training" / "labels").is_dir():
        return root / "config.json"
    return None


def _vistas_labels(root: Path, split_folder: str) -> Path:
    nested = root / split_folder / "v1.2" / "labels"
    return nested if (root / "config_v1.2.json").is_file() else root / split_folder / "labels"


def vistas_palette(path: Path) -> DatasetConfig:
    """Every label of a Mapillary Vistas ``config.json`` in file order (their index is the label
    id of the palette PNGs), with ``"evaluate"`` of each kept in the ``id_map`` of
    :func:`vistas_config`."""
    return _vistas_configs(path)[0]


def vistas_config(root: Path) -> DatasetConfig:
    """The evaluated labels of the folder's ``config.json`` as classes, the others void 255."""
    return _vistas_configs(_vistas_config_file(root))[1]  # type: ignore[arg-type]


def _vistas_configs(path: Path) -> tuple[DatasetConfig, DatasetConfig]:
    if path.stat().st_size > MAX_VISTAS_CONFIG_BYTES:
        raise DatasetError(
            f"{path}: {path.stat().st_size} bytes, not a Mapillary Vistas config (those are "
            f"~10 kB; at most {MAX_VISTAS_CONFIG_BYTES})"
        )
    try:
        labels = json.loads(path.read_text())["labels"]
        names = tuple(str(label["readable"]) for label in labels)
        colours = tuple(tuple(int(v) for v in label["color"]) for label in labels)
        evaluated = [bool(label.get("evaluate", True)) for label in labels]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
        raise DatasetError(
            f"{path}: not a Mapillary Vistas config ({{'labels': [{{'readable', 'color', "
            f"'evaluate'}}, ...]}}): {type(e).__name__}: {e}"
        ) from None
    if not labels or len(labels) > 256 or not all(len(c) == 3 for c in colours):
        raise DatasetError(f"{path}: expected 1..256 labels with [r, g, b] colours")
    if any(not 0 <= v <= 255 for c in colours for v in c):
        raise DatasetError(f"{path}: label colours must be 0..255")
    kept = [i for i, keep in enumerate(evaluated) if keep]
    try:
        palette = DatasetConfig(name=f"{path.name} labels", class_names=names, colours=colours)
        config = DatasetConfig(
            name="mapillary-vistas-v1.2",
            class_names=tuple(names[i] for i in kept),
            colours=tuple(colours[i] for i in kept),
            void_id=255,
            id_map=tuple((label_id, k) for k, label_id in enumerate(kept)),
        )
    except ValueError as e:
        raise DatasetError(f"{path}: {e}") from None
    return palette, config


@dataclass(frozen=True)
class VistasSample(Sample):
    """A Mapillary Vistas image and its palette label, decoded through the release's colours
    (OpenCV reads a palette PNG as colours) and then mapped to classes."""

    palette: DatasetConfig | None = None

    def load(self, config: DatasetConfig) -> tuple[np.ndarray, np.ndarray]:
        image, label = load_image(self.image), self.load_label(config)
        check_same_size(image, label, str(self.image), str(self.label))
        return image, label

    def load_label(self, config: DatasetConfig) -> np.ndarray:
        label = config.map_ids(load_label(self.label, self.palette))  # type: ignore[arg-type]
        check_label_ids(label, config, str(self.label))
        return label


def _vistas_splits(root: Path) -> Splits:
    palette = vistas_palette(_vistas_config_file(root))  # type: ignore[arg-type]
    splits = {}
    for folder, split in VISTAS_SPLITS.items():
        images, labels = root / folder / "images", _vistas_labels(root, folder)
        if not images.is_dir():
            continue
        samples = _paired(
            images.glob("*.jpg"),
            lambda image, labels=labels: labels / f"{image.stem}.png",
            images,
            f"<name>.jpg has label {labels.relative_to(root)}/<name>.png",
        )
        splits[split] = tuple(VistasSample(s.image, s.label, palette) for s in samples)
    if not splits:
        raise DatasetError(f"{root}: neither training/images/ nor validation/images/")
    return splits


# --------------------------------------------------------------------------- KITTI


def _kitti_found(root: Path) -> bool:
    return (root / "training" / "image_2").is_dir() and (root / "training" / "semantic").is_dir()


def _kitti_splits(root: Path) -> Splits:
    images, labels = root / "training" / "image_2", root / "training" / "semantic"
    samples = _paired(
        images.glob("*.png"),
        lambda image: labels / image.name,
        images,
        "training/image_2/<name>.png has label training/semantic/<name>.png",
    )
    return {"train": samples}


ROAD_LAYOUTS = (
    RoadLayout(_cityscapes_found, lambda root: CITYSCAPES, _cityscapes_splits),
    RoadLayout(
        lambda root: _bdd100k_folders(root) is not None,
        lambda root: BDD100K,
        _bdd100k_splits,
    ),
    RoadLayout(
        lambda root: _vistas_config_file(root) is not None,
        vistas_config,
        _vistas_splits,
    ),
    RoadLayout(_kitti_found, lambda root: KITTI, _kitti_splits),
)
