"""The pictures segnet-tf draws, with matplotlib (the ``viz`` extra) on its file-only Agg
backend: a run's training curves (:attr:`segnet_tf.runs.RunFolder.results`), an evaluation's
row-normalised confusion matrix, per-class IoU bars and a grid of sample predictions, and the
decoder study's trade-off.

Every function takes numbers, writes one PNG and returns its path; none reads a model or a
dataset, so a test can draw from numbers worked out by hand.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

INSTALL_HINT = "pip install 'segnet-tf[viz]' (matplotlib)"
DPI = 110


def pyplot():
    """matplotlib's pyplot on the Agg backend; an ImportError with the install line without it."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(f"drawing pictures needs matplotlib: {INSTALL_HINT}") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    pyplot().close(fig)
    return path


def training_curves(history: Mapping[str, Sequence[float]], path: Path, title: str = "") -> Path:
    """A run's curves: loss (train, val) and mIoU (train, val) per epoch (1-based, as the run's
    state counts), from the columns of its history (``epoch``, ``loss``, ``val_loss``, ``miou``,
    ``val_miou``); the best val mIoU is starred."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = np.asarray(history.get("epoch") or range(len(history["loss"])), int) + 1
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for ax, key, label in ((axes[0], "loss", "loss"), (axes[1], "miou", "mIoU (%)")):
        scale = 100.0 if key == "miou" else 1.0
        for prefix, name in (("", "train"), ("val_", "val")):
            values = history.get(prefix + key)
            if values:
                ax.plot(epochs, scale * np.asarray(values), marker=".", label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    best = history.get("val_miou")
    if best:
        k = int(np.argmax(best))
        axes[1].plot(
            epochs[k],
            100 * best[k],
            "*",
            color="tab:red",
            markersize=12,
            label=f"best val {100 * best[k]:.1f} (epoch {epochs[k]})",
        )
    for ax in axes:
        ax.legend()
    fig.suptitle(title or "training")
    return _save(fig, path)


def confusion_matrix_plot(cm: np.ndarray, class_names: Sequence[str], path: Path) -> Path:
    """Rows (ground truth) normalised to 1, each cell's share in %, class names on both axes."""
    plt = pyplot()
    cm = np.asarray(cm, np.float64)
    rows = cm.sum(1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    n = len(class_names)
    side = max(5.0, 0.42 * n + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1, side), layout="constrained")
    image = ax.imshow(100 * share, cmap="Blues", vmin=0, vmax=100)
    ax.set_xticks(range(n), class_names, rotation=60, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 40:
        for i in range(n):
            for j in range(n):
                if share[i, j] >= 0.005:
                    colour = "white" if share[i, j] > 0.6 else "black"
                    ax.text(
                        j,
                        i,
                        f"{100 * share[i, j]:.0f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color=colour,
                    )
    fig.colorbar(image, ax=ax, fraction=0.046, label="% of the true class's pixels")
    ax.set_title("confusion matrix (rows normalised, %)")
    return _save(fig, path)


def per_class_iou_plot(per_class_iou: Mapping[str, float | None], path: Path) -> Path:
    """Horizontal bars of every class's IoU in %, mIoU as a line; classes in neither map (None)
    are marked n/a."""
    plt = pyplot()
    names = list(per_class_iou)
    values = [per_class_iou[n] for n in names]
    scores = np.array([np.nan if v is None else 100 * v for v in values])
    fig, ax = plt.subplots(figsize=(7, max(3.0, 0.32 * len(names) + 1.2)), layout="constrained")
    y = np.arange(len(names))
    ax.barh(y, np.nan_to_num(scores), color="tab:blue")
    for k, v in enumerate(scores):
        ax.text(
            (0 if np.isnan(v) else v) + 1,
            k,
            "n/a" if np.isnan(v) else f"{v:.1f}",
            va="center",
            fontsize=8,
        )
    if np.isfinite(scores).any():
        miou = float(np.nanmean(scores))
        ax.axvline(miou, color="tab:red", linestyle="--", label=f"mIoU {miou:.1f}")
        ax.legend(loc="lower right")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlim(0, 105)
    ax.set_xlabel("IoU (%)")
    ax.set_title("IoU per class")
    return _save(fig, path)


def prediction_grid(
    samples: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    path: Path,
    class_names: Sequence[str] = (),
    colours: Sequence[Sequence[int]] = (),
) -> Path:
    """One row per sample ``(name, image, truth, prediction, errors)``, uint8 RGB pictures of
    one size (the errors panel is :func:`error_picture`'s), the classes' colours as a legend."""
    plt = pyplot()
    from matplotlib.patches import Patch

    columns = ("image", "truth", "prediction", "errors (red)")
    fig, axes = plt.subplots(
        len(samples),
        4,
        figsize=(12, 2.6 * len(samples) + 0.4),
        squeeze=False,
        layout="constrained",
    )
    for row, (name, image, truth, pred, errors) in enumerate(samples):
        for col, picture in enumerate((image, truth, pred, errors)):
            ax = axes[row, col]
            ax.imshow(picture)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(columns[col])
        axes[row, 0].set_ylabel(name, fontsize=8)
    if class_names:
        handles = [
            Patch(color=np.asarray(c) / 255, label=n)
            for n, c in zip(class_names, colours, strict=True)
        ]
        rows = math.ceil(len(handles) / 10)
        fig.legend(
            handles=handles,
            loc="outside lower center",
            ncol=math.ceil(len(handles) / rows),
            fontsize=8,
            frameon=False,
        )
    return _save(fig, path)


def error_picture(image: np.ndarray, truth: np.ndarray, pred: np.ndarray, void_id) -> np.ndarray:
    """The errors panel: the image dimmed to a third, wrong pixels red, void pixels grey."""
    out = (image.astype(np.float32) / 3).astype(np.uint8)
    void = np.zeros(truth.shape, bool) if void_id is None else truth == void_id
    out[(truth != pred) & ~void] = (255, 0, 0)
    out[void] = (128, 128, 128)
    return out
