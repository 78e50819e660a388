"""Splits by drive: judge a recipe on a road that its training never saw.

Frames of one drive share the road, the light and the camera, so a val split made of frames of a
training drive flatters a model (CamVid's val is all drive 0016E5, which also gives 204 of the 367
training frames). Here the drive is read off each file name (CamVid's prefix, ``0016E5_07959.png``;
``--pattern`` for other datasets) and whole drives are held out. The result is a dataset folder of
its own (list files pointing back at the original images, plus the class config), so every tool
takes it with ``--data``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import yaml

from segnet_tf.data.datasets import open_dataset
from segnet_tf.data.io import DatasetError
from segnet_tf.data.samples import Dataset, Sample

DRIVE_PATTERN = r"^([^_]+)_"  # CamVid: 0001TP_006690 -> 0001TP


def drive_of(name: str, pattern: str = DRIVE_PATTERN) -> str:
    """The drive of a sample name: the first group of ``pattern`` (or its whole match)."""
    found = re.search(pattern, name)
    if found is None:
        raise DatasetError(f"{name!r}: no drive in the file name (--pattern {pattern!r})")
    return found.group(1) if found.groups() else found.group(0)


def drives(samples: Iterable[Sample], pattern: str = DRIVE_PATTERN) -> dict[str, list[Sample]]:
    """Samples grouped by drive, in order of first appearance."""
    grouped: dict[str, list[Sample]] = {}
    for sample in samples:
        grouped.setdefault(drive_of(sample.name, pattern), []).append(sample)
    return grouped


def split_by_drive(
    samples: Sequence[Sample], holdout: Sequence[str], pattern: str = DRIVE_PATTERN
) -> tuple[list[Sample], list[Sample]]:
    """(samples of the other drives, samples of the ``holdout`` drives), order kept."""
    grouped = drives(samples, pattern)
    unknown = sorted(set(holdout) - grouped.keys())
    if unknown:
        raise DatasetError(
            f"--holdout {', '.join(unknown)}: no such drive; drives: {', '.join(grouped)}"
        )
    if set(holdout) >= grouped.keys():
        raise DatasetError("--holdout names every drive: nothing would be left to train on")
    train = [s for d, group in grouped.items() if d not in holdout for s in group]
    held = [s for d, group in grouped.items() if d in holdout for s in group]
    return train, held


def write_drive_split(
    data: str | Path,
    out: str | Path,
    holdout: Sequence[str] = (),
    splits: Sequence[str] = ("train", "val"),
    pattern: str = DRIVE_PATTERN,
) -> dict[str, dict[str, int]]:
    """Write dataset folders whose ``val.txt`` is one held-out drive and whose ``train.txt`` is
    every other frame of ``splits`` of ``data``.

    With ``holdout`` given, one folder ``out`` holding those drives out; without, one folder per
    drive under ``out`` (leave one drive out in turn). Returns, per folder written, the frames of
    each drive in its train and val lists.
    """
    dataset = open_dataset(data)
    samples = _file_samples(dataset, splits)
    out = Path(out)
    if holdout:
        plan = {out: list(holdout)}
    else:
        plan = {out / d: [d] for d in drives(samples, pattern)}
        if len(plan) < 2:
            raise DatasetError(
                f"{data}: only one drive ({', '.join(p.name for p in plan)}); nothing to hold out"
            )
    summary = {}
    for folder, held_drives in plan.items():
        train, held = split_by_drive(samples, held_drives, pattern)
        folder.mkdir(parents=True, exist_ok=True)
        _write_list(folder / "train.txt", train)
        _write_list(folder / "val.txt", held)
        (folder / "dataset.yaml").write_text(yaml.safe_dump(dataset.config.to_dict()))
        summary[str(folder)] = {
            "train": {d: len(g) for d, g in drives(train, pattern).items()},
            "val": {d: len(g) for d, g in drives(held, pattern).items()},
        }
    return summary


def _file_samples(dataset: Dataset, splits: Sequence[str]) -> list[Sample]:
    samples = [s for name in splits for s in dataset.split(name)]
    if not all(isinstance(s, Sample) for s in samples):
        raise DatasetError(f"{dataset.root}: a drive split needs image files, not packed records")
    return samples


def _write_list(path: Path, samples: Sequence[Sample]) -> None:
    """``image label`` lines relative to the list file's folder (paths with no spaces)."""
    lines = []
    for s in samples:
        image, label = (
            os.path.relpath(p.resolve(), path.parent.resolve()) for p in (s.image, s.label)
        )
        if " " in image + label:
            raise DatasetError(f"{s.image}: list files cannot hold paths with spaces")
        lines.append(f"{image} {label}\n")
    path.write_text("".join(lines))
