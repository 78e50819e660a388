"""The edge loop as a user runs it: ``edge_demo/camera.py`` on a video, headless, writing video.

Frames per second include capture (video decode), preprocessing, inference, postprocessing
(argmax, colours, HUD) and writing the annotated video. The clip is synthetic street scenes at the
model's size (or ``clip_size``); every model (float32 and int8 TFLite, and ``model.onnx`` on ONNX
Runtime when installed) runs in every view, interleaved (``rounds`` of each), each run in its own
process. ``outside_inference`` is the loop's own cost, ``1 - inference ms x FPS / 1000`` from the
demo's stage table: the share of wall time not spent in inference.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from benchmarks.artifacts import EXPORT_VARIANT, Artifacts
from edge_demo.render import VIEWS
from segnet_tf.data import CAMVID, render_scene
from segnet_tf.export.labels import write_labels

REPO = Path(__file__).resolve().parents[1]
CAMERA = REPO / "edge_demo" / "camera.py"


def write_clip(path: Path, size: tuple[int, int], frames: int, fps: float = 30.0) -> Path:
    h, w = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    for i in range(frames):
        writer.write(cv2.cvtColor(render_scene(2000 + i, size)[0], cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def run_camera(
    model: Path,
    labels: Path,
    clip: Path,
    frames: int,
    threads: int,
    out: Path,
    view: str = "overlay",
    camera: Path = CAMERA,
) -> dict:
    summary = out.with_suffix(".json")
    cmd = [
        sys.executable,
        str(camera),
        "--model",
        str(model),
        "--labels",
        str(labels),
        "--source",
        str(clip),
        "--headless",
        "--output",
        str(out),
        "--max-frames",
        str(frames),
        "--json",
        str(summary),
        "--threads",
        str(threads),
        "--view",
        view,
    ]
    proc = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"edge_demo/camera.py exited {proc.returncode}: {tail}")
    return json.loads(summary.read_text())


def outside_inference(summary: dict) -> float:
    """``1 - inference ms x FPS / 1000`` from a demo summary's stage table."""
    return 1.0 - summary["stages_ms"]["inference"]["mean"] * summary["fps"] / 1e3


def thread_p50(summaries: list[dict], name: str) -> float | None:
    """Median p50 of a demo thread's calls (None for a demo without threads)."""
    if "threads_ms" not in summaries[0]:
        return None
    return float(np.median([s["threads_ms"][name]["p50"] for s in summaries]))


def edge_models(art: Artifacts, precisions: tuple[str, ...], log) -> dict[str, Path]:
    """The TFLite exports of ``precisions``, and model.onnx when ONNX Runtime is installed."""
    models = {p: art.tflite(EXPORT_VARIANT[p], p) for p in precisions}
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("tf2onnx"):
        models["onnx"] = art.lowered_onnx_file
    else:
        log("  edge: no onnxruntime/tf2onnx, so no model.onnx row")
    return models


def edge_table(
    art: Artifacts,
    threads: int,
    frames: int = 30,
    rounds: int = 2,
    precisions: tuple[str, ...] = ("float32", "int8"),
    views: tuple[str, ...] = VIEWS,
    clip_size: tuple[int, int] | None = None,
    camera: Path = CAMERA,
    log: Callable[[str], None] = print,
) -> dict:
    clip_size = tuple(clip_size or art.size)
    log(
        f"edge loop: {art.label}, {clip_size[0]}x{clip_size[1]} clip, {frames} frames, "
        f"{threads} threads, {camera}"
    )
    clip = write_clip(art.dir / f"clip_{clip_size[0]}x{clip_size[1]}.mp4", clip_size, frames)
    labels = write_labels(art.dir, CAMVID, art.name, art.size)
    models = edge_models(art, precisions, log)
    keys = [(m, v) for m in models for v in views]
    runs: dict[tuple[str, str], list[dict]] = {k: [] for k in keys}
    errors: dict[tuple[str, str], str] = {}
    for r in range(rounds):
        for m, v in keys:
            if (m, v) in errors:
                continue
            try:
                out = art.dir / f"edge_{m}_{v}_{r}.mp4"
                runs[m, v].append(
                    run_camera(models[m], labels, clip, frames, threads, out, v, camera)
                )
            except Exception as e:
                errors[m, v] = str(e)
                log(f"  edge {m} {v}: {e}")
    rows = []
    for m, v in keys:
        done = runs[m, v]
        if not done:
            rows.append({"precision": m, "view": v, "error": errors.get((m, v))})
            continue
        fps = [s["fps"] for s in done]
        stages = {
            stage: float(np.median([s["stages_ms"][stage]["p50"] for s in done]))
            for stage in done[0]["stages_ms"]
        }
        rows.append(
            {
                "precision": m,
                "view": v,
                "file": models[m].name,
                "runs": len(fps),
                "frames": done[0]["frames"],
                "fps_median": float(np.median(fps)),
                "fps_runs": fps,
                "stage_p50_ms": stages,
                "outside_inference": float(np.median([outside_inference(s) for s in done])),
                **{
                    f"{name}_thread_p50_ms": thread_p50(done, name) for name in ("reader", "writer")
                },
                "runtime": done[0]["runtime"],
                "device": done[0]["device"],
                "error": errors.get((m, v)),
            }
        )
    return {
        "model": art.name,
        "size": list(art.size),
        "clip_size": list(clip_size),
        "threads": threads,
        "camera": str(camera),
        "rows": rows,
    }
