"""Prediction on images and videos with a model of any format (``.keras``, ``.tflite``,
``.onnx``): class-id images, colour masks, overlays and, for Bayesian SegNet, uncertainty maps.

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

import glob
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import keras
import numpy as np
import tensorflow as tf

from segnet_tf.data import CAMVID, DatasetConfig, colorize, load_image
from segnet_tf.data.datasets import IMAGE_SUFFIXES
from segnet_tf.layers import MonteCarloDropout
from segnet_tf.models import load_model
from segnet_tf.progress import progress
from segnet_tf.runs import model_classes

__all__ = [
    "DEFAULT_MODEL",
    "MonteCarloResult",
    "Prediction",
    "Segmenter",
    "colorize",
    "dropout_sampling",
    "monte_carlo_predict",
    "open_segmenter",
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
DEFAULT_OUT = Path("runs/predict")
EXPORTED_SUFFIXES = (".tflite", ".onnx")  # run by segnet_tf.export.runners
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})
INPUT_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES


@dataclass(frozen=True)
class MonteCarloResult:
    probs: np.ndarray  # [N, H, W, C] mean softmax
    class_map: np.ndarray  # [N, H, W] argmax of probs
    uncertainty: np.ndarray  # [N, H, W] normalised predictive entropy, 0..1


@dataclass(frozen=True)
class Prediction:
    """The files written for one input (an image, or a video of ``frames`` frames)."""

    image: Path
    mask: Path
    overlay: Path
    ids: Path  # the class-id PNG; for a video, the folder of one per frame
    uncertainty: Path | None
    frames: int = 1


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
    out_dir: str | Path | None = None,
    config: DatasetConfig | None = None,
    samples: int | None = None,
    alpha: float = 0.5,
    seed: int | None = 0,
) -> list[Prediction]:
    """Write, for every image in ``paths`` (files, folders, glob patterns), ``<stem>_ids.png``
    (uint8 class ids), ``<stem>_mask.png`` (their colours) and ``<stem>_overlay.png``, plus
    ``<stem>_uncertainty.png`` when sampling; for a video, ``<stem>_mask.mp4``,
    ``<stem>_overlay.mp4`` and a folder ``<stem>_ids/`` of per-frame class-id PNGs. Outputs have
    each input's size; ``out_dir`` None is :data:`DEFAULT_OUT` (``runs/predict``, then
    ``runs/predict2``, ... so nothing is overwritten).

    ``model`` is a Keras model, a ``.keras`` file or run folder, an exported ``.tflite`` or
    ``.onnx`` file, or None for :data:`DEFAULT_MODEL` (see :func:`open_segmenter` for the
    classes, ``samples`` and ``seed``).
    """
    segmenter = open_segmenter(model, config, samples, seed)
    files = list(input_files(paths))
    out = free_folder(DEFAULT_OUT) if out_dir is None else Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        results = []
        for path in progress(files, "predict", unit="file"):
            write = _predict_video if path.suffix.lower() in VIDEO_SUFFIXES else _predict_image
            results.append(write(segmenter, path, out, alpha))
        return results
    except BaseException:
        if created:  # a refused image leaves no --out folder behind
            shutil.rmtree(out, ignore_errors=True)
        raise


@dataclass(frozen=True)
class Segmenter:
    """A model of any format as one function: a uint8 RGB image ``[H, W, 3]`` -> class
    probabilities ``[H, W, C]`` at its size and, when sampling, their normalised entropy."""

    name: str
    config: DatasetConfig
    segment: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]


def open_segmenter(
    model: keras.Model | str | Path | None,
    config: DatasetConfig | None = None,
    samples: int | None = None,
    seed: int | None = 0,
) -> Segmenter:
    """Load ``model`` (see :func:`predict_images`) through the loaders ``evaluate`` uses: Keras
    archives as data (:func:`segnet_tf.models.load_model`), exported files with the demo's checks
    (:mod:`segnet_tf.export.runners`). ``config`` (the classes) defaults to the model's run config
    or ``labels.json``, else CamVid's. A Bayesian model samples ``samples`` passes (default 8; 1
    is weight averaging, dropout off) from ``seed`` (None: a fresh draw)."""
    exported = isinstance(model, str | Path) and Path(model).suffix.lower() in EXPORTED_SUFFIXES
    if exported:
        return _exported_segmenter(Path(model), config, samples)
    model_path = None if isinstance(model, keras.Model) else model
    model = resolve_model(model)
    config = config or model_classes(int(model.output_shape[-1]), model_path)
    bayesian = bool(monte_carlo_dropout_layers(model))
    samples = (DEFAULT_SAMPLES if bayesian else 1) if samples is None else samples
    if samples > 1 and not bayesian:
        raise ValueError(
            f"--mc-samples {samples}: model {model.name!r} has no Monte Carlo dropout; "
            "use a 'bayesian-segnet' model or --mc-samples 1"
        )
    return Segmenter(model.name, config, lambda image: segment(model, image, samples, seed))


def _exported_segmenter(path: Path, config: DatasetConfig | None, samples: int | None):
    from segnet_tf.export.runners import exported_classes, load_exported, outputs_probabilities

    if samples is not None and samples > 1:
        raise ValueError(
            f"--mc-samples {samples}: {path.name} is an exported file, run as it was exported "
            "(`segnet-tf export --mc-samples N` builds the sampling into model_mc.tflite)"
        )
    runner = load_exported(path)
    classes = exported_classes(path, runner, CAMVID) if config is None else config
    if classes.num_classes != int(runner.output["shape"][-1]):
        raise ValueError(
            f"model {str(path)!r} predicts {int(runner.output['shape'][-1])} classes but "
            f"{classes.name!r} has {classes.num_classes}"
        )
    size, monte_carlo = runner.input_size, outputs_probabilities(path)

    def run(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        h, w = image.shape[:2]
        scores = tf.convert_to_tensor(
            runner(cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA)), tf.float32
        )
        if monte_carlo:  # mean probabilities of the samples (int8: dequantised, renormalised)
            clipped = tf.maximum(scores, 0.0)
            probs = clipped / tf.maximum(tf.reduce_sum(clipped, -1, keepdims=True), 1e-12)
        else:
            probs = tf.nn.softmax(scores)
        probs = tf.image.resize(probs, (h, w), method="bilinear").numpy()
        return probs, normalised_entropy(probs) if monte_carlo else None

    return Segmenter(path.name, classes, run)


def _predict_image(segmenter: Segmenter, path: Path, out: Path, alpha: float) -> Prediction:
    image = load_image(path)
    probs, uncertainty = segmenter.segment(image)
    ids = class_ids(probs)
    colours = colorize(ids, segmenter.config)
    stem = out / path.stem
    ids_path, mask_path = Path(f"{stem}_ids.png"), Path(f"{stem}_mask.png")
    overlay_path = Path(f"{stem}_overlay.png")
    _write_png(ids_path, ids)
    _write_png(mask_path, cv2.cvtColor(colours, cv2.COLOR_RGB2BGR))
    _write_png(overlay_path, cv2.cvtColor(overlay(image, colours, alpha), cv2.COLOR_RGB2BGR))
    uncertainty_path = None
    if uncertainty is not None:
        uncertainty_path = Path(f"{stem}_uncertainty.png")
        _write_png(uncertainty_path, uncertainty_heatmap(uncertainty))
    return Prediction(path, mask_path, overlay_path, ids_path, uncertainty_path)


def _predict_video(segmenter: Segmenter, path: Path, out: Path, alpha: float) -> Prediction:
    """Every frame of a video: colour-mask and overlay videos (same frame rate, MPEG-4) and
    a class-id PNG per frame, ``<stem>_ids/<stem>_000000.png``, ..."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"{path}: cannot open it as a video (corrupt or unsupported codec)")
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    stem = out / path.stem
    ids_dir = Path(f"{stem}_ids")
    ids_dir.mkdir(exist_ok=True)
    mask_path, overlay_path = Path(f"{stem}_mask.mp4"), Path(f"{stem}_overlay.mp4")
    writers: list[cv2.VideoWriter] = []
    frames = 0
    try:
        for bgr in progress(_frames(capture), path.name, total=total, unit="frame"):
            image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            ids = class_ids(segmenter.segment(image)[0])
            colours = colorize(ids, segmenter.config)
            if not writers:
                writers = [_video_writer(p, fps, image.shape) for p in (mask_path, overlay_path)]
            writers[0].write(cv2.cvtColor(colours, cv2.COLOR_RGB2BGR))
            writers[1].write(cv2.cvtColor(overlay(image, colours, alpha), cv2.COLOR_RGB2BGR))
            _write_png(ids_dir / f"{path.stem}_{frames:06d}.png", ids)
            frames += 1
    finally:
        capture.release()
        for writer in writers:
            writer.release()
    if not frames:
        raise ValueError(f"{path}: the video has no frames that could be decoded")
    return Prediction(path, mask_path, overlay_path, ids_dir, None, frames)


def _frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield frame


def _video_writer(path: Path, fps: float, shape: tuple[int, ...]) -> cv2.VideoWriter:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, shape[1::-1])
    if not writer.isOpened():
        raise OSError(f"{path}: OpenCV cannot write an MPEG-4 video here")
    return writer


def class_ids(probs: np.ndarray) -> np.ndarray:
    """Class probabilities ``[H, W, C]`` -> uint8 class ids (C <= 256)."""
    if probs.shape[-1] > 256:
        raise ValueError(f"{probs.shape[-1]} classes do not fit a uint8 class-id image")
    return probs.argmax(-1).astype(np.uint8)


def free_folder(path: Path) -> Path:
    """``path`` if it is absent or empty, else the first of ``path2``, ``path3``, ... that is."""
    candidate, k = path, 1
    while candidate.exists() and any(candidate.iterdir()):
        k += 1
        candidate = path.with_name(f"{path.name}{k}")
    return candidate


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


def input_files(paths: Sequence[str | Path]) -> Iterator[Path]:
    """The images and videos among ``paths``: files, folders (expanded, sorted) and glob
    patterns (``frames/*.png``, ``drive/**/*.jpg``; quoted, so the shell left them); a missing
    path or a pattern matching nothing is an error, as are two inputs with one output name."""
    seen: dict[str, Path] = {}
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in INPUT_SUFFIXES)
            if not found:
                raise FileNotFoundError(
                    f"{p}: folder has no images or videos ({', '.join(sorted(INPUT_SUFFIXES))})"
                )
        elif p.is_file():
            found = [p]
        elif any(c in str(p) for c in "*?["):
            found = sorted(
                f
                for f in map(Path, glob.glob(str(p), recursive=True))
                if f.is_file() and f.suffix.lower() in INPUT_SUFFIXES
            )
            if not found:
                raise FileNotFoundError(f"{p}: the pattern matches no images or videos")
        else:
            raise FileNotFoundError(f"{p}: no such image, video or folder")
        for f in found:
            if f.stem in seen and seen[f.stem] != f:
                raise ValueError(f"{f} and {seen[f.stem]} would write the same output names")
            seen[f.stem] = f
            yield f


def _write_png(path: Path, array: np.ndarray) -> None:
    if not cv2.imwrite(str(path), array):
        raise OSError(f"{path}: could not write PNG")
