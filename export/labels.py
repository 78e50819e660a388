"""``labels.json``: the classes of an exported model, written beside it for the board.

The demo reads it with ``edge_demo.runtime.load_labels`` and cannot import this module (it never
imports segnet_tf), so the file format is the contract between the two: the exporter and the
benchmarks write it only through :func:`write_labels`, and ``tests/export/test_contracts.py``
reads what this module writes with the demo's reader.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from segnet_tf.data import DatasetConfig

LABELS_FILE = "labels.json"  # the name the demo looks for beside a model


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
