"""Prediction on image files: colour masks, overlays and, for Bayesian SegNet, uncertainty maps.

Images are resized to the model's input size and the class probabilities resized back (bilinear)
before the argmax, so masks have the input's resolution with smooth rather than blocky edges.

Bayesian SegNet (Kendall et al., BMVC 2017) samples the network with dropout on and averages the
softmax outputs. The uncertainty written here is the predictive entropy of that mean, divided by
``log(num_classes)`` so that 0 is certain and 1 is uniform over classes: one number per pixel that
covers both disagreement between samples and flat individual predictions (the paper's figures show
the per-class variance, which is high in the same places but has no fixed scale). It is computed
from the same resized probabilities as the class map, and drawn with OpenCV's inferno colour map
(:func:`uncertainty_heatmap`): black is certain, yellow-white is uniform over the classes.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import keras
import numpy as np
import tensorflow as tf

from segnet_tf.data import DatasetConfig, colorize, load_image
from segnet_tf.data.datasets import IMAGE_SUFFIXES
from segnet_tf.layers import MonteCarloDropout
from segnet_tf.models import load_model
from segnet_tf.runs import model_classes

__all__ = [
    "DEFAULT_MODEL",
    "MonteCarloResult",
    "Prediction",
    "colorize",
    "dropout_sampling",
    "monte_carlo_predict",
    "overlay",
    "predict_images",
    "resolve_model",
    "sampling_curve",
    "segment",
    "uncertainty_heatmap",
]

DEFAULT_MODEL = (
    Path(__file__).resolve().parents[1] / "models" / "segnet-lite-camvid" / "model.keras"
)
DEFAULT_SAMPLES = 8


@dataclass(frozen=True)
class MonteCarloResult:
    probs: np.ndarray  # [N, H, W, C] mean softmax
    class_map: np.ndarray  # [N, H, W] argmax of probs
    uncertainty: np.ndarray  # [N, H, W] normalised predictive entropy, 0..1


@dataclass(frozen=True)
class Prediction:
    image: Path
    mask: Path
    overlay: Path
    uncertainty: Path | None


def overlay(image: np.ndarray, colour_mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a colour mask over a uint8 RGB image: ``(1 - alpha) * image + alpha * mask``."""
    if image.shape != colour_mask.shape:
        raise ValueError(f"image {image.shape} and colour mask {colour_mask.shape} differ in shape")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in 0..1, got {alpha}")
    blend = (1.0 - alpha) * image.astype(np.float32) + alpha * colour_mask.astype(np.float32)
    return np.clip(np.round(blend), 0, 255).astype(np.uint8)


def monte_carlo_dropout_layers(model: keras.Model) -> list[MonteCarloDropout]:
    found = []
    for layer in model.layers:
        if isinstance(layer, MonteCarloDropout):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found += monte_carlo_dropout_layers(layer)
    return found


@contextmanager
def dropout_sampling(model: keras.Model, seed: int | None = None) -> Iterator[None]:
    """Monte Carlo dropout on inside the block, batch norm still in inference mode.

    Sampling is switched on through every :class:`MonteCarloDropout` layer's flag (calling the
    model with ``training=True`` would also put batch norm in training mode) and always switched
    off again. Call the model eagerly inside: the flag is read when a graph is traced. ``seed``
    resets every layer's random state, so the same seed draws the same masks again.
    """
    layers = monte_carlo_dropout_layers(model)
    if not layers:
        raise ValueError(
            f"model {model.name!r} has no Monte Carlo dropout; sampling needs a "
            "'bayesian-segnet' model (or use samples=1)"
        )
    if seed is not None:
        states = np.random.default_rng(seed).integers(0, 2**31 - 1, len(layers))
        for layer, state in zip(layers, states, strict=True):
            layer.seed_generator.state.assign([int(state), 0])
    for layer in layers:
        layer.sampling = True
    try:
        yield
    finally:
        for layer in layers:
            layer.sampling = False


def probabilities(model: keras.Model, images: tf.Tensor) -> tf.Tensor:
    """Softmax of one (eager) pass in float64, whose argmax is exactly the logits' (a float32
    softmax rounds logits a few ulps apart to one probability, and its argmax to the first)."""
    return tf.nn.softmax(tf.cast(model(images, training=False), tf.float64))


def monte_carlo_predict(
    model: keras.Model,
    images: np.ndarray,
    samples: int = DEFAULT_SAMPLES,
    seed: int | None = None,
) -> MonteCarloResult:
    """Mean softmax of ``samples`` passes with dropout on (see :func:`dropout_sampling`)."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    images = tf.convert_to_tensor(images, tf.float32)
    with dropout_sampling(model, seed):
        probs = sum(probabilities(model, images) for _ in range(samples)) / samples
    probs = probs.numpy()
    return MonteCarloResult(
        probs.astype(np.float32), probs.argmax(-1), normalised_entropy(probs).astype(np.float32)
    )


def sampling_curve(
    model: keras.Model, images: np.ndarray, samples: Sequence[int], seed: int | None = None
) -> dict[int, np.ndarray]:
    """Mean softmax ``[N, H, W, C]`` (float64) of ``images`` for every count in ``samples``: 1 is
    weight averaging (dropout off, the usual inference), n > 1 the mean of the first n sampled
    passes.

    The counts share their passes (running means), so the whole curve costs ``max(samples)``
    sampled passes, plus one deterministic pass when 1 is asked for.
    """
    if not samples or min(samples) < 1:
        raise ValueError(f"sample counts must be >= 1, got {list(samples)}")
    images = tf.convert_to_tensor(images, tf.float32)
    curve = {}
    if 1 in samples:
        curve[1] = probabilities(model, images).numpy()
    sampled = sorted({n for n in samples if n > 1})
    if sampled:
        with dropout_sampling(model, seed):
            total = 0.0
            for n in range(1, sampled[-1] + 1):
                total = total + probabilities(model, images)
                if n in sampled:
                    curve[n] = (total / n).numpy()
    return curve


def normalised_entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy of the last axis divided by its maximum, ``log(C)``: 0..1."""
    p = np.clip(probs, 1e-12, 1.0)
    return np.clip(-(p * np.log(p)).sum(-1) / np.log(probs.shape[-1]), 0.0, 1.0)


def predict_images(
    model: keras.Model | str | Path | None,
    paths: Sequence[str | Path],
    out_dir: str | Path,
    config: DatasetConfig | None = None,
    samples: int | None = None,
    alpha: float = 0.5,
    seed: int | None = 0,
) -> list[Prediction]:
    """Write ``<stem>_mask.png`` and ``<stem>_overlay.png`` for every image in ``paths`` (files or
    folders), plus ``<stem>_uncertainty.png`` when sampling (``samples`` > 1; the default for a
    Bayesian model is 8; 1 is weight averaging, dropout off). Outputs have each input's size.

    ``model`` None loads :data:`DEFAULT_MODEL`; ``config`` (the class colours) defaults to the
    model's run config, else CamVid's. ``seed`` makes the dropout samples repeatable (each image
    is sampled from the same seed; None: a fresh draw).
    """
    model_path = None if isinstance(model, keras.Model) else model
    model = resolve_model(model)
    config = config or model_classes(int(model.output_shape[-1]), model_path)
    bayesian = bool(monte_carlo_dropout_layers(model))
    samples = (DEFAULT_SAMPLES if bayesian else 1) if samples is None else samples
    if samples > 1 and not bayesian:
        raise ValueError(
            f"--samples {samples}: model {model.name!r} has no Monte Carlo dropout; "
            "use a 'bayesian-segnet' model or --samples 1"
        )
    files = list(image_files(paths))
    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _predict_files(model, files, out, config, samples, alpha, seed)
    except BaseException:
        if created:  # a refused image leaves no --out folder behind
            shutil.rmtree(out, ignore_errors=True)
        raise


def _predict_files(model, files, out: Path, config, samples, alpha, seed) -> list[Prediction]:
    results = []
    for path in files:
        image = load_image(path)
        probs, uncertainty = segment(model, image, samples, seed)
        colours = colorize(probs.argmax(-1), config)
        stem = out / path.stem
        mask_path, overlay_path = Path(f"{stem}_mask.png"), Path(f"{stem}_overlay.png")
        _write_png(mask_path, cv2.cvtColor(colours, cv2.COLOR_RGB2BGR))
        _write_png(overlay_path, cv2.cvtColor(overlay(image, colours, alpha), cv2.COLOR_RGB2BGR))
        uncertainty_path = None
        if uncertainty is not None:
            uncertainty_path = Path(f"{stem}_uncertainty.png")
            _write_png(uncertainty_path, uncertainty_heatmap(uncertainty))
        results.append(Prediction(path, mask_path, overlay_path, uncertainty_path))
    return results


def segment(
    model: keras.Model, image: np.ndarray, samples: int = 1, seed: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Class probabilities ``[H, W, C]`` of a uint8 RGB image at its own size, and with
    ``samples`` > 1 (Monte Carlo) their normalised entropy ``[H, W]`` in 0..1 (else None)."""
    h, w = image.shape[:2]
    size = tuple(model.input_shape[1:3])
    if None not in size:
        image = cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA)
    batch = image[None].astype(np.float32)
    if samples > 1:
        probs = monte_carlo_predict(model, batch, samples, seed).probs[0]
    else:
        probs = tf.nn.softmax(tf.cast(model.predict_on_batch(batch), tf.float32))[0]
    probs = tf.image.resize(probs, (h, w), method="bilinear").numpy()
    return probs, normalised_entropy(probs) if samples > 1 else None


def uncertainty_heatmap(uncertainty: np.ndarray) -> np.ndarray:
    """Uncertainty ``[H, W]`` in 0..1 -> BGR uint8 heat map: value ``u`` gets entry
    ``round(255 u)`` of OpenCV's inferno colour map (0 black, 1 pale yellow)."""
    codes = np.round(np.clip(uncertainty, 0.0, 1.0) * 255).astype(np.uint8)
    return cv2.applyColorMap(codes, cv2.COLORMAP_INFERNO)


def resolve_model(model: keras.Model | str | Path | None) -> keras.Model:
    """A loaded model; None means :data:`DEFAULT_MODEL`, with a hint on how to make one."""
    if isinstance(model, keras.Model):
        return model
    if model is None:
        if not DEFAULT_MODEL.is_file():
            raise FileNotFoundError(
                f"no --model given and the shipped model is not at {DEFAULT_MODEL} (it is in a "
                "checkout of segnet-tf, not in an installed package): pass --model "
                "<checkout>/models/segnet-lite-camvid, or a model of your own, e.g. "
                "--model runs/camvid after `segnet-tf train --data <camvid dir> --out runs/camvid`"
            )
        model = DEFAULT_MODEL
    return load_model(model)


def image_files(paths: Sequence[str | Path]) -> Iterator[Path]:
    """The image files among ``paths``, folders expanded (sorted); missing paths are an error."""
    seen: dict[str, Path] = {}
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise FileNotFoundError(
                    f"{p}: folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
                )
        elif p.is_file():
            found = [p]
        else:
            raise FileNotFoundError(f"{p}: no such image file or folder")
        for f in found:
            if f.stem in seen and seen[f.stem] != f:
                raise ValueError(f"{f} and {seen[f.stem]} would write the same output names")
            seen[f.stem] = f
            yield f


def _write_png(path: Path, array: np.ndarray) -> None:
    if not cv2.imwrite(str(path), array):
        raise OSError(f"{path}: could not write PNG")
