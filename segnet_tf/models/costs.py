"""What each decoder costs at inference: parameters, the encoder memory it keeps, and the time and
peak memory of a forward pass measured on this machine (``segnet-tf models --decoders``).

Kept memory is counted from the model's shapes (:func:`segnet_tf.models.decoders.kept_bytes`);
the paper's Table 1 gives the same idea as a "storage multiplier" of the first encoder stage only.

Peak memory is the growth of this process's resident set (Linux ``VmHWM``, reset through
``/proc/self/clear_refs``) during one graph-mode forward pass at batch 1, after a warm-up pass: the
activations TensorFlow allocates, including the encoder maps a decoder holds until it needs them.
glibc's malloc is first told to hand every block above 128 KiB straight back to the system
(``M_MMAP_THRESHOLD``, then ``malloc_trim``), so the memory a previous pass freed and kept does
not hide this one's. Elsewhere
than Linux with glibc the figure is ``None``.
"""

from __future__ import annotations

import ctypes
import logging
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from segnet_tf.models.decoders import kept_bytes
from segnet_tf.models.registry import PRESETS, build_model

M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_THRESHOLD = 128 * 1024  # glibc's default, pinned (by default it grows with freed blocks)


@dataclass(frozen=True)
class DecoderCost:
    preset: str
    decoder: str
    params: int
    kept_bytes: int
    forward_ms: float | None  # median of the timed passes
    peak_mb: float | None  # resident-set growth during one pass; None where not measurable


def resident_kb(field: str) -> int | None:
    """``VmRSS`` / ``VmHWM`` of this process in KiB (Linux), else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    """Set the resident-set high-water mark back to the current size (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def return_freed_memory() -> bool:
    """Make glibc unmap every freed block above 128 KiB at once, and give back what it holds now
    (see the module docstring); False where there is no glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    pinned = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    libc.malloc_trim(0)
    return pinned


def measure_forward(model, input_size: tuple[int, int], reps: int) -> tuple[float, float | None]:
    """Median milliseconds of ``reps`` graph-mode passes at batch 1, and the peak MB of one."""
    image = tf.constant(
        np.random.default_rng(0).uniform(0, 255, (1, *input_size, 3)).astype(np.float32)
    )
    forward = tf.function(lambda x: model(x, training=False))
    measurable = return_freed_memory()
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)  # a new function per model is the point: no retracing warning
    try:
        forward(image).numpy()  # trace and warm up
    finally:
        logger.setLevel(level)
    peak = None
    if measurable and return_freed_memory() and reset_peak():
        before = resident_kb("VmRSS")
        forward(image).numpy()
        high = resident_kb("VmHWM")
        if before is not None and high is not None:
            peak = (high - before) / 1024
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        forward(image).numpy()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), peak


def decoder_costs(
    presets: Sequence[str] | None = None,
    input_size: tuple[int, int] = (360, 480),
    num_classes: int = 11,
    reps: int = 3,
    measure: bool = True,
) -> Iterator[DecoderCost]:
    """One :class:`DecoderCost` per (preset, decoder) pair, in the presets' order."""
    for preset in presets or [name for name, p in PRESETS.items() if len(p.decoders) > 1]:
        if preset not in PRESETS:
            raise ValueError(f"unknown model {preset!r}; choose one of: {', '.join(PRESETS)}")
        for decoder in PRESETS[preset].decoders:
            model = build_model(preset, (*input_size, 3), num_classes, decoder=decoder)
            ms, peak = measure_forward(model, input_size, reps) if measure else (None, None)
            yield DecoderCost(
                preset, decoder, model.count_params(), kept_bytes(model, decoder), ms, peak
            )


def format_cost(cost: DecoderCost) -> str:
    def value(v, spec):
        return f"{v:{spec}}" if v is not None else f"{'-':>{spec.split('.')[0]}}"

    return (
        f"{cost.preset:<14}{cost.decoder:<31}{cost.params / 1e6:>8.3f}"
        f"{cost.kept_bytes / 1e6:>10.2f}{value(cost.forward_ms, '10.1f')}"
        f"{value(cost.peak_mb, '9.1f')}"
    )


COST_HEADER = f"{'model':<14}{'decoder':<31}{'params M':>8}{'kept MB':>10}{'ms':>10}{'peak MB':>9}"
