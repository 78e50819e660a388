"""Where the lowering's time goes on a CPU, and what a faster exact lowering looks like.

The TFLite Python interpreter has no per-op profiler, so this bisects by building graphs:

* **XNNPACK coverage**: after ``allocate_tensors`` the interpreter lists the original nodes and
  one DELEGATE node per partition XNNPACK took; walking back from each partition's outputs to its
  inputs gives the nodes inside it, and every other node runs on TFLite's reference kernels
  (mostly single-threaded), between partitions.
* **Timing** of the floor (with either upsampling) and of every lowering flavour
  (``exact`` and ``edgetpu``: the mask at the input resolution; ``step`` and ``step-conv``: at
  the pooled resolution, with a gain of 2^126 in float32, EQUAL without EQUAL, and either
  tie-break in either precision), interleaved, each with
  its overhead over the floor and its largest output difference from ``exact`` at the same
  precision (0 = the same network, bit for bit; int8 in codes, and equalized models have other
  output scales, so there it only says "not identical").
* **Per stage and op group**: every pooling/unpooling pair of the model alone, at its own input
  shape, built up one op group at a time (the floor's pooling + upsampling; the pooled layout,
  ``space_to_depth`` and the broadcast MUL + ``depth_to_space`` of unpooling; the comparison step;
  either tie-break), so the time each group adds is the difference of two rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from benchmarks.artifacts import Artifacts
from benchmarks.inference import short_error
from benchmarks.report import STAGE_PARTS
from benchmarks.runners import make_runner
from benchmarks.timing import interleaved
from segnet_tf.export.tflite import convert
from segnet_tf.layers import (
    FLOAT_STEP_GAIN,
    STEP_GAIN,
    MaskedUnpooling2D,
    MaxPoolingWithArgmax2D,
    grouped_is_max,
    upsample_to,
    window_mask,
    window_phases,
)

EXACT_ROW = "exact (input-res mask)"  # the reference of the max-diff column
# (row name, Artifacts variant, precision)
CANDIDATES = (
    ("floor", "floor", "float32"),
    ("floor, RESIZE_NEAREST_NEIGHBOR", "floor-resize", "float32"),
    (EXACT_ROW, "lowered", "float32"),
    ("step-conv (pooled-res mask, conv ties), float32 export", "step-conv-2^126", "float32"),
    ("step (pooled-res mask, product ties)", "step-2^126", "float32"),
    ("floor", "floor", "int8"),
    ("floor, RESIZE_NEAREST_NEIGHBOR", "floor-resize", "int8"),
    (EXACT_ROW, "lowered", "int8"),
    ("step (pooled-res mask, product ties), int8 export", "step", "int8"),
    ("step-conv (pooled-res mask, conv ties), equalized", "step-conv", "int8"),
    ("edgetpu (input-res mask), equalized", "edgetpu", "int8"),
)


def delegation(path: Path, threads: int) -> dict:
    """Partitions XNNPACK made and, per op type, how many nodes it did not take."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    nodes = interpreter._get_ops_details()  # noqa: SLF001  (the only view of the delegation)
    original = [n for n in nodes if n["op_name"] != "DELEGATE"]
    partitions = [n for n in nodes if n["op_name"] == "DELEGATE"]
    producer = {int(t): n["index"] for n in original for t in n["outputs"]}
    by_index = {n["index"]: n for n in original}
    delegated: set[int] = set()
    for part in partitions:
        boundary = {int(t) for t in part["inputs"]}
        stack = [int(t) for t in part["outputs"]]
        while stack:
            node = producer.get(stack.pop())
            if node is None or node in delegated:
                continue
            delegated.add(node)
            stack += [int(t) for t in by_index[node]["inputs"] if int(t) not in boundary]
    outside = Counter(n["op_name"] for n in original if n["index"] not in delegated)
    return {
        "partitions": len(partitions),
        "nodes": len(original),
        "outside_xnnpack": dict(outside.most_common()),
    }


def profile_table(
    art: Artifacts,
    threads: int,
    rounds: int,
    budget_s: float | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    log(f"profile: {art.label}, lowering formulations, {threads} threads")
    rows, calls, outputs = [], {}, {}
    for name, variant, precision in CANDIDATES:
        key = f"{name}, {precision}"
        row = {"name": name, "variant": variant, "precision": precision, "error": None}
        try:
            path = art.tflite(variant, precision)
            run = make_runner("tflite", path, art.image, threads)
            outputs[key] = np.asarray(run(), np.float32)
            calls[key] = run
            row.update(size_bytes=path.stat().st_size, **delegation(path, threads))
        except Exception as e:
            row["error"] = short_error(e)
            log(f"  {key}: {row['error']}")
        rows.append(row)
    stats = interleaved(calls, rounds, warmup=1, budget_s=budget_s, log=log)
    for row in rows:
        key = f"{row['name']}, {row['precision']}"
        if key not in stats:
            continue
        row.update(stats[key].to_dict())
        floor = stats.get(f"floor, {row['precision']}")
        row["overhead_vs_floor"] = stats[key].median_ms / floor.median_ms - 1 if floor else None
        exact = outputs.get(f"{EXACT_ROW}, {row['precision']}")
        if exact is not None and not row["variant"].startswith("floor"):
            row["max_abs_diff_vs_exact"] = float(np.max(np.abs(outputs[key] - exact)))
    log(f"profile: the pooling stages of {art.label}, op group by op group")
    stages = stage_table(pooling_shapes(art.model), art.dir, threads, rounds, budget_s, log)
    return {
        "model": art.name,
        "size": list(art.size),
        "threads": threads,
        "rows": rows,
        "stages": stages,
    }


def stage_graph(part: str, shape: tuple[int, int, int], gain: float) -> tf.Module:
    """One pooling + unpooling at a pooling input of ``shape``, built up to ``part``, as a module
    that ``tf.saved_model.save`` takes (so it converts with the exporter's own settings)."""

    @tf.function(input_signature=[tf.TensorSpec((1, *shape), tf.float32)])
    def stage(x):
        pooled = tf.nn.max_pool2d(x, 2, 2, "SAME")
        if part == "floor":
            return upsample_to(pooled, shape[0], shape[1])
        if part == "layout":  # the phases stand in for the mask: the same shapes, no comparison
            mask = window_phases(x)
        elif part == "step":  # [N, h*w, 4, C]: unpooling reshapes it to its groups anyway
            mask = grouped_is_max(window_phases(x), pooled, gain)
        else:
            mask = window_mask(x, pooled, gain, "step" if part == "products" else part)
        return MaskedUnpooling2D("step")([pooled, mask, x])

    module = tf.Module()
    module.stage = stage
    return module


def pooling_shapes(model: keras.Model) -> list[tuple[int, int, int]]:
    """Input shape of every argmax pooling of ``model``, encoder order."""
    return [
        tuple(layer.input.shape[1:])
        for layer in model.layers
        if isinstance(layer, MaxPoolingWithArgmax2D)
    ]


def stage_table(
    shapes: list[tuple[int, int, int]],
    work: Path,
    threads: int,
    rounds: int,
    budget_s: float | None = None,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Every :data:`STAGE_PARTS` graph at every pooling input shape, float32 and int8, timed
    interleaved; ``over_floor_ms`` is a row's median minus its stage's floor."""
    rng = np.random.default_rng(0)
    rows, calls, keys = [], {}, {}
    for shape in shapes:
        calibration = (rng.integers(0, 256, (4, *shape)) * (6 / 255)).astype(np.float32)
        for precision in ("float32", "int8"):
            gain = FLOAT_STEP_GAIN if precision == "float32" else STEP_GAIN
            # an equalized pooling input: int8 codes of [0, 6] (not the image range of the model)
            rep = (lambda c=calibration: ([x[None]] for x in c)) if precision == "int8" else None
            for part, _ in STAGE_PARTS:
                name = f"stage_{'x'.join(map(str, shape))}_{part}_{precision}"
                module = stage_graph(part, shape, gain)
                tf.saved_model.save(module, str(work / name), signatures=module.stage)
                path = work / f"{name}.tflite"
                path.write_bytes(convert(work / name, precision, rep))
                keys[name] = (shape, part, precision)
                calls[name] = make_runner("tflite", path, calibration[0], threads)
    stats = interleaved(calls, rounds, warmup=1, budget_s=budget_s, log=log)
    floors = {keys[n][::2]: st for n, st in stats.items() if keys[n][1] == "floor"}
    for name, st in stats.items():
        shape, part, precision = keys[name]
        row = {"shape": list(shape), "part": part, "precision": precision, **st.to_dict()}
        row["over_floor_ms"] = st.median_ms - floors[(shape, precision)].median_ms
        rows.append(row)
    return rows
