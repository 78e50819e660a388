"""The edge loop as a user runs it: ``edge_demo/camera.py`` on a video, headless, writing video.

Frames per second include capture (video decode), preprocessing, inference, postprocessing
(argmax, colours, HUD) and writing the annotated video. The clip is synthetic street scenes at the
model's size; float and int8 runs alternate (``rounds`` of each), each in its own process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from segnet_tf.export.labels import write_labels

from benchmarks.artifacts import EXPORT_VARIANT, Artifacts
from segnet_tf.data import CAMVID, render_scene

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


def run_camera(model: Path, labels: Path, clip: Path, frames: int, threads: int, out: Path) -> dict:
    summary = out.with_suffix(".json")
    cmd = [
        sys.executable,
        str(CAMERA),
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
    ]
    proc = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"edge_demo/camera.py exited {proc.returncode}: {tail}")
    return json.loads(summary.read_text())


def edge_table(
    art: Artifacts,
    threads: int,
    frames: int = 30,
    rounds: int = 2,
    precisions: tuple[str, ...] = ("float32", "int8"),
    log: Callable[[str], None] = print,
) -> dict:
    log(f"edge loop: {art.label}, {frames} frames, {threads} threads")
    clip = write_clip(art.dir / "clip.mp4", art.size, frames)
    labels = write_labels(art.dir, CAMVID, art.name, art.size)
    models = {p: art.tflite(EXPORT_VARIANT[p], p) for p in precisions}
    runs: dict[str, list[dict]] = {p: [] for p in precisions}
    errors: dict[str, str] = {}
    for r in range(rounds):
        for p, model in models.items():
            if p in errors:
                continue
            try:
                out = art.dir / f"edge_{p}_{r}.mp4"
                runs[p].append(run_camera(model, labels, clip, frames, threads, out))
            except Exception as e:
                errors[p] = str(e)
                log(f"  edge {p}: {e}")
    rows = []
    for p in precisions:
        if not runs[p]:
            rows.append({"precision": p, "error": errors.get(p)})
            continue
        fps = [s["fps"] for s in runs[p]]
        stages = {
            stage: float(np.median([s["stages_ms"][stage]["p50"] for s in runs[p]]))
            for stage in runs[p][0]["stages_ms"]
        }
        rows.append(
            {
                "precision": p,
                "file": models[p].name,
                "runs": len(fps),
                "frames": runs[p][0]["frames"],
                "fps_median": float(np.median(fps)),
                "fps_runs": fps,
                "stage_p50_ms": stages,
                "runtime": runs[p][0]["runtime"],
                "error": errors.get(p),
            }
        )
    return {"model": art.name, "size": list(art.size), "threads": threads, "rows": rows}
