"""Where annotated frames go: a video file (mp4v), a folder of images, a GStreamer pipeline
(RTP, RTSP, ... on boards whose OpenCV has GStreamer), or a window."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from edge_demo import DemoError
from edge_demo.sources import NO_GSTREAMER, opencv_has_gstreamer

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov"})
IMAGE_FORMATS = ("jpg", "png")


class FrameSink(Protocol):
    def write(self, frame: np.ndarray) -> None: ...

    def close(self) -> None: ...


def make_parent(path: Path, option: str) -> Path:
    """``path`` once its folder exists: checked when the demo starts, so that an unwritable
    ``--output`` or ``--json`` is one line before the loop runs, not a lost run after it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DemoError(f"{option} {path}: cannot create its folder: {e.strerror or e}") from None
    if not path.parent.is_dir() or path.is_dir():
        raise DemoError(f"{option} {path}: not a file path in a folder")
    return path


class VideoSink:
    """An mp4v video, opened on the first frame: its size is the view's, not the source's.

    Later frames of another size (an image folder of mixed sizes) are scaled to it, since a
    VideoWriter silently drops frames that do not match.
    """

    def __init__(self, path: Path, fps: float) -> None:
        self.path = make_parent(path, "--output") if path != Path() else path
        self.fps = fps
        self.size: tuple[int, int] | None = None  # (width, height) of the video
        self._writer: cv2.VideoWriter | None = None

    def _open(self, size: tuple[int, int]) -> cv2.VideoWriter:
        writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, size)
        if not writer.isOpened():
            raise DemoError(f"--output {self.path}: OpenCV cannot write an mp4v video there")
        return writer

    def write(self, frame: np.ndarray) -> None:
        size = (frame.shape[1], frame.shape[0])
        if self._writer is None:
            self._writer = self._open(size)
            self.size = size
        if size != self.size:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(frame)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()


class GStreamerSink(VideoSink):
    """Frames pushed into a GStreamer pipeline that starts with ``appsrc`` (BGR frames), e.g.
    ``appsrc ! videoconvert ! x264enc tune=zerolatency ! rtph264pay ! udpsink host=H port=P``.
    Needs an OpenCV built with GStreamer (JetPack's); pip's wheels have none."""

    def __init__(self, pipeline: str, fps: float) -> None:
        if not opencv_has_gstreamer():
            raise DemoError(f"--output {pipeline!r}: {NO_GSTREAMER}")
        if not pipeline.lstrip().startswith("appsrc"):
            raise DemoError(
                f"--output {pipeline!r}: a GStreamer output pipeline must start with appsrc"
            )
        super().__init__(Path(), fps)  # no file: the pipeline is the target
        self.pipeline = pipeline

    def _open(self, size: tuple[int, int]) -> cv2.VideoWriter:
        writer = cv2.VideoWriter(self.pipeline, cv2.CAP_GSTREAMER, 0, self.fps, size, True)
        if not writer.isOpened():
            raise DemoError(
                f"--output {self.pipeline!r}: GStreamer could not start the pipeline (a missing "
                "element or plugin? try it with gst-launch-1.0, videotestsrc instead of appsrc)"
            )
        return writer


class FolderSink:
    """Numbered images ``frame_000000.jpg``, ... in a folder."""

    def __init__(self, folder: Path, image_format: str = "jpg") -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DemoError(
                f"--output {folder}: cannot create the folder: {e.strerror or e}"
            ) from None
        self.folder = folder
        self.image_format = image_format
        self.count = 0

    def write(self, frame: np.ndarray) -> None:
        path = self.folder / f"frame_{self.count:06d}.{self.image_format}"
        if not cv2.imwrite(str(path), frame):
            raise DemoError(f"--output {self.folder}: could not write {path.name}")
        self.count += 1

    def close(self) -> None:
        pass


def open_sink(output: str, fps: float, image_format: str = "jpg") -> FrameSink:
    """A GStreamer pipeline (elements joined by '!'), a video file for ``.mp4/.avi/.mkv/.mov``,
    otherwise a folder of images."""
    if "!" in output:
        return GStreamerSink(output, fps)
    path = Path(output)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return VideoSink(path, fps)
    if path.suffix and not path.is_dir() and not output.endswith(("/", "\\")):
        raise DemoError(
            f"--output {output}: use a video file ({', '.join(sorted(VIDEO_SUFFIXES))}) "
            "or a folder for images"
        )
    return FolderSink(path, image_format)


class Window:
    """An OpenCV window; :meth:`show` returns False when the user presses ESC/q or closes it."""

    def __init__(self, title: str = "segnet edge demo") -> None:
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE)
        except cv2.error:
            raise DemoError(
                "cannot open a window: no display, or this OpenCV has no GUI support "
                "(opencv-python-headless); use --headless --output out.mp4"
            ) from None

    def show(self, frame: np.ndarray) -> bool:
        cv2.imshow(self.title, frame)
        key = cv2.waitKey(1) & 0xFF
        return (
            key not in (27, ord("q"))
            and cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1
        )

    def close(self) -> None:
        cv2.destroyWindow(self.title)


class ThreadedSink:
    """Writes to ``sink`` in a background thread with a one-frame queue.

    Encoding and disk writes overlap the next frame's capture and inference; a writer that falls
    behind holds the loop back by at most one frame instead of piling frames up in memory. The
    time of each write goes to ``times_ms``; an error in the thread is raised by the next
    :meth:`write` or by :meth:`finish`.
    """

    def __init__(self, sink: FrameSink, times_ms: list[float] | None = None) -> None:
        self.sink = sink
        self.times_ms = [] if times_ms is None else times_ms
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (frame := self._queue.get()) is not None:
            if self._error is not None:
                continue  # keep draining so that the loop never blocks on a dead writer
            start = time.perf_counter()
            try:
                self.sink.write(frame)
            except BaseException as e:  # handed to the loop's thread
                self._error = e
            self.times_ms.append(1e3 * (time.perf_counter() - start))

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def write(self, frame: np.ndarray) -> None:
        self._raise()
        self._queue.put(frame)

    def finish(self) -> None:
        """Write what is queued and stop the thread (the wrapped sink stays open)."""
        self._queue.put(None)
        self._thread.join()
        self._raise()
