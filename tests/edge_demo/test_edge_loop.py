"""The loop's own work: argmax, preprocessing into the input tensor, the writer thread, fresh
output images, and the share of wall time spent outside inference."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edge_demo import DemoError
from edge_demo.camera import STAGES, outside_inference
from edge_demo.contract import class_map, input_lut, preprocess
from edge_demo.render import Renderer
from edge_demo.sinks import ThreadedSink
from edge_demo.sources import ReadAhead


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.float32])
def test_class_map_is_argmax_with_the_first_class_on_ties(dtype):
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, (37, 53, 11)).astype(dtype)  # four levels: ties everywhere
    np.testing.assert_array_equal(class_map(scores), np.argmax(scores, -1))
    assert class_map(scores).dtype == np.uint8
    tied = np.zeros((1, 2, 3), dtype)
    tied[0, 1] = [5, 7, 7]
    np.testing.assert_array_equal(class_map(tied), [[0, 1]])
    many = rng.normal(size=(3, 4, 256)).astype(np.float32)  # class ids up to 255 fit uint8
    np.testing.assert_array_equal(class_map(many), np.argmax(many, -1))
    with pytest.raises(DemoError, match="257 classes"):
        class_map(np.zeros((1, 1, 257), np.float32))


def test_preprocess_writes_into_the_input_tensor():
    frame = np.zeros((4, 6, 3), np.uint8)
    frame[..., 0], frame[..., 2] = 10, 250  # B, R
    tensor = np.full((1, 2, 3, 3), 99, np.int8)
    out = preprocess(frame, (2, 3), input_lut(np.int8, 1.0, -128), out=tensor)
    assert out is tensor
    np.testing.assert_array_equal(tensor[0, ..., 0], 250 - 128)  # RGB order, pixel - 128
    np.testing.assert_array_equal(tensor[0, ..., 2], 10 - 128)
    floats = np.zeros((1, 2, 3, 3), np.float32)
    preprocess(frame, (2, 3), None, out=floats)
    np.testing.assert_array_equal(floats[0, 0, 0], [250.0, 0.0, 10.0])


class SlowSink:
    def __init__(self, fail_at: int | None = None):
        self.frames: list[int] = []
        self.fail_at = fail_at
        self.thread: str | None = None

    def write(self, frame):
        self.thread = threading.current_thread().name
        time.sleep(0.005)
        if len(self.frames) == self.fail_at:
            raise DemoError("--output: disk full")
        self.frames.append(int(frame[0]))

    def close(self):
        pass


def test_threaded_sink_writes_every_frame_in_order_off_the_loop_thread():
    sink, times = SlowSink(), []
    writer = ThreadedSink(sink, times)
    for i in range(20):
        writer.write(np.array([i]))
    writer.finish()
    assert sink.frames == list(range(20))
    assert sink.thread == "writer" and len(times) == 20 and min(times) >= 5.0


def test_threaded_sink_hands_errors_to_the_loop():
    writer = ThreadedSink(SlowSink(fail_at=2))
    with pytest.raises(DemoError, match="disk full"):
        for i in range(10):
            writer.write(np.array([i]))
        writer.finish()


class CountingSource:
    name, fps, dropped, end_reason = "count", None, 0, None

    def __init__(self, n: int, error: BaseException | None = None):
        self.n, self.error, self.i = n, error, 0
        self.thread: str | None = None

    def read(self):
        self.thread = threading.current_thread().name
        if self.i == self.n:
            if self.error is not None:
                raise self.error
            return None
        self.i += 1
        return np.array([self.i - 1])


def test_read_ahead_gives_every_frame_in_order_from_its_thread():
    times = []
    reader = ReadAhead(CountingSource(30), times)
    frames = []
    while (frame := reader.read()) is not None:
        frames.append(int(frame[0]))
    reader.stop()
    assert frames == list(range(30)) and reader.name == "count"
    assert reader.source.thread == "read-ahead" and len(times) == 31  # 30 frames and the end


def test_read_ahead_raises_in_the_loop_and_stops_midway():
    reader = ReadAhead(CountingSource(2, KeyboardInterrupt()))
    assert [int(reader.read()[0]) for _ in range(2)] == [0, 1]
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C during a read reaches the loop
        reader.read()
    reader.stop()
    busy = ReadAhead(CountingSource(1000))
    busy.read()
    busy.stop()  # while the thread waits to hand over the next frame
    assert busy.source.i < 1000


@pytest.mark.parametrize("view", ["overlay", "mask", "side"])
def test_each_frame_gets_its_own_image(view):
    """The writer thread may still hold the previous image while the next one is drawn."""
    renderer = Renderer(("a", "b"), ((255, 0, 0), (0, 0, 255)), view=view, legend="none")
    frame = np.full((8, 8, 3), 50, np.uint8)
    first = renderer.render(frame, np.zeros((4, 4), np.uint8))
    kept = first.copy()
    second = renderer.render(frame, np.ones((4, 4), np.uint8))
    assert not np.shares_memory(first, second)
    np.testing.assert_array_equal(first, kept)
    assert not np.array_equal(first, second)


def test_outside_inference_is_the_wall_time_share_without_inference():
    times = np.zeros((4, len(STAGES)))
    times[:, STAGES.index("inference")] = 15.0  # 60 ms of inference in a 100 ms run
    times[:, STAGES.index("postprocess")] = 10.0
    assert outside_inference(times, 0.1) == pytest.approx(0.4)
    assert outside_inference(times[:0], 0.0) == 0.0
