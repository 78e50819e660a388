"""Outputs of the edge demo: video file, image folder, GStreamer pipeline, and the choice."""

import contextlib
import socket

import cv2
import numpy as np
import pytest

from edge_demo import DemoError
from edge_demo.sinks import FolderSink, GStreamerSink, VideoSink, open_sink
from edge_demo.sources import opencv_has_gstreamer


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


GST_NO = "  Video I/O:\n    GStreamer:                   NO\n"
GST_YES = "  Video I/O:\n    GStreamer:                   YES (1.16.3)\n"


def test_gstreamer_detection_reads_the_build_information(monkeypatch):
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: GST_YES)
    assert opencv_has_gstreamer()
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: GST_NO)
    assert not opencv_has_gstreamer()


def test_gstreamer_output_errors_are_one_clear_line(monkeypatch):
    pipeline = "appsrc ! videoconvert ! x264enc tune=zerolatency ! rtph264pay ! udpsink port=5000"
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: GST_NO)  # as pip's wheels
    with pytest.raises(DemoError, match=r"--output 'appsrc ! .*no GStreamer support.*JetPack"):
        open_sink(pipeline, 30.0)
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: GST_YES)
    with pytest.raises(DemoError, match="a GStreamer output pipeline must start with appsrc"):
        open_sink("videotestsrc ! autovideosink", 30.0)
    sink = open_sink("appsrc ! no_such_element_x ! fakesink", 30.0)
    assert isinstance(sink, GStreamerSink)
    with pytest.raises(DemoError, match="GStreamer could not start the pipeline"):
        sink.write(np.zeros((48, 64, 3), np.uint8))  # opened on the first frame, at its size


@pytest.mark.skipif(
    not opencv_has_gstreamer(),
    reason="this OpenCV has no GStreamer (pip's wheels); runs with JetPack's or Debian's "
    "python3-opencv",
)
def test_gstreamer_output_streams_rtp_over_udp():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(2.0)
        port = receiver.getsockname()[1]
        sink = open_sink(
            "appsrc ! videoconvert ! video/x-raw,format=I420 ! jpegenc ! rtpjpegpay ! "
            f"udpsink host=127.0.0.1 port={port}",
            10.0,
        )
        for i in range(5):
            sink.write(np.full((120, 160, 3), 40 * i, np.uint8))
        sink.close()
        packets = []
        with contextlib.suppress(TimeoutError):
            while True:
                packets.append(receiver.recv(65536))
    # RTP version 2, payload type 26 (JPEG, RFC 2435); the marker bit ends each frame
    assert packets and all(p[0] >> 6 == 2 and p[1] & 0x7F == 26 for p in packets)
    assert sum(p[1] >> 7 for p in packets) == 5
