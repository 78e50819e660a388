"""SegNet model family: presets, builders and loading."""

from __future__ import annotations

from pathlib import Path

import keras

from segnet_tf.models.registry import PRESETS, ModelPreset, build_model, list_models
from segnet_tf.models.segnet import build_segnet

__all__ = ["PRESETS", "ModelPreset", "build_model", "build_segnet", "list_models", "load_model"]


def load_model(path: str | Path, compile: bool = False) -> keras.Model:
    """Load a ``.keras`` file written by segnet-tf (custom layers are registered on import)."""
    path = Path(path)
    if path.is_dir() and (path / "best.keras").is_file():
        path = path / "best.keras"
    if not path.is_file():
        raise FileNotFoundError(
            f"model {str(path)!r}: no such file (expected a .keras file or run dir)"
        )
    try:
        return keras.models.load_model(path, compile=compile, safe_mode=False)
    except Exception as e:
        raise ValueError(f"model {str(path)!r}: not a loadable Keras model: {e}") from e
