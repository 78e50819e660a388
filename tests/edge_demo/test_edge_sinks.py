"""Outputs of the edge demo: video file, image folder, and the choice between them."""

import cv2
import numpy as np
import pytest

from edge_demo import DemoError
from edge_demo.sinks import FolderSink, VideoSink, open_sink


def test_open_sink_picks_video_or_folder(tmp_path):
    assert isinstance(open_sink(str(tmp_path / "out.mp4"), 10.0), VideoSink)
    assert isinstance(open_sink(str(tmp_path / "AVI.AVI"), 10.0), VideoSink)
    assert isinstance(open_sink(f"{tmp_path / 'frames'}/", 10.0), FolderSink)
    assert isinstance(open_sink(str(tmp_path / "frames2"), 10.0), FolderSink)
    assert (tmp_path / "frames2").is_dir()
    with pytest.raises(DemoError, match=r"--output .*out.txt: use a video file"):
        open_sink(str(tmp_path / "out.txt"), 10.0)


def test_video_sink_scales_frames_of_another_size(tmp_path):
    sink = VideoSink(tmp_path / "mixed.mp4", fps=5.0)
    for shape in [(64, 96, 3), (32, 48, 3), (64, 96, 3), (100, 80, 3)]:
        sink.write(np.full(shape, 128, np.uint8))
    sink.close()
    cap = cv2.VideoCapture(str(tmp_path / "mixed.mp4"))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(5.0)
    shapes = []
    while (frame := cap.read()[1]) is not None:
        shapes.append(frame.shape)
    assert shapes == [(64, 96, 3)] * 4  # none silently dropped


def test_folder_sink_numbers_frames(tmp_path):
    sink = FolderSink(tmp_path / "out", image_format="png")
    frames = [np.full((4, 6, 3), v, np.uint8) for v in (10, 20, 30)]
    for frame in frames:
        sink.write(frame)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["frame_000000.png", "frame_000001.png", "frame_000002.png"]
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "out" / names[2])), frames[2])
