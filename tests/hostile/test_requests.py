"""Hostile requests to the demo's web view (issue 28, items 4 and 9), against a real server on a
loopback port in this process: refused with one-line 4xx answers, and the empty token refused
when the server starts."""

from __future__ import annotations

import http.client

import pytest

from edge_demo import DemoError, camera
from edge_demo.server import FramePublisher, WebView
from edge_demo.uploads import MAX_PARTS

TOKEN = "s3cret"
DEMO_MODEL = "tests/edge_demo/fixtures/model_int8.tflite"


@pytest.fixture()
def server():
    publisher = FramePublisher(["a"], [(0, 0, 0)])
    view = WebView(("127.0.0.1", 0), publisher, None, {"overlay": None}, dict, token=TOKEN)
    yield view
    view.close()


def request(server: WebView, method: str, path: str, body: bytes = b"", headers=None):
    host, port = server._server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=30)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    answer = response.status, response.read().decode()
    connection.close()
    return answer


def test_an_empty_token_is_refused_at_start(monkeypatch, capsys, tmp_path, hostile):
    """Issue 28 item 9: ``EDGE_DEMO_TOKEN=`` served 200 to ``Authorization: Bearer``."""
    publisher = FramePublisher(["a"], [(0, 0, 0)])
    for empty in ("", "   "):
        with pytest.raises(DemoError, match="--token \\(or \\$EDGE_DEMO_TOKEN\\) is empty"):
            WebView(("127.0.0.1", 0), publisher, None, {}, dict, token=empty)
    monkeypatch.setenv("EDGE_DEMO_TOKEN", "")
    frames = tmp_path / "frames"
    frames.mkdir()
    hostile.write_image(frames / "0.png", (24, 32, 3))
    argv = ["--model", DEMO_MODEL, "--source", str(frames), "--headless", "--serve", ":0"]
    assert camera.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) <= 3 and "Traceback" not in "\n".join(err)
    assert err[-1].startswith("error: --token (or $EDGE_DEMO_TOKEN) is empty")


def test_a_bearer_with_nothing_after_it_is_refused(server):
    assert request(server, "GET", "/stats", headers={"Authorization": "Bearer "})[0] == 403
    assert request(server, "GET", "/stats", headers={"Authorization": "Bearer"})[0] == 403
    assert request(server, "GET", "/stats?token=")[0] == 401  # no token given


def test_a_flood_of_empty_parts_is_a_400_after_the_part_cap(server):
    """Issue 28 item 4: bodies of empty parts cut the loop from 17.4 to 5.3 FPS."""
    body = b"--b\r\n" * 200_000  # 1 MB, the server's cap here
    status, text = request(
        server,
        "POST",
        "/segment",
        body,
        {"Authorization": f"Bearer {TOKEN}", "Content-Type": "multipart/form-data; boundary=b"},
    )
    assert status == 400 and text == (
        f"400 Bad Request: multipart upload with more than {MAX_PARTS} parts: send the file\n"
    )


def test_a_pixel_bomb_upload_is_a_413_before_decoding(server, hostile):
    bomb = hostile.png_declaring(100_000, 100_000)
    status, text = request(
        server,
        "POST",
        "/segment",
        bomb,
        {"Authorization": f"Bearer {TOKEN}", "Content-Type": "image/png"},
    )
    assert status == 413 and text.count("\n") == 1
    assert "image is 100000x100000 pixels, the limit is 40 megapixels: scale it down" in text
