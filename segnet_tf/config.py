"""Training options, in one place: their defaults, their choices, and the one step that checks
and resolves them (:func:`resolve`).

:class:`TrainConfig` is what ``segnet-tf train`` builds its options from (defaults and choices
read from here), what :func:`segnet_tf.training.train` takes, what a run folder's ``train``
options are (:meth:`segnet_tf.runs.RunFolder.train_config` reads them back typed) and what the
workers of a local multi-worker run are handed, as JSON. :func:`resolve` runs before anything is
written: every number finite and in range, every choice known, the input and crop sizes fixed
once, paths made absolute; each refusal is one line naming the option.

``parse_size`` reads the ``HxW`` sizes of ``segnet-tf`` and of the benchmarks; whether a size
fits a model (its poolings) is the model's to say
(:func:`segnet_tf.models.registry.check_input_size`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from edge_demo.images import MAX_PIXELS
from segnet_tf.data.pipeline import AUGMENTATIONS, resolve_augmentation
from segnet_tf.models.registry import check_decoder, check_input_size

SYNTHETIC_INPUT_SIZE = (96, 128)
DATASET_INPUT_SIZE = (360, 480)  # the paper's CamVid resolution
# Largest default training crop: two thirds of a 360x480 frame, 1.8x cheaper per image than the
# whole frame at the same scale (the recipe screened across drives, models/segnet-lite-camvid).
DEFAULT_MAX_CROP = (240, 320)
STRATEGIES = ("auto", "mirrored", "multiworker", "none")
# "auto": mixed_float16 on a GPU, mixed_bfloat16 on a CPU with bfloat16 arithmetic (AMX,
# AVX-512 BF16; about 2x faster steps of the full segnet: benchmarks/recipe_speed.py), float32
# elsewhere.
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
CLASS_WEIGHTS = ("median", "sqrt-median", "none")  # or a file of weights
# Widths above 4x VGG16's (2048 filters in the deepest stages) are not a model a board or a
# training GPU holds.
MAX_WIDTH = 4.0
MAX_SEED = 2**32 - 1  # numpy's seed range
# Every input size becomes a model and its activations: the same cap as for an image read.
MAX_INPUT_PIXELS = MAX_PIXELS


@dataclass(frozen=True)
class TrainConfig:
    """Options of a training run (the ``segnet-tf train`` options).

    ``data`` None trains on the built-in synthetic road scenes (``synthetic_train`` /
    ``synthetic_val`` of them). ``input_size`` None means 96x128 for synthetic data and the paper's
    360x480 otherwise; it is the size the model is validated and exported at, and ``crop_size``
    the size of the random training crops taken at that scale (None: at most 240x320, whole
    images when the input is smaller or augmentation is off). ``augment`` is
    a name in :data:`segnet_tf.data.pipeline.AUGMENTATIONS`; ``dropout`` adds Bayesian SegNet's
    dropout to the deepest stages. ``batch_size`` is global (split across replicas).
    ``class_weights`` is ``median``, ``sqrt-median``, ``none`` or a file of weights.
    ``encoder_weights`` is ``none``, ``hed``, ``imagenet`` or a VGG16 weights file
    (:mod:`segnet_tf.models.encoder_weights`); ``encoder_lr_mult`` scales the encoder's learning
    rate; the first ``freeze_encoder_epochs`` epochs train the decoder alone (no backward pass
    through the encoder), then every layer trains with a fresh warmup + cosine schedule.
    ``teacher`` (a trained model) distils it into this run: the loss adds ``distill_weight`` of
    the pixel-wise KL divergence to its logits at ``distill_temperature``
    (:mod:`segnet_tf.distillation`).
    ``precision`` is one of :data:`PRECISIONS`, resolved once by training and stored.
    ``decoder`` is one of the preset's decoders (:mod:`segnet_tf.models.decoders`). With
    ``resume`` every option comes from the run's own stored options.
    """

    out: str
    data: str | None = None
    model: str = "segnet-lite"
    input_size: tuple[int, int] | None = None
    epochs: int = 5
    batch_size: int = 8
    class_weights: str = "sqrt-median"
    encoder_weights: str = "none"
    encoder_lr_mult: float = 1.0
    freeze_encoder_epochs: int = 0
    init_weights: str | None = None
    teacher: str | None = None
    distill_weight: float = 0.5
    distill_temperature: float = 2.0
    strategy: str = "auto"
    resume: bool = False
    seed: int = 0
    lr: float = 1e-3
    weight_decay: float = 1e-4
    width: float | None = None
    decoder: str = "indices"
    augment: str = "default"
    crop_size: tuple[int, int] | None = None
    dropout: bool = False
    precision: str = "auto"
    synthetic_train: int = 320
    synthetic_val: int = 64

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("input_size", "crop_size"):
            d[key] = None if d[key] is None else list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        stored, d = d, {k: v for k, v in d.items() if k in known}
        for key in ("input_size", "crop_size"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        if isinstance(d.get("augment"), bool):  # configs written before named augmentations
            d["augment"] = "default" if d["augment"] else "none"
        if "precision" not in d and stored.get("mixed_precision") is not None:  # before bfloat16
            d["precision"] = "mixed_float16" if stored["mixed_precision"] else "float32"
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        return cls.from_dict(json.loads(text))


DEFAULTS = {f.name: f.default for f in fields(TrainConfig) if f.name != "out"}
CHOICES: dict[str, tuple[str, ...]] = {
    "strategy": STRATEGIES,
    "precision": PRECISIONS,
    "augment": tuple(AUGMENTATIONS),
}
# The command-line name of a field where it is not --field-name.
OPTION_NAMES = {"crop_size": "--crop"}


def option_name(field: str) -> str:
    """The ``segnet-tf train`` option of a field: ``crop_size`` -> ``--crop``."""
    return OPTION_NAMES.get(field, "--" + field.replace("_", "-"))


@dataclass(frozen=True)
class Bounds:
    """Where a numeric option may lie: finite, ``low`` (exclusive when ``low_open``) up to
    ``high``, an integer when ``integer``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    integer: bool = False

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        low, high = f"{self.low:g}", None if self.high is None else f"{self.high:g}"
        if self.integer and self.high is not None:
            return f"{kind} {int(self.low)}..{int(self.high)}"
        if high is None:
            return f"{kind} {'>' if self.low_open else '>='} {low}"
        return f"{kind} in {'(' if self.low_open else '['}{low}, {high}]"

    def holds(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high


NUMBERS: dict[str, Bounds] = {
    "epochs": Bounds(1, integer=True),
    "batch_size": Bounds(1, integer=True),
    "lr": Bounds(0, low_open=True),
    "weight_decay": Bounds(0),
    "width": Bounds(0, MAX_WIDTH, low_open=True),
    "seed": Bounds(0, MAX_SEED, integer=True),
    "synthetic_train": Bounds(1, integer=True),
    "synthetic_val": Bounds(1, integer=True),
    "encoder_lr_mult": Bounds(0, low_open=True),
    "freeze_encoder_epochs": Bounds(0, integer=True),
    "distill_weight": Bounds(0, 1),
    "distill_temperature": Bounds(0, low_open=True),
}
# How a run is launched, not stored with it (``segnet-tf train --join-timeout``).
LAUNCH_NUMBERS: dict[str, Bounds] = {"join_timeout": Bounds(0, low_open=True)}


def check_number(name: str, value, bounds: Bounds) -> None:
    """One line naming the option when ``value`` (None: not given) is outside ``bounds``."""
    if value is not None and not bounds.holds(value):
        raise ValueError(f"{option_name(name)} {value}: must be {bounds.describe()}")


class SizeTooLarge(ValueError):
    """An ``HxW`` above :data:`MAX_INPUT_PIXELS`."""


def parse_size(text: str) -> tuple[int, int]:
    """``HxW`` (e.g. ``360x480``) -> ``(H, W)``; ValueError naming the text otherwise, and
    :class:`SizeTooLarge` above :data:`MAX_INPUT_PIXELS`."""
    parts = text.lower().split("x")
    if len(parts) == 2 and all(p.strip().isdigit() and int(p) > 0 for p in parts):
        height, width = int(parts[0]), int(parts[1])
        if height * width > MAX_INPUT_PIXELS:
            raise SizeTooLarge(
                f"{height * width / 1e6:g} megapixels, above the {MAX_INPUT_PIXELS / 1e6:g} "
                "megapixel limit (8K video is 33 megapixels)"
            )
        return height, width
    raise ValueError(f"{text!r}: expected HEIGHTxWIDTH with positive integers, e.g. 360x480")


def resolve(config: TrainConfig) -> TrainConfig:
    """The options of a new run checked and fixed: every number finite and in range, every
    choice known, the model and decoder known and fitting the input and crop sizes, the sizes
    and paths resolved. Raises ValueError (FileNotFoundError for a missing file) naming the
    option; nothing is written. Idempotent, so a worker can resolve what it was handed."""
    if isinstance(config.augment, bool):  # the on/off flag before named augmentations
        config = replace(config, augment="default" if config.augment else "none")
    for name, bounds in NUMBERS.items():
        check_number(name, getattr(config, name), bounds)
    for name, choices in CHOICES.items():
        if getattr(config, name) not in choices:
            raise ValueError(
                f"{option_name(name)} {getattr(config, name)!r}: choose one of {', '.join(choices)}"
            )
    if config.freeze_encoder_epochs > config.epochs:
        raise ValueError(
            f"--freeze-encoder-epochs {config.freeze_encoder_epochs}: must be 0..--epochs "
            f"({config.epochs})"
        )
    check_decoder(config.model, config.decoder)
    if resolve_augmentation(config.augment) is None and config.crop_size is not None:
        raise ValueError("--crop takes random crops: it needs augmentation (not --augment none)")
    input_size = resolve_input_size(config)
    crop_size = resolve_crop_size(replace(config, input_size=input_size))
    for name, size in (("input_size", input_size), ("crop_size", crop_size)):
        if size is not None:
            try:
                check_input_size(config.model, size)
            except ValueError as e:
                raise ValueError(f"{option_name(name)} {size[0]}x{size[1]}: {e}") from None
    for name in ("init_weights", "teacher"):
        path = getattr(config, name)
        if path is not None and not Path(path).exists():
            raise FileNotFoundError(f"{option_name(name)} {path}: no such model file or run folder")
    if config.teacher is not None and config.strategy == "multiworker":
        raise ValueError("--teacher: distillation runs on one machine (not --strategy multiworker)")
    return replace(
        config,
        out=str(Path(config.out).resolve()),
        data=_absolute(config.data),
        init_weights=_absolute(config.init_weights),
        teacher=_absolute(config.teacher),
        input_size=input_size,
        crop_size=crop_size,
    )


def _absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).resolve())


def resolve_input_size(config: TrainConfig) -> tuple[int, int]:
    if config.input_size is not None:
        return tuple(config.input_size)
    return SYNTHETIC_INPUT_SIZE if config.data is None else DATASET_INPUT_SIZE


def resolve_crop_size(config: TrainConfig) -> tuple[int, int] | None:
    """The training crop: ``crop_size`` if given, else at most :data:`DEFAULT_MAX_CROP`; None
    (whole images) when that is the whole input or there is no augmentation to crop with."""
    if config.crop_size is not None:
        return tuple(config.crop_size)
    size = resolve_input_size(config)
    crop = tuple(min(s, m) for s, m in zip(size, DEFAULT_MAX_CROP, strict=True))
    if crop == size or resolve_augmentation(config.augment) is None:
        return None
    return crop
