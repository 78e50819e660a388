"""A quiet, clear start: the runtimes' own lines held back unless --verbose, and a source that
cannot be read fails within seconds, in one line that names it."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_demo import DemoError
from edge_demo.sources import open_source

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "tests" / "edge_demo" / "fixtures" / "model_int8.tflite"
XNNPACK_LINE = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


def demo(*argv) -> subprocess.CompletedProcess:
    """``python edge_demo/camera.py`` in a fresh process: native output reaches its stderr."""
    return subprocess.run(
        [sys.executable, str(REPO / "edge_demo" / "camera.py"), "--model", str(MODEL), *argv],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip


def test_the_runtimes_info_lines_only_with_verbose(image_dir):
    quiet = demo("--source", str(image_dir), "--headless", "--max-frames", "1")
    assert quiet.returncode == 0, quiet.stderr
    assert XNNPACK_LINE not in quiet.stderr
    assert len(quiet.stderr.splitlines()) == 1  # the demo's own line, nothing below it
    assert quiet.stderr.startswith("edge_demo: model ")
    loud = demo("--source", str(image_dir), "--headless", "--max-frames", "1", "--verbose")
    assert loud.returncode == 0 and XNNPACK_LINE in loud.stderr


@pytest.mark.parametrize(
    ("source", "named"),
    [
        ("97", "camera 97: could not be opened (not connected, or in use"),  # no /dev/video97
        ("garbage.mp4", "garbage.mp4: OpenCV cannot open it as a video"),
    ],
)
def test_an_unreadable_source_is_one_line(source, named, tmp_path):
    (tmp_path / "garbage.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video" * 64)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(REPO / "edge_demo" / "camera.py"), "--model", str(MODEL),
         "--source", source, "--headless"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.splitlines() == [done.stderr.strip()]  # no OpenCV or FFmpeg warning
    assert done.stderr.startswith("error: ") and named in done.stderr
    assert time.perf_counter() - start < 20  # process start and imports included


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(server.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()
        for conn in accepted:
            conn.close()


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
def test_a_stream_that_accepts_and_never_answers_fails_within_the_timeout(scheme):
    """FFmpeg's own default waits 30 s here; the demo's --timeout bounds the open."""
    with silent_server() as port:
        url = f"{scheme}://127.0.0.1:{port}/stream"
        start = time.perf_counter()
        with pytest.raises(DemoError, match="no answer within 1 s") as e:
            open_source(url, reconnect=3, timeout_s=1.0)
        elapsed = time.perf_counter() - start
    assert str(e.value).startswith(f"{url}: could not be opened")
    assert 0.9 < elapsed < 6.0


def test_a_closed_rtsp_port_fails_at_once():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    start = time.perf_counter()
    with pytest.raises(DemoError, match=f"rtsp://127.0.0.1:{port}/cam: could not be opened"):
        open_source(f"rtsp://127.0.0.1:{port}/cam", timeout_s=5.0)
    assert time.perf_counter() - start < 5.0
