"""Where the lowering's time goes on a CPU, and what a faster exact lowering looks like.

The TFLite Python interpreter has no per-op profiler, so this bisects by building graphs:

* **XNNPACK coverage**: after ``allocate_tensors`` the interpreter lists the original nodes and
  one DELEGATE node per partition XNNPACK took; walking back from each partition's outputs to its
  inputs gives the nodes inside it, and every other node runs on TFLite's reference kernels
  (mostly single-threaded), between partitions.
* **Timing** of the floor (with either upsampling) and of every ``export.lowering`` flavour
  (``exact`` and ``edgetpu``: the mask at the input resolution; ``step``: at the pooled
  resolution, with a gain of 2^126 in float32, EQUAL without EQUAL), interleaved, each with
  its overhead over the floor and its largest output difference from ``exact`` at the same
  precision (0 = the same network, bit for bit; int8 in codes, and equalized models have other
  output scales, so there it only says "not identical").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.artifacts import Artifacts
from benchmarks.inference import short_error
from benchmarks.report import fmt, table
from benchmarks.runners import make_runner
from benchmarks.timing import interleaved

EXACT_ROW = "exact (input-res mask)"  # the reference of the max-diff column
# (row name, Artifacts variant, precision)
CANDIDATES = (
    ("floor", "floor", "float32"),
    ("floor, RESIZE_NEAREST_NEIGHBOR", "floor-resize", "float32"),
    (EXACT_ROW, "lowered", "float32"),
    ("step (pooled-res mask), gain 2^126 (float32 export)", "step-2^126", "float32"),
    ("floor", "floor", "int8"),
    ("floor, RESIZE_NEAREST_NEIGHBOR", "floor-resize", "int8"),
    (EXACT_ROW, "lowered", "int8"),
    ("step (pooled-res mask), equalized (int8 export)", "step", "int8"),
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
    return {"model": art.name, "size": list(art.size), "threads": threads, "rows": rows}


def profile_md(t: dict) -> str:
    head = (
        f"### Profile: {t['model']} {t['size'][0]}x{t['size'][1]}, lowering formulations, "
        f"{t['threads']} threads"
    )
    rows = []
    for r in t["rows"]:
        if r.get("error"):
            rows.append([r["name"], r["precision"], "error", "", "", "", "", "", "", r["error"]])
            continue
        over = r.get("overhead_vs_floor")
        outside = ", ".join(f"{op} x{n}" for op, n in r["outside_xnnpack"].items()) or "none"
        rows.append(
            [
                r["name"],
                r["precision"],
                fmt(r.get("median_ms")),
                fmt(r.get("p95_ms")),
                fmt(r.get("min_ms")),
                fmt(None if over is None else 100 * over, "+.1f"),
                fmt(r.get("max_abs_diff_vs_exact"), ".2g"),
                r["partitions"],
                f"{sum(r['outside_xnnpack'].values())}/{r['nodes']}",
                outside,
            ]
        )
    header = [
        "formulation",
        "TFLite",
        "median ms",
        "p95 ms",
        "min ms",
        "over floor %",
        "max diff vs exact (int8: codes)",
        "XNNPACK partitions",
        "nodes outside",
        "ops outside XNNPACK",
    ]
    return "\n".join([head, "", table(header, rows)]) + "\n"
