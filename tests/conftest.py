"""Shared fixtures: the real CamVid folder (when present) and quiet TensorFlow logs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]


def camvid_root() -> Path | None:
    """``$SEGNET_CAMVID``, else ``<repo>/../shared/camvid``; None when neither holds CamVid."""
    root = Path(os.environ.get("SEGNET_CAMVID", REPO.parent / "shared" / "camvid"))
    return root if (root / "train.txt").is_file() else None


@pytest.fixture(scope="session")
def camvid() -> Path:
    root = camvid_root()
    if root is None:
        pytest.skip("CamVid not found: set SEGNET_CAMVID or place it at ../shared/camvid")
    return root.resolve()
