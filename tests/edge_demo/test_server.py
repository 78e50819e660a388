"""The demo's web view: upload checks and the frame publisher in process, then the demo itself
with ``--serve`` on a loopback port (MJPEG stream, /stats, uploads good and bad, the token, the
page in a real headless Chromium, Ctrl-C)."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest

from edge_demo import DemoError
from edge_demo.contract import class_map
from edge_demo.render import Renderer, colour_lut
from edge_demo.runtime import load_model
from edge_demo.server import (
    JPEG_QUALITY,
    FramePublisher,
    SharedModel,
    WebView,
    parse_address,
    read_mjpeg,
    remote_bind_warning,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token"
FRAMES = 180  # the served clip: long enough to watch the loop while it runs


def encode(image: np.ndarray, ext: str, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, image, list(params))
    assert ok
    return buf.tobytes()


# --- addresses, in process (upload parsing: test_uploads.py) ------------------------------


def test_serve_addresses_and_the_remote_bind_warning():
    assert parse_address("8080") == ("127.0.0.1", 8080)
    assert parse_address(":0") == ("127.0.0.1", 0)
    assert parse_address("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_address("[::1]:9000") == ("::1", 9000)
    for bad in ("host:", "host:http", "1.2.3.4:70000"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_address(bad)
    assert "without --token" in remote_bind_warning("0.0.0.0", None)
    assert remote_bind_warning("0.0.0.0", "t") is None
    assert remote_bind_warning("127.0.0.1", None) is None
    assert remote_bind_warning("localhost", None) is None


def test_a_port_in_use_is_one_clear_line():
    publisher = FramePublisher(["a"], [(0, 0, 0)])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DemoError, match=f"--serve 127.0.0.1:{port}: cannot listen there"):
            WebView(("127.0.0.1", port), publisher, None, {}, dict)
    server = WebView(("127.0.0.1", 0), publisher, None, {}, dict)  # port 0: a free one
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", server.url) and not server.url.endswith(":0/")
    server.close()


# --- the frame publisher and the shared model, in process -------------------------------------


def test_publisher_gives_the_newest_frame_encoded_once(clip_frames):
    publisher = FramePublisher(["a", "b", "c"], [(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    assert publisher.jpeg() is None and publisher.wait_newer(0, timeout=0.01) == 0
    classes = np.array([[0, 0], [0, 2]], np.uint8)
    for frame in clip_frames[:3]:
        publisher.publish(frame, classes)
    assert publisher.encoded == 0  # nobody watched: nothing encoded
    assert publisher.wait_newer(0, timeout=5) == 3  # a late viewer skips to the newest
    seq, jpeg = publisher.jpeg()
    assert seq == 3 and publisher.jpeg() == (3, jpeg) and publisher.encoded == 1  # once for all
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert np.abs(decoded - clip_frames[2].astype(int)).mean() < 3
    live = publisher.live()
    assert live["frame"] == 3 and live["viewers"] == 0
    assert [(c["name"], c["colour"], c["share"]) for c in live["classes"]] == [
        ("a", "#ff0000", 0.75), ("b", "#00ff00", 0.0), ("c", "#0000ff", 0.25),
    ]  # fmt: skip

    mine = clip_frames[4].copy()
    publisher.publish(mine, classes)
    mine[:] = 0  # the loop reusing its buffer must not change what viewers get
    assert publisher.jpeg()[0] == 4 and publisher.encoded == 2
    decoded = cv2.imdecode(np.frombuffer(publisher.jpeg()[1], np.uint8), cv2.IMREAD_COLOR)
    assert decoded.mean() > 20

    woken = []
    waiter = threading.Thread(target=lambda: woken.append(publisher.wait_newer(4, timeout=30)))
    waiter.start()
    publisher.publish(clip_frames[5], classes)
    waiter.join(timeout=10)
    assert woken == [5]


def test_shared_model_runs_one_inference_at_a_time(edge_models, clip_frames):
    class Slow:
        labels = "the labels"
        running = peak = 0

        def infer(self, x):
            self.running += 1
            self.peak = max(self.peak, self.running)
            time.sleep(0.02)
            self.running -= 1
            return x

    slow = Slow()
    shared = SharedModel(slow)
    threads = [threading.Thread(target=shared.infer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert slow.peak == 1 and shared.labels == "the labels"
    # the loop keeps its output while an upload runs next: infer must not return a live buffer
    model = load_model(edge_models["int8"])
    first = model.infer(model.preprocess(clip_frames[0]))
    kept = first.copy()
    model.infer(model.preprocess(np.zeros_like(clip_frames[0])))
    np.testing.assert_array_equal(first, kept)


# --- the demo with --serve, end to end ---------------------------------------------------------


class Viewer(threading.Thread):
    """An MJPEG client that records ``(frame number, JPEG)`` of every part it receives."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.conn.request("GET", f"{parts.path}?{parts.query}")
        self.sock = self.conn.sock  # the connection lets go of it: the response reads to the end
        self.response = self.conn.getresponse()
        self.frames: list[tuple[int, bytes]] = []
        self.start()

    def run(self) -> None:
        try:
            for part in read_mjpeg(self.response):
                self.frames.append(part)
        except (OSError, ValueError, http.client.HTTPException):
            pass  # closed by stop()

    def stop(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.join(timeout=5)


class Demo:
    def __init__(self, proc: subprocess.Popen, log: Path, folder: Path) -> None:
        self.proc, self.log, self.folder = proc, log, folder
        match = wait_for(lambda: re.search(r"serving (http://\S+)", log.read_text()), 60, proc)
        self.url = match.group(1)
        self.viewer = Viewer(self.url + f"stream.mjpg?token={TOKEN}")  # watching from the start

    def request(self, method: str, path: str, body: bytes | None = None, headers=None,
                token: str | None = TOKEN) -> tuple[int, dict, bytes]:  # fmt: skip
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        result = response.status, dict(response.getheaders()), response.read()
        conn.close()
        return result

    def stats(self) -> dict:
        status, _, body = self.request("GET", "/stats")
        assert status == 200
        return json.loads(body)

    def final_stats(self) -> dict:
        """``/stats`` once the loop has ended (the server lingers)."""
        return wait_for(lambda: (s := self.stats())["stopped_by"] and s, 120, self.proc)


def class_names(demo: Demo) -> list[str]:
    """The served model's classes, from the labels.json beside it."""
    return json.loads(Path(demo.stats()["model"]).with_name("labels.json").read_text())[
        "class_names"
    ]


def wait_for(check, timeout: float, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        assert proc is None or proc.poll() is None, "the demo exited"
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s")


@pytest.fixture(scope="module")
def demo(edge_models, clip_frames, tmp_path_factory):
    folder = tmp_path_factory.mktemp("web_view")
    clip = folder / "long.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (160, 120))
    for i in range(FRAMES):
        writer.write(clip_frames[i % len(clip_frames)])
    writer.release()
    log = folder / "demo.log"
    argv = [
        "--model", edge_models["int8"], "--source", clip, "--headless", "--legend", "none",
        "--serve", "127.0.0.1:0", "--token", TOKEN, "--max-upload-mb", "1",
        "--json", folder / "summary.json",
    ]  # fmt: skip
    with open(log, "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, REPO_ROOT / "edge_demo" / "camera.py", *map(str, argv)],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        yield Demo(proc, log, folder)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        print(f"demo log: {log}")


def expected_view(edge_models, image: np.ndarray, view: str) -> np.ndarray:
    """The loop's pipeline, in process: what the demo must show for ``image``."""
    model = load_model(edge_models["int8"])
    labels = model.labels
    renderer = Renderer(labels.class_names, labels.colours, view=view, legend="none")
    return renderer.render(image, class_map(model.infer(model.preprocess(image))))


def test_stream_follows_the_loop_and_holds_the_last_frame(demo, edge_models):
    final = demo.final_stats()
    assert final["stopped_by"] == "end of source" and final["frames"] == FRAMES
    viewer = demo.viewer
    wait_for(lambda: viewer.frames and viewer.frames[-1][0] == FRAMES, 10)
    viewer.stop()
    numbers = [n for n, _ in viewer.frames]
    live = sorted(set(numbers))
    assert len(live) >= 3, numbers  # it watched the loop run, not just its end
    assert numbers == sorted(numbers) and numbers[-1] == FRAMES  # never older, then the newest
    last = cv2.imdecode(np.frombuffer(viewer.frames[-1][1], np.uint8), cv2.IMREAD_COLOR)
    source = cv2.VideoCapture(str(demo.folder / "long.mp4"))
    source.set(cv2.CAP_PROP_POS_FRAMES, FRAMES - 1)
    expected = expected_view(edge_models, source.read()[1], "overlay")
    jpeg = encode(expected, ".jpg", cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY)
    expected = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert last.shape == expected.shape == (120, 160, 3)
    # below the HUD (from the next 16-row JPEG block) the stream is the loop's rendered view
    np.testing.assert_array_equal(last[96:], expected[96:])

    # the stream keeps serving the last frame to a viewer who comes after the end; OpenCV reads it
    cap = cv2.VideoCapture(demo.url + f"stream.mjpg?token={TOKEN}")
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == last.shape
    assert np.abs(frame.astype(int) - last).mean() < 8  # FFmpeg's JPEG decoder, not libjpeg's


def test_stats_are_the_json_summary(demo):
    stats = demo.final_stats()
    summary = json.loads((demo.folder / "summary.json").read_text())
    live = stats.pop("live")
    assert stats == summary
    assert live["frame"] == FRAMES
    assert [c["name"] for c in live["classes"]] == class_names(demo)
    assert sum(c["share"] for c in live["classes"]) == pytest.approx(1.0, abs=1e-3)
    # the page polls over one kept-alive connection; an upload on it, refused, closes it
    parts = urlsplit(demo.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    socks = []
    for method, path, body, status in [
        ("GET", "/stats", None, 200),
        ("POST", "/segment", b"\x89PNG\r\n\x1a\n", 400),
        ("GET", "/stats", None, 200),
    ]:
        conn.request(method, path, body=body, headers=auth)
        response = conn.getresponse()
        assert response.status == status
        response.read()
        socks.append(conn.sock)
    conn.close()
    assert socks[0] is not None and socks[1] is None  # kept alive, then closed after the refusal


def test_uploads_are_segmented_like_the_loop(demo, edge_models, picture):
    status, headers, body = demo.request(
        "POST", "/segment", encode(picture, ".png"), {"Content-Type": "image/png"}
    )
    assert status == 200 and headers["Content-Type"] == "image/png"
    result = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(result, expected_view(edge_models, picture, "overlay"))

    jpeg = encode(picture, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 90)
    boundary = "----chromiumFormBoundary7MA4YWxk"
    form = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="r.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + jpeg
        + f"\r\n--{boundary}--\r\n".encode()
    )
    content_type = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    for view, shape in (("side", (120, 320, 3)), ("mask", (120, 160, 3))):
        status, _, body = demo.request("POST", f"/segment?view={view}", form, content_type)
        assert status == 200
        result = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        assert result.shape == shape
        np.testing.assert_array_equal(result, expected_view(edge_models, decoded, view))
    palette = {tuple(c) for c in colour_lut(load_model(edge_models["int8"]).labels.colours)}
    assert {tuple(p) for p in result.reshape(-1, 3)} <= palette  # the mask: class colours only


def raw_request(url: str, data: bytes, hang_up: bool = False) -> bytes:
    """Send bytes as they are (requests http.client will not make), then (``hang_up``) send no
    more, and read the answer to its end."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(data)
        if hang_up:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_bad_requests_get_a_clear_4xx_and_the_demo_carries_on(demo, picture):
    png = encode(picture, ".png")
    cases = [
        ("POST", "/segment", png[: len(png) // 2], 400, "truncated PNG"),
        ("POST", "/segment", b"just some text\n" * 50, 400, "not a PNG or JPEG"),
        ("POST", "/segment", b"", 400, "empty upload"),
        ("POST", "/segment", png + bytes(1_100_000), 413, "upload is 1.1 MB, the limit is 1 MB"),
        ("POST", "/segment?view=sepia", png, 400, "view=sepia: choose overlay, mask, side"),
        ("GET", "/segment", None, 405, "/segment takes POST, not GET"),
        ("POST", "/stats", b"{}", 405, "/stats takes GET"),
        ("GET", "/admin", None, 404, "no /admin here"),
    ]
    for method, path, body, status, reason in cases:
        got, headers, text = demo.request(method, path, body)
        assert (got, reason) == (status, reason) and reason in text.decode(), text
    assert headers.get("Allow") is None  # a 404 names no method
    assert demo.request("GET", "/segment")[1]["Allow"] == "POST"

    url, auth = demo.url, f"Authorization: Bearer {TOKEN}\r\n"
    answer = raw_request(url, f"POST /segment HTTP/1.0\r\n{auth}\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 411") and b"Content-Length" in answer
    chunked = f"POST /segment HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\n\r\n"
    answer = raw_request(url, chunked.encode() + b"4\r\nabcd\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 411")
    # a client that asks first (curl does for large bodies) is refused before it sends the body
    expect = f"POST /segment HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 5000000\r\n"
    answer = raw_request(url, (expect + "Expect: 100-continue\r\n\r\n").encode())
    assert answer.startswith(b"HTTP/1.1 413") and b"limit is 1 MB" in answer
    # a client that promises more than it sends
    short = f"POST /segment HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 50000\r\n\r\n".encode()
    answer = raw_request(url, short + png[:1000], hang_up=True)
    assert answer.startswith(b"HTTP/1.1 400") and b"truncated upload: 1000 of 50000" in answer

    assert demo.stats()["model"].endswith("model_int8.tflite")  # still serving
    status, _, body = demo.request("POST", "/segment", png)
    assert status == 200 and body.startswith(b"\x89PNG")
    assert demo.proc.poll() is None


def test_the_token_is_required(demo):
    status, headers, body = demo.request("GET", "/stats", token=None)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert b"Authorization: Bearer TOKEN or ?token=TOKEN" in body
    assert demo.request("GET", "/stats", token="wrong")[0] == 403
    assert demo.request("GET", f"/stats?token={TOKEN}", token=None)[0] == 200
    assert demo.request("GET", "/?token=wrong", token=None)[0] == 403
    assert demo.request("POST", "/segment", b"x" * 10, token=None)[0] == 401
    status, headers, body = demo.request("GET", f"/?token={TOKEN}", token=None)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'id="stream"' in body and b"http://" not in body and b"https://" not in body


def test_page_in_headless_chromium(demo, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed: .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium); CI runs this test")
    demo.final_stats()
    screenshot = tmp_path / "web_view.png"
    result = subprocess.run(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
            "--hide-scrollbars", "--window-size=1280,800", "--virtual-time-budget=3000",
            f"--screenshot={screenshot}", "--dump-dom", f"{demo.url}?token={TOKEN}",
        ],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    print(f"screenshot of the web view: {screenshot}")
    dom = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    # after its scripts ran: the stream decoded, the stats and the legend filled in
    assert re.search(r"live view 160×120</div>", dom), dom[-3000:]
    fps = re.search(r'<span id="fps">([0-9.]+)</span>', dom)
    assert fps and float(fps.group(1)) > 0
    assert re.search(r"stopped \(end of source\) after 180 frames", dom)
    assert all(f"<td>{stage}</td>" in dom for stage in ("capture", "inference", "postprocess"))
    legend = re.findall(r'<span class="swatch" style="background: [^"]+;"></span>([^<]+)</td>', dom)
    assert legend == class_names(demo)
    image = cv2.imread(str(screenshot))
    assert image.shape == (800, 1280, 3)
    # the live view is drawn: the stream area is not the page's flat background
    assert image[80:400, 20:600].std() > 10


def test_ctrl_c_stops_the_lingering_demo_with_its_summary(demo):
    demo.final_stats()
    assert demo.proc.poll() is None  # the source has ended: still serving
    demo.proc.send_signal(signal.SIGINT)
    stdout, _ = demo.proc.communicate(timeout=30)
    assert demo.proc.returncode == 0, demo.log.read_text()[-2000:]
    assert stdout.startswith(f"{FRAMES} frames in") and "stopped by end of source" in stdout
    log = demo.log.read_text()
    assert "still serving" in log and "Ctrl-C to stop" in log and "Traceback" not in log
