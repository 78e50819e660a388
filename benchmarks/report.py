"""Markdown tables of a benchmark result (the printed output and ``cpu-<date>.md``)."""

from __future__ import annotations

from collections.abc import Sequence

TARGETS = {
    "overhead_float32": 0.05,  # lowered over floor
    "overhead_int8": 0.10,
    "fastest_vs_onnxruntime": 1.3,  # fastest TFLite export of segnet-lite
    "fastest_vs_keras": 2.0,
}


def fmt(value, spec: str = ".1f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def mb(value) -> str:
    return fmt(None if value is None else value / 1e6, ".1f")


def overhead_on_min(t: dict) -> dict[str, float]:
    """Lowered over floor on the fastest call of each: the cost with the least interference from
    other work on a shared machine (the medians carry it)."""
    mins = {r["name"]: r.get("min_ms") for r in t["rows"]}
    return {
        p: mins[f"TFLite {p}"] / mins[f"floor TFLite {p}"] - 1
        for p in t.get("lowering_overhead", {})
        if mins.get(f"TFLite {p}") and mins.get(f"floor TFLite {p}")
    }


def inference_md(t: dict) -> str:
    head = (
        f"### Inference: {t['model']} {t['size'][0]}x{t['size'][1]}, batch 1, "
        f"{t['threads']} threads ({t['forward_gflop']:.1f} GFLOP per image)"
    )
    rows = []
    for r in t["rows"]:
        if r.get("error"):
            rows.append([r["name"], "error", *[""] * 8, mb(r.get("size_bytes")), r["error"][:220]])
            continue
        agree = r.get("argmax_agreement")
        rows.append(
            [
                r["name"],
                fmt(r["median_ms"]),
                fmt(r["p95_ms"]),
                fmt(r["min_ms"]),
                r["n"],
                fmt(r.get("speedup_vs_keras"), ".2f"),
                fmt(r.get("speedup_vs_onnxruntime"), ".2f"),
                fmt(r.get("gflops_per_s"), ".0f"),
                fmt(r.get("peak_rss_mb"), ".0f"),
                fmt(None if agree is None else 100 * agree, ".2f"),
                mb(r.get("size_bytes")),
                "; ".join(filter(None, [r.get("note"), r.get("rss_error")])),
            ]
        )
    header = [
        "candidate",
        "median ms",
        "p95 ms",
        "min ms",
        "n",
        "x Keras",
        "x ORT",
        "GFLOP/s",
        "peak RSS MB",
        "argmax = Keras %",
        "file MB",
        "note",
    ]
    over, best = t.get("lowering_overhead", {}), overhead_on_min(t)
    tail = (
        "Lowering overhead over the floor (medians; on min latencies): "
        + ", ".join(f"{p} {100 * v:+.1f}% ({100 * best[p]:+.1f}%)" for p, v in over.items())
        if over
        else ""
    )
    return "\n".join([head, "", table(header, rows), "", tail]).rstrip() + "\n"


def training_md(t: dict) -> str:
    head = (
        f"### Training: {t['model']} {t['size'][0]}x{t['size'][1]}, batch {t['batch']}, "
        f"{t['threads']} threads"
    )
    rows = []
    for r in t["rows"]:
        if r.get("error"):
            rows.append([r["name"], "error", "", "", "", "", r["error"][:260]])
        else:
            rows.append(
                [
                    r["name"],
                    fmt(r["median_ms"], ".0f"),
                    fmt(r["p95_ms"], ".0f"),
                    r["n"],
                    fmt(r["images_per_s"], ".2f"),
                    fmt(r.get("speedup_vs_reference"), ".2f"),
                    "",
                ]
            )
    header = ["train step", "median ms", "p95 ms", "n", "images/s", "x scatter_nd", "note"]
    return "\n".join([head, "", table(header, rows)]) + "\n"


def gradient_md(g: dict) -> str:
    lines = [
        f"Gradient check, {g['model']} {g['size'][0]}x{g['size'][1]}, batch {g['batch']} "
        f"(reference loss {g['reference_loss']:.6f}):"
    ]
    for key, r in g.items():
        if not isinstance(r, dict):
            continue
        if "error" in r:
            lines.append(f"- {key}: {r['error'][:300]}")
        elif r:
            lines.append(
                f"- {key}: |loss diff| {r['loss_abs_diff']:.2e}, max relative gradient "
                f"diff {r['max_grad_rel_diff']:.2e}, {r['identical_gradients']}/"
                f"{r['gradients']} gradients bit-identical"
            )
    return "\n".join(lines) + "\n"


def edge_md(t: dict) -> str:
    clip = t.get("clip_size", t["size"])
    head = (
        f"### Edge loop: edge_demo/camera.py, {t['model']} {t['size'][0]}x{t['size'][1]} on a "
        f"{clip[0]}x{clip[1]} clip, {t['threads']} threads"
        + (f" ({t['camera']})" if t.get("camera") else "")
    )
    rows = []
    for r in t["rows"]:
        if r.get("error") and "fps_median" not in r:
            rows.append([r["precision"], r.get("view", ""), "error", *[""] * 9, r["error"][:200]])
            continue
        s = r["stage_p50_ms"]
        outside = r.get("outside_inference")
        rows.append(
            [
                r["precision"],
                r.get("view", "overlay"),
                fmt(r["fps_median"]),
                f"{r['runs']} x {r['frames']}",
                fmt(s.get("capture")),
                fmt(s.get("preprocess")),
                fmt(s.get("inference")),
                fmt(s.get("postprocess")),
                fmt(s.get("output")),
                fmt(r.get("reader_thread_p50_ms")),
                fmt(r.get("writer_thread_p50_ms")),
                fmt(None if outside is None else 100 * outside),
            ]
        )
    header = [
        "model",
        "view",
        "FPS",
        "runs x frames",
        "capture p50 ms",
        "pre p50 ms",
        "infer p50 ms",
        "post p50 ms",
        "output p50 ms",
        "reader thread p50 ms",
        "writer thread p50 ms",
        "outside inference %",
    ]
    note = (
        "outside inference = 1 - inference ms x FPS / 1000 (stage means): the loop's own cost, "
        "work overlapped with inference excluded. Where the demo reads and writes in threads, "
        "capture is the wait for the read-ahead frame and output the hand-over to the writer; "
        "the threads' own times are in their columns."
    )
    return "\n".join([head, "", table(header, rows), "", note]) + "\n"


def serve_md(t: dict) -> str:
    head = (
        f"### Web view: edge_demo/camera.py --serve, {t['model']} {t['size'][0]}x{t['size'][1]} "
        f"{t['precision']}, {t['threads']} threads"
    )
    rows = []
    for r in t["rows"]:
        s = r["stage_p50_ms"]
        rows.append(
            [
                "off" if r["viewers"] is None else "on",
                "" if r["viewers"] is None else str(r["viewers"]),
                fmt(r["fps_median"]),
                " / ".join(fmt(f) for f in r["fps_runs"]),
                f"{r['runs']} x {r['frames']}",
                fmt(r["viewer_frames_median"]),
                fmt(r["cpu_s_median"], ".2f"),
                fmt(s.get("inference")),
                fmt(s.get("postprocess")),
            ]
        )
    header = [
        "--serve",
        "viewers",
        "FPS (median)",
        "FPS of each run",
        "runs x frames",
        "frames each viewer got",
        "CPU s of the run",
        "infer p50 ms",
        "post p50 ms",
    ]
    verdict = ""
    if t["slowdown_3_viewers"] is not None:
        ok = t["slowdown_3_viewers"] <= t["target"]
        verdict = (
            f"\n3 viewers vs 0: FPS {-100 * t['slowdown_3_viewers']:+.1f} % (target: at most "
            f"{100 * t['target']:.0f} % lower: {'met' if ok else 'NOT met'}); "
            f"{t['cpu_ms_per_frame_3_viewers']:+.1f} ms of the demo's CPU time per frame\n"
        )
    return "\n".join([head, "", table(header, rows)]) + "\n" + verdict


def scaling_md(t: dict) -> str:
    rows = []
    for r in t["rows"]:
        size = f"{r['size'][0]}x{r['size'][1]}"
        if r.get("error"):
            rows.append([r["model"], size, r["precision"], "error", "", "", "", "", r["error"]])
            continue
        rows.append(
            [
                r["model"],
                size,
                r["precision"],
                fmt(r["median_ms"]),
                fmt(r["p95_ms"]),
                fmt(r["ms_per_megapixel"], ".0f"),
                fmt(r.get("peak_rss_mb"), ".0f"),
                mb(r.get("size_bytes")),
                r.get("rss_error") or "",
            ]
        )
    header = [
        "model",
        "size",
        "TFLite",
        "median ms",
        "p95 ms",
        "ms/Mpx",
        "peak RSS MB",
        "file MB",
        "note",
    ]
    return "\n".join([f"### Cost growth ({t['threads']} threads)", "", table(header, rows)]) + "\n"


def gpu_md(t: dict) -> str:
    if not t.get("rows"):
        return f"### GPU\n\n{t.get('note', 'no GPU present')}\n"
    p = t["caffe_paper"]
    head = (
        f"### GPU: {t['gpu'] or t['device']}, {t['model']} {t['size'][0]}x{t['size'][1]} "
        f"({t['forward_gflop']:.1f} GFLOP forward), training batch {t['batch']}"
    )
    rows = [
        [r["name"], "error", "", "", "", r["error"][:200]]
        if r.get("error")
        else [
            r["name"],
            fmt(r["median_ms"]),
            fmt(r["ms_per_image"]),
            fmt(r["images_per_s"], ".2f"),
            fmt(r["achieved_tflops"], ".2f"),
            "",
        ]
        for r in t["rows"]
    ]
    rows.append(
        [
            f"Caffe (paper, {p['gpu']}) forward",
            fmt(p["forward_ms"]),
            fmt(p["forward_ms"]),
            fmt(1e3 / p["forward_ms"], ".2f"),
            fmt(p["forward_tflops"], ".2f"),
            "",
        ]
    )
    total = p["forward_ms"] + p["backward_ms"]
    rows.append(
        [
            "Caffe (paper) forward + backward",
            fmt(total),
            fmt(total),
            fmt(1e3 / total, ".2f"),
            fmt(p["training_tflops"], ".2f"),
            "",
        ]
    )
    header = ["candidate", "median ms/call", "ms/image", "images/s", "TFLOP/s", "note"]
    return "\n".join([head, "", table(header, rows)]) + "\n"


def targets_md(result: dict) -> str:
    """Pass/fail of the issue's targets, from the segnet-lite inference table."""
    lines = []
    for t in result.get("inference", []):
        if t["model"] != "segnet-lite":
            continue
        over = t.get("lowering_overhead", {})
        on_min = overhead_on_min(t)
        for p, limit in (
            ("float32", TARGETS["overhead_float32"]),
            ("int8", TARGETS["overhead_int8"]),
        ):
            if p in over:
                ok = "met" if over[p] <= limit else "MISSED"
                lines.append(
                    f"- lowering overhead {p}: {100 * over[p]:+.1f}% on medians, "
                    f"{100 * on_min[p]:+.1f}% on min latencies (target <= {100 * limit:.0f}%): {ok}"
                )
        ours = [r for r in t["rows"] if r["group"] == "lowered" and r.get("median_ms")]
        if ours:
            best = min(ours, key=lambda r: r["median_ms"])
            for key, name, limit in (
                ("speedup_vs_onnxruntime", "ONNX Runtime", TARGETS["fastest_vs_onnxruntime"]),
                ("speedup_vs_keras", "the Keras call", TARGETS["fastest_vs_keras"]),
            ):
                value = best.get(key)
                if value is None:
                    lines.append(f"- fastest export vs {name}: not measured")
                    continue
                ok = "met" if value >= limit else "MISSED"
                lines.append(
                    f"- fastest export ({best['name']}, {best['median_ms']:.1f} ms) vs "
                    f"{name}: {value:.2f}x (target >= {limit}x): {ok}"
                )
            mins = {r["name"]: r.get("min_ms") for r in t["rows"]}
            ratios = [
                f"{r['name']} {mins[base] / r['min_ms']:.2f}x"
                for base in ("Keras call (tf.function)", "ONNX Runtime (tf2onnx)")
                if mins.get(base)
                for r in ours
            ]
            lines.append("- on min latencies, over Keras then ONNX Runtime: " + ", ".join(ratios))
    return ("### Targets (segnet-lite)\n\n" + "\n".join(lines) + "\n") if lines else ""


def environment_md(env: dict) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    load = env.get("load_average_at_start")
    end = env.get("load_average_at_end")
    return (
        f"Date {env['date']}; CPU {env['cpu']} ({env['cores']} cores; "
        f"{' '.join(env['cpu_flags']) or 'no AVX flags'}); {env['threads']} threads; "
        f"1-min load average {fmt(load and load[0], '.2f')} at start, "
        f"{fmt(end and end[0], '.2f')} at end; Python {env['python']}; "
        f"{versions}.\n"
    )


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
    return "\n".join([head, "", table(header, rows), "", stages_md(t)]) + "\n"


# The op groups of one pooling + unpooling that the profile builds up, and what each adds:
# cumulative, each row is the one above plus its op group.
STAGE_PARTS = (
    ("floor", "MAX_POOL_2D + nearest upsampling"),
    ("layout", "+ SPACE_TO_DEPTH; unpool = broadcast MUL + DEPTH_TO_SPACE"),
    ("step", "+ the comparison: broadcast SUB + 1x1 DEPTHWISE step (no tie-break)"),
    ("step-conv", "+ causal 1x7 DEPTHWISE tie-break (float32 export)"),
    ("products", "step with product tie-break instead (int8 export)"),
)


def stages_md(t: dict) -> str:
    """The per-stage table: one row per op group, float32 and int8 side by side, and totals."""
    by_key = {(tuple(r["shape"]), r["part"], r["precision"]): r for r in t.get("stages", [])}
    shapes = list(dict.fromkeys(tuple(r["shape"]) for r in t.get("stages", [])))
    if not shapes:
        return ""
    rows = []
    for shape in [*shapes, None]:
        for part, adds in STAGE_PARTS:
            cells = []
            for precision in ("float32", "int8"):
                picked = [by_key.get((s, part, precision)) for s in ([shape] if shape else shapes)]
                if None in picked:
                    cells += ["", ""]
                    continue
                cells += [
                    fmt(sum(r["median_ms"] for r in picked), ".2f"),
                    fmt(sum(r["over_floor_ms"] for r in picked), "+.2f"),
                ]
            label = "x".join(map(str, shape)) if shape else "all stages"
            rows.append([label, part, adds, *cells])
    header = [
        "pooling input",
        "graph",
        "what it adds",
        "float32 ms",
        "float32 over floor ms",
        "int8 ms",
        "int8 over floor ms",
    ]
    head = (
        "Each pooling + unpooling alone (batch 1, medians, interleaved), built up op group by op "
        "group; the overhead of each lowering is its row's 'over floor'."
    )
    return "\n".join([head, "", table(header, rows)])


def render(result: dict) -> str:
    parts = ["## segnet-tf benchmarks\n", environment_md(result["environment"])]
    if result.get("note"):
        parts.append(result["note"] + "\n")
    parts.append(targets_md(result))
    parts += [inference_md(t) for t in result.get("inference", [])]
    parts += [training_md(t) for t in result.get("training", [])]
    parts += [gradient_md(g) for g in result.get("gradient_check", [])]
    if result.get("scaling"):
        parts.append(scaling_md(result["scaling"]))
    parts += [edge_md(t) for t in result.get("edge", [])]
    if result.get("serve"):
        parts.append(serve_md(result["serve"]))
    if result.get("profile"):
        parts.append(profile_md(result["profile"]))
    if result.get("gpu"):
        parts.append(gpu_md(result["gpu"]))
    return "\n".join(p for p in parts if p)
