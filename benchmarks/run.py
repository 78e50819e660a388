r"""Benchmark SegNet on this machine: inference, training, edge loop, web view, cost growth, GPU.

Benchmarks measure a checkout (they are not installed with segnet-tf): run them as a module from
the repository root, which also makes ``edge_demo`` importable.

Examples:
    # the full CPU run (about 25 minutes on 2 cores), tables to stdout, JSON and Markdown saved
    python -m benchmarks.run --json benchmarks/results/cpu-$(date +%F).json \
        --markdown benchmarks/results/cpu-$(date +%F).md
    # a quick look at segnet-lite inference only
    python -m benchmarks.run --models segnet-lite --sections inference --reps 5
    # the web view's cost to the edge loop (0 and 3 MJPEG viewers), a few minutes
    python -m benchmarks.run --models segnet-lite --sections serve --edge-frames 40
    # smoke run (seconds)
    python -m benchmarks.run --models segnet-lite --size 64x96 --reps 2 --scaling-sizes 64x96

Every table is measured in one process, candidates interleaved round-robin; peak memory is
measured per candidate in a fresh process. Optional runtimes (tf2onnx + onnxruntime, torch) are
used when installed, and their rows say 'not installed' otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SECTIONS = ("inference", "training", "edge", "serve", "scaling", "profile", "gpu")
DEFAULT_MODELS = ("segnet-lite", "segnet")


class BenchmarkError(ValueError):
    """A bad option value."""


def size_arg(text: str) -> tuple[int, int]:
    """An ``HxW`` option, read by :func:`segnet_tf.config.parse_size` (imported only when a size
    is given, so ``--help`` starts no TensorFlow)."""
    from segnet_tf.config import parse_size

    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parse_list(choices: Sequence[str] | None = None, kind=str):
    def parse(text: str):
        values = [kind(v.strip()) for v in text.split(",") if v.strip()]
        bad = [v for v in values if choices is not None and v not in choices]
        if bad or not values:
            raise argparse.ArgumentTypeError(
                f"{text!r}: choose from {', '.join(choices)}" if choices else f"{text!r}: empty"
            )
        return tuple(values)

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--models",
        type=parse_list(),
        default=DEFAULT_MODELS,
        help="comma-separated presets (default: segnet-lite,segnet)",
    )
    parser.add_argument("--size", type=size_arg, default=(360, 480), help="HxW (default 360x480)")
    parser.add_argument(
        "--sections",
        type=parse_list(SECTIONS),
        default=SECTIONS,
        help=f"comma-separated, from {','.join(SECTIONS)} (default: all)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count(),
        help="CPU threads for every runtime (default: all cores)",
    )
    parser.add_argument(
        "--precisions",
        type=parse_list(("float32", "float16", "int8")),
        default=("float32", "float16", "int8"),
        help="TFLite exports to time",
    )
    parser.add_argument("--reps", type=int, default=10, help="timed rounds per inference table")
    parser.add_argument("--train-reps", type=int, default=4, help="timed rounds per training table")
    parser.add_argument("--train-batch", type=int, default=2, help="training batch size")
    parser.add_argument("--train-size", type=size_arg, help="HxW for training (default: --size)")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="stop a table's rounds after this many seconds (at least 2 rounds)",
    )
    parser.add_argument("--calib-images", type=int, default=8, help="int8 calibration scenes")
    parser.add_argument("--edge-frames", type=int, default=30, help="frames per edge-loop run")
    parser.add_argument(
        "--serve-rounds", type=int, default=5, help="rounds of the web-view table (default 5)"
    )
    parser.add_argument(
        "--edge-models",
        type=parse_list(),
        default=("segnet-lite",),
        help="models for the edge loop (default: segnet-lite)",
    )
    parser.add_argument(
        "--edge-views",
        type=parse_list(("overlay", "mask", "side")),
        default=("overlay", "mask", "side"),
        help="demo views for the edge loop (default: all)",
    )
    parser.add_argument(
        "--edge-clip-size", type=size_arg, help="HxW of the edge loop's clip (default: --size)"
    )
    parser.add_argument(
        "--edge-cameras",
        type=parse_list(kind=Path),
        default=(REPO / "edge_demo" / "camera.py",),
        help="comma-separated camera.py scripts to run, one table each (e.g. another "
        "checkout's first, for a before/after on the same models); default: this checkout's",
    )
    parser.add_argument("--scaling-models", type=parse_list(), default=("segnet-lite",))
    parser.add_argument(
        "--scaling-sizes",
        type=parse_list(kind=size_arg),
        default=((180, 240), (360, 480), (720, 960)),
        help="e.g. 180x240,360x480",
    )
    parser.add_argument("--gpu-model", default="segnet", help="model of the GPU table")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-memory pass")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--note", default="", help="a line for the report (e.g. machine load)")
    parser.add_argument("--json", type=Path, help="write the full result here")
    parser.add_argument("--markdown", type=Path, help="write the printed tables here")
    parser.add_argument("--work", type=Path, help="keep the exported files here (default: temp)")
    return parser


def check_args(args: argparse.Namespace) -> None:
    from segnet_tf.models import list_models
    from segnet_tf.models.registry import check_input_size

    known = list_models()
    for option in ("models", "edge_models", "scaling_models"):
        bad = [m for m in getattr(args, option) if m not in known]
        if bad:
            raise BenchmarkError(
                f"--{option.replace('_', '-')}: unknown model(s) {bad}; "
                f"choose from {', '.join(known)}"
            )
    if args.gpu_model not in known:
        raise BenchmarkError(f"--gpu-model {args.gpu_model!r}: choose from {', '.join(known)}")
    sizes = [("size", args.size, (*args.models, args.gpu_model))]
    sizes += [("train-size", args.train_size, args.models)] if args.train_size else []
    sizes += [("scaling-sizes", s, args.scaling_models) for s in args.scaling_sizes]
    for option, size, models in sizes:
        for model in models:
            try:
                check_input_size(model, size)
            except ValueError as e:
                raise BenchmarkError(f"--{option} {size[0]}x{size[1]}: {e}") from None
    positive = ("threads", "reps", "train_reps", "train_batch", "calib_images", "edge_frames")
    for option in (*positive, "serve_rounds"):
        if getattr(args, option) < 1:
            raise BenchmarkError(f"--{option.replace('_', '-')} must be >= 1")


def _jsonable(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def run(args: argparse.Namespace, log=print) -> dict:
    """Run the selected sections; returns the result (also written by :func:`main`)."""
    from benchmarks.runners import set_tf_threads

    set_tf_threads(args.threads)  # before TensorFlow starts its runtime
    check_args(args)

    from benchmarks.artifacts import Artifacts
    from benchmarks.timing import environment

    work = args.work or Path(tempfile.mkdtemp(prefix="segnet-bench-"))
    cache: dict = {}

    def artifacts(name: str, size: tuple[int, int]) -> Artifacts:
        if (name, size) not in cache:
            cache[name, size] = Artifacts(name, size, work, args.calib_images, log=log)
        return cache[name, size]

    torch = not args.no_torch
    result: dict = {
        "environment": environment(args.threads),
        "note": args.note,
        "options": {k: _jsonable(v) for k, v in vars(args).items()},
    }
    start = time.perf_counter()
    try:
        sections = set(args.sections)
        for name in args.models:
            art = artifacts(name, args.size)
            if "inference" in sections:
                from benchmarks.inference import inference_table

                result.setdefault("inference", []).append(
                    inference_table(
                        art,
                        args.threads,
                        args.reps,
                        budget_s=args.budget_s,
                        precisions=args.precisions,
                        torch=torch,
                        rss=not args.no_rss,
                        log=log,
                    )
                )
            if "training" in sections:
                from benchmarks.training import gradient_check, training_table

                result.setdefault("training", []).append(
                    training_table(
                        name,
                        args.train_size or args.size,
                        args.train_batch,
                        args.threads,
                        args.train_reps,
                        budget_s=args.budget_s,
                        torch=torch,
                        log=log,
                    )
                )
                result.setdefault("gradient_check", []).append(
                    gradient_check(name, args.train_size or args.size, batch=args.train_batch)
                )
        if "scaling" in sections:
            from benchmarks.scaling import scaling_table

            arts = [artifacts(m, s) for m in args.scaling_models for s in args.scaling_sizes]
            precisions = tuple(p for p in args.precisions if p != "float16") or args.precisions
            result["scaling"] = scaling_table(
                arts,
                args.threads,
                args.reps,
                precisions,
                budget_s=args.budget_s,
                rss=not args.no_rss,
                log=log,
            )
        if "edge" in sections:
            from benchmarks.edge import edge_table

            precisions = tuple(p for p in args.precisions if p != "float16") or args.precisions
            for name in args.edge_models:
                for camera in args.edge_cameras:
                    result.setdefault("edge", []).append(
                        edge_table(
                            artifacts(name, args.size),
                            args.threads,
                            args.edge_frames,
                            precisions=precisions,
                            views=args.edge_views,
                            clip_size=args.edge_clip_size,
                            camera=camera,
                            log=log,
                        )
                    )
        if "serve" in sections:
            from benchmarks.serve import serve_table

            result["serve"] = serve_table(
                artifacts(args.edge_models[0], args.size),
                args.threads,
                args.edge_frames,
                rounds=args.serve_rounds,
                log=log,
            )
        if "profile" in sections:
            from benchmarks.profiling import profile_table

            result["profile"] = profile_table(
                artifacts(args.models[0], args.size),
                args.threads,
                args.reps,
                budget_s=args.budget_s,
                log=log,
            )
        if "gpu" in sections:
            from benchmarks.gpu import gpu_table

            result["gpu"] = gpu_table(
                args.gpu_model,
                args.size,
                args.train_batch,
                args.reps,
                budget_s=args.budget_s,
                log=log,
            )
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    result["seconds"] = time.perf_counter() - start
    result["environment"]["load_average_at_end"] = os.getloadavg()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from benchmarks.report import render

    try:
        result = run(args, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    except BenchmarkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = render(result)
    print(text)
    for path, content in ((args.json, json.dumps(result, indent=2) + "\n"), (args.markdown, text)):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
    return 0


if __name__ == "__main__":
    sys.exit(main())
