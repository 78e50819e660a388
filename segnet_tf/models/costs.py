"""What each decoder costs at inference: parameters, the encoder memory it keeps, and the time and
peak memory of a forward pass measured on this machine (``segnet-tf models --decoders``).

Kept memory is counted from the model's shapes (:func:`segnet_tf.models.decoders.kept_bytes`);
the paper's Table 1 gives the same idea as a "storage multiplier" of the first encoder stage only.

Peak memory is the most TensorFlow's allocator holds during one graph-mode forward pass at batch 1,
after a warm-up pass, above what it held before (the weights): the activations, including the
encoder maps a decoder keeps until it needs them, and the kernels' working buffers. It is measured
in a child process started with TensorFlow's BFC allocator on the CPU, whose statistics
(``tf.config.experimental.get_memory_info``) count every tensor it hands out. The process's resident
set is no measure of it: oneDNN's kernels on AVX-512 CPUs reuse buffers that an earlier pass left
mapped, so the resident set grew by a fifth of the first stage's output there, and by more than
that output on AVX2.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from segnet_tf.models.decoders import kept_bytes
from segnet_tf.models.registry import PRESETS, build_model

# Run in the child: argv = preset, decoder, height, width, classes; prints the peak in MiB.
_PEAK_CHILD = """
import json, sys
import tensorflow as tf
from segnet_tf.models import build_model
preset, decoder, h, w, k = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
model = build_model(preset, (h, w, 3), k, decoder=decoder)
forward = tf.function(lambda x: model(x, training=False))
image = tf.zeros((1, h, w, 3))
forward(image).numpy()
tf.config.experimental.reset_memory_stats("CPU:0")
held = tf.config.experimental.get_memory_info("CPU:0")["current"]
forward(image).numpy()
print(json.dumps((tf.config.experimental.get_memory_info("CPU:0")["peak"] - held) / 2**20))
"""


@dataclass(frozen=True)
class DecoderCost:
    preset: str
    decoder: str
    params: int
    kept_bytes: int
    forward_ms: float | None  # median of the timed passes
    peak_mb: float | None  # allocator's peak above the weights during one pass


def forward_ms(model, input_size: tuple[int, int], reps: int) -> float:
    """Median milliseconds of ``reps`` graph-mode passes at batch 1, after a warm-up pass."""
    image = tf.constant(
        np.random.default_rng(0).uniform(0, 255, (1, *input_size, 3)).astype(np.float32)
    )
    forward = tf.function(lambda x: model(x, training=False))
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)  # a new function per model is the point: no retracing warning
    try:
        forward(image).numpy()  # trace and warm up
    finally:
        logger.setLevel(level)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        forward(image).numpy()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def forward_peak_mb(
    preset: str, decoder: str, input_size: tuple[int, int], num_classes: int
) -> float | None:
    """Peak MiB TensorFlow allocates above the weights in one forward pass at batch 1 (see the
    module docstring), measured in a child process; None if the child fails."""
    env = {**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": "true", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)  # segnet_tf as this process imports it
    args = [preset, decoder, *map(str, input_size), str(num_classes)]
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_CHILD, *args], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        return None
    return float(json.loads(done.stdout.strip().splitlines()[-1]))


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
            ms = forward_ms(model, input_size, reps) if measure else None
            peak = forward_peak_mb(preset, decoder, input_size, num_classes) if measure else None
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
