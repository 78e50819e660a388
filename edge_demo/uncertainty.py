"""Bayesian SegNet's uncertainty on the board, from a Monte Carlo model (``--view uncertainty``).

``segnet-tf export --mc-samples N`` writes ``model_mc.tflite`` / ``model_mc_int8.tflite``: one
frame in, N fixed dropout masks applied to N copies of it in one batch, the mean softmax out
(TFLite has no dropout at run time, so the masks are constants; see the exporter's
``montecarlo.py``). ``labels.json`` lists those files under ``monte_carlo``. From the mean
probabilities the demo takes the class map (argmax) and the uncertainty: the predictive entropy
divided by ``log(num_classes)``, 0 certain to 1 uniform, as ``segnet-tf predict`` computes it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_demo import DemoError, DemoFileNotFoundError
from edge_demo.contract import LABELS_FILE, MC_ORDER, MC_OUTPUT, SegModel
from edge_demo.runtime import DEFAULT_MODEL_DIR

EXPORT_HINT = "export one with `segnet-tf export --model <bayesian-segnet run> --mc-samples 8`"


def monte_carlo_model_path(model: str | Path | None) -> str | Path | None:
    """The file ``--view uncertainty`` loads: ``model`` itself, or the Monte Carlo model of a
    model folder (or of the default folder)."""
    folder = DEFAULT_MODEL_DIR if model is None else Path(model)
    if folder is None or not folder.is_dir():
        return folder
    for name in MC_ORDER:
        if (folder / name).is_file():
            return folder / name
    raise DemoFileNotFoundError(
        f"--view uncertainty: {folder} has none of {', '.join(MC_ORDER)}; {EXPORT_HINT}"
    )


def monte_carlo_samples(model: SegModel) -> int | None:
    """N when ``labels.json`` lists the model's file as a Monte Carlo model, else None."""
    info = model.labels.monte_carlo or {}
    if model.path.name not in info.get("files", ()):
        return None
    if info.get("output") != MC_OUTPUT:
        raise DemoError(f"{model.path.name}: {LABELS_FILE}'s monte_carlo output is not {MC_OUTPUT}")
    return int(info["samples"])


def check_monte_carlo(model: SegModel) -> int:
    """N of a Monte Carlo model; any other model is an error that says how to make one."""
    samples = monte_carlo_samples(model)
    if samples is None:
        raise DemoError(
            f"--view uncertainty needs a Monte Carlo model, and {LABELS_FILE} does not list "
            f"{model.path.name} as one; {EXPORT_HINT}, then pass --model {MC_ORDER[0]}"
        )
    return samples


def normalised_entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy of the class axis of probabilities ``[H, W, C]`` over ``log(C)``: ``[H, W]`` in
    0..1. Each pixel is renormalised first: int8 probabilities do not sum to exactly 1."""
    p = np.maximum(probs.astype(np.float32), 0.0)
    p /= np.maximum(p.sum(-1, keepdims=True), 1e-12)
    logs = np.log(np.maximum(p, 1e-12))
    return np.clip(-(p * logs).sum(-1) / np.log(p.shape[-1]), 0.0, 1.0)
