"""A small SegNet trained for a minute on the synthetic road scenes: int8 parity needs a model whose
class scores mean something (a random network's near-tied logits flip under any rounding)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

import segnet_tf
from segnet_tf.data import CAMVID, render_scene

SIZE = (45, 61)  # odd: 45 -> 23 -> 12 -> 6 -> 3 -> 2 on the way down


def synthetic_batch(seeds, size=SIZE) -> tuple[np.ndarray, np.ndarray]:
    images, labels = zip(*(render_scene(s, size) for s in seeds), strict=True)
    return np.stack(images).astype(np.float32), np.stack(labels).astype(np.int32)


@pytest.fixture(scope="session")
def trained_lite(tmp_path_factory) -> Path:
    keras.utils.set_random_seed(0)
    x, y = synthetic_batch(range(64))
    y = np.where(y == CAMVID.void_id, 0, y)
    model = segnet_tf.build_model("segnet-lite", (*SIZE, 3), CAMVID.num_classes)
    model.compile(
        keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    # Adam's slots built before the first step, not inside it: fit then traces its step once, not
    # twice (the same weights come out)
    model.optimizer.build(model.trainable_variables)
    model.fit(x, y, batch_size=8, epochs=12, verbose=0)
    path = tmp_path_factory.mktemp("trained") / "lite.keras"
    model.save(path)
    return path
