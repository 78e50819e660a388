"""Frame sources: camera index or /dev/video*, video file, image folder or glob, RTSP/HTTP URL,
GStreamer pipeline.

Live sources (camera, URL, GStreamer) are read by a capture thread that keeps only the newest frame:
the loop always segments the freshest image and drops stale ones (counted) rather than queueing
latency. Files are read frame by frame with no drops, so a run over a file is reproducible.

A source that cannot be read fails with one line that names it, within seconds: OpenCV's
own warnings are held back (:mod:`edge_demo.quiet`, unless ``--verbose``), and a stream is
opened with FFmpeg's open and read timeouts, which otherwise wait 30 s on a server that accepts
the connection and never answers.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import logging
import queue
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from edge_demo import DemoError, DemoFileNotFoundError, images
from edge_demo.images import IMAGE_SUFFIXES
from edge_demo.quiet import native_output_held

log = logging.getLogger(__name__)

RECONNECT_BACKOFF_S = 0.5
# How long a stream may take to open, or to deliver a frame, before it counts as down: long
# enough for an RTSP camera over Wi-Fi to answer, short enough that a dead one is not a hang.
DEFAULT_TIMEOUT_S = 5.0
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class FrameSource(Protocol):
    name: str
    fps: float | None  # the source's nominal rate, if it reports one
    dropped: int  # stale frames a live source skipped
    end_reason: str | None  # why a live source gave up, if it did

    def read(self) -> np.ndarray | None:
        """The next BGR frame, or None when the source has ended."""

    def close(self) -> None: ...


def source_kind(spec: str) -> str:
    """How ``--source`` is read: camera, gstreamer, url, images or video."""
    if spec.isdigit() or spec.startswith("/dev/video"):
        return "camera"
    if "!" in spec:  # gst-launch syntax: elements joined by '!'
        return "gstreamer"
    if _URL.match(spec):
        return "url"
    path = Path(spec)
    if path.is_dir() or glob.has_magic(spec):
        return "images"
    if path.is_file():
        return "images" if path.suffix.lower() in IMAGE_SUFFIXES else "video"
    raise DemoFileNotFoundError(
        f"--source {spec}: not a camera index, file, folder, glob, URL or GStreamer pipeline "
        "(no such file or folder)"
    )


def image_paths(spec: str) -> list[Path]:
    """Image files of a folder, glob or single file, in name order."""
    path = Path(spec)
    if path.is_dir():
        paths = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    else:
        paths = [Path(p) for p in glob.glob(spec)]
    return sorted(p for p in paths if p.is_file())


class ImageSource:
    """Images of a folder or glob, one frame each; unreadable files (corrupt, truncated, over the
    pixel cap) are skipped with a warning."""

    fps = None
    dropped = 0
    end_reason = None

    def __init__(self, spec: str) -> None:
        self.name = spec
        paths = image_paths(spec)
        if not paths:
            raise DemoError(f"--source {spec}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self._paths = iter(paths)

    def read(self) -> np.ndarray | None:
        for path in self._paths:
            try:
                return images.read(path)
            except (images.ImageError, FileNotFoundError) as e:
                log.warning("skipping %s", e)
        return None

    def close(self) -> None:
        pass


class VideoFileSource:
    """A video file, every frame in order."""

    dropped = 0
    end_reason = None

    def __init__(self, path: str, verbose: bool = False) -> None:
        self.name = path
        with native_output_held(verbose):
            self._cap = cv2.VideoCapture(path)
        if not self._cap.isOpened():
            raise DemoError(f"--source {path}: OpenCV cannot open it as a video")
        self.fps = self._cap.get(cv2.CAP_PROP_FPS) or None

    def read(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        return frame if ok else None

    def close(self) -> None:
        self._cap.release()


class LiveSource:
    """A camera or stream read in a background thread that keeps only the newest frame.

    When the capture stops delivering frames it is reopened up to ``reconnect`` times, waiting
    ``backoff_s * attempt`` before each try; after that the source ends and ``end_reason`` says why.
    """

    def __init__(
        self,
        open_capture: Callable[[], cv2.VideoCapture],
        name: str,
        reconnect: int = 3,
        backoff_s: float = RECONNECT_BACKOFF_S,
    ) -> None:
        self.name = name
        self.reconnect = reconnect
        self.backoff_s = backoff_s
        self.dropped = 0
        self.end_reason: str | None = None
        self._open = open_capture
        self._cap = open_capture()
        if not self._cap.isOpened():
            self._cap.release()
            raise DemoError(f"{name}: could not be opened")
        self.fps = self._cap.get(cv2.CAP_PROP_FPS) or None
        self._newest: np.ndarray | None = None
        self._ended = False
        self._closing = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._capture, name="capture", daemon=True)
        self._thread.start()

    def _capture(self) -> None:
        failures = 0
        while not self._closing:
            ok, frame = self._cap.read()
            if ok:
                failures = 0
                with self._cond:
                    self.dropped += self._newest is not None
                    self._newest = frame
                    self._cond.notify()
                continue
            if failures == self.reconnect:
                self.end_reason = f"{self.name}: no frames after {failures} reconnect attempts"
                break
            failures += 1
            log.warning("%s: no frame, reconnecting (%d/%d)", self.name, failures, self.reconnect)
            self._cap.release()
            time.sleep(self.backoff_s * failures)
            self._cap = self._open()
        self._cap.release()
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def read(self) -> np.ndarray | None:
        """The newest frame not yet returned; waits for one. None once the source has ended."""
        with self._cond:
            while self._newest is None and not self._ended:
                self._cond.wait()
            frame, self._newest = self._newest, None
        return frame

    def close(self) -> None:
        self._closing = True
        self._thread.join(timeout=2.0)


NO_GSTREAMER = (
    "this OpenCV has no GStreamer support (pip's opencv-python wheels do not): "
    "use the board's OpenCV, e.g. JetPack's python3-opencv"
)


def opencv_has_gstreamer() -> bool:
    """Whether this OpenCV was built with GStreamer (JetPack's is; pip's wheels are not)."""
    return re.search(r"^\s*GStreamer:\s*YES", cv2.getBuildInformation(), re.MULTILINE) is not None


def _open_hint(kind: str, spec: str, timeout_s: float) -> str:
    """Why a live source may have failed to open, for the error message."""
    if kind == "camera":
        return " (not connected, or in use by another program?)"
    if kind == "url":
        return f" (refused, or no answer within {timeout_s:g} s: check the URL and the stream)"
    if not opencv_has_gstreamer():
        return f"; {NO_GSTREAMER}"
    return "" if "appsink" in spec else "; the pipeline must end in appsink"


def stream_capture(url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> cv2.VideoCapture:
    """An FFmpeg capture of ``url`` that gives up after ``timeout_s`` to open or to read."""
    ms = max(1, round(1e3 * timeout_s))
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
    return cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)


def _held(opener: Callable[[], cv2.VideoCapture], verbose: bool):
    def open_quietly() -> cv2.VideoCapture:
        with native_output_held(verbose):
            return opener()

    return open_quietly


def open_source(
    spec: str,
    reconnect: int = 3,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    verbose: bool = False,
) -> FrameSource:
    """Open ``--source``: see :func:`source_kind` for what it accepts. ``timeout_s`` bounds a
    stream's open and each read; native libraries' messages are held back unless ``verbose``."""
    kind = source_kind(spec)
    if kind == "images":
        return ImageSource(spec)
    if kind == "video":
        return VideoFileSource(spec, verbose)
    if kind == "camera":
        device = int(spec) if spec.isdigit() else spec
        opener, name = functools.partial(cv2.VideoCapture, device), f"camera {spec}"
    elif kind == "gstreamer":
        opener = functools.partial(cv2.VideoCapture, spec, cv2.CAP_GSTREAMER)
        name = f"GStreamer pipeline {spec!r}"
    else:
        opener, name = functools.partial(stream_capture, spec, timeout_s), spec
    try:
        return LiveSource(_held(opener, verbose), name, reconnect)
    except DemoError as e:
        raise DemoError(f"{e}{_open_hint(kind, spec, timeout_s)}") from None


class ReadAhead:
    """Reads a file source one frame ahead in a thread, so that decoding the next frame overlaps
    the loop's work on this one; every frame comes, in order (a live source has its own thread).
    The time of each read goes to ``times_ms``; an error in the thread is raised by :meth:`read`.
    """

    def __init__(self, source: FrameSource, times_ms: list[float] | None = None) -> None:
        self.source = source
        self.times_ms = [] if times_ms is None else times_ms
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="read-ahead", daemon=True)
        self._thread.start()

    def __getattr__(self, name: str):  # name, fps, dropped, end_reason: the source's
        return getattr(self.source, name)

    def _run(self) -> None:
        item: np.ndarray | BaseException | None = np.empty(0)
        while item is not None and not isinstance(item, BaseException) and not self._stopping:
            start = time.perf_counter()
            try:
                item = self.source.read()
            except BaseException as e:  # handed to the loop's thread
                item = e
            self.times_ms.append(1e3 * (time.perf_counter() - start))
            self._queue.put(item)

    def read(self) -> np.ndarray | None:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def stop(self) -> None:
        """Stop reading ahead (the source stays open for its owner to close)."""
        self._stopping = True
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.01)  # unblock a pending put
        self._thread.join()
