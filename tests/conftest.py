"""Shared fixtures: the real CamVid folder (when present), quiet TensorFlow logs, unoptimised XLA
code, and a Monte Carlo export that the exporter's and the demo's tests share (converting costs
tens of seconds)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# XLA without LLVM's optimisation passes: tests check that a graph compiles and runs under XLA (the
# benchmarks' training rows), never how fast the compiled code is, and those passes are most of
# the compile time (the lowered SegNet-Basic's gradients: 18 s -> 3 s on 2 cores). Read at the
# first XLA compile, and inherited by the subprocesses the tests start.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    os.environ["XLA_FLAGS"] = flags.strip()

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def float32_training_on_every_cpu():
    """``precision="auto"`` trains in bfloat16 on CPUs that have it (AMX, AVX-512 BF16): the tests
    see float32 on every CPU, so that their numbers do not depend on the machine. The choice
    itself is tested in tests/segnet_tf/test_pretrained.py."""
    from segnet_tf import training

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "cpu_has_bfloat16", lambda *args: False)
        yield


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


MC_SIZE = (48, 64)  # the Monte Carlo export's input (H, W)
MC_SAMPLES = 4


@pytest.fixture(scope="session")
def monte_carlo_export(tmp_path_factory) -> Path:
    """An untrained Bayesian SegNet-Basic (8 filters a stage, dropout after its three deepest
    stages) exported with ``--int8 --mc-samples 4``: model.tflite, model_int8.tflite,
    model_mc.tflite, model_mc_int8.tflite, labels.json and report.json in one folder, the
    ``.keras`` source beside it as ``bayes.keras``."""
    import keras
    import numpy as np

    import segnet_tf
    from segnet_tf.data import render_scene
    from segnet_tf.export import ExportOptions, export_model

    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("monte_carlo")
    model = segnet_tf.build_model("segnet-basic", (*MC_SIZE, 3), 11, width=0.125, bayesian=True)
    model.save(root / "bayes.keras")
    calib = np.stack([render_scene(seed, MC_SIZE)[0] for seed in range(8)]).astype(np.float32)
    np.save(root / "calib.npy", calib)
    options = ExportOptions(
        model=root / "bayes.keras",
        out=root / "exported",
        int8=True,
        mc_samples=MC_SAMPLES,
        calib_data=root / "calib.npy",
        parity_samples=3,
    )
    export_model(options, log=lambda *_: None)
    return root / "exported"
