"""Dataset configuration: the one home of class names, colours, the void id and class weights.

CamVid's 11-class SegNet split and SUN RGB-D's 37 classes are built in; other datasets (a user's
own classes) are described by a small YAML or JSON file with the same keys as
:meth:`DatasetConfig.to_dict`.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

MAX_LABEL_ID = 65535  # label maps are 8- or 16-bit PNGs


@dataclass(frozen=True)
class DatasetConfig:
    """Classes of a segmentation dataset.

    ``void_id`` is a label id that is not a class: it is left out of the loss and every metric.
    It may equal ``num_classes`` (CamVid's 11) or be ``None`` when every pixel is labelled.
    ``class_weights`` are optional per-class loss weights (CamVid: the paper's median-frequency
    weights); ``segnet-tf data stats`` computes them for any dataset.
    """

    name: str
    class_names: tuple[str, ...]
    colours: tuple[tuple[int, int, int], ...]
    void_id: int | None = None
    void_colour: tuple[int, int, int] = (0, 0, 0)
    class_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        """Every value checked here, once, whoever builds the config (a YAML file, a run's
        config.json, a packed dataset's manifest): a bad one fails at ``data check`` and
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

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        d["colours"] = [list(c) for c in self.colours]
        d["void_colour"] = list(self.void_colour)
        d["class_weights"] = None if self.class_weights is None else list(self.class_weights)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DatasetConfig:
        """The config of a mapping as :meth:`to_dict` writes it; a value of the wrong type is a
        ``ValueError`` naming the key (never echoing the value: a YAML alias bomb has no
        printable size)."""
        weights, void_id = d.get("class_weights"), d.get("void_id")
        return cls(
            name=_text(d.get("name", "custom"), "name"),
            class_names=tuple(_text(n, "class_names") for n in _items(d, "class_names")),
            colours=tuple(_rgb(c, "colours") for c in _items(d, "colours")),
            void_id=None if void_id is None else _integer(void_id, "void_id"),
            void_colour=_rgb(d.get("void_colour", (0, 0, 0)), "void_colour"),
            class_weights=None
            if weights is None
            else tuple(_number(w, "class_weights") for w in _items(d, "class_weights")),
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
# fmt: on

BUILTIN_CONFIGS = {"camvid": CAMVID, "sunrgbd": SUNRGBD}
# SUN RGB-D's 37 classes take 2 kB, so 64 KiB holds a thousand classes; the cap also bounds the
# time PyYAML (pure Python) spends on a hostile file to a few seconds.
MAX_CONFIG_FILE_BYTES = 2**16


def load_dataset_config(source: str | Path) -> DatasetConfig:
    """A built-in config by name (``camvid``, ``sunrgbd``) or one read from a ``.yaml``/``.json``
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
