"""Fixtures for the training, evaluation, prediction and CLI tests: one tiny synthetic run that
several tests share (training costs ~20 s of graph tracing on a 2-core CPU), and real CamVid."""

from __future__ import annotations

import pytest

from segnet_tf.config import TrainConfig
from segnet_tf.training import TrainResult, train

# 8 steps of 4 images per epoch: enough for the training loss to fall within 2 epochs.
TINY_RUN = {
    "input_size": (64, 96),
    "epochs": 2,
    "batch_size": 4,
    "synthetic_train": 32,
    "synthetic_val": 8,
    "lr": 3e-3,
}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """A finished 2-epoch segnet-lite run on synthetic scenes at 64x96."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    return train(TrainConfig(out=str(out), **TINY_RUN), verbose=0)
