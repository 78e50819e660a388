"""Run directories: the one place that reads and writes them.

A run directory holds everything needed to evaluate, export or continue a run:

- ``config.json``: every training option, the dataset's classes, the model preset and input size;
- ``last.keras``: the compiled model after the latest epoch, optimizer state included (resume);
- ``best.keras``: the float32 inference model (no optimizer) of the best validation epoch, the
  one to evaluate and export;
- ``state.json``: completed epochs and best score; ``history.csv``; ``tensorboard/`` and
  ``results.png`` (:mod:`segnet_tf.run_logs`);
- ``teacher/``: a distilled run's cache of its teacher's logits (:mod:`segnet_tf.distillation`).

Every file is written to a temporary name in the run directory and renamed over the old one
(``os.replace`` is atomic), so a kill at any moment leaves the previous complete version. The
state is written after the checkpoint, so at worst a resumed run repeats one epoch.

Evaluation, prediction and export read a run through this module, not through
:mod:`segnet_tf.training`, so they load no training machinery.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import keras

from segnet_tf.config import TrainConfig, resolve_input_size
from segnet_tf.data import CAMVID, Dataset, DatasetConfig, open_dataset, synthetic_dataset

FRESH_STATE = {"epoch": 0, "best_miou": None, "best_epoch": None}


@dataclass(frozen=True)
class RunFolder:
    """A run directory and where each of its files is: the one place that names them."""

    path: Path

    CONFIG: ClassVar[str] = "config.json"
    BEST: ClassVar[str] = "best.keras"
    LAST: ClassVar[str] = "last.keras"
    HISTORY: ClassVar[str] = "history.csv"
    STATE: ClassVar[str] = "state.json"
    TENSORBOARD: ClassVar[str] = "tensorboard"
    RESULTS: ClassVar[str] = "results.png"  # the run's curves (segnet_tf.run_logs)
    TEACHER: ClassVar[str] = "teacher"  # a distilled run's cache of its teacher's logits

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def of(cls, model_path: str | Path) -> RunFolder:
        """The run folder that a model file (or a run folder itself) belongs to."""
        path = Path(model_path)
        return cls(path if path.is_dir() else path.parent)

    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def best(self) -> Path:
        return self.path / self.BEST

    @property
    def last(self) -> Path:
        return self.path / self.LAST

    @property
    def history(self) -> Path:
        return self.path / self.HISTORY

    @property
    def state(self) -> Path:
        return self.path / self.STATE

    @property
    def tensorboard(self) -> Path:
        return self.path / self.TENSORBOARD

    @property
    def results(self) -> Path:
        return self.path / self.RESULTS

    @property
    def teacher(self) -> Path:
        return self.path / self.TEACHER

    def holds_run(self) -> bool:
        """Whether a run finished an epoch here (its last checkpoint or its state exists)."""
        return self.last.exists() or self.state.exists()

    def info(self) -> dict | None:
        """Its ``config.json``: the training options (paths resolved against the folder), classes
        and model of the run; None when there is none (a model file outside a run folder)."""
        if not self.config.is_file():
            return None
        try:
            info = json.loads(self.config.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{self.config}: not valid JSON: {e}") from e
        if not isinstance(info, dict) or not {"train", "dataset"} <= info.keys():
            return None
        if isinstance(info["train"], dict):  # stored relative to the run: resolved here
            info["train"] = _moved_paths(info["train"], lambda p: os.path.normpath(self.path / p))
        return info

    def train_config(self) -> TrainConfig | None:
        """The run's training options, typed, with this folder as ``out`` (it may have moved);
        None without a run's config file (none, or another tool's)."""
        info = self.info()
        if info is None:
            return None
        train = info["train"]
        if not isinstance(train, dict):
            raise ValueError(f"{self.config}: 'train' is not a mapping of training options")
        try:
            return TrainConfig.from_dict({**train, "out": str(self.path)})
        except TypeError as e:
            raise ValueError(f"{self.config}: not the training options of a run: {e}") from None

    def contents(self) -> set[str] | None:
        """The names in the folder now (None if there is no folder): what :meth:`discard` keeps."""
        return {p.name for p in self.path.iterdir()} if self.path.is_dir() else None

    def discard(self, before: set[str] | None) -> None:
        """Remove what a run that never finished an epoch wrote: the whole folder if it did not
        exist ``before`` (:meth:`contents`), else the run's files that were not there then."""
        if before is None:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for path in (self.config, self.best, self.last, self.history, self.state, self.results):
            if path.name not in before:
                path.unlink(missing_ok=True)
        for path in (self.tensorboard, self.teacher):
            if path.name not in before:
                shutil.rmtree(path, ignore_errors=True)


# The model file of a folder: a run's best epoch, or the model of a shipped model folder.
MODEL_FILES = (RunFolder.BEST, "model.keras")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A hidden temporary sibling of ``path`` to write; moved onto ``path`` only if the block
    succeeds, so ``path`` is always the old file or the whole new one (``--resume`` relies on it).
    It keeps the suffix (Keras saves only to ``.keras``); stale ones match ``.*.tmp*``."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_save_model(model: keras.Model, path: Path) -> None:
    """``model.save(path)`` that never leaves a partial file at ``path``."""
    with atomic_path(path) as tmp:
        model.save(tmp)


def remove_stale_temp_files(run_dir: Path) -> None:
    """Temporary files of a writer that was killed mid-write."""
    for tmp in Path(run_dir).glob(".*.tmp*"):
        tmp.unlink()


def read_state(run_dir: Path) -> dict:
    path = RunFolder(run_dir).state
    if not path.is_file():
        return dict(FRESH_STATE)
    try:
        state = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a run state (invalid JSON: {e})") from None
    if not isinstance(state, dict) or not isinstance(state.get("epoch"), int):
        raise ValueError(f"{path}: not a run state (expected an 'epoch' count)")
    return state


def write_state(run_dir: Path, state: Mapping) -> None:
    atomic_write_text(RunFolder(run_dir).state, json.dumps(dict(state), indent=2))


def write_run_config(run_dir: Path, info: Mapping) -> None:
    """The run's config, its paths relative to the run (no machine's folders in a shipped run)."""
    info = dict(info)
    if isinstance(info.get("train"), Mapping):
        info["train"] = _moved_paths(info["train"], lambda p: os.path.relpath(p, run_dir))
    atomic_write_text(RunFolder(run_dir).config, json.dumps(info, indent=2))


RUN_PATHS = ("out", "data", "init_weights")  # the training options that name files


def _moved_paths(train: Mapping, move) -> dict:
    return {k: move(v) if k in RUN_PATHS and isinstance(v, str) else v for k, v in train.items()}


def open_run_dataset(config: TrainConfig) -> Dataset:
    """The dataset a run trains or trained on: its dataset folder, or the synthetic scenes it
    generates (same seed, same size)."""
    if config.data is None:
        return synthetic_dataset(
            train=config.synthetic_train,
            val=config.synthetic_val,
            size=resolve_input_size(config),
            seed=config.seed,
        )
    return open_dataset(config.data)


def model_classes(
    num_classes: int, model_path: str | Path | None, default: DatasetConfig = CAMVID
) -> DatasetConfig:
    """The classes a model predicts: its run's ``config.json`` (beside the ``.keras`` file), else
    ``default`` when the count fits (CamVid's; evaluation assumes its dataset's). The one answer
    that predict, evaluate and export all use."""
    info = None if model_path is None else RunFolder.of(model_path).info()
    config = default if info is None else DatasetConfig.from_dict(info["dataset"])
    if config.num_classes != num_classes:
        model = "the model" if model_path is None else f"model {str(model_path)!r}"
        name = RunFolder.CONFIG
        where = f"its {name}" if info is not None else f"{config.name!r} (no {name})"
        raise ValueError(
            f"{model} predicts {num_classes} classes but {where} names {config.num_classes}; "
            "use the model from its run folder, or data with its classes"
        )
    return config


def truncate_history(path: Path, epochs: int) -> None:
    """Keep the rows of completed epochs only (a kill may land between CSV row and checkpoint)."""
    if not path.is_file():
        return
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) < epochs]
    if len(kept) != len(rows):
        atomic_write_text(path, "".join(",".join(r) + "\n" for r in kept))


def read_history(path: Path) -> dict[str, list[float]]:
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: [float(r[k]) for r in rows] for k in (rows[0] if rows else {})}
