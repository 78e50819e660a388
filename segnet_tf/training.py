"""Training: ``train(TrainConfig) -> TrainResult`` over ``model.fit``, with runs that survive kills.

What a run directory holds and how it is written (atomically, so ``--resume`` always finds a
complete epoch) is :mod:`segnet_tf.runs`.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import segnet_tf
from segnet_tf.data import Dataset, dataset_stats, make_dataset
from segnet_tf.data.pipeline import resolve_augmentation
from segnet_tf.distillation import teacher_logits
from segnet_tf.distributed import (
    DEFAULT_JOIN_TIMEOUT,
    LOST_PEER_ERRORS,
    Cluster,
    ClusterError,
    MultiWorkerStrategy,
    barrier,
    cluster_from_env,
    describe_failure,
    join_cluster,
)
from segnet_tf.losses import DistillationLoss, WeightedSparseCategoricalCrossentropy
from segnet_tf.metrics import miou_metric
from segnet_tf.models import build_model, load_model, transfer_weights
from segnet_tf.models.encoder_weights import calibrate_batch_norm
from segnet_tf.models.registry import check_decoder
from segnet_tf.optimizers import LayerwiseAdamW
from segnet_tf.run_logs import run_log_callbacks
from segnet_tf.runs import (
    FRESH_STATE,
    RunFolder,
    atomic_save_model,
    open_run_dataset,
    read_history,
    read_state,
    remove_stale_temp_files,
    truncate_history,
    write_run_config,
    write_state,
)

LOGGER = logging.getLogger(__name__)

SYNTHETIC_INPUT_SIZE = (96, 128)
DATASET_INPUT_SIZE = (360, 480)  # the paper's CamVid resolution
# Largest default training crop: two thirds of a 360x480 frame, 1.8x cheaper per image than the
# whole frame at the same scale (the recipe screened across drives, models/segnet-lite-camvid).
DEFAULT_MAX_CROP = (240, 320)
STRATEGIES = ("auto", "mirrored", "multiworker", "none")
# "auto": mixed_float16 on a GPU, mixed_bfloat16 on a CPU with bfloat16 arithmetic (AMX,
# AVX-512 BF16; 2.0-2.5x faster steps of the full segnet), float32 elsewhere.
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo names
ENCODER_PREFIX = "block"  # the encoder's layers: block{stage}_conv{n}, _bn, _pool, _dropout
CALIBRATION_BATCHES = 8  # training batches that measure a pretrained encoder's statistics
MONITOR = "val_miou"
TEACHER_DIR = "teacher"  # in the run folder: the teacher's cached logits


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
    ``precision`` is one of :data:`PRECISIONS`, resolved once and stored. ``decoder`` is one of the
    preset's decoders (:mod:`segnet_tf.models.decoders`). With ``resume`` every option comes from
    the run's own ``config.json``.
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
        d_old, d = d, {k: v for k, v in d.items() if k in known}
        for key in ("input_size", "crop_size"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        if isinstance(d.get("augment"), bool):  # configs written before named augmentations
            d["augment"] = "default" if d["augment"] else "none"
        if "precision" not in d and d_old.get("mixed_precision") is not None:  # before bfloat16
            d["precision"] = "mixed_float16" if d_old["mixed_precision"] else "float32"
        return cls(**d)


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    epochs: int  # completed epochs
    best_miou: float | None
    best_epoch: int | None  # 1-based
    history: dict[str, list[float]]

    @property
    def best_path(self) -> Path:
        return self.run_dir / "best.keras"

    @property
    def last_path(self) -> Path:
        return self.run_dir / "last.keras"


def train(
    config: TrainConfig,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = 1,
    join_timeout: float = DEFAULT_JOIN_TIMEOUT,
) -> TrainResult:
    """Train (or resume) the run in ``config.out``; returns where it went and its best val mIoU.

    ``callbacks`` run after the run's own checkpointing ones. A KeyboardInterrupt propagates; the
    run directory then holds the last completed epoch, ready for ``resume``. With the
    ``multiworker`` strategy every worker runs this with the same config (the run directory on a
    filesystem they share when resuming): only the chief writes the run, and ``join_timeout``
    bounds the wait for the other workers (see :mod:`segnet_tf.distributed`).
    """
    config, state = prepare_run_dir(config)
    run_dir = Path(config.out)
    if state["epoch"] >= config.epochs:
        LOGGER.info("%s: all %d epochs already done", run_dir, config.epochs)
        return _result(run_dir, state)
    # multi-worker wants it before other TF work
    strategy = make_strategy(config.strategy, join_timeout)
    keras.utils.set_random_seed(config.seed)

    dataset = open_training_data(config)
    if not config.resume:  # runs stored before the default crop keep their whole images
        config = replace(config, crop_size=resolve_crop_size(config))
    config = replace(config, input_size=resolve_input_size(config))
    train_samples, val_samples = train_val_samples(dataset, config.seed)
    weights = resolve_class_weights(config.class_weights, dataset)
    # Stored resolved: a resumed run must load its model under the policy it was saved with.
    config = replace(config, precision=resolve_precision(config.precision))
    LOGGER.info("precision: %s", config.precision)
    cluster = cluster_from_env() if isinstance(strategy, MultiWorkerStrategy) else None
    chief = cluster is None or cluster.is_chief
    if chief and not config.resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_run_config(run_dir, run_info(config, dataset, weights, strategy))

    soft = None
    if config.teacher:
        soft = teacher_logits(
            config.teacher, train_samples, dataset.config, run_dir / TEACHER_DIR, config.input_size
        )
    ds_kw = {"input_size": config.input_size, "batch_size": config.batch_size, "seed": config.seed}
    train_ds = _distributable(
        make_dataset(
            train_samples,
            dataset.config,
            training=True,
            augment=config.augment,
            crop_size=config.crop_size,
            soft_targets=soft,
            **ds_kw,
        )
    )
    val_ds = _distributable(make_dataset(val_samples, dataset.config, training=False, **ds_kw))
    steps = max(1, len(train_samples) // config.batch_size)

    calibration = (images for images, _ in train_ds.take(CALIBRATION_BATCHES))
    with strategy.scope():
        model = _compiled_model(config, run_dir, state, dataset, weights, steps, calibration)
    synchronize_batch_norm(model, strategy.num_replicas_in_sync)
    inference_model = _float32_twin(config, dataset.config.num_classes)

    # Every worker saves (saving reads distributed variables, a collective), others to scratch.
    write_dir = run_dir if chief else Path(tempfile.mkdtemp(prefix="segnet-worker-"))
    try:
        if chief:
            truncate_history(run_dir / "history.csv", state["epoch"])
        own: list[keras.callbacks.Callback] = [
            RunCheckpoint(write_dir, inference_model, state),
            keras.callbacks.CSVLogger(str(write_dir / "history.csv"), append=True),
        ]
        if chief:
            own += run_log_callbacks(run_dir)
        fit = dict(validation_data=val_ds, callbacks=[*own, *callbacks], verbose=verbose)
        frozen_until = min(config.freeze_encoder_epochs, config.epochs)
        if state["epoch"] < frozen_until:  # make_dataset shuffles
            _fit(
                model,
                strategy,
                cluster,
                train_ds,
                epochs=frozen_until,
                initial_epoch=state["epoch"],
                shuffle=False,
                **fit,
            )
        if frozen_until < config.epochs:
            if encoder_frozen(model):  # also when resumed at the end of the warm-up
                with strategy.scope():
                    _unfreeze_encoder(model, config, steps, weights, dataset.config.num_classes)
            _fit(
                model,
                strategy,
                cluster,
                train_ds,
                epochs=config.epochs,
                initial_epoch=max(state["epoch"], frozen_until),
                shuffle=False,
                **fit,
            )
        return replace(_result(write_dir, read_state(write_dir)), run_dir=run_dir)
    finally:
        if not chief:
            shutil.rmtree(write_dir, ignore_errors=True)


def _fit(model: keras.Model, strategy, cluster: Cluster | None, *args, **kwargs) -> None:
    """``model.fit``; in a multi-worker run a lost worker becomes a :class:`ClusterError`, and
    every worker returns only once all of them are done (the chief's files are written)."""
    if cluster is None:
        model.fit(*args, **kwargs)
        return
    try:
        model.fit(*args, **kwargs)
        barrier(strategy)
    except LOST_PEER_ERRORS as e:  # a dataset error stays what it is
        raise ClusterError(describe_failure(e, cluster, "training")) from None


# --------------------------------------------------------------------------- run directory


def prepare_run_dir(config: TrainConfig) -> tuple[TrainConfig, dict]:
    """Check ``config.out`` and return the config to run and the state to start from.

    A new run refuses a directory that already holds one; ``resume`` takes the stored options and
    starts after the last completed epoch (from scratch if none completed).
    """
    run_dir = Path(config.out)
    fresh = dict(FRESH_STATE)
    if config.resume:
        if not (run_dir / "config.json").is_file():
            raise FileNotFoundError(
                f"--resume: {run_dir} has no config.json, nothing to resume"
                + (" (every worker must see the run directory)" if cluster_from_env() else "")
            )
        stored = (RunFolder(run_dir).info() or {}).get("train")
        if stored is None:
            raise ValueError(f"--resume: {run_dir / 'config.json'} is not a run's config")
        # How to run is the invocation's (e.g. more machines now), what to run is the run's.
        strategy = config.strategy if config.strategy != "auto" else stored.get("strategy", "auto")
        config = replace(
            TrainConfig.from_dict(stored), out=str(run_dir), resume=True, strategy=strategy
        )
        remove_stale_temp_files(run_dir)
        if not (run_dir / "last.keras").is_file():
            return replace(config, resume=False), fresh
        return config, read_state(run_dir)
    if (run_dir / "last.keras").exists() or (run_dir / "state.json").exists():
        raise ValueError(
            f"--out {run_dir} already holds a run (last.keras); pass --resume to continue it "
            "or choose a new --out"
        )
    if config.strategy not in STRATEGIES:
        raise ValueError(f"--strategy {config.strategy!r}: choose one of {', '.join(STRATEGIES)}")
    check_decoder(config.model, config.decoder)
    if resolve_augmentation(config.augment) is None and config.crop_size is not None:
        raise ValueError("--crop takes random crops: it needs augmentation (not --augment none)")
    if config.epochs < 1 or config.batch_size < 1:
        raise ValueError(
            f"--epochs and --batch-size must be >= 1, got {config.epochs}, {config.batch_size}"
        )
    if not 0 <= config.freeze_encoder_epochs <= config.epochs:
        raise ValueError(
            f"--freeze-encoder-epochs {config.freeze_encoder_epochs}: must be 0..--epochs "
            f"({config.epochs})"
        )
    if not (np.isfinite(config.encoder_lr_mult) and config.encoder_lr_mult > 0):
        raise ValueError(f"--encoder-lr-mult {config.encoder_lr_mult}: must be a number > 0")
    if config.teacher is not None and not Path(config.teacher).exists():
        raise FileNotFoundError(f"--teacher {config.teacher}: no such model file or run folder")
    if config.teacher is not None and config.strategy == "multiworker":
        raise ValueError("--teacher: distillation runs on one machine (not --strategy multiworker)")
    if not 0 <= config.distill_weight <= 1:
        raise ValueError(f"--distill-weight {config.distill_weight}: must be in 0..1")
    if not (np.isfinite(config.distill_temperature) and config.distill_temperature > 0):
        raise ValueError(f"--distill-temperature {config.distill_temperature}: must be > 0")
    if config.precision not in PRECISIONS:
        raise ValueError(f"--precision {config.precision!r}: choose one of {', '.join(PRECISIONS)}")
    init = config.init_weights
    if init is not None and not Path(init).exists():
        raise FileNotFoundError(f"--init-weights {init}: no such model file or run folder")
    data = None if config.data is None else str(Path(config.data).resolve())
    init = None if init is None else str(Path(init).resolve())
    teacher = None if config.teacher is None else str(Path(config.teacher).resolve())
    config = replace(config, data=data, init_weights=init, teacher=teacher)
    return replace(config, out=str(run_dir.resolve())), fresh


def run_info(
    config: TrainConfig,
    dataset: Dataset,
    class_weights: Sequence[float],
    strategy: tf.distribute.Strategy,
) -> dict:
    """What ``config.json`` records of a run."""
    return {
        "train": config.to_dict(),
        "dataset": dataset.config.to_dict(),
        "model": {
            "name": config.model,
            "input_size": list(config.input_size),
            "num_classes": dataset.config.num_classes,
            "width": config.width,
        },
        "class_weights": [float(w) for w in class_weights],
        "strategy": {"name": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync},
        "versions": {
            "segnet_tf": segnet_tf.__version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
    }


def _result(run_dir: Path, state: dict) -> TrainResult:
    return TrainResult(
        run_dir=run_dir,
        epochs=state["epoch"],
        best_miou=state["best_miou"],
        best_epoch=state["best_epoch"],
        history=read_history(run_dir / "history.csv"),
    )


class RunCheckpoint(keras.callbacks.Callback):
    """Per epoch: ``best.keras`` if val mIoU rose, then ``last.keras``, then ``state.json``."""

    def __init__(self, run_dir: Path, inference_model: keras.Model, state: dict):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.inference_model = inference_model
        self.state = dict(state)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        score = (logs or {}).get(MONITOR)
        best = self.state["best_miou"]
        if score is not None and np.isfinite(score) and (best is None or score > best):
            self.inference_model.set_weights(self.model.get_weights())
            atomic_save_model(self.inference_model, self.run_dir / "best.keras")
            self._write_state(best_miou=float(score), best_epoch=epoch + 1)
        atomic_save_model(self.model, self.run_dir / "last.keras")
        self._write_state(epoch=epoch + 1)

    def _write_state(self, **changes) -> None:
        self.state.update(changes)
        write_state(self.run_dir, self.state)


# --------------------------------------------------------------------------- data and weights


def open_training_data(config: TrainConfig) -> Dataset:
    """The run's dataset: the folder ``config.data`` or the synthetic scenes it was trained on."""
    return open_run_dataset(replace(config, input_size=resolve_input_size(config)).to_dict())


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


def train_val_samples(dataset: Dataset, seed: int) -> tuple[list, list]:
    """The train and val splits; without a val split, a seeded 10 % of train is held out."""
    train = list(dataset.split("train"))
    if "val" in dataset.splits:
        return train, list(dataset.split("val"))
    if len(train) < 2:
        raise ValueError(f"{dataset.root}: need a val split or at least 2 training samples")
    order = np.random.default_rng(seed).permutation(len(train))
    n_val = max(1, len(train) // 10)
    LOGGER.info(
        "%s has no val split: holding out %d of %d train samples for validation",
        dataset.root,
        n_val,
        len(train),
    )
    return [train[i] for i in order[n_val:]], [train[i] for i in order[:n_val]]


def resolve_class_weights(spec: str, dataset: Dataset) -> tuple[float, ...]:
    """``median`` (the config's weights, else median frequency from the train labels),
    ``sqrt-median`` (their square roots: the rare classes still count more, the common ones are not
    crushed), ``none`` (all ones) or a file holding a JSON list or one weight per line."""
    n = dataset.config.num_classes
    if spec == "none":
        return (1.0,) * n
    if spec == "sqrt-median":
        return tuple(float(np.sqrt(w)) for w in resolve_class_weights("median", dataset))
    if spec == "median":
        if dataset.config.class_weights is not None:
            return tuple(dataset.config.class_weights)
        LOGGER.info("computing median frequency class weights from the train labels")
        return tuple(float(w) for w in dataset_stats(dataset, "train").weights)
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(
            f"--class-weights {spec!r}: neither 'median', 'sqrt-median', 'none' "
            "nor an existing file"
        )
    text = path.read_text()
    try:
        values = json.loads(text)
    except json.JSONDecodeError:
        values = [line for line in text.split() if line]
    try:
        weights = tuple(float(v) for v in values)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"--class-weights {path}: expected a JSON list or one number per line: {e}"
        ) from e
    if len(weights) != n or not all(np.isfinite(w) and w >= 0 for w in weights):
        raise ValueError(
            f"--class-weights {path}: expected {n} finite weights >= 0 (one per class of "
            f"{dataset.config.name!r}), got {len(weights)}"
        )
    return weights


def _distributable(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Shard by element: our datasets are built from a range, not files (multi-worker)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


# --------------------------------------------------------------------------- model and devices


def make_strategy(name: str, join_timeout: float = DEFAULT_JOIN_TIMEOUT) -> tf.distribute.Strategy:
    """``auto``: mirrored over all GPUs when there are several, else the default (one device).
    ``mirrored`` on a machine without GPUs mirrors over the logical CPU devices.
    ``multiworker``: this process is one worker of the cluster in ``TF_CONFIG``."""
    cluster = cluster_from_env()
    if name == "multiworker":
        if cluster is None:
            raise ClusterError(
                "--strategy multiworker needs TF_CONFIG (the cluster and this worker's task); "
                "see docs/training.md, or try it locally with --workers N"
            )
        return join_cluster(cluster, join_timeout)
    if cluster is not None and cluster.size > 1:
        raise ClusterError(
            f"TF_CONFIG describes a cluster of {cluster.size} workers but --strategy is {name}: "
            "pass --strategy multiworker, or unset TF_CONFIG to train on this machine alone"
        )
    if name == "auto":
        several = len(tf.config.list_logical_devices("GPU")) > 1
        return tf.distribute.MirroredStrategy() if several else tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "none":
        return tf.distribute.get_strategy()
    raise ValueError(f"--strategy {name!r}: choose one of {', '.join(STRATEGIES)}")


def resolve_precision(precision: str) -> str:
    """``precision``, or for ``auto`` the fastest policy this machine trains in (see
    :data:`PRECISIONS`)."""
    if precision != "auto":
        return precision
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_has_bfloat16() else "float32"


def cpu_has_bfloat16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU has bfloat16 arithmetic (AMX or AVX-512 BF16), from its flags (Linux)."""
    try:
        flags = next(
            (
                line.split(":", 1)[1].split()
                for line in Path(cpuinfo).read_text().splitlines()
                if line.startswith("flags")
            ),
            [],
        )
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def _model_overrides(config: TrainConfig) -> dict:
    overrides = {"decoder": config.decoder}
    if config.width is not None:
        overrides["width"] = config.width
    return {**overrides, "bayesian": True} if config.dropout else overrides


def training_input_shape(config: TrainConfig) -> tuple[int | None, int | None, int]:
    """Crops train a model of free spatial size, so that it validates on whole frames; the saved
    ``best.keras`` is its twin at the fixed ``input_size`` (what export needs)."""
    crop = config.crop_size
    if crop is not None and tuple(crop) != tuple(config.input_size):
        return (None, None, 3)
    return (*config.input_size, 3)


def _compiled_model(
    config: TrainConfig,
    run_dir: Path,
    state: dict,
    dataset: Dataset,
    class_weights: Sequence[float],
    steps_per_epoch: int,
    calibration: Iterable,
) -> keras.Model:
    """A new compiled model, or the resumed ``last.keras`` with its optimizer state.

    Both happen under the run's dtype policy: compile wraps the optimizer for loss scaling only
    when the model is mixed float16, and a reloaded model takes the global policy, so loading
    under another one would drop the saved optimizer state (its variables no longer match).
    A new model with a pretrained encoder has its batch norms calibrated on ``calibration``
    (image batches), and its encoder frozen for ``freeze_encoder_epochs``.
    """
    with global_dtype_policy(config.precision):
        if state["epoch"] > 0:
            LOGGER.info("resuming %s after epoch %d", run_dir, state["epoch"])
            return load_model(run_dir / "last.keras", compile=True, unsafe=False)
        model = build_model(
            config.model,
            training_input_shape(config),
            dataset.config.num_classes,
            encoder_weights=config.encoder_weights,
            **_model_overrides(config),
        )
        if config.init_weights:
            skipped = transfer_weights(model, config.init_weights)
            LOGGER.info(
                "initialised from %s%s",
                config.init_weights,
                f" except {skipped}" if skipped else "",
            )
        elif config.encoder_weights != "none":
            calibrate_batch_norm(model, calibration)
            LOGGER.info("encoder from %s, batch norms calibrated", config.encoder_weights)
        frozen = config.freeze_encoder_epochs > 0
        if frozen:
            set_encoder_trainable(model, False)
        epochs = config.freeze_encoder_epochs if frozen else config.epochs
        num_classes = dataset.config.num_classes
        optimizer = make_optimizer(config, steps_per_epoch, epochs)
        _compile(model, config, optimizer, class_weights, num_classes)
        return model


def _compile(
    model: keras.Model,
    config: TrainConfig,
    optimizer: keras.optimizers.Optimizer,
    class_weights: Sequence[float],
    num_classes: int,
) -> None:
    if config.teacher:
        loss = DistillationLoss(class_weights, config.distill_weight, config.distill_temperature)
    else:
        loss = WeightedSparseCategoricalCrossentropy(class_weights)
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=[miou_metric(num_classes, packed=bool(config.teacher))],
        jit_compile=False,  # MaxPoolWithArgmax has no XLA kernel
    )
    # Slots created inside the first traced step make tf.function trace it twice: build them now
    # (halves the start-up time of fit).
    model.optimizer.build(model.trainable_variables)


def _unfreeze_encoder(
    model: keras.Model,
    config: TrainConfig,
    steps_per_epoch: int,
    class_weights: Sequence[float],
    num_classes: int,
) -> None:
    """End of the frozen warm-up: every layer trains, with a fresh warmup + cosine schedule over
    the remaining epochs (the decoder's optimizer state does not carry over)."""
    LOGGER.info("epoch %d: encoder unfrozen", config.freeze_encoder_epochs)
    set_encoder_trainable(model, True)
    remaining = config.epochs - config.freeze_encoder_epochs
    optimizer = make_optimizer(config, steps_per_epoch, remaining)
    with global_dtype_policy(config.precision):
        _compile(model, config, optimizer, class_weights, num_classes)


def encoder_frozen(model: keras.Model) -> bool:
    encoder = (layer for layer in model.layers if layer.name.startswith(ENCODER_PREFIX))
    return any(not layer.trainable for layer in encoder)


def set_encoder_trainable(model: keras.Model, trainable: bool) -> None:
    """Freeze or unfreeze the encoder; a frozen batch norm runs in inference mode (Keras 3)."""
    for layer in model.layers:
        if layer.name.startswith(ENCODER_PREFIX):
            layer.trainable = trainable


def synchronize_batch_norm(model: keras.Model, replicas: int) -> None:
    """Batch statistics over the global batch when it is split across replicas, per replica on
    one. A few images per replica give noisy statistics that also differ from one device's: the
    known need of segmentation at small batches (Keras' ``synchronized=True`` all-reduces them).
    Only the attribute changes, so the built network and its weights stay as they are."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            synchronize_batch_norm(layer, replicas)
        elif isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = replicas > 1


def make_optimizer(
    config: TrainConfig, steps_per_epoch: int, epochs: int | None = None
) -> keras.optimizers.Optimizer:
    """AdamW with linear warmup and cosine decay to zero over ``epochs`` (the whole run).

    The paper's SGD (lr 0.1, momentum 0.9, fixed) was tuned for VGG16 at batch 12; AdamW trains
    every preset (from scratch, width-scaled, small batches) without per-preset tuning. Warmup
    keeps the first large steps from wrecking fresh batch-norm statistics, and cosine decay ends
    the run at a low rate, so the last epoch is also a good one. ``encoder_lr_mult`` != 1 makes
    it a :class:`~segnet_tf.optimizers.LayerwiseAdamW` stepping the encoder at that fraction.
    """
    total = (config.epochs if epochs is None else epochs) * steps_per_epoch
    warmup = min(steps_per_epoch, total // 5)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else config.lr,
        decay_steps=max(1, total - warmup),
        warmup_target=config.lr if warmup else None,
        warmup_steps=warmup,
    )
    if config.encoder_lr_mult != 1.0:
        return LayerwiseAdamW(
            learning_rate=schedule,
            weight_decay=config.weight_decay,
            lr_multipliers={ENCODER_PREFIX: config.encoder_lr_mult},
        )
    return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay)


def _float32_twin(config: TrainConfig, num_classes: int) -> keras.Model:
    """The same network in float32 and uncompiled, for ``best.keras``: what evaluation and export
    load, on any device, without the optimizer state or our loss class."""
    with global_dtype_policy("float32"):
        return build_model(
            config.model, (*config.input_size, 3), num_classes, **_model_overrides(config)
        )


@contextmanager
def global_dtype_policy(name: str) -> Iterator[None]:
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
