r"""Real-time SegNet segmentation of a camera, stream, video or image folder, on the board.

Examples:
    # USB camera in a window, with the default int8 model
    python edge_demo/camera.py --source 0
    # a video file to an annotated video, frame and mask side by side
    python edge_demo/camera.py --source clip.mp4 --headless --output out.mp4 --view side
    # Bayesian SegNet: classes and uncertainty side by side (segnet-tf export --mc-samples N)
    python edge_demo/camera.py --model exported/ --view uncertainty
    # Coral Edge TPU: the folder of `segnet-tf export --target edgetpu --out coral`
    python edge_demo/camera.py --edgetpu --model coral/
    # a model folder fetched as one file, its SHA-256 checked (segnet-tf export --bundle)
    python edge_demo/camera.py --model segnet-lite-camvid.tar.gz --source clip.mp4 --headless
    # Jetson GPU: model.onnx on ONNX Runtime (TensorRT FP16, else CUDA), engines cached on disk
    python edge_demo/camera.py --model exported/model.onnx --source 0
    # Jetson CSI camera through GStreamer
    python edge_demo/camera.py --source "nvarguscamerasrc ! nvvidconv ! \
        video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1"
    # no screen on the rig: watch it, and segment pictures, at http://BOARD:8080/?token=s3cret
    EDGE_DEMO_TOKEN=s3cret python edge_demo/camera.py --headless --serve 0.0.0.0:8080
    # RTP/H.264 to a laptop (needs an OpenCV built with GStreamer, e.g. JetPack's)
    python edge_demo/camera.py --headless --output "appsrc ! videoconvert ! \
        x264enc tune=zerolatency ! rtph264pay config-interval=1 ! udpsink host=LAPTOP port=5000"

Imports only numpy, OpenCV and a TFLite runtime (or ONNX Runtime for a .onnx model), never
TensorFlow: it runs where only ``ai-edge-litert`` (or Coral's ``tflite-runtime``) is installed;
``pip install ./edge_demo`` installs it as the ``segnet-edge`` command.
Each frame goes through five timed stages: capture, preprocess (resize, BGR->RGB, quantise),
inference, postprocess (optional score smoothing, argmax, colours, legend, HUD) and output
(write/show). The writer runs in a thread and a video file or image folder is read one frame
ahead in another (a live source has its capture thread), overlapping inference. ESC or q closes
the window; Ctrl-C stops cleanly; either way a summary (frames, FPS, p50/p95 per stage, the share
of wall time spent outside inference) is printed.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as `python edge_demo/camera.py`: make `edge_demo` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_demo import DemoError
from edge_demo.bundle import is_bundle, unpack_bundle
from edge_demo.contract import (
    CPU_ORDER,
    EDGETPU_ORDER,
    GPU_DELEGATE_ORDER,
    LABELS_FILE,
    MC_ORDER,
    MODEL_FILES,
    SegModel,
    class_map,
    smooth_scores,
)
from edge_demo.onnx_backend import PROVIDER_CHOICES
from edge_demo.render import LEGENDS, VIEWS, Renderer
from edge_demo.runtime import DEFAULT_MODEL_DIR, load_model
from edge_demo.server import (
    UPLOAD_VIEWS,
    FramePublisher,
    SharedModel,
    WebView,
    parse_address,
    remote_bind_warning,
)
from edge_demo.sinks import (
    IMAGE_FORMATS,
    FrameSink,
    ThreadedSink,
    Window,
    make_parent,
    open_sink,
)
from edge_demo.sources import (
    DEFAULT_TIMEOUT_S,
    FrameSource,
    ImageSource,
    ReadAhead,
    VideoFileSource,
    open_source,
)
from edge_demo.uncertainty import check_monte_carlo, monte_carlo_model_path, normalised_entropy

log = logging.getLogger("edge_demo")

STAGES = ("capture", "preprocess", "inference", "postprocess", "output")
HUD_EMA = 0.1  # HUD numbers are smoothed so they can be read; the summary uses the raw times
DEFAULT_OUTPUT_FPS = 30.0


def resolve_classes(values: Sequence[str], class_names: Sequence[str]) -> list[int]:
    """Class ids for ``--ignore-class`` values, each a class name (any case) or an id."""
    lower = [n.lower() for n in class_names]
    ids = []
    for value in values:
        if value.isdigit() and int(value) < len(class_names):
            ids.append(int(value))
        elif value.lower() in lower:
            ids.append(lower.index(value.lower()))
        else:
            raise DemoError(
                f"--ignore-class {value}: not a class id 0..{len(class_names) - 1} or one of "
                f"{', '.join(class_names)}"
            )
    return ids


def percentile_stats(values_ms: np.ndarray) -> dict[str, float]:
    """Mean, median and 95th percentile: the tail is what a real-time loop is judged by."""
    if len(values_ms) == 0:
        return {"mean": 0.0, "p50": 0.0, "p95": 0.0}
    p50, p95 = np.percentile(values_ms, [50, 95])
    return {"mean": float(np.mean(values_ms)), "p50": float(p50), "p95": float(p95)}


def hud_lines(stage_ms: np.ndarray, precision: str) -> list[str]:
    """FPS (from the total frame time) and the model-side stage times, for the frame's corner."""
    capture, pre, infer, post, _ = stage_ms
    total = stage_ms.sum()
    return [
        f"{1e3 / total if total > 0 else 0.0:.1f} FPS  {precision}",
        f"capture {capture:.1f} ms",
        f"pre {pre:.1f} ms",
        f"infer {infer:.1f} ms",
        f"post {post:.1f} ms",
    ]


def camera_loop(
    source: FrameSource,
    model: SegModel,
    renderer: Renderer,
    sink: FrameSink | None = None,
    window: Window | None = None,
    max_frames: int | None = None,
    smooth: float = 1.0,
    publisher: FramePublisher | None = None,
    thread_ms: dict[str, list[float]] | None = None,
) -> tuple[np.ndarray, float, str]:
    """Segment frames until the source ends, ``max_frames``, the window closes or Ctrl-C.

    Returns ``(times, seconds, stopped_by)``: ``times`` is ``[frames, len(STAGES)]`` milliseconds.
    ``sink`` is written in a thread (the output stage is the hand-over) and a file source is read
    one frame ahead in another (the capture stage is the wait for it), both overlapping inference;
    the time of each of their calls goes to ``thread_ms["writer"]`` and ``thread_ms["reader"]``.
    ``seconds`` includes writing the last frame.
    """
    thread_ms = {"reader": [], "writer": []} if thread_ms is None else thread_ms
    rows: list[tuple[float, ...]] = []  # one append per frame, so Ctrl-C never leaves half a row
    hud_ms = np.zeros(len(STAGES))
    scores = None
    stopped_by = "max-frames"
    start = time.perf_counter()
    if publisher is not None:
        publisher.track(rows, start)
    sink = None if sink is None else ThreadedSink(sink, thread_ms.setdefault("writer", []))
    if isinstance(source, (VideoFileSource, ImageSource)):
        source = ReadAhead(source, thread_ms.setdefault("reader", []))
    try:
        while max_frames is None or len(rows) < max_frames:
            t0 = time.perf_counter()
            frame = source.read()
            if frame is None:
                stopped_by = "end of source"
                break
            t1 = time.perf_counter()
            x = model.preprocess(frame)
            t2 = time.perf_counter()
            raw = model.infer(x)
            t3 = time.perf_counter()
            if smooth > 1:
                scores = smooth_scores(scores, model.scores(raw), smooth)
                classes = class_map(scores)
            else:
                classes = class_map(raw)  # argmax of raw int8 scores: no dequantisation needed
            uncertainty = None
            if renderer.view == "uncertainty":  # a Monte Carlo model's mean probabilities
                uncertainty = normalised_entropy(scores if smooth > 1 else model.scores(raw))
            out = renderer.render(frame, classes, hud_lines(hud_ms, model.precision), uncertainty)
            t4 = time.perf_counter()
            if sink is not None:
                sink.write(out)
            keep_going = window is None or window.show(out)
            t5 = time.perf_counter()
            row = np.diff([t0, t1, t2, t3, t4, t5]) * 1e3
            rows.append(tuple(row))
            if publisher is not None:
                publisher.publish(out, classes)
            hud_ms = row if len(rows) == 1 else hud_ms + HUD_EMA * (row - hud_ms)
            if not keep_going:
                stopped_by = "window closed"
                break
    except KeyboardInterrupt:
        stopped_by = "interrupted"
    finally:
        if isinstance(source, ReadAhead):
            source.stop()
        if sink is not None:
            sink.finish()  # the frames still queued are written, errors raised
    seconds = time.perf_counter() - start
    return stage_times(rows), seconds, stopped_by


def stage_times(rows: Sequence[tuple[float, ...]]) -> np.ndarray:
    """``[frames, len(STAGES)]`` milliseconds of the loop's per-frame rows."""
    return np.array(rows, dtype=np.float64).reshape(-1, len(STAGES))


def summarise(
    times: np.ndarray,
    seconds: float,
    stopped_by: str | None,
    dropped: int,
    info: dict,
    thread_ms: dict[str, list[float]] | None = None,
) -> dict:
    """The run's summary (``--json``, ``/stats``); ``stopped_by`` is None while it runs."""
    return {
        "frames": len(times),
        "seconds": seconds,
        "fps": len(times) / seconds if seconds > 0 else 0.0,
        "stages_ms": {stage: percentile_stats(times[:, i]) for i, stage in enumerate(STAGES)},
        "threads_ms": {
            name: percentile_stats(np.array(ms)) for name, ms in (thread_ms or {}).items()
        },
        "outside_inference": outside_inference(times, seconds),
        "dropped_frames": dropped,
        "stopped_by": stopped_by,
        **info,
    }


def start_web_view(
    args: argparse.Namespace,
    model: SegModel,
    make_renderer: Callable[..., Renderer],
    source: FrameSource,
    info: dict,
) -> WebView:
    """The ``--serve`` server; its ``model`` is ``model`` shared between the loop and uploads."""
    renderers = {view: make_renderer(view=view) for view in UPLOAD_VIEWS}
    labels = model.labels
    publisher = FramePublisher(labels.class_names, labels.colours, renderers["overlay"].ignored)

    def running_summary() -> dict:
        rows, seconds = publisher.progress()
        return summarise(stage_times(rows), seconds, None, source.dropped, info)

    if warning := remote_bind_warning(args.serve[0], args.token):
        log.warning(warning)
    server = WebView(
        args.serve,
        publisher,
        SharedModel(model),
        renderers,
        running_summary,
        token=args.token,
        max_upload_bytes=int(args.max_upload_mb * 1e6),
    )
    log.info("serving %s (live view /stream.mjpg, /stats, POST /segment)", server.url)
    return server


def run(args: argparse.Namespace) -> dict:
    """Run the demo with parsed CLI ``args``; return the summary (also written to ``--json``)."""
    if args.json:
        make_parent(Path(args.json), "--json")
    uncertain = args.view == "uncertainty"
    model_arg = args.model
    if model_arg is not None and is_bundle(model_arg):
        model_arg = unpack_bundle(model_arg, args.bundle_sha256)
    path = monte_carlo_model_path(model_arg) if uncertain else model_arg
    model = load_model(
        path,
        args.labels,
        args.threads,
        args.edgetpu,
        args.delegate,
        args.provider,
        args.engine_cache,
        args.verbose,
    )
    samples = check_monte_carlo(model) if uncertain else None
    labels = model.labels
    make_renderer = functools.partial(
        Renderer,
        labels.class_names,
        labels.colours,
        alpha=args.alpha,
        ignored=resolve_classes(args.ignore_class, labels.class_names),
        legend=args.legend,
    )
    renderer = make_renderer(view=args.view)
    source = open_source(args.source, args.reconnect, args.timeout, args.verbose)
    log.info(
        "model %s (%s, input %dx%d, %d classes%s) on %s, %s; source %s",
        model.path, model.precision, *model.input_size, model.num_classes,
        f", {samples} Monte Carlo samples a frame" if samples else "", model.runtime,
        model.device, source.name,
    )  # fmt: skip
    info = {
        "model": str(model.path),
        "precision": model.precision,
        "runtime": model.runtime,
        "device": model.device,
        "source": source.name,
        "view": args.view,
        "output": args.output,
        "monte_carlo_samples": samples,
    }
    sink = window = server = None
    thread_ms: dict[str, list[float]] = {"reader": [], "writer": []}
    try:
        try:
            if args.output:
                fps = args.output_fps or source.fps or DEFAULT_OUTPUT_FPS
                sink = open_sink(args.output, fps, args.image_format)
            if not args.headless:
                window = Window()
            if args.serve:
                server = start_web_view(args, model, make_renderer, source, info)
                model = server.model  # the loop and the uploads take turns on the interpreter
            times, seconds, stopped_by = camera_loop(
                source, model, renderer, sink, window, args.max_frames, args.smooth,
                publisher=None if server is None else server.publisher, thread_ms=thread_ms,
            )  # fmt: skip
        finally:
            source.close()
            if sink is not None:
                sink.close()
            if window is not None:
                window.close()
        if source.end_reason:
            log.error("%s; stopping", source.end_reason)
            stopped_by = source.end_reason
        elif len(times) == 0 and stopped_by == "end of source":
            raise DemoError(f"--source {args.source}: no frame could be read")
        summary = summarise(times, seconds, stopped_by, source.dropped, info, thread_ms)
        if args.json:
            Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
        if server is not None and stopped_by not in ("interrupted", "window closed"):
            server.keep_serving(summary, args.serve_linger)  # the user did not stop it: linger
    finally:
        if server is not None:
            server.close()
    return summary


def outside_inference(times: np.ndarray, seconds: float) -> float:
    """The share of the loop's wall time not spent in inference: ``1 - inference / wall``.

    Work overlapped with inference (the writer thread, a live source's capture thread) costs
    nothing here; what the loop does in series with inference counts in full.
    """
    if seconds <= 0 or len(times) == 0:
        return 0.0
    return float(1.0 - times[:, STAGES.index("inference")].sum() / (1e3 * seconds))


def format_summary(summary: dict) -> str:
    lines = [
        f"{summary['frames']} frames in {summary['seconds']:.2f} s: {summary['fps']:.1f} FPS "
        f"({summary['precision']}, stopped by {summary['stopped_by']}"
        + (
            f", {summary['dropped_frames']} stale frames dropped)"
            if summary["dropped_frames"]
            else ")"
        ),
        f"{'stage':<12}{'mean ms':>9}{'p50 ms':>9}{'p95 ms':>9}",
    ]
    for stage, s in summary["stages_ms"].items():
        lines.append(f"{stage:<12}{s['mean']:>9.2f}{s['p50']:>9.2f}{s['p95']:>9.2f}")
    for name, s in summary["threads_ms"].items():
        if s["mean"] > 0:
            row = f"({name})"
            lines.append(f"{row:<12}{s['mean']:>9.2f}{s['p50']:>9.2f}{s['p95']:>9.2f}  in a thread")
    lines.append(f"outside inference: {100 * summary['outside_inference']:.1f}% of wall time")
    return "\n".join(lines)


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in 0..1, got {text}")
    return value


def _at_least(minimum: float, kind: type = int):
    def parse(text: str):
        value = kind(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value

    return parse


def _address(text: str) -> tuple[str, int]:
    try:
        return parse_address(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge_demo/camera.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        help=f"a .tflite or .onnx file, a folder with {' / '.join(CPU_ORDER)} (with --edgetpu "
        f"{' / '.join(EDGETPU_ORDER)}, {GPU_DELEGATE_ORDER[0]} first with a GPU --delegate, "
        f"{MODEL_FILES['onnx']} first when ONNX Runtime has a GPU provider), or a .tar.gz "
        f"bundle of one (segnet-tf export --bundle); default: "
        f"{DEFAULT_MODEL_DIR or 'none, pass one'}",
    )
    model.add_argument(
        "--bundle-sha256",
        metavar="HEX",
        help="the SHA-256 a --model .tar.gz must have (default: its .sha256 file beside it)",
    )
    model.add_argument("--labels", help=f"{LABELS_FILE} (default: the one beside the model)")
    model.add_argument("--threads", type=_at_least(1), default=os.cpu_count(), help="CPU threads")
    model.add_argument("--edgetpu", action="store_true", help="run on a Coral Edge TPU")
    model.add_argument("--delegate", help="external TFLite delegate .so (one you built)")
    model.add_argument(
        "--provider",
        choices=PROVIDER_CHOICES,
        default="auto",
        help="ONNX Runtime provider to start from, in the order tensorrt (FP16), cuda, cpu "
        "(default auto: the first the installed build has)",
    )
    model.add_argument(
        "--engine-cache",
        help="folder for TensorRT's built engines (default: trt_engines/ beside the model)",
    )

    io = parser.add_argument_group("input and output")
    io.add_argument(
        "--source",
        default="0",
        help="camera index or /dev/videoN, video file, image folder or glob, rtsp:// or http:// "
        "URL, or a GStreamer pipeline ending in appsink (default: 0)",
    )
    io.add_argument(
        "--reconnect", type=_at_least(0), default=3, help="reopen a lost live source N times"
    )
    io.add_argument(
        "--timeout",
        type=_at_least(0.1, float),
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help="give up on a stream that does not answer within this long, to open or between "
        f"frames (default {DEFAULT_TIMEOUT_S:g})",
    )
    io.add_argument("--headless", action="store_true", help="no window (use with --output)")
    io.add_argument(
        "--output",
        help="annotated video (.mp4, mp4v), a folder of images, or a GStreamer pipeline "
        "starting with appsrc (e.g. to an RTP/UDP or RTSP sink)",
    )
    io.add_argument("--image-format", choices=IMAGE_FORMATS, default="jpg", help="for a folder")
    io.add_argument(
        "--output-fps",
        type=_at_least(1e-3, float),
        help="video rate (default: the source's, or 30)",
    )
    io.add_argument("--max-frames", type=_at_least(1), help="stop after N frames")
    io.add_argument("--json", help="also write the summary to this JSON file")

    web = parser.add_argument_group("web view (a page, an MJPEG stream, stats, uploads)")
    web.add_argument(
        "--serve",
        type=_address,
        metavar="HOST:PORT",
        help="serve the web view, e.g. 127.0.0.1:8080 (port 0 picks a free one); binding "
        "another address (0.0.0.0) lets other machines in: use --token",
    )
    web.add_argument(
        "--token",
        default=os.environ.get("EDGE_DEMO_TOKEN"),
        help="require it (Authorization: Bearer TOKEN, or ?token=TOKEN in the page's URL); "
        "default: $EDGE_DEMO_TOKEN, which keeps it out of the process list",
    )
    web.add_argument(
        "--max-upload-mb",
        type=_at_least(0.001, float),
        default=10.0,
        help="largest picture POST /segment accepts (default 10)",
    )
    web.add_argument(
        "--serve-linger",
        type=_at_least(0.0, float),
        metavar="SECONDS",
        help="when the source ends, keep serving this long (default: until Ctrl-C)",
    )

    view = parser.add_argument_group("view")
    view.add_argument(
        "--view",
        choices=VIEWS,
        default="overlay",
        help="default: overlay; uncertainty: overlay and Bayesian SegNet's uncertainty side by "
        f"side, from a Monte Carlo model ({' / '.join(MC_ORDER)}: segnet-tf export "
        "--mc-samples N)",
    )
    view.add_argument("--alpha", type=_fraction, default=0.5, help="overlay opacity (default 0.5)")
    view.add_argument("--legend", choices=LEGENDS, default="present", help="classes to list")
    view.add_argument(
        "--ignore-class",
        action="append",
        default=[],
        metavar="NAME_OR_ID",
        help="leave this class uncoloured (repeatable)",
    )
    view.add_argument(
        "--smooth",
        type=_at_least(1.0, float),
        default=1.0,
        metavar="K",
        help="average class scores over about K frames (exponential; 1 = off)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show the runtimes' and OpenCV's own messages (held back by default) and debug logs",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="edge_demo: %(message)s"
    )
    try:
        summary = run(args)
    except DemoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a path the system refused (a full disk, a file removed meanwhile)
        print(
            f"error: {e.filename}: {e.strerror}" if e.filename else f"error: {e}", file=sys.stderr
        )
        return 1
    except KeyboardInterrupt:  # before the loop started: nothing to summarise
        return 130
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
