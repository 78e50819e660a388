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
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import segnet_tf
from segnet_tf.config import STRATEGIES, TrainConfig, resolve
from segnet_tf.data import Dataset, dataset_stats, make_dataset
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
from segnet_tf.models.blocks import ENCODER_PREFIX
from segnet_tf.models.encoder_weights import calibrate_batch_norm
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

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo names
CALIBRATION_BATCHES = 8  # training batches that measure a pretrained encoder's statistics
MONITOR = "val_miou"


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    epochs: int  # completed epochs
    best_miou: float | None
    best_epoch: int | None  # 1-based
    history: dict[str, list[float]]

    @property
    def best_path(self) -> Path:
        return RunFolder(self.run_dir).best

    @property
    def last_path(self) -> Path:
        return RunFolder(self.run_dir).last


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
    folder = RunFolder(config.out)
    if state["epoch"] >= config.epochs:
        LOGGER.info("%s: all %d epochs already done", folder.path, config.epochs)
        return _result(folder.path, state)
    # multi-worker wants it before other TF work
    strategy = make_strategy(config.strategy, join_timeout)
    keras.utils.set_random_seed(config.seed)

    dataset = open_run_dataset(config)
    train_samples, val_samples = train_val_samples(dataset, config.seed)
    weights = resolve_class_weights(config.class_weights, dataset)
    # Stored resolved: a resumed run must load its model under the policy it was saved with.
    if config.precision == "auto":  # a choice made for the user is said
        config = replace(config, precision=resolve_precision(config.precision))
        LOGGER.info("precision: %s (--precision auto on this machine)", config.precision)
    cluster = cluster_from_env() if isinstance(strategy, MultiWorkerStrategy) else None
    chief = cluster is None or cluster.is_chief
    # The run folder's config is written only once the model is built, so a refused option or
    # file leaves no run behind; a run that fails before its first epoch ends (out of memory, a
    # teacher that does not fit) is removed again, teacher cache included.
    new = chief and not config.resume
    before = folder.contents()
    # Every worker saves (saving reads distributed variables, a collective), others to scratch.
    write_dir = folder if chief else RunFolder(tempfile.mkdtemp(prefix="segnet-worker-"))
    try:
        soft = None
        if config.teacher:
            soft = teacher_logits(
                config.teacher, train_samples, dataset.config, folder.teacher, config.input_size
            )
        ds_kw = {
            "input_size": config.input_size,
            "batch_size": config.batch_size,
            "seed": config.seed,
        }
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
            model = _compiled_model(config, folder, state, dataset, weights, steps, calibration)
        synchronize_batch_norm(model, strategy.num_replicas_in_sync)
        inference_model = _float32_twin(config, dataset.config.num_classes)

        if new:
            folder.path.mkdir(parents=True, exist_ok=True)
            write_run_config(folder.path, run_info(config, dataset, weights, strategy))
        if chief:
            truncate_history(folder.history, state["epoch"])
        own: list[keras.callbacks.Callback] = [
            RunCheckpoint(write_dir.path, inference_model, state),
            keras.callbacks.CSVLogger(str(write_dir.history), append=True),
        ]
        if chief:
            own += run_log_callbacks(folder.path)
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
        return replace(_result(write_dir.path, read_state(write_dir.path)), run_dir=folder.path)
    except Exception:
        if new and not folder.state.exists():  # no epoch finished: nothing worth keeping
            folder.discard(before)
        raise
    finally:
        if not chief:
            shutil.rmtree(write_dir.path, ignore_errors=True)


class OutOfMemoryError(ValueError):
    """A training step needed more memory than the device has (one line, with what to change)."""


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no message"


def _fit(model: keras.Model, strategy, cluster: Cluster | None, *args, **kwargs) -> None:
    """``model.fit``; running out of memory becomes an :class:`OutOfMemoryError`, in a
    multi-worker run a lost worker a :class:`ClusterError`, and every worker returns only once
    all of them are done (the chief's files are written)."""
    try:
        model.fit(*args, **kwargs)
        if cluster is not None:
            barrier(strategy)
    except tf.errors.ResourceExhaustedError as e:
        raise OutOfMemoryError(
            f"out of memory in a training step ({first_line(e.message)}): lower --batch-size or "
            "--crop (or --input-size), or pick a smaller --model or --width"
        ) from None
    except LOST_PEER_ERRORS as e:  # a dataset error stays what it is
        if cluster is None:
            raise
        raise ClusterError(describe_failure(e, cluster, "training")) from None


# --------------------------------------------------------------------------- run directory


def prepare_run_dir(config: TrainConfig) -> tuple[TrainConfig, dict]:
    """Check ``config.out`` and return the config to run and the state to start from.

    A new run refuses a directory that already holds one, and has its options checked and
    resolved (:func:`segnet_tf.config.resolve`); ``resume`` takes the stored options and starts
    after the last completed epoch (from scratch if none completed). Nothing is written.
    """
    folder = RunFolder(config.out)
    fresh = dict(FRESH_STATE)
    if config.resume:
        stored = folder.train_config()
        if stored is None and folder.config.is_file():
            raise ValueError(f"--resume: {folder.config} holds no run's options, nothing to resume")
        if stored is None:
            raise FileNotFoundError(
                f"--resume: {folder.path} has no {RunFolder.CONFIG}, nothing to resume"
                + (" (every worker must see the run directory)" if cluster_from_env() else "")
            )
        # How to run is the invocation's (e.g. more machines now), what to run is the run's.
        strategy = config.strategy if config.strategy != "auto" else stored.strategy
        config = replace(stored, resume=True, strategy=strategy)
        remove_stale_temp_files(folder.path)
        if not folder.last.is_file():
            return replace(config, resume=False), fresh
        return config, read_state(folder.path)
    if folder.holds_run():
        raise ValueError(
            f"--out {folder.path} already holds a run ({RunFolder.LAST}); pass --resume to "
            "continue it or choose a new --out"
        )
    return resolve(config), fresh


def run_info(
    config: TrainConfig,
    dataset: Dataset,
    class_weights: Sequence[float],
    strategy: tf.distribute.Strategy,
) -> dict:
    """What a run folder's config records of a run (:meth:`segnet_tf.runs.RunFolder.info`)."""
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
        history=read_history(RunFolder(run_dir).history),
    )


class RunCheckpoint(keras.callbacks.Callback):
    """Per epoch: the best model if val mIoU rose, then the last checkpoint, then the state (the
    order that makes ``--resume`` safe: see :mod:`segnet_tf.runs`)."""

    def __init__(self, run_dir: Path, inference_model: keras.Model, state: dict):
        super().__init__()
        self.folder = RunFolder(run_dir)
        self.inference_model = inference_model
        self.state = dict(state)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        score = (logs or {}).get(MONITOR)
        best = self.state["best_miou"]
        if score is not None and np.isfinite(score) and (best is None or score > best):
            self.inference_model.set_weights(self.model.get_weights())
            atomic_save_model(self.inference_model, self.folder.best)
            self._write_state(best_miou=float(score), best_epoch=epoch + 1)
        atomic_save_model(self.model, self.folder.last)
        self._write_state(epoch=epoch + 1)

    def _write_state(self, **changes) -> None:
        self.state.update(changes)
        write_state(self.folder.path, self.state)


# --------------------------------------------------------------------------- data and weights


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
    best model is its twin at the fixed ``input_size`` (what export needs)."""
    crop = config.crop_size
    if crop is not None and tuple(crop) != tuple(config.input_size):
        return (None, None, 3)
    return (*config.input_size, 3)


def _compiled_model(
    config: TrainConfig,
    folder: RunFolder,
    state: dict,
    dataset: Dataset,
    class_weights: Sequence[float],
    steps_per_epoch: int,
    calibration: Iterable,
) -> keras.Model:
    """A new compiled model, or the resumed last checkpoint with its optimizer state.

    Both happen under the run's dtype policy: compile wraps the optimizer for loss scaling only
    when the model is mixed float16, and a reloaded model takes the global policy, so loading
    under another one would drop the saved optimizer state (its variables no longer match).
    A new model with a pretrained encoder has its batch norms calibrated on ``calibration``
    (image batches), and its encoder frozen for ``freeze_encoder_epochs``.
    """
    with global_dtype_policy(config.precision):
        if state["epoch"] > 0:
            LOGGER.info("resuming %s after epoch %d", folder.path, state["epoch"])
            return load_model(folder.last, compile=True, unsafe=False)
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
    """The same network in float32 and uncompiled, for the best model: what evaluation and export
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
