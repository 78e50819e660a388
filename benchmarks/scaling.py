"""Cost growth with input size: latency and peak memory of the exported TFLite models at several
resolutions.

Convolution cost is linear in pixels, so ``ms per megapixel`` should stay flat; a rise shows a
cache or memory-bandwidth limit (full-resolution maps of the first and last stages).
"""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.artifacts import EXPORT_VARIANT, Artifacts
from benchmarks.inference import short_error
from benchmarks.memory import peak_rss
from benchmarks.runners import make_runner
from benchmarks.timing import interleaved


def scaling_table(
    artifacts: list[Artifacts],
    threads: int,
    rounds: int,
    precisions: tuple[str, ...] = ("float32", "int8"),
    budget_s: float | None = None,
    rss: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    log(f"scaling: {', '.join(a.label for a in artifacts)}; TFLite {', '.join(precisions)}")
    cases = {}
    rows = []
    for art in artifacts:
        for p in precisions:
            key = f"{art.label} {p}"
            row = {"model": art.name, "size": list(art.size), "precision": p, "error": None}
            try:
                path = art.tflite(EXPORT_VARIANT[p], p)  # what segnet-tf export ships
                run = make_runner("tflite", path, art.image, threads)
                run()
                cases[key] = run
                row.update(file=path.name, size_bytes=path.stat().st_size)
                row["_art"], row["_path"] = art, path
            except Exception as e:
                row["error"] = short_error(e)
            rows.append(row)
    stats = interleaved(cases, rounds, warmup=1, budget_s=budget_s, log=log)
    for row in rows:
        art, path = row.pop("_art", None), row.pop("_path", None)
        key = f"{row['model']} {row['size'][0]}x{row['size'][1]} {row['precision']}"
        if key not in stats:
            continue
        s = stats[key]
        megapixels = row["size"][0] * row["size"][1] / 1e6
        row.update(s.to_dict(), ms_per_megapixel=s.median_ms / megapixels)
        if rss:
            row.update(peak_rss("tflite", path, art.image_file, threads))
    return {"threads": threads, "rows": rows}
