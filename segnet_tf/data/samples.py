"""The sample and dataset types every loader returns: file pairs, synthetic scenes and packed
records all load themselves through :class:`SampleLike`, so the pipeline treats them alike."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from segnet_tf.data.config import DatasetConfig
from segnet_tf.data.io import DatasetError, check_same_size, load_image, load_label


class SampleLike(Protocol):
    """One image/label pair that can load itself: a file pair, a synthetic scene or a record."""

    @property
    def name(self) -> str: ...

    def load(self, config: DatasetConfig) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 RGB ``[H, W, 3]``, class ids ``[H, W]``), same size, ids checked."""
        ...

    def load_label(self, config: DatasetConfig) -> np.ndarray: ...


@dataclass(frozen=True)
class Sample:
    """An image file and its label file."""

    image: Path
    label: Path

    @property
    def name(self) -> str:
        return self.image.stem

    def load(self, config: DatasetConfig) -> tuple[np.ndarray, np.ndarray]:
        image, label = load_image(self.image), load_label(self.label, config)
        check_same_size(image, label, str(self.image), str(self.label))
        return image, label

    def load_label(self, config: DatasetConfig) -> np.ndarray:
        return load_label(self.label, config)


@dataclass(frozen=True)
class Dataset:
    """Named splits of samples plus the classes they are labelled with (``root`` is None for
    in-memory datasets such as the synthetic scenes)."""

    root: Path | None
    config: DatasetConfig
    splits: Mapping[str, Sequence[SampleLike]]

    def split(self, name: str) -> Sequence[SampleLike]:
        if name not in self.splits:
            where = f" in {self.root}" if self.root else ""
            raise DatasetError(
                f"no split {name!r}{where}; available: {', '.join(self.splits) or 'none'}"
            )
        return self.splits[name]

    @property
    def counts(self) -> dict[str, int]:
        return {name: len(samples) for name, samples in self.splits.items()}
