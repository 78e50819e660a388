"""Inference latency, batch 1: every way a user can run SegNet on a CPU, in one interleaved table.

Rows: the Keras call (compiled ``tf.function``), the SavedModel, ONNX Runtime on ``tf2onnx``'s
conversion of the reference model (MaxPool with indices + ScatterND: the route a user takes
today), PyTorch (``MaxUnpool2d``), the naive Flex conversion (which no Python interpreter of
TF 2.21 can run: the row keeps the error), ONNX Runtime on our ``model.onnx`` (the lowered network
that TensorRT takes), our TFLite exports of the lowered network, and the same exports of the cost
floor (:mod:`benchmarks.floor`). A row whose runtime is not installed, or
whose model fails to build or run, stays in the table with the reason.
"""

from __future__ import annotations

import importlib.util
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.artifacts import EXPORT_VARIANT, Artifacts, file_size
from benchmarks.flops import forward_flops
from benchmarks.memory import peak_rss
from benchmarks.runners import make_runner
from benchmarks.timing import interleaved

PRECISIONS = ("float32", "float16", "int8")
FLOOR_PRECISIONS = ("float32", "int8")  # the targets' precisions; float16 runs as float32 on CPU
KERAS_ROW = "Keras call (tf.function)"
ONNX_ROW = "ONNX Runtime (tf2onnx)"
LOWERED_ONNX_ROW = "ONNX Runtime (model.onnx)"
INSTALL_HINT = {
    "tf2onnx": "tf2onnx onnxruntime",
    "onnxruntime": "tf2onnx onnxruntime",
    "torch": "torch",
}


@dataclass(frozen=True)
class Row:
    """One table row: how to get its file from :class:`Artifacts` and which runtime runs it."""

    name: str
    kind: str  # a runners.RUNTIMES key
    group: str  # reference | peer | lowered | floor
    artifact: Callable[[Artifacts], Path]
    requires: tuple[str, ...] = ()
    note: str = ""


def rows(precisions: tuple[str, ...] = PRECISIONS, torch: bool = True) -> list[Row]:
    out = [
        Row(KERAS_ROW, "keras", "reference", lambda a: a.keras_file),
        Row(
            "SavedModel (serving signature)",
            "savedmodel",
            "reference",
            lambda a: a.saved_model("reference"),
        ),
        Row(
            ONNX_ROW,
            "onnx",
            "reference",
            lambda a: a.onnx_file,
            ("tf2onnx", "onnxruntime"),
            "MaxPool with indices + ScatterND",
        ),
        Row(
            "TFLite Flex (SELECT_TF_OPS)",
            "tflite",
            "reference",
            lambda a: a.flex_tflite,
            (),
            "naive conversion of the reference",
        ),
    ]
    if torch:
        out.append(
            Row("PyTorch eager (MaxUnpool2d)", "torch", "peer", lambda a: a.torch_file, ("torch",))
        )
    out.append(
        Row(
            LOWERED_ONNX_ROW,
            "onnx",
            "lowered",
            lambda a: a.lowered_onnx_file,
            ("tf2onnx", "onnxruntime"),
            "segnet-tf export --onnx: exact lowering, TensorRT's op set",
        )
    )
    for p in precisions:  # the lowerings `segnet-tf export` ships: exact in float, step in int8
        variant = EXPORT_VARIANT[p]
        out.append(
            Row(f"TFLite {p}", "tflite", "lowered", lambda a, p=p, v=variant: a.tflite(v, p))
        )
    for p in precisions:
        if p in FLOOR_PRECISIONS:
            out.append(
                Row(f"floor TFLite {p}", "tflite", "floor", lambda a, p=p: a.tflite("floor", p))
            )
    return out


@dataclass
class Result:
    row: Row
    path: Path | None = None
    error: str | None = None
    output: np.ndarray | None = field(default=None, repr=False)
    run: Callable[[], np.ndarray] | None = field(default=None, repr=False)
    stats: dict | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "name": self.row.name,
            "kind": self.row.kind,
            "group": self.row.group,
            "note": self.row.note,
            "error": self.error,
            "file": None if self.path is None else self.path.name,
            "size_bytes": None
            if self.path is None or not self.path.exists()
            else file_size(self.path),
            **(self.stats or {}),
            **self.extra,
        }


def missing_modules(row: Row) -> list[str]:
    return [m for m in row.requires if importlib.util.find_spec(m) is None]


def short_error(e: BaseException) -> str:
    """The error's first meaningful line, cut to a table cell's worth."""
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text[:300]}"


def prepare(row: Row, art: Artifacts, threads: int, log: Callable[[str], None]) -> Result:
    """Build the row's file and its runner, and run it once (the warm-up call)."""
    result = Result(row)
    missing = missing_modules(row)
    if missing:
        hint = " ".join(sorted({INSTALL_HINT.get(m, m) for m in missing}))
        result.error = f"not installed: {', '.join(missing)} (pip install {hint})"
        return result
    try:
        result.path = row.artifact(art)
        result.run = make_runner(row.kind, result.path, art.image, threads)
        result.output = np.asarray(result.run())
    except Exception as e:  # every failure is a row of the table, not a crash of the run
        result.error, result.run = short_error(e), None
        log(f"  {row.name}: {result.error}")
        log("    " + traceback.format_exc(limit=-2).strip().replace("\n", "\n    ")[-600:])
    return result


def agreement(output: np.ndarray, reference: np.ndarray, kind: str) -> float | None:
    """Fraction of pixels whose class (argmax) is the Keras one; NCHW PyTorch output is skipped
    (it has its own random weights)."""
    if kind == "torch" or output.shape != reference.shape:
        return None
    return float(np.mean(np.argmax(output, -1) == np.argmax(reference, -1)))


def inference_table(
    art: Artifacts,
    threads: int,
    rounds: int,
    warmup: int = 1,
    budget_s: float | None = None,
    precisions: tuple[str, ...] = PRECISIONS,
    torch: bool = True,
    rss: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Time every row of :func:`rows` for ``art``'s model; returns the table as a dict."""
    log(f"inference: {art.label}, batch 1, {threads} threads")
    results = [prepare(row, art, threads, log) for row in rows(precisions, torch)]
    runnable = {r.row.name: r.run for r in results if r.run is not None}
    stats = interleaved(runnable, rounds, warmup=max(0, warmup - 1), budget_s=budget_s, log=log)
    flops = forward_flops(art.model)
    by_name = {r.row.name: r for r in results}
    base = {k: stats[k].median_ms for k in (KERAS_ROW, ONNX_ROW) if k in stats}
    keras_out = by_name[KERAS_ROW].output
    for r in results:
        if r.row.name not in stats:
            continue
        s = stats[r.row.name]
        r.stats = s.to_dict()
        r.extra["speedup_vs_keras"] = base[KERAS_ROW] / s.median_ms if KERAS_ROW in base else None
        r.extra["speedup_vs_onnxruntime"] = (
            base[ONNX_ROW] / s.median_ms if ONNX_ROW in base else None
        )
        r.extra["gflops_per_s"] = flops / 1e6 / s.median_ms
        if keras_out is not None and r.row.group in ("reference", "lowered"):
            r.extra["argmax_agreement"] = agreement(r.output, keras_out, r.row.kind)
    if rss:
        log(f"  peak memory: one fresh process per row ({len(runnable)} rows)")
        for r in results:
            if r.run is not None:
                r.extra.update(peak_rss(r.row.kind, r.path, art.image_file, threads))
    return {
        "model": art.name,
        "size": list(art.size),
        "threads": threads,
        "forward_gflop": flops / 1e9,
        "rows": [r.to_dict() for r in results],
        "lowering_overhead": lowering_overhead(stats, precisions),
    }


def lowering_overhead(stats: dict, precisions: tuple[str, ...]) -> dict[str, float]:
    """Our latency over the floor's, per precision: ``lowered / floor - 1``."""
    out = {}
    for p in precisions:
        ours, floor = stats.get(f"TFLite {p}"), stats.get(f"floor TFLite {p}")
        if ours is not None and floor is not None:
            out[p] = ours.median_ms / floor.median_ms - 1.0
    return out
