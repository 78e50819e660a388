"""Reading untrusted image bytes: the format and the pixel count from the header, before any
decoder runs.

The one image-reading function of segnet-tf and its demo (datasets, packed records, ``predict``,
the demo's image sources and web uploads): a file is data, so a 150-byte PNG whose header
declares 100000x100000 pixels must not reach OpenCV, which would try to allocate 30 GB or raise
from deep inside. :func:`decode` reads the size from the header of the formats we take (PNG,
JPEG, BMP, TIFF, WebP: the suffixes of :data:`IMAGE_SUFFIXES`), checks that the file is complete
(a PNG's IEND chunk, a JPEG's end-of-image marker: OpenCV returns a half-grey image from some
truncated files without an error) and that the pixel count is within :func:`max_pixels`, and only
then decodes. Anything else is an :class:`ImageError`, one line that names the source.

Pure numpy + OpenCV, importing nothing else from ``edge_demo``: the board runs it without the
trainer, and the trainer imports it (``segnet_tf.data.io``).
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
FORMATS = ("png", "jpeg", "bmp", "tiff", "webp")
# 8K video (7680x4320, 33 MP) fits; decoded to 8-bit BGR that is 120 MB, and a pixel bomb's
# 100000x100000 (30 GB) is refused. Raise it for larger survey imagery with the variable below.
MAX_PIXELS = 40_000_000
MAX_PIXELS_ENV = "SEGNET_MAX_IMAGE_PIXELS"

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk type and its (constant) CRC
JPEG_MAGIC = b"\xff\xd8\xff"
# Start-of-frame markers carry the size; C4 (Huffman tables), C8 and CC are not frames.
JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
JPEG_SOS, JPEG_EOI = 0xDA, b"\xff\xd9"
TIFF_MAGICS = (b"II*\x00", b"MM\x00*")
TIFF_WIDTH, TIFF_HEIGHT = 256, 257


class ImageError(ValueError):
    """Bytes that are not an image we read: unsupported, truncated, corrupt or too large."""


class ImageTooLargeError(ImageError):
    """An image whose header declares more pixels than the cap."""

    def __init__(self, source: str, width: int, height: int, limit: int) -> None:
        super().__init__(
            f"{source}: image is {width}x{height} pixels, above the limit of "
            f"{limit / 1e6:g} megapixels (raise it with {MAX_PIXELS_ENV}=N)"
        )
        self.width, self.height, self.limit = width, height, limit


def max_pixels() -> int:
    """The pixel cap: :data:`MAX_PIXELS`, or the environment's :data:`MAX_PIXELS_ENV`."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return MAX_PIXELS
    if not text.isdigit() or int(text) < 1:
        raise ImageError(f"{MAX_PIXELS_ENV}={text!r}: expected a pixel count, e.g. 100000000")
    return int(text)


def image_format(data: bytes) -> str | None:
    """``png``, ``jpeg``, ``bmp``, ``tiff`` or ``webp`` from the magic bytes; None otherwise."""
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data.startswith(b"BM"):
        return "bmp"
    if data[:4] in TIFF_MAGICS:
        return "tiff"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def png_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from a PNG's IHDR chunk; the file must end in IEND (not truncated)."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ValueError("truncated or invalid PNG: no IHDR chunk")
    if data.rfind(PNG_END) < 0:
        raise ValueError("truncated PNG: no IEND chunk")
    return _be(data, 16, 4), _be(data, 20, 4)


def jpeg_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of a baseline or progressive JPEG from its frame header; the file must
    have an end-of-image marker after the first scan."""
    i, size = 2, None
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError("not a valid JPEG: bad marker")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker == JPEG_SOS:
            if size is None:
                break
            if data.find(JPEG_EOI, i) < 0:
                raise ValueError("truncated JPEG: no end-of-image marker")
            return size
        if marker in JPEG_SOF and i + 9 <= len(data):
            size = _be(data, i + 7, 2), _be(data, i + 5, 2)
        i += 2 + _be(data, i + 2, 2)
    raise ValueError("truncated or invalid JPEG: no frame and scan")


def bmp_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from a BMP's info header (bottom-up files have a negative height)."""
    header = _le(data, 14, 4) if len(data) >= 18 else 0
    if header == 12 and len(data) >= 22:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        return _le(data, 18, 2), _le(data, 20, 2)
    if header >= 40 and len(data) >= 26:
        width = int.from_bytes(data[18:22], "little", signed=True)
        height = int.from_bytes(data[22:26], "little", signed=True)
        return abs(width), abs(height)
    raise ValueError("truncated or invalid BMP header")


def tiff_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from the first image directory of a TIFF (the page OpenCV reads)."""
    order = "little" if data.startswith(b"II") else "big"
    offset = int.from_bytes(data[4:8], order)
    count = int.from_bytes(data[offset : offset + 2], order) if offset + 2 <= len(data) else 0
    found = {}
    for k in range(count):
        entry = data[offset + 2 + 12 * k : offset + 14 + 12 * k]
        if len(entry) < 12:
            break
        tag, kind = int.from_bytes(entry[:2], order), int.from_bytes(entry[2:4], order)
        if tag in (TIFF_WIDTH, TIFF_HEIGHT):
            width = 2 if kind == 3 else 4  # SHORT or LONG
            found[tag] = int.from_bytes(entry[8 : 8 + width], order)
    if TIFF_WIDTH not in found or TIFF_HEIGHT not in found:
        raise ValueError("truncated or invalid TIFF: no image width and length")
    return found[TIFF_WIDTH], found[TIFF_HEIGHT]


def webp_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from a WebP's first chunk: lossy VP8, lossless VP8L or extended VP8X."""
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        return _le(data, 26, 2) & 0x3FFF, _le(data, 28, 2) & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = _le(data, 21, 4)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return _le(data, 24, 3) + 1, _le(data, 27, 3) + 1
    raise ValueError("truncated or invalid WebP header")


NAMES = {"png": "PNG", "jpeg": "JPEG", "bmp": "BMP", "tiff": "TIFF", "webp": "WebP"}
SIZE_READERS = {
    "png": png_size,
    "jpeg": jpeg_size,
    "bmp": bmp_size,
    "tiff": tiff_size,
    "webp": webp_size,
}


def image_size(data: bytes, source: str, formats: Collection[str] = FORMATS) -> tuple[int, int]:
    """``(width, height)`` read from the header of an image in one of ``formats``, without
    decoding; :class:`ImageError` for any other bytes or a truncated file."""
    kind = image_format(data)
    if kind not in formats:
        names = [NAMES[f] for f in formats]
        names = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
        why = f"not a {names} file" if data else "empty file"
        raise ImageError(f"{source}: cannot decode image: {why}")
    try:
        width, height = SIZE_READERS[kind](data)
    except ValueError as e:
        raise ImageError(f"{source}: cannot decode image: {e}") from None
    if width < 1 or height < 1:
        raise ImageError(f"{source}: the {kind.upper()} header declares {width}x{height} pixels")
    return width, height


def decode(
    data: bytes,
    source: str,
    flags: int = cv2.IMREAD_COLOR,
    limit: int | None = None,
    formats: Collection[str] = FORMATS,
) -> np.ndarray:
    """Decode ``data`` with ``cv2.imdecode(data, flags)`` once its header passed the checks
    (format, completeness, at most ``limit`` pixels, default :func:`max_pixels`).

    ``flags`` as OpenCV's: ``IMREAD_COLOR`` gives 8-bit BGR (grayscale replicated, alpha
    dropped, 16-bit scaled), ``IMREAD_UNCHANGED`` the stored channels and depth.
    """
    width, height = image_size(data, source, formats)
    limit = max_pixels() if limit is None else limit
    if width * height > limit:
        raise ImageTooLargeError(source, width, height, limit)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as e:  # OpenCV's own checks (e.g. a header its decoder reads differently)
        message = str(e).strip().splitlines()[-1]
        raise ImageError(f"{source}: cannot decode image: {message}") from None
    if image is None or image.size == 0:
        raise ImageError(f"{source}: cannot decode image: corrupt data")
    return image


def read(path: str | Path, flags: int = cv2.IMREAD_COLOR, limit: int | None = None) -> np.ndarray:
    """:func:`decode` of an image file; a missing or unreadable file is an :class:`ImageError`
    (``FileNotFoundError`` for a missing one) naming it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot read it: {e.strerror or e}") from None
    return decode(data, str(path), flags, limit)


def _be(data: bytes, start: int, length: int) -> int:
    return int.from_bytes(data[start : start + length], "big")


def _le(data: bytes, start: int, length: int) -> int:
    return int.from_bytes(data[start : start + length], "little")
