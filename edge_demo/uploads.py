"""Uploads to the web view, from untrusted request bytes to a BGR image: pure functions, no
sockets, so each check is tested on crafted bytes (``tests/edge_demo/test_uploads.py``,
``tests/hostile/``).

An upload is checked in order, each step bounded before the next one runs: a required
``Content-Length`` within the cap (:func:`check_length`); a raw image body, or a
``multipart/form-data`` form of at most :data:`MAX_PARTS` parts whose headers are at most
:data:`MAX_PART_HEADER_BYTES` (:func:`multipart_fields`); then PNG/JPEG magic bytes, a complete
file and the pixel cap, read from the header before ``cv2.imdecode`` (:func:`decode_upload`, by
:func:`edge_demo.images.decode`). Every refusal is a :class:`Refusal`: an HTTP status and one
line.

Why the part cap: the body is scanned for boundaries by ``bytes.find`` (C, linear), and only the
parts found are handled in Python. Unbounded, an 8 MB body of empty parts is a million Python
iterations holding the GIL, which starved the camera loop to a third of its rate (the loop and the
server share the interpreter); bounded, it is refused after :data:`MAX_PARTS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from email.message import Message
from http import HTTPStatus

import numpy as np

from edge_demo import images

DEFAULT_MAX_UPLOAD_BYTES = 10_000_000  # a 12 MP phone JPEG is 3-6 MB; --max-upload-mb raises it
MAX_UPLOAD_PIXELS = images.MAX_PIXELS  # decoded BGR: 120 MB; 8K (33 MP) fits, a pixel bomb not
UPLOAD_FORMATS = ("png", "jpeg")  # what browsers send; only these two decoders see the bytes
# The web view's form sends two parts (the file and the view); a few more for other clients'
# extra fields. Each part costs Python work under the GIL, so their number is bounded.
MAX_PARTS = 8
MAX_PART_HEADER_BYTES = 4096  # a part's Content-Disposition and Content-Type lines


class Refusal(Exception):
    """A request the server refuses: an HTTP status and a one-line reason."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def check_length(headers: Mapping[str, str], limit: int) -> int:
    """The upload's size from its headers: a ``Content-Length`` (not chunked) of 1..``limit``."""
    if headers.get("Transfer-Encoding") or headers.get("Content-Length") is None:
        raise Refusal(
            HTTPStatus.LENGTH_REQUIRED, "send the image with a Content-Length (not chunked)"
        )
    text = headers["Content-Length"].strip()
    if not text.isdigit():
        raise Refusal(HTTPStatus.BAD_REQUEST, f"bad Content-Length {text[:20]!r}")
    length = int(text)
    if length > limit:
        raise Refusal(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"upload is {length / 1e6:.1f} MB, the limit is {limit / 1e6:g} MB (--max-upload-mb)",
        )
    if length == 0:
        raise Refusal(HTTPStatus.BAD_REQUEST, "empty upload: send PNG or JPEG bytes")
    return length


def decode_upload(data: bytes, max_pixels: int = MAX_UPLOAD_PIXELS) -> np.ndarray:
    """BGR image of an uploaded PNG or JPEG; :class:`Refusal` for anything else.

    The magic bytes, completeness and pixel count are checked before OpenCV sees the bytes, so
    only the two decoders this demo needs run on untrusted input, and never on a pixel bomb.
    """
    try:
        return images.decode(data, "upload", limit=max_pixels, formats=UPLOAD_FORMATS)
    except images.ImageTooLargeError as e:
        raise Refusal(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"image is {e.width}x{e.height} pixels, the limit is {e.limit / 1e6:g} megapixels: "
            "scale it down",
        ) from None
    except images.ImageError as e:
        raise Refusal(HTTPStatus.BAD_REQUEST, str(e)) from None


def boundary_of(content_type: str) -> bytes:
    """The ``boundary`` parameter of a ``multipart/form-data`` content type."""
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary or len(boundary) > 70:  # RFC 2046: 1..70
        raise Refusal(HTTPStatus.BAD_REQUEST, "multipart upload without a valid boundary")
    return boundary.encode("latin-1", "replace")


def multipart_fields(body: bytes, content_type: str) -> dict[str, tuple[bytes, bool]]:
    """``name -> (content, is_file)`` of a ``multipart/form-data`` body (a browser form), the
    first part of each name; at most :data:`MAX_PARTS` parts (see the module docstring)."""
    delimiter = b"--" + boundary_of(content_type)
    start = body.find(delimiter)
    if start < 0:
        raise Refusal(HTTPStatus.BAD_REQUEST, "multipart upload without its boundary in the body")
    fields: dict[str, tuple[bytes, bool]] = {}
    pos = start + len(delimiter)
    for _ in range(MAX_PARTS):
        if body.startswith(b"--", pos):  # the closing delimiter
            return fields
        end = body.find(b"\r\n" + delimiter, pos)
        if end < 0:
            raise Refusal(HTTPStatus.BAD_REQUEST, "truncated multipart upload: no closing boundary")
        name, is_file, content = _part(body, pos, end)
        if name is not None and name not in fields:
            fields[name] = content, is_file
        pos = end + 2 + len(delimiter)
    if body.startswith(b"--", pos):
        return fields
    raise Refusal(
        HTTPStatus.BAD_REQUEST, f"multipart upload with more than {MAX_PARTS} parts: send the file"
    )


def _part(body: bytes, start: int, end: int) -> tuple[str | None, bool, bytes]:
    """The form-field name, whether it is a file, and the content of the part in
    ``body[start:end]`` (which begins with the CRLF after its delimiter)."""
    head_end = body.find(b"\r\n\r\n", start, min(end, start + MAX_PART_HEADER_BYTES))
    if head_end < 0:
        if end - start <= 2:  # an empty part: no headers, no content
            return None, False, b""
        raise Refusal(
            HTTPStatus.BAD_REQUEST,
            f"a multipart part without headers within {MAX_PART_HEADER_BYTES} bytes",
        )
    disposition = Message()
    for line in body[start:head_end].decode("latin-1").strip().split("\r\n"):
        key, _, value = line.partition(":")
        disposition[key.strip()] = value.strip()
    name = disposition.get_param("name", header="content-disposition")
    is_file = disposition.get_param("filename", header="content-disposition") is not None
    return (name if isinstance(name, str) else None), is_file, body[head_end + 4 : end]


def upload_image_bytes(body: bytes, content_type: str) -> tuple[bytes, str | None]:
    """The image bytes of a request body and the form's ``view`` field, if any: the body itself,
    or a multipart form's first file."""
    if not content_type.lower().startswith("multipart/form-data"):
        return body, None
    fields = multipart_fields(body, content_type)
    files = [content for content, is_file in fields.values() if is_file]
    if not files or not files[0]:
        raise Refusal(HTTPStatus.BAD_REQUEST, "the form has no file (or an empty one)")
    view = fields.get("view", (b"", False))[0].decode("latin-1") or None
    return files[0], view
