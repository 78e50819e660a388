"""Dataset configuration: the one home of class names, colours, the void id and class weights.

CamVid's 11-class SegNet split, SUN RGB-D's 37 classes and the 19 classes that Cityscapes, BDD100K
and KITTI share are built in; other datasets (a user's own classes) are described by a small YAML
or JSON file with the same keys as :meth:`DatasetConfig.to_dict`. A label file whose ids are not
the class ids (Cityscapes' 34 ``labelIds``, a tool's own numbering) is read through ``id_map``:
label id -> class id, every other id void.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

MAX_LABEL_ID = 65535  # label maps are 8- or 16-bit PNGs


@dataclass(frozen=True)
class DatasetConfig:
    """Classes of a segmentation dataset.

    ``void_id`` is a label id that is not a class: it is left out of the loss and every metric.
    It may equal ``num_classes`` (CamVid's 11) or be ``None`` when every pixel is labelled.
    ``class_weights`` are optional per-class loss weights (CamVid: the paper's median-frequency
    weights); ``segnet-tf data stats`` computes them for any dataset. ``id_map`` (label id,
    class id) pairs say how the ids in single-channel label files become classes: an id that is
    not listed becomes the void id (required then). None: the files hold class ids.
    """

    name: str
    class_names: tuple[str, ...]
    colours: tuple[tuple[int, int, int], ...]
    void_id: int | None = None
    void_colour: tuple[int, int, int] = (0, 0, 0)
    class_weights: tuple[float, ...] | None = None
    id_map: tuple[tuple[int, int], ...] | None = None

    def __post_init__(self) -> None:
        """Every value checked here, once, whoever builds the config (a YAML file, a run folder's
        classes, a packed dataset's manifest): a bad one fails at ``data check`` and
        ``train``, not later in ``predict`` or on the board."""
        duplicates = [n for n, k in Counter(self.class_names).items() if k > 1]
        if duplicates:
            raise ValueError(
                f"dataset config {self.name!r}: class name {duplicates[0]!r} is given "
                f"{self.class_names.count(duplicates[0])} times; each class needs its own name"
            )
        for i, colour in enumerate((*self.colours, self.void_colour)):
            if len(colour) != 3 or not all(0 <= v <= 255 for v in colour):
                what = "void_colour" if i == len(self.colours) else f"colour of class {i}"
                raise ValueError(
                    f"dataset config {self.name!r}: {what} {list(colour)} is not [r, g, b] "
                    "with values 0..255"
                )
        if self.class_weights is not None and not all(
            math.isfinite(w) and w >= 0 for w in self.class_weights
        ):
            bad = next(w for w in self.class_weights if not (math.isfinite(w) and w >= 0))
            raise ValueError(
                f"dataset config {self.name!r}: class weight {bad} is not a finite weight >= 0"
            )
        if self.void_id is not None and not 0 <= self.void_id <= MAX_LABEL_ID:
            raise ValueError(
                f"dataset config {self.name!r}: void_id {self.void_id} is outside "
                f"0..{MAX_LABEL_ID} (label maps are 8- or 16-bit)"
            )
        if len(self.class_names) != len(self.colours):
            raise ValueError(
                f"dataset config {self.name!r}: {len(self.class_names)} class names but "
                f"{len(self.colours)} colours"
            )
        if self.class_weights is not None and len(self.class_weights) != len(self.class_names):
            raise ValueError(
                f"dataset config {self.name!r}: {len(self.class_weights)} class weights for "
                f"{len(self.class_names)} classes"
            )
        if self.void_id is not None and 0 <= self.void_id < len(self.class_names):
            raise ValueError(
                f"dataset config {self.name!r}: void_id {self.void_id} is also a class id; "
                f"use an id >= {len(self.class_names)} (commonly 255)"
            )
        if self.id_map is not None:
            self._check_id_map()

    def _check_id_map(self) -> None:
        where = f"dataset config {self.name!r}: id_map"
        if self.void_id is None:
            raise ValueError(f"{where} sends unlisted ids to the void id, but void_id is not set")
        seen: set[int] = set()
        for label_id, class_id in self.id_map or ():
            if not 0 <= label_id <= MAX_LABEL_ID:
                raise ValueError(f"{where}: label id {label_id} is outside 0..{MAX_LABEL_ID}")
            if label_id in seen:
                raise ValueError(f"{where}: label id {label_id} is mapped twice")
            seen.add(label_id)
            if not 0 <= class_id < self.num_classes and class_id != self.void_id:
                raise ValueError(
                    f"{where}: label id {label_id} -> {class_id}, which is neither a class "
                    f"(0..{self.num_classes - 1}) nor the void id {self.void_id}"
                )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        d["colours"] = [list(c) for c in self.colours]
        d["void_colour"] = list(self.void_colour)
        d["class_weights"] = None if self.class_weights is None else list(self.class_weights)
        d["id_map"] = None if self.id_map is None else {k: v for k, v in self.id_map}
        return d

    def mapped(self) -> DatasetConfig:
        """This config for labels that hold class ids already (what ``pack_dataset`` and
        ``save_dataset`` write): without ``id_map``."""
        return replace(self, id_map=None)

    def map_ids(self, label: np.ndarray) -> np.ndarray:
        """Label ids -> class ids through ``id_map`` (unlisted ids -> void); no map: ``label``."""
        if self.id_map is None:
            return label
        return _id_lut(self.id_map, int(self.void_id))[label]  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, d: dict) -> DatasetConfig:
        """The config of a mapping as :meth:`to_dict` writes it; a value of the wrong type is a
        ``ValueError`` naming the key (never echoing the value: a YAML alias bomb has no
        printable size)."""
        weights, void_id = d.get("class_weights"), d.get("void_id")
        name = _text(d.get("name", "custom"), "name")
        names = tuple(_text(n, "class_names") for n in _items(d, "class_names"))
        return cls(
            name=name,
            class_names=names,
            colours=tuple(_rgb(c, "colours") for c in _items(d, "colours")),
            void_id=None if void_id is None else _integer(void_id, "void_id"),
            void_colour=_rgb(d.get("void_colour", (0, 0, 0)), "void_colour"),
            class_weights=None
            if weights is None
            else tuple(_number(w, "class_weights") for w in _items(d, "class_weights")),
            id_map=None if d.get("id_map") is None else parse_id_map(d["id_map"], names),
        )


def _items(d: dict, key: str) -> list:
    if key not in d:
        raise ValueError(
            "dataset config needs 'class_names' (list of str) and 'colours' (list of [r, g, b])"
        )
    value = d[key]
    if not isinstance(value, list | tuple):
        raise ValueError(f"dataset config: {key!r} must be a list, not {type(value).__name__}")
    return list(value)


def _text(value, key: str) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ValueError(f"dataset config: {key!r} holds a {type(value).__name__}, not a name")
    return str(value)


def _integer(value, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"dataset config: {key!r} holds a {type(value).__name__}, not an integer")
    return value


def _number(value, key: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"dataset config: {key!r} holds a {type(value).__name__}, not a number")
    return float(value)


def _rgb(value, key: str) -> tuple[int, int, int]:
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise ValueError(f"dataset config: {key!r} holds something other than [r, g, b]")
    return tuple(_integer(v, key) for v in value)  # type: ignore[return-value]


def parse_id_map(value: object, class_names: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    """``{label id: class}`` (a class id or name; YAML or JSON, whose keys are strings) ->
    sorted (label id, class id) pairs."""
    if not isinstance(value, Mapping):
        raise ValueError(
            f"id_map must be a mapping of label id -> class, not {type(value).__name__}"
        )
    index = {name: i for i, name in enumerate(class_names)}
    pairs = []
    for key, target in value.items():
        try:
            label_id = int(key)
        except (TypeError, ValueError):
            raise ValueError(f"id_map: key {key!r} is not an integer label id") from None
        if isinstance(target, str) and target in index:
            pairs.append((label_id, index[target]))
        elif isinstance(target, int) and not isinstance(target, bool):
            pairs.append((label_id, target))
        else:
            raise ValueError(
                f"id_map: label id {label_id} -> {target!r}, which is neither a class id nor "
                f"one of the class names ({', '.join(class_names)})"
            )
    return tuple(sorted(pairs))


@lru_cache(maxsize=16)
def _id_lut(id_map: tuple[tuple[int, int], ...], void_id: int) -> np.ndarray:
    dtype = np.uint8 if max([void_id, *(c for _, c in id_map)]) <= 255 else np.uint16
    lut = np.full(MAX_LABEL_ID + 1, void_id, dtype)
    for label_id, class_id in id_map:
        lut[label_id] = class_id
    lut.flags.writeable = False
    return lut


# fmt: off
CAMVID = DatasetConfig(
    name="camvid",
    class_names=(
        "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
        "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
    ),
    colours=(
        (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
        (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
    ),
    void_id=11,
    void_colour=(0, 0, 0),
    # SegNet's Caffe `class_weighting` (median frequency balancing), see shared CamVid README.
    # They follow from the train labels when void counts as a 12th class in the median (within
    # 4 % for 7 classes), except SignSymbol's; `dataset_stats` leaves void out (test_data_stats).
    class_weights=(
        0.2595, 0.1826, 4.5640, 0.1417, 0.9051, 0.3826, 9.6446, 1.8418, 0.6823, 6.2478, 7.3614,
    ),
)

# SUN RGB-D's 37 classes (its toolbox's seg37list, the SegNet paper's section 4.2 benchmark), in
# the order of their label ids 1..37; the colours are the palette of the RGB-D segmentation work
# on this release (RedNet, ESANet). Ids here are 0..36: the loader shifts the release's labels
# (0 unlabelled -> void 255), see segnet_tf/data/sunrgbd.py.
SUNRGBD = DatasetConfig(
    name="sunrgbd",
    class_names=(
        "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window",
        "bookshelf", "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser",
        "pillow", "mirror", "floor_mat", "clothes", "ceiling", "books", "fridge", "tv", "paper",
        "towel", "shower_curtain", "box", "whiteboard", "person", "night_stand", "toilet", "sink",
        "lamp", "bathtub", "bag",
    ),
    colours=(
        (148, 65, 137), (255, 116, 69), (86, 156, 137), (202, 179, 158), (155, 99, 235),
        (161, 107, 108), (133, 160, 103), (76, 152, 126), (84, 62, 35), (44, 80, 130),
        (31, 184, 157), (101, 144, 77), (23, 197, 62), (141, 168, 145), (142, 151, 136),
        (115, 201, 77), (100, 216, 255), (57, 156, 36), (88, 108, 129), (105, 129, 112),
        (42, 137, 126), (155, 108, 249), (166, 148, 143), (81, 91, 87), (100, 124, 51),
        (73, 131, 121), (157, 210, 220), (134, 181, 60), (221, 223, 147), (123, 108, 131),
        (161, 66, 179), (163, 221, 160), (31, 146, 98), (99, 121, 30), (49, 89, 240),
        (116, 108, 9), (161, 176, 169),
    ),
    void_id=255,
    void_colour=(0, 0, 0),
)

# Cityscapes' 19 evaluation classes and colours (cityscapesScripts' labels.py, in trainId order)
# and its table from the 34 labelIds of the `*_gtFine_labelIds.png` files to those classes; every
# other labelId (unlabeled, ego vehicle, parking, rail track, guard rail, bridge, tunnel,
# polegroup, caravan, trailer, license plate, ...) is void 255, as the benchmark scores them.
# KITTI's semantic benchmark labels with the same labelIds, BDD100K with the trainIds themselves.
ROAD_CLASS_NAMES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
ROAD_COLOURS = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)
CITYSCAPES_LABEL_IDS = (  # labelId -> trainId of the 19 evaluated classes
    (7, 0), (8, 1), (11, 2), (12, 3), (13, 4), (17, 5), (19, 6), (20, 7), (21, 8), (22, 9),
    (23, 10), (24, 11), (25, 12), (26, 13), (27, 14), (28, 15), (31, 16), (32, 17), (33, 18),
)
# fmt: on
CITYSCAPES = DatasetConfig(
    name="cityscapes",
    class_names=ROAD_CLASS_NAMES,
    colours=ROAD_COLOURS,
    void_id=255,
    id_map=CITYSCAPES_LABEL_IDS,
)
BDD100K = DatasetConfig(
    name="bdd100k", class_names=ROAD_CLASS_NAMES, colours=ROAD_COLOURS, void_id=255
)
KITTI = DatasetConfig(
    name="kitti",
    class_names=ROAD_CLASS_NAMES,
    colours=ROAD_COLOURS,
    void_id=255,
    id_map=CITYSCAPES_LABEL_IDS,
)

BUILTIN_CONFIGS = {
    "camvid": CAMVID,
    "sunrgbd": SUNRGBD,
    "cityscapes": CITYSCAPES,
    "bdd100k": BDD100K,
    "kitti": KITTI,
}
# SUN RGB-D's 37 classes take 2 kB, so 64 KiB holds a thousand classes; the cap also bounds the
# time PyYAML (pure Python) spends on a hostile file to a few seconds.
MAX_CONFIG_FILE_BYTES = 2**16


def load_dataset_config(source: str | Path) -> DatasetConfig:
    """A built-in config by name (``camvid``, ``sunrgbd``, ``cityscapes``, ``bdd100k``, ``kitti``)
    or one read from a ``.yaml``/``.json``
    file."""
    if str(source).lower() in BUILTIN_CONFIGS:
        return BUILTIN_CONFIGS[str(source).lower()]
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"dataset config {str(source)!r} is neither a built-in name "
            f"({', '.join(BUILTIN_CONFIGS)}) nor an existing file"
        )
    if path.stat().st_size > MAX_CONFIG_FILE_BYTES:
        raise ValueError(
            f"{path}: {path.stat().st_size} bytes, too large for a dataset config (at most "
            f"{MAX_CONFIG_FILE_BYTES})"
        )
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if kind == "JSON" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError, RecursionError) as e:
        reason = " ".join(str(e).split())  # YAML's errors span lines
        raise ValueError(f"{path}: not valid {kind}: {reason}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with class_names and colours")
    try:
        return DatasetConfig.from_dict(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
