"""Peak resident memory of one artifact, each in a fresh process.

The peak resident set is a high-water mark for the whole process, so only a process that loads
nothing but the one model measures that model. The child reports two marks: after importing its
runtime (``runtime_rss_mb``: what the runtime costs before any model) and after a few calls
(``peak_rss_mb``).

Run as ``python -m benchmarks.memory KIND PATH IMAGE.npy --threads N``; prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def max_rss_mb() -> float:
    """This process's peak resident set so far, in MB.

    Linux's ``VmHWM`` first: ``getrusage``'s ``ru_maxrss`` survives ``exec``, so a child forked
    from a large benchmark process reports its parent's peak (seen here: every row the same).
    """
    try:
        for line in open("/proc/self/status", encoding="ascii"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def measure(kind: str, path: Path, image_path: Path, threads: int, calls: int) -> dict:
    from benchmarks.runners import import_runtime, make_runner

    image = np.load(image_path)
    import_runtime(kind)
    runtime = max_rss_mb()
    run = make_runner(kind, path, image, threads)
    for _ in range(calls):
        run()
    return {"runtime_rss_mb": runtime, "peak_rss_mb": max_rss_mb()}


def peak_rss(
    kind: str, path: Path, image_path: Path, threads: int, calls: int = 2, timeout: float = 600
) -> dict:
    """Run :func:`measure` in a fresh interpreter; ``{"rss_error": ...}`` when the child fails."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.memory",
        kind,
        str(path),
        str(image_path),
        "--threads",
        str(threads),
        "--calls",
        str(calls),
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    try:
        proc = subprocess.run(
            cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"rss_error": f"no result within {timeout:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"rss_error": f"exit {proc.returncode}: {tail[:200]}"}
    return json.loads(lines[-1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__)
    parser.add_argument("kind")
    parser.add_argument("path", type=Path)
    parser.add_argument("image", type=Path, help=".npy [H, W, 3] input image")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--calls", type=int, default=3)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.kind, args.path, args.image, args.threads, args.calls)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
