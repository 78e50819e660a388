"""Fixtures for the data tests: tiny datasets written to tmp folders and the real CamVid copy."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from segnet_tf.data.config import DatasetConfig

# Three classes and every pixel labelled: padding must never invent a class for this one.
NO_VOID = DatasetConfig(
    name="novoid", class_names=("a", "b", "c"), colours=((255, 0, 0), (0, 255, 0), (0, 0, 255))
)


def write_image(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 and rgb.shape[2] == 3 else rgb
    assert cv2.imwrite(str(path), out)
    return path


def write_label(path: Path, ids: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), ids)
    return path


def random_pair(rng: np.random.Generator, h: int = 12, w: int = 16, ids=(0, 1, 2)):
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    label = rng.choice(np.array(ids, np.uint8), (h, w))
    return image, label


@pytest.fixture
def files() -> SimpleNamespace:
    """PNG writers and a random pair maker (tests cannot import conftest in importlib mode)."""
    return SimpleNamespace(image=write_image, label=write_label, pair=random_pair)


@pytest.fixture
def no_void() -> DatasetConfig:
    return NO_VOID


@pytest.fixture
def camvid_layout(tmp_path: Path) -> Path:
    """A CamVid-layout folder with 3 train and 2 val pairs of 12x16 pixels, ids 0..2 and 11."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("val", 2)):
        lines = ["# image label", ""]
        for i in range(n):
            image, label = random_pair(rng, ids=(0, 1, 2, 11))
            write_image(tmp_path / split / f"{split}{i}.png", image)
            write_label(tmp_path / f"{split}annot" / f"{split}{i}.png", label)
            lines.append(f"{split}/{split}{i}.png {split}annot/{split}{i}.png")
        (tmp_path / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return tmp_path
