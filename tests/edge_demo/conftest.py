"""Edge demo fixtures: committed float and int8 TFLite models with labels.json, and a short clip.

The models in ``fixtures/`` come from the real exporter (``fixtures/make_fixture.py`` remakes
them), so these tests need no TensorFlow and no export run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# edge_demo is a folder of scripts for the board, not part of the installed package.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

FIXTURES = Path(__file__).resolve().parent / "fixtures"
INPUT_SIZE = (48, 64)  # model H, W (fixtures/make_fixture.py)
CLIP_SIZE = (120, 160)  # synthetic video H, W
CLIP_FRAMES = 12


@pytest.fixture(scope="session")
def edge_models() -> dict[str, Path]:
    """``{"float": model.tflite, "int8": model_int8.tflite}`` in one folder with labels.json
    (committed: copy a file before changing it)."""
    return {"float": FIXTURES / "model.tflite", "int8": FIXTURES / "model_int8.tflite"}


def synthetic_frames(n: int = CLIP_FRAMES, size: tuple[int, int] = CLIP_SIZE) -> list[np.ndarray]:
    """BGR frames of a gradient with a disc and a box moving across it."""
    h, w = size
    base = np.zeros((h, w, 3), np.uint8)
    base[..., 0] = np.linspace(40, 220, w, dtype=np.uint8)[None, :]
    base[..., 1] = np.linspace(200, 30, h, dtype=np.uint8)[:, None]
    frames = []
    for i in range(n):
        frame = base.copy()
        cv2.circle(frame, (10 + i * (w - 20) // max(n - 1, 1), h // 3), h // 6, (0, 0, 255), -1)
        cv2.rectangle(frame, (w - 40 - 2 * i, h - 50), (w - 10 - 2 * i, h - 10), (255, 255, 0), -1)
        frames.append(frame)
    return frames


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    """A 12-frame 120x160 mp4v video at 10 FPS."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, CLIP_SIZE[::-1])
    for frame in synthetic_frames():
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    """The clip's first 5 frames as PNGs (and a non-image file the source must ignore)."""
    folder = tmp_path_factory.mktemp("images")
    for i, frame in enumerate(synthetic_frames()[:5]):
        cv2.imwrite(str(folder / f"{i:03d}.png"), frame)
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="session")
def clip_frames() -> list[np.ndarray]:
    """The frames written to :func:`clip` (before video compression)."""
    return synthetic_frames()


@pytest.fixture(scope="session")
def input_size() -> tuple[int, int]:
    """The test models' input ``(H, W)``."""
    return INPUT_SIZE


@pytest.fixture(scope="module")
def picture(clip_frames) -> np.ndarray:
    """One frame of the clip, as a picture to upload."""
    return clip_frames[3]
