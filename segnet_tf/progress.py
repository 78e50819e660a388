"""Progress bars of the long commands (evaluate, predict, export's calibration and parity, data
pack/check/stats, the decoder study): tqdm on stderr, drawn only when stderr is a terminal, so
logs, pipes and CI output stay clean, and never under ``segnet-tf --quiet`` (:func:`quiet`).
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
_QUIET = contextvars.ContextVar("segnet_tf_quiet", default=False)


@contextmanager
def quiet(enabled: bool = True) -> Iterator[None]:
    """No progress bars inside the block (the CLI's ``--quiet``)."""
    token = _QUIET.set(enabled)
    try:
        yield
    finally:
        _QUIET.reset(token)


def bars_shown() -> bool:
    """Whether a bar would be drawn now: stderr is a terminal and ``--quiet`` is off."""
    return not _QUIET.get() and sys.stderr.isatty()


def progress(
    items: Iterable[T], desc: str, total: int | None = None, unit: str = "image"
) -> Iterable[T]:
    """``items``, with a bar of ``total`` (default ``len(items)``) when :func:`bars_shown`."""
    if not bars_shown():
        return items
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    return tqdm(items, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True)
