"""``labels.json``: the classes of an exported model, written beside it for the board.

The demo reads it with ``edge_demo.contract.load_labels`` and cannot import this module (it never
imports segnet_tf), so the file format is the contract between the two: the exporter and the
benchmarks write it only through :func:`write_labels`, and ``tests/export/test_contracts.py``
reads what this module writes with the demo's reader. jetson-inference's segNet reads the same
classes as ``classes.txt`` and ``colors.txt`` (:func:`write_jetson_labels`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from edge_demo.contract import CLASSES_FILE, COLOURS_FILE, LABELS_FILE

if TYPE_CHECKING:
    from segnet_tf.data import DatasetConfig


def labels_dict(
    config: DatasetConfig,
    model_name: str,
    input_size: tuple[int, int],
    monte_carlo: dict | None = None,
) -> dict:
    """The JSON object: class names and RGB colours in class-id order, plus what the demo checks
    against the model (``input_size`` ``[H, W]`` and ``num_classes``) and the void id; with
    ``monte_carlo``, which files output mean probabilities (``edge_demo --view uncertainty``)."""
    labels = {
        "model": model_name,
        "input_size": [int(input_size[0]), int(input_size[1])],
        "num_classes": config.num_classes,
        "class_names": list(config.class_names),
        "colours": [[int(v) for v in c] for c in config.colours],
        "void_id": config.void_id,
    }
    return labels if monte_carlo is None else {**labels, "monte_carlo": monte_carlo}


def write_labels(
    folder: Path,
    config: DatasetConfig,
    model_name: str,
    input_size: tuple[int, int],
    monte_carlo: dict | None = None,
) -> Path:
    """Write ``folder/labels.json``; returns its path."""
    path = Path(folder) / LABELS_FILE
    labels = labels_dict(config, model_name, input_size, monte_carlo)
    path.write_text(json.dumps(labels, indent=2))
    return path


def jetson_label_lines(config: DatasetConfig) -> tuple[list[str], list[str]]:
    """``classes.txt`` and ``colors.txt`` lines as jetson-inference's ``tensorNet`` parses them
    (``c/tensorNet.cpp`` ``LoadClassLabels`` / ``LoadClassColors``): a name a line, read by
    ``fgets`` into 512 bytes, where a line of ``n`` + 8 characters + a space is a WordNet synset
    id followed by the name; and ``r g b`` a line (``sscanf("%f %f %f %f")``, alpha optional)."""
    for name in config.class_names:
        if "\n" in name or "\r" in name or len(name.encode()) > 500:
            raise ValueError(f"class name {name!r}: {CLASSES_FILE} needs a line under 500 bytes")
        if len(name) > 9 and name[0] == "n" and name[9] == " ":
            raise ValueError(
                f"class name {name!r}: segNet would read its first 9 characters as a WordNet "
                "synset id and drop them"
            )
    colours = [" ".join(str(int(v)) for v in colour) for colour in config.colours]
    return list(config.class_names), colours


def write_jetson_labels(folder: Path, config: DatasetConfig) -> tuple[Path, Path]:
    """Write ``classes.txt`` and ``colors.txt`` for jetson-inference's segNet into ``folder``."""
    names, colours = jetson_label_lines(config)
    classes, colors = Path(folder) / CLASSES_FILE, Path(folder) / COLOURS_FILE
    classes.write_text("".join(f"{n}\n" for n in names))
    colors.write_text("".join(f"{c}\n" for c in colours))
    return classes, colors
