"""What the web view costs the loop: ``edge_demo/camera.py`` FPS without ``--serve``, and serving
with 0 and with 3 MJPEG viewers.

The viewers are threads of this process that read the stream as a browser on another machine
would: bytes off the socket, no decoding (the board pays for encoding and sending frames, not
for the laptop's decoding). Configurations alternate within each round, each run in its own
process, so that a change in machine load hits all of them alike. The demo runs headless on a
synthetic street clip with the int8 model, as on a rig without a screen.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from benchmarks.artifacts import EXPORT_VARIANT, Artifacts
from benchmarks.edge import CAMERA, REPO, write_clip
from edge_demo.server import read_mjpeg
from segnet_tf.data import CAMVID
from segnet_tf.export.labels import write_labels

VIEWERS = (None, 0, 3)  # None: no --serve at all
TARGET_SLOWDOWN = 0.10  # the bound: 3 viewers cost the loop at most 10 % of its FPS


def watch(url: str, seen: set[int]) -> None:
    """Read ``url``'s MJPEG stream until the server closes it; the frame numbers go in ``seen``
    (a number twice is the server resending its newest frame after the loop ended)."""
    host, port = re.match(r"http://([^:/]+):(\d+)/", url).groups()
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request("GET", "/stream.mjpg")
        for number, _ in read_mjpeg(conn.getresponse()):
            seen.add(number)
    except (OSError, http.client.HTTPException):
        pass
    finally:
        conn.close()


def run_served(
    model: Path, labels: Path, clip: Path, frames: int, threads: int, viewers: int | None
) -> dict:
    """One headless run of the demo; with ``viewers``, serving and watched by that many."""
    with tempfile.TemporaryDirectory(prefix="segnet-serve-") as tmp:
        summary, log = Path(tmp) / "summary.json", Path(tmp) / "stderr.txt"
        cmd = [
            sys.executable, str(CAMERA), "--model", str(model), "--labels", str(labels),
            "--source", str(clip), "--headless", "--max-frames", str(frames),
            "--json", str(summary), "--threads", str(threads),
        ]  # fmt: skip
        if viewers is not None:  # lingering a little, a viewer late for a short run gets its end
            cmd += ["--serve", "127.0.0.1:0", "--serve-linger", "0.5"]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(log, "w") as stderr:
            proc = subprocess.Popen(
                cmd, cwd=REPO, env=env, stderr=stderr, stdout=subprocess.DEVNULL
            )
        seen: list[set[int]] = [set() for _ in range(viewers or 0)]
        watchers = []
        if viewers:
            url = None
            while url is None and proc.poll() is None:
                url = re.search(r"serving (http://\S+)", log.read_text())
                time.sleep(0.01)
            if url is not None:
                for i in range(viewers):
                    watchers.append(
                        threading.Thread(target=watch, args=(url.group(1), seen[i]), daemon=True)
                    )
                    watchers[-1].start()
        cpu_s = None
        if proc.returncode is None:  # wait4: the demo's CPU time, which machine load barely moves
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            cpu_s = usage.ru_utime + usage.ru_stime
        for t in watchers:
            t.join(timeout=10)
        if proc.returncode != 0:
            tail = (log.read_text().strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"edge_demo/camera.py exited {proc.returncode}: {tail}")
        result = json.loads(summary.read_text())
    result["viewer_frames"] = [len(frames) for frames in seen]
    result["cpu_s"] = cpu_s
    return result


def serve_table(
    art: Artifacts,
    threads: int,
    frames: int = 60,
    rounds: int = 3,
    viewers: Sequence[int | None] = VIEWERS,
    log: Callable[[str], None] = print,
) -> dict:
    log(f"web view: {art.label}, {frames} frames, {threads} threads, viewers {list(viewers)}")
    clip = write_clip(art.dir / "serve_clip.mp4", art.size, frames)
    labels = write_labels(art.dir, CAMVID, art.name, art.size)
    model = art.tflite(EXPORT_VARIANT["int8"], "int8")
    runs: dict = {v: [] for v in viewers}
    for _ in range(rounds):
        for v in viewers:
            runs[v].append(run_served(model, labels, clip, frames, threads, v))
    rows = []
    for v in viewers:
        fps = [s["fps"] for s in runs[v]]
        received = [c for s in runs[v] for c in s["viewer_frames"]]
        rows.append(
            {
                "viewers": v,
                "runs": len(fps),
                "frames": runs[v][0]["frames"],
                "fps_median": float(np.median(fps)),
                "fps_runs": fps,
                "viewer_frames_median": float(np.median(received)) if received else None,
                "cpu_s_median": float(np.median([s["cpu_s"] for s in runs[v]])),
                "stage_p50_ms": {
                    stage: float(np.median([s["stages_ms"][stage]["p50"] for s in runs[v]]))
                    for stage in runs[v][0]["stages_ms"]
                },
            }
        )
    by_viewers = {r["viewers"]: r for r in rows}
    slowdown = cpu_ms = None
    if 0 in by_viewers and 3 in by_viewers:
        slowdown = 1.0 - by_viewers[3]["fps_median"] / by_viewers[0]["fps_median"]
        cpu_ms = 1e3 * (by_viewers[3]["cpu_s_median"] - by_viewers[0]["cpu_s_median"]) / frames
    return {
        "model": art.name,
        "size": list(art.size),
        "threads": threads,
        "precision": "int8",
        "rows": rows,
        "slowdown_3_viewers": slowdown,
        "cpu_ms_per_frame_3_viewers": cpu_ms,
        "target": TARGET_SLOWDOWN,
    }
