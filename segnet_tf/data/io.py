"""Reading images and label maps with OpenCV: the one decode path for files, records and scenes.

Everything that turns bytes into arrays (dataset files, packed records, prediction inputs, export
calibration) goes through :func:`decode_image` / :func:`decode_label`, so the conversion rules are
the same everywhere: images become uint8 RGB (grayscale is replicated, alpha dropped, 16-bit scaled
down); labels are single-channel class ids, or colour-coded RGB mapped through the config's palette.
Both decode through :func:`edge_demo.images.decode`, the demo's too, which reads the format and
pixel count from the header before OpenCV runs (a pixel bomb is one line, not a traceback).
No TensorFlow here: the edge demo may import it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_demo import images
from segnet_tf.data.config import DatasetConfig


class DatasetError(ValueError):
    """A dataset file or layout is unusable; the message names the file and what is wrong."""


class DatasetFileNotFoundError(DatasetError, FileNotFoundError):
    """A file or folder a dataset refers to does not exist."""


def read_bytes(path: str | Path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise DatasetFileNotFoundError(f"{path}: file not found")
    return path.read_bytes()


def decode_image(data: bytes, source: str) -> np.ndarray:
    """Encoded image bytes -> uint8 RGB ``[H, W, 3]``; ``source`` names the origin in errors."""
    # IMREAD_COLOR replicates grayscale, drops alpha and scales 16-bit to 8-bit.
    return cv2.cvtColor(_decode(data, source, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _decode(data: bytes, source: str, flags: int) -> np.ndarray:
    try:
        return images.decode(data, source, flags)
    except images.ImageError as e:
        raise DatasetError(str(e)) from None


def decode_label(data: bytes, config: DatasetConfig, source: str) -> np.ndarray:
    """Encoded label bytes -> class ids ``[H, W]`` (uint8, or uint16 for 16-bit PNGs).

    A single-channel PNG holds ids (label ids through ``config.id_map`` when it has one). A 3- or
    4-channel one is read as colours (alpha ignored) and mapped through ``config.colours`` /
    ``config.void_colour``; RGB labels are never read as gray ids, because real palettes contain
    grays (CamVid's Sky is 128,128,128). Ids outside ``0..num_classes-1`` other than the void id
    are an error.
    """
    raw = _decode(data, source, cv2.IMREAD_UNCHANGED)
    if raw.ndim == 3 and raw.shape[2] == 1:
        raw = raw[..., 0]
    if raw.dtype not in (np.uint8, np.uint16):
        raise DatasetError(
            f"{source}: label must be an 8- or 16-bit PNG of class ids, got {raw.dtype}"
        )
    if raw.ndim == 3:
        if config.id_map is not None:
            raise DatasetError(
                f"{source}: an RGB label, but dataset {config.name!r} maps label ids (id_map); "
                "save labels as single-channel id PNGs"
            )
        raw = colours_to_ids(cv2.cvtColor(raw[..., :3], cv2.COLOR_BGR2RGB), config, source)
    raw = config.map_ids(raw)
    check_label_ids(raw, config, source)
    return raw


def check_label_ids(label: np.ndarray, config: DatasetConfig, source: str) -> None:
    counts = np.bincount(label.ravel())
    ids = np.flatnonzero(counts)
    bad = [int(i) for i in ids if i >= config.num_classes and i != config.void_id]
    if bad:
        void = "none" if config.void_id is None else str(config.void_id)
        raise DatasetError(
            f"{source}: label ids {bad[:10]} are outside 0..{config.num_classes - 1} "
            f"(dataset {config.name!r} has {config.num_classes} classes, void id {void})"
        )


def _pack_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def colours_to_ids(rgb: np.ndarray, config: DatasetConfig, source: str) -> np.ndarray:
    """Colour-coded label ``[H, W, 3]`` uint8 RGB -> class ids via the config palette."""
    if rgb.dtype != np.uint8:
        raise DatasetError(f"{source}: a colour-coded label must be 8-bit RGB, got {rgb.dtype}")
    palette = {c: i for i, c in reversed(list(enumerate(config.colours)))}  # first class wins
    if config.void_id is not None:
        palette.setdefault(tuple(config.void_colour), config.void_id)
    if max(palette.values()) > 65535:
        raise DatasetError(f"{source}: ids above 65535 cannot be stored in a label map")
    codes = np.array([_pack_rgb(np.array(c)) for c in palette], np.int64)
    ids = np.array(list(palette.values()), np.int64)
    order = np.argsort(codes)
    codes, ids = codes[order], ids[order]
    packed = _pack_rgb(rgb)
    pos = np.clip(np.searchsorted(codes, packed), 0, len(codes) - 1)
    known = codes[pos] == packed
    if not known.all():
        unknown, counts = np.unique(packed[~known], return_counts=True)
        top = unknown[np.argsort(-counts)][:5]
        shown = ", ".join(f"({v >> 16}, {(v >> 8) & 255}, {v & 255})" for v in top)
        raise DatasetError(
            f"{source}: RGB label has {len(unknown)} colour(s) that are not in the "
            f"{config.name!r} palette, e.g. {shown}; save labels as single-channel class-id "
            "PNGs or give a dataset config whose colours match"
        )
    dtype = np.uint8 if ids.max() <= 255 else np.uint16
    return ids[pos].astype(dtype)


def load_image(path: str | Path) -> np.ndarray:
    """Image file -> uint8 RGB ``[H, W, 3]``; grayscale and RGBA are converted, not rejected."""
    return decode_image(read_bytes(path), str(path))


def load_label(path: str | Path, config: DatasetConfig) -> np.ndarray:
    """Label PNG -> class ids ``[H, W]``; see :func:`decode_label` for the accepted forms."""
    return decode_label(read_bytes(path), config, str(path))


def check_same_size(image: np.ndarray, label: np.ndarray, image_src: str, label_src: str) -> None:
    if image.shape[:2] != label.shape[:2]:
        raise DatasetError(
            f"{label_src}: label is {label.shape[1]}x{label.shape[0]} (WxH) but its image "
            f"{image_src} is {image.shape[1]}x{image.shape[0]}"
        )


def colorize(label: np.ndarray, config: DatasetConfig) -> np.ndarray:
    """Class ids ``[H, W]`` -> uint8 RGB in the config palette; void and unknown ids get the void
    colour."""
    lut = np.tile(np.asarray(config.void_colour, np.uint8), (max(int(label.max()) + 1, 256), 1))
    lut[: config.num_classes] = np.asarray(config.colours, np.uint8)
    return lut[label]
