"""The demo's web view: watch the loop from a browser and segment an uploaded picture.

A road rig has no screen, so the board serves, with the standard library only (``http.server``
in a daemon thread): ``/`` a page with the live view, the class legend with each class's share of
the current frame, FPS and stage times; ``/stream.mjpg`` the rendered view as multipart JPEG
(browsers, VLC, OpenCV); ``/stats`` the running summary as JSON; ``POST /segment`` an uploaded
PNG/JPEG answered with the overlay as PNG, through the loop's own model, as in SegNet's web demo.

Serving never slows the loop: the loop only hands its newest frame to a :class:`FramePublisher`
(a copy and a notify). Viewer threads wait for a newer frame and send the newest, never a queue;
the first viewer to want a frame JPEG-encodes it once for all (OpenCV releases the GIL), so with
no viewer nothing is encoded. A slow or vanished viewer blocks only its own thread.

Uploads are untrusted: :mod:`edge_demo.uploads` checks them, each step bounded (a required,
capped ``Content-Length``; a form of a few parts; PNG/JPEG magic bytes, a complete file and a
pixel cap before ``cv2.imdecode``); nothing is written to disk; every bad request gets a one-line
4xx and the loop and server carry on. An empty token is refused when the server starts.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import logging
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from edge_demo import DemoError
from edge_demo.contract import class_map
from edge_demo.render import Renderer
from edge_demo.uploads import (
    DEFAULT_MAX_UPLOAD_BYTES,
    Refusal,
    check_length,
    decode_upload,
    upload_image_bytes,
)

log = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("web_view.html")
UPLOAD_VIEWS = ("overlay", "mask", "side")
BOUNDARY = b"frame"
JPEG_QUALITY = 80
KEEPALIVE_S = 1.0  # with no new frame (source ended), the newest is resent this often
SOCKET_TIMEOUT_S = 30.0  # a viewer or uploader that stalls this long is dropped
MAX_PENDING_UPLOADS = 4  # uploads held in memory at once; more get 503


# --- uploads: the loop's pipeline on one picture (parsing and checks: edge_demo/uploads.py) -------


def segment_image(model, renderer: Renderer, image: np.ndarray) -> np.ndarray:
    """The loop's pipeline on one picture: preprocess, inference, argmax, render (no HUD)."""
    return renderer.render(image, class_map(model.infer(model.preprocess(image))))


class SharedModel:
    """The loop's model, shared with uploads: one inference at a time on its interpreter.

    A lock rather than a second interpreter: a second one doubles the activation memory and
    needs a second delegate instance (Edge TPU, GPU), and on a busy board it runs on the same
    cores or accelerator anyway. An upload costs the loop at most one inference of waiting;
    uploads are serialised, so a flood of them at most halves the loop's rate (their parsing,
    outside the lock, is bounded: see :mod:`edge_demo.uploads`).
    ``infer`` must return an array that the next call does not overwrite (``get_tensor`` copies).
    """

    def __init__(self, model) -> None:
        self._model = model
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def infer(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._model.infer(x)


# --- the loop's newest frame ------------------------------------------------------------------


class FramePublisher:
    """The newest rendered frame and class map, shared by the loop (one writer) and viewers.

    The loop calls :meth:`publish` once per frame; it never waits for a viewer. Viewers wait for a
    sequence number newer than the one they sent and take the newest frame, skipping any they
    were too slow for; its JPEG is encoded at most once, by the first viewer that asks.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        colours_rgb: Sequence[Sequence[int]],
        ignored: Sequence[bool] = (),
        jpeg_quality: int = JPEG_QUALITY,
    ) -> None:
        self.class_names = tuple(class_names)
        self.colours = tuple("#{:02x}{:02x}{:02x}".format(*c) for c in colours_rgb)
        self.ignored = tuple(bool(i) for i in ignored) or (False,) * len(self.class_names)
        self.jpeg_quality = jpeg_quality
        self.encoded = 0  # frames JPEG-encoded so far
        self.viewers = 0
        self.closed = False
        self._cond = threading.Condition()
        self._encode_lock = threading.Lock()
        self._seq = 0
        self._frame: np.ndarray | None = None
        self._classes: np.ndarray | None = None
        self._jpeg: tuple[int, bytes] | None = None
        self._rows: list = []
        self._start = time.perf_counter()

    def track(self, rows: list, start: float) -> None:
        """Follow the loop's per-frame stage times (its own list, read-only) and start time."""
        self._rows, self._start = rows, start

    def publish(self, frame: np.ndarray, classes: np.ndarray) -> None:
        """The loop's newest view and class map. Copied: the loop may reuse its buffers."""
        frame, classes = frame.copy(), classes.copy()
        with self._cond:
            self._frame, self._classes = frame, classes
            self._seq += 1
            self._cond.notify_all()

    def progress(self) -> tuple[list, float]:
        """The loop's per-frame stage times so far, and the seconds since it started."""
        return self._rows[:], time.perf_counter() - self._start  # a slice is atomic

    def wait_newer(self, seq: int, timeout: float) -> int:
        """Wait up to ``timeout`` s for a frame newer than ``seq``; the newest sequence number."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > seq or self.closed, timeout)
            return self._seq

    def jpeg(self) -> tuple[int, bytes] | None:
        """``(seq, JPEG bytes)`` of the newest frame, encoded once whoever asks; None before the
        first frame."""
        with self._encode_lock:
            with self._cond:
                seq, frame = self._seq, self._frame
            if frame is None:
                return None
            if self._jpeg is None or self._jpeg[0] != seq:
                ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
                if not ok:
                    raise RuntimeError("OpenCV could not JPEG-encode the frame")
                self._jpeg = seq, buf.tobytes()
                self.encoded += 1
            return self._jpeg

    def live(self) -> dict:
        """The newest frame's number, viewer count and each class's share of its pixels."""
        with self._cond:
            seq, classes = self._seq, self._classes
        shares = np.zeros(len(self.class_names))
        if classes is not None:
            shares = np.bincount(classes.ravel(), minlength=len(shares))[: len(shares)]
            shares = shares / classes.size
        return {
            "frame": seq,
            "viewers": self.viewers,
            "classes": [
                {"name": n, "colour": c, "share": round(float(s), 5), "ignored": i}
                for n, c, s, i in zip(
                    self.class_names, self.colours, shares, self.ignored, strict=True
                )
            ],
        }

    @contextlib.contextmanager
    def viewer(self) -> Iterator[None]:
        with self._cond:
            self.viewers += 1
        try:
            yield
        finally:
            with self._cond:
                self.viewers -= 1

    def close(self) -> None:
        """Wake every viewer so that its stream ends."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()


def mjpeg_part(jpeg: bytes, seq: int) -> bytes:
    head = b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\nX-Frame: %d\r\n\r\n"
    return head % (BOUNDARY, len(jpeg), seq) + jpeg + b"\r\n"


def read_mjpeg(stream: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """``(frame number, JPEG bytes)`` of each part of a ``/stream.mjpg`` response body.

    A client for scripts and tests; browsers, VLC and ``cv2.VideoCapture(url)`` read it too.
    """
    while True:
        line = stream.readline()
        if not line or line.strip() == b"--" + BOUNDARY + b"--":
            return
        if line.strip() != b"--" + BOUNDARY:
            continue
        headers = {}
        while (line := stream.readline().strip()) != b"":
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        jpeg = stream.read(int(headers["content-length"]))
        yield int(headers.get("x-frame", -1)), jpeg


# --- the HTTP server --------------------------------------------------------------------------


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT``, ``PORT`` or ``[IPv6]:PORT``; the host defaults to 127.0.0.1."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:8080; port 0 picks one)")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address) resolves only to loopback addresses."""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def remote_bind_warning(host: str, token: str | None) -> str | None:
    """The warning for a bind other machines can reach without a token, else None."""
    if token or is_loopback(host):
        return None
    return (
        f"serving on {host} without --token: anyone who can reach this port can watch the "
        "camera and run the model; pass --token (or bind 127.0.0.1 and use an SSH tunnel)"
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    app: WebView

    def server_bind(self) -> None:
        # HTTPServer would look up the host's FQDN here: a DNS query that can stall an offline rig.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request, client_address) -> None:
        # A client that resets or stalls is routine on a network: one line, no traceback.
        log.debug("connection from %s ended: %s", client_address[0], sys.exc_info()[1])


class _Server6(_Server):
    address_family = socket.AF_INET6


class Handler(BaseHTTPRequestHandler):
    """Routes: ``GET /``, ``GET /stream.mjpg``, ``GET /stats``, ``POST /segment``."""

    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive for polling; needed for Expect: 100-continue
    timeout = SOCKET_TIMEOUT_S
    server_version = "segnet-edge-demo"
    # for the errors http.server answers itself (a malformed request line, an unknown method)
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "%(code)d %(message)s: %(explain)s\n"
    ROUTES = {
        "/": ("GET", "_page"),
        "/index.html": ("GET", "_page"),
        "/stream.mjpg": ("GET", "_stream"),
        "/stats": ("GET", "_stats"),
        "/segment": ("POST", "_segment"),
    }

    @property
    def app(self) -> WebView:
        return self.server.app

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            self._authorise(query.get("token"))
            if url.path not in self.ROUTES:
                raise Refusal(HTTPStatus.NOT_FOUND, f"no {url.path} here: try / ")
            allowed, action = self.ROUTES[url.path]
            if method != allowed:
                self._allow = allowed
                raise Refusal(
                    HTTPStatus.METHOD_NOT_ALLOWED, f"{url.path} takes {allowed}, not {method}"
                )
            getattr(self, action)(query)
        except Refusal as e:
            self._refuse(e)
        except Exception:  # a bug or a model failure: log it, answer 500, keep serving
            log.exception("%s %s failed", method, url.path)
            if not self._responded:
                self._refuse(Refusal(HTTPStatus.INTERNAL_SERVER_ERROR, "see the demo's log"))

    def parse_request(self) -> bool:
        self._responded = self._body_read = False  # per request: a connection can carry several
        return super().parse_request()

    def send_response(self, code: int, message: str | None = None) -> None:
        self._responded = True
        super().send_response(code, message)

    def _authorise(self, query_token: str | None) -> None:
        token = self.app.token
        if token is None:
            return
        given = query_token
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "bearer":
            given = value.strip()
        if given is None:
            raise Refusal(
                HTTPStatus.UNAUTHORIZED,
                "this server needs its token: Authorization: Bearer TOKEN or ?token=TOKEN",
            )
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise Refusal(HTTPStatus.FORBIDDEN, "wrong token")

    def _refuse(self, error: Refusal) -> None:
        log.info("%s %s %s: %d %s", self.address_string(), self.command, self.path.split("?")[0],
                 error.status, error.reason)  # fmt: skip
        body = f"{error.status.value} {error.status.phrase}: {error.reason}\n".encode()
        self.send_response(error.status)
        self.send_header("Content-Type", self.error_content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        if error.status == HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", 'Bearer realm="segnet edge demo"')
        if error.status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", self._allow)
        if error.status == HTTPStatus.SERVICE_UNAVAILABLE:
            self.send_header("Retry-After", "1")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True
        self._discard_body()

    def _discard_body(self) -> None:
        """Read (and drop) an unread request body, up to a bound, so that the client, still
        sending, receives the answer instead of a connection reset."""
        left = min(self._unread_body(), 4 * self.app.max_upload_bytes)
        with contextlib.suppress(OSError):
            self.connection.settimeout(2.0)
            while left > 0 and (chunk := self.rfile.read1(min(left, 1 << 16))):
                left -= len(chunk)

    def _unread_body(self) -> int:
        if self._body_read:
            return 0
        length = self.headers.get("Content-Length", "")
        return int(length) if length.isdigit() else 0

    def _send(self, body: bytes, content_type: str, extra: Mapping[str, str] = {}) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _page(self, query: dict) -> None:
        self._send(self.app.page, "text/html; charset=utf-8")

    def _stats(self, query: dict) -> None:
        body = json.dumps({**self.app.stats(), "live": self.app.publisher.live()}) + "\n"
        self._send(body.encode(), "application/json")

    def _stream(self, query: dict) -> None:
        publisher = self.app.publisher
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        log.info("viewer %s connected (%d watching)", self.address_string(), publisher.viewers + 1)
        sent = 0
        with publisher.viewer():
            try:
                while not publisher.closed:
                    publisher.wait_newer(sent, KEEPALIVE_S)
                    newest = publisher.jpeg()
                    if newest is not None and not publisher.closed:
                        sent = newest[0]
                        self.wfile.write(mjpeg_part(newest[1], sent))
                self.wfile.write(b"--%s--\r\n" % BOUNDARY)
            except OSError:  # the viewer went away (reset, broken pipe, timeout): nothing to do
                pass
        log.info("viewer %s left (%d watching)", self.address_string(), publisher.viewers)

    def handle_expect_100(self) -> bool:
        # Answer an oversized upload before the client sends it (curl asks for large bodies).
        if urlsplit(self.path).path == "/segment":
            try:
                self._check_length()
            except Refusal as e:
                self._body_read = True  # the client sends no body after a refusal
                self._refuse(e)
                return False
        return super().handle_expect_100()

    def _check_length(self) -> int:
        return check_length(self.headers, self.app.max_upload_bytes)

    def _read_body(self, length: int) -> bytes:
        chunks, left = [], length
        try:
            while left > 0 and (chunk := self.rfile.read1(min(left, 1 << 16))):
                chunks.append(chunk)
                left -= len(chunk)
        except TimeoutError:
            pass
        self._body_read = True
        if left:
            self.close_connection = True
            raise Refusal(HTTPStatus.BAD_REQUEST, f"truncated upload: {length - left} of "
                              f"{length} bytes arrived")  # fmt: skip
        return b"".join(chunks)

    def _segment(self, query: dict) -> None:
        length = self._check_length()
        if not self.app.pending.acquire(blocking=False):
            raise Refusal(HTTPStatus.SERVICE_UNAVAILABLE, "busy with other uploads, retry")
        try:
            data, form_view = upload_image_bytes(
                self._read_body(length), self.headers.get("Content-Type", "")
            )
            view = query.get("view") or form_view or "overlay"
            if view not in self.app.renderers:
                raise Refusal(
                    HTTPStatus.BAD_REQUEST, f"view={view}: choose {', '.join(self.app.renderers)}"
                )
            start = time.perf_counter()
            with self.app.upload_lock:  # one decoded upload in memory and on the model at a time
                image = decode_upload(data)
                out = segment_image(self.app.model, self.app.renderers[view], image)
                ok, png = cv2.imencode(".png", out)
            ms = (time.perf_counter() - start) * 1e3
        finally:
            self.app.pending.release()
        if not ok:
            raise RuntimeError("OpenCV could not PNG-encode the result")
        log.info("segmented an upload from %s: %dx%d, %s view, %.0f ms", self.address_string(),
                 image.shape[1], image.shape[0], view, ms)  # fmt: skip
        self._send(png.tobytes(), "image/png", {"X-Segment-Ms": f"{ms:.1f}"})

    def log_message(self, format: str, *args) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class WebView:
    """The HTTP server in a daemon thread, serving the loop's :class:`FramePublisher`."""

    def __init__(
        self,
        address: tuple[str, int],
        publisher: FramePublisher,
        model,
        renderers: Mapping[str, Renderer],
        stats: Callable[[], dict],
        token: str | None = None,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    ) -> None:
        if token is not None and not token.strip():  # "Bearer " with nothing after would match
            raise DemoError(
                "--token (or $EDGE_DEMO_TOKEN) is empty: give a token, or unset it to serve "
                "without one"
            )
        self.publisher = publisher
        self.model = model  # a SharedModel when the loop runs the same one
        self.renderers = dict(renderers)
        self.stats = stats  # the running summary; replaced by the final one when the loop ends
        self.token = token
        self.max_upload_bytes = max_upload_bytes
        self.page = PAGE.read_bytes()
        self.upload_lock = threading.Lock()
        self.pending = threading.BoundedSemaphore(MAX_PENDING_UPLOADS)
        host, port = address
        server_cls = _Server6 if ":" in host else _Server
        try:
            self._server = server_cls((host, port), Handler)
        except OSError as e:
            raise DemoError(f"--serve {host}:{port}: cannot listen there: {e}") from None
        self._server.app = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="web-view"
        )
        self._thread.daemon = True
        self._thread.start()
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        if host in ("0.0.0.0", "::"):  # every interface: name the board, not the wildcard
            host = socket.gethostname()
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    def keep_serving(self, summary: dict, seconds: float | None) -> None:
        """After the loop: serve its last frame and final ``summary`` for ``seconds`` (None:
        until Ctrl-C) while the main thread waits."""
        self.stats = lambda: summary
        if seconds == 0:
            return
        until = "Ctrl-C to stop" if seconds is None else f"for {seconds:g} s"
        log.info(
            "loop stopped (%s) after %d frames, %.1f FPS; still serving %s (%s)",
            summary["stopped_by"], summary["frames"], summary["fps"], self.url, until,
        )  # fmt: skip
        with contextlib.suppress(KeyboardInterrupt):
            self._stop.wait(seconds)

    def close(self) -> None:
        self.publisher.close()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2.0)
