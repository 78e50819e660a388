"""Frame sources: kinds of --source, files frame by frame, live sources' newest frame, reconnect."""

import logging

import numpy as np
import pytest

from edge_demo import DemoError, DemoFileNotFoundError
from edge_demo.sources import (
    ImageSource,
    LiveSource,
    VideoFileSource,
    image_paths,
    open_source,
    source_kind,
)


def test_source_kind(clip, image_dir):
    assert source_kind("0") == "camera"
    assert source_kind("/dev/video1") == "camera"
    assert source_kind("rtsp://192.168.1.10:554/stream") == "url"
    assert source_kind("http://cam.local/video.mjpg") == "url"
    assert source_kind("v4l2src device=/dev/video0 ! videoconvert ! appsink") == "gstreamer"
    assert source_kind(str(image_dir)) == "images"
    assert source_kind(str(image_dir / "*.png")) == "images"
    assert source_kind(str(image_dir / "000.png")) == "images"
    assert source_kind(str(clip)) == "video"
    with pytest.raises(DemoFileNotFoundError, match="--source nope.mp4: .*no such file"):
        source_kind("nope.mp4")


def test_image_folder_and_glob_in_name_order(image_dir):
    names = [p.name for p in image_paths(str(image_dir))]
    assert names == ["000.png", "001.png", "002.png", "003.png", "004.png"]  # not notes.txt
    assert [p.name for p in image_paths(str(image_dir / "00[13].png"))] == ["001.png", "003.png"]


def _read_all(source):
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    source.close()
    return frames


def test_image_source_skips_unreadable_images(image_dir, tmp_path, caplog, clip_frames):
    for i in (0, 2):
        (tmp_path / f"{i}.png").write_bytes((image_dir / f"00{i}.png").read_bytes())
    (tmp_path / "1.png").write_bytes(b"not a png")
    with caplog.at_level(logging.WARNING):
        frames = _read_all(ImageSource(str(tmp_path)))
    assert len(frames) == 2
    np.testing.assert_array_equal(frames[1], clip_frames[2])  # PNG is lossless
    assert "skipping" in caplog.text and "1.png" in caplog.text
    with pytest.raises(DemoError, match="no images"):
        ImageSource(str(tmp_path / "*.jpg"))


def test_video_file_is_read_frame_by_frame(clip):
    source = VideoFileSource(str(clip))
    assert source.fps == pytest.approx(10.0)
    frames = _read_all(source)
    assert len(frames) == 12 and frames[0].shape == (120, 160, 3)
    assert source.dropped == 0


class FakeCapture:
    """Stands in for cv2.VideoCapture: yields the given frames, then fails like a lost camera."""

    def __init__(self, frames=(), opened=True):
        self.frames = list(frames)
        self.opened = opened

    def isOpened(self):  # noqa: N802 (OpenCV's name)
        return self.opened

    def read(self):
        return (True, self.frames.pop(0)) if self.opened and self.frames else (False, None)

    def get(self, prop):
        return 25.0

    def release(self):
        self.opened = False


def _opener(*captures):
    """An open_capture callable returning ``captures`` in turn, then captures that fail to open."""
    queue = list(captures)
    calls = []

    def open_capture():
        calls.append(1)
        return queue.pop(0) if queue else FakeCapture(opened=False)

    return open_capture, calls


def _numbered(start, stop):
    return [np.full((2, 2, 3), i, np.uint8) for i in range(start, stop)]


def test_live_source_keeps_only_the_newest_frame():
    opener, _ = _opener(FakeCapture(_numbered(0, 50)))
    source = LiveSource(opener, "fake camera", reconnect=0, backoff_s=0)
    source._thread.join(timeout=5)  # let the capture thread run ahead of a slow consumer
    frames = _read_all(source)
    assert [int(f[0, 0, 0]) for f in frames] == [49]
    assert source.dropped == 49
    assert source.end_reason == "fake camera: no frames after 0 reconnect attempts"


def test_live_source_reconnects_then_gives_up():
    opener, calls = _opener(
        FakeCapture(_numbered(0, 5)), FakeCapture(opened=False), FakeCapture(_numbered(5, 10))
    )
    source = LiveSource(opener, "fake camera", reconnect=2, backoff_s=0)
    values = [int(f[0, 0, 0]) for f in _read_all(source)]
    assert values == sorted(set(values)) and values[-1] == 9  # newer frames only, none twice
    # first open, a failed reopen, a good reopen (resets the count), then two failed reopens
    assert len(calls) == 5
    assert source.end_reason == "fake camera: no frames after 2 reconnect attempts"
    assert source.fps == 25.0


def test_live_sources_that_cannot_open_are_clear_errors():
    opener, _ = _opener(FakeCapture(opened=False))
    with pytest.raises(DemoError, match="fake: could not be opened"):
        LiveSource(opener, "fake")
    with pytest.raises(DemoError, match="camera 97: could not be opened .*not connected"):
        open_source("97")
    with pytest.raises(DemoError, match="GStreamer pipeline 'nosuchelement ! appsink': could not"):
        open_source("nosuchelement ! appsink")
    with pytest.raises(DemoError, match="http://127.0.0.1:1/x.mjpg: could not be opened .*URL"):
        open_source("http://127.0.0.1:1/x.mjpg")
