"""Interleaved timing and the facts a benchmark table must state (CPU, threads, versions, date).

Candidates of one table are timed round-robin (one call of each per round, several rounds) rather
than one after the other, so that a slow minute of a shared machine (here: 2 cores, a training job
beside us) spreads over every candidate instead of landing on one.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Stats:
    """Latency of one candidate in milliseconds."""

    median_ms: float
    p95_ms: float
    min_ms: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(seconds: list[float]) -> Stats:
    ms = 1e3 * np.asarray(seconds, dtype=np.float64)
    return Stats(float(np.median(ms)), float(np.percentile(ms, 95)), float(ms.min()), len(ms))


def time_call(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(
    candidates: Mapping[str, Callable[[], object]],
    rounds: int,
    warmup: int = 1,
    budget_s: float | None = None,
    min_rounds: int = 2,
    log: Callable[[str], None] = print,
) -> dict[str, Stats]:
    """Time every candidate ``rounds`` times, one call of each per round.

    ``warmup`` untimed calls each come first (the first call allocates, packs weights, traces).
    ``budget_s`` stops after the round that crosses it (never before ``min_rounds``), so a run on a
    slow machine shortens instead of overrunning; the sample count is reported with each result.
    """
    if not candidates:
        return {}
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    start = time.perf_counter()
    for r in range(rounds):
        for name, fn in candidates.items():
            samples[name].append(time_call(fn))
        elapsed = time.perf_counter() - start
        if budget_s is not None and r + 1 >= min_rounds and elapsed > budget_s:
            log(f"  time budget {budget_s:.0f} s reached after {r + 1} of {rounds} rounds")
            break
    return {name: summarize(s) for name, s in samples.items()}


def cpu_model() -> str:
    """The ``model name`` line of /proc/cpuinfo (falls back to ``platform.processor()``)."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The SIMD features that decide int8 and float speed (AVX2, AVX-512, VNNI, FMA)."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return sorted(
                    f for f in flags if f.startswith(("avx", "fma", "amx")) or "vnni" in f
                )
    except OSError:
        pass
    return []


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


VERSIONED = (
    "tensorflow",
    "tensorflow-cpu",
    "keras",
    "numpy",
    "ai-edge-litert",
    "tf2onnx",
    "onnx",
    "onnxruntime",
    "torch",
    "protobuf",
    "opencv-python-headless",
)


def environment(threads: int) -> dict:
    """What the numbers depend on; stored with every result file."""
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "threads": threads,
        "load_average_at_start": load,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {n: v for n in VERSIONED if (v := package_version(n)) is not None},
    }
