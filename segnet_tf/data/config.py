"""Dataset configuration: the one home of class names, colours, the void id and class weights.

CamVid's 11-class SegNet split and SUN RGB-D's 37 classes are built in; other datasets (a user's
own classes) are described by a small YAML or JSON file with the same keys as
:meth:`DatasetConfig.to_dict`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml


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
        try:
            names = tuple(str(n) for n in d["class_names"])
            colours = tuple(tuple(int(v) for v in c) for c in d["colours"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(
                f"dataset config needs 'class_names' (list of str) and 'colours' "
                f"(list of [r, g, b]): {e}"
            ) from e
        weights = d.get("class_weights")
        return cls(
            name=str(d.get("name", "custom")),
            class_names=names,
            colours=colours,  # type: ignore[arg-type]
            void_id=None if d.get("void_id") is None else int(d["void_id"]),
            void_colour=tuple(int(v) for v in d.get("void_colour", (0, 0, 0))),  # type: ignore[arg-type]
            class_weights=None if weights is None else tuple(float(w) for w in weights),
        )


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
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ValueError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {e}"
        ) from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with class_names and colours")
    try:
        return DatasetConfig.from_dict(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
