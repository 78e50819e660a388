"""Drawing: class colours over the frame, the class legend and the HUD (FPS and stage times).

What does not change per frame is built once: the colour table, the ignored-class mask and the
legend images (cached per set of classes shown and text size), so a frame costs a table lookup at
the model's size, one nearest-neighbour resize to the frame's, one blend and a few small text
draws, all in uint8 OpenCV calls. Text size follows the frame height so the HUD stays readable
from a 120-line test clip to 1080p.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import cv2
import numpy as np

VIEWS = ("overlay", "mask", "side", "uncertainty")
LEGENDS = ("present", "all", "none")
FONT = cv2.FONT_HERSHEY_SIMPLEX
PANEL_OPACITY = 0.6  # how much the panels behind text darken the image
_LEGEND_CACHE_SIZE = 64


def colour_lut(colours_rgb: Sequence[Sequence[int]], ignored: Sequence[int] = ()) -> np.ndarray:
    """``[num_classes, 3]`` BGR uint8 colour of each class id; ignored classes are black."""
    lut = np.array(colours_rgb, dtype=np.uint8)[:, ::-1].copy()
    lut[list(ignored)] = 0
    return lut


def font_scale(frame_height: int) -> float:
    """Hershey font scale whose text is about 1/30 of the frame height, within readable bounds."""
    return float(np.clip(frame_height / 600.0, 0.35, 1.6))


def _thickness(scale: float) -> int:
    return 1 if scale < 0.8 else 2


def _resize_nearest(img: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    if (img.shape[1], img.shape[0]) == size_wh:
        return img
    return cv2.resize(img, size_wh, interpolation=cv2.INTER_NEAREST)


def uncertainty_heatmap(uncertainty: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """Uncertainty ``[h, w]`` in 0..1 -> BGR heat map of ``size_wh``: scaled (bilinear), then
    value ``u`` drawn as entry ``round(255 u)`` of OpenCV's inferno map, black certain to
    pale yellow uniform (the colours of ``segnet-tf predict``'s uncertainty images)."""
    if (uncertainty.shape[1], uncertainty.shape[0]) != size_wh:
        uncertainty = cv2.resize(uncertainty, size_wh, interpolation=cv2.INTER_LINEAR)
    codes = np.round(np.clip(uncertainty, 0.0, 1.0) * 255).astype(np.uint8)
    return cv2.applyColorMap(codes, cv2.COLORMAP_INFERNO)


def draw_heat_key(img: np.ndarray, x: int, y: int, width: int, scale: float) -> None:
    """The heat map's key at ``(x, y)``, drawn in place: a label over the colour ramp 0..1."""
    (_, text_h), baseline = cv2.getTextSize("Ag", FONT, scale, _thickness(scale))
    draw_text_panel(img, ["uncertainty 0 .. 1"], x, y, scale)
    top = y + 2 * max(3, text_h // 2) + text_h + baseline  # below the panel
    ramp = np.linspace(0, 255, max(width, 1)).round().astype(np.uint8)
    bar = cv2.applyColorMap(np.tile(ramp, (max(2, text_h // 2), 1)), cv2.COLORMAP_INFERNO)
    h, w = min(bar.shape[0], img.shape[0] - top), min(bar.shape[1], img.shape[1] - x)
    if h > 0 and w > 0:
        img[top : top + h, x : x + w] = bar[:h, :w]


def _resize_into(img: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``img`` scaled (nearest) into ``out``, a preallocated array or view of the target size."""
    if img.shape[:2] == out.shape[:2]:
        out[:] = img
    else:
        cv2.resize(img, (out.shape[1], out.shape[0]), dst=out, interpolation=cv2.INTER_NEAREST)
    return out


class Sprite(NamedTuple):
    """A precomputed overlay: ``out = img * gain / 255 + add`` (``add`` is premultiplied colour),
    in uint8 so that pasting is two saturating OpenCV passes, not float arithmetic."""

    gain: np.ndarray  # [h, w, 3] uint8, 255 = keep the image
    add: np.ndarray  # [h, w, 3] uint8


def paste(img: np.ndarray, sprite: Sprite, x: int, y: int) -> None:
    """Blend ``sprite`` into ``img`` in place with its top-left at ``(x, y)``, cropped to fit."""
    h = min(sprite.gain.shape[0], img.shape[0] - y)
    w = min(sprite.gain.shape[1], img.shape[1] - x)
    if h <= 0 or w <= 0:
        return
    roi = img[y : y + h, x : x + w]
    cv2.add(cv2.multiply(roi, sprite.gain[:h, :w], scale=1 / 255), sprite.add[:h, :w], dst=roi)


def legend_sprite(
    names: Sequence[str], colours_bgr: Sequence[Sequence[int]], scale: float, max_height: int
) -> Sprite:
    """Colour swatch + name per class on a dark translucent panel, in as many columns as needed
    to fit ``max_height``."""
    thick = _thickness(scale)
    (_, text_h), baseline = cv2.getTextSize("Ag", FONT, scale, thick)
    pad = max(3, text_h // 2)
    row_h = text_h + baseline + pad
    swatch = text_h + baseline
    text_w = max(cv2.getTextSize(n, FONT, scale, thick)[0][0] for n in names)
    col_w = swatch + pad + text_w + pad
    rows = max(1, min(len(names), (max_height - pad) // row_h))
    cols = -(-len(names) // rows)
    height, width = pad + rows * row_h, pad + cols * col_w
    colour = np.zeros((height, width, 3), np.uint8)
    cover = np.zeros((height, width), np.uint8)
    for i, (name, bgr) in enumerate(zip(names, colours_bgr, strict=True)):
        x, y = pad + (i // rows) * col_w, pad + (i % rows) * row_h
        corners = (x, y), (x + swatch - 1, y + swatch - 1)
        for img, fill, edge in (
            (colour, tuple(int(c) for c in bgr), (255,) * 3),
            (cover, 255, 255),
        ):
            cv2.rectangle(img, *corners, fill, cv2.FILLED)
            cv2.rectangle(img, *corners, edge, 1)  # a white edge keeps dark colours visible
            cv2.putText(
                img, name, (x + swatch + pad, y + text_h), FONT, scale, edge, thick, cv2.LINE_AA
            )
    gain = (1.0 - PANEL_OPACITY) * (255.0 - cover.astype(np.float32))
    gain = np.repeat(np.round(gain).astype(np.uint8)[..., None], 3, axis=-1)
    return Sprite(gain=gain, add=colour)


def draw_text_panel(img: np.ndarray, lines: Sequence[str], x: int, y: int, scale: float) -> None:
    """White text lines on a dark translucent panel, top-left at ``(x, y)``, drawn in place."""
    thick = _thickness(scale)
    (_, text_h), baseline = cv2.getTextSize("Ag", FONT, scale, thick)
    pad = max(3, text_h // 2)
    row_h = text_h + baseline + pad // 2
    width = pad * 2 + max(cv2.getTextSize(line, FONT, scale, thick)[0][0] for line in lines)
    height = pad * 2 + row_h * len(lines) - pad // 2
    roi = img[y : y + height, x : x + width]
    roi[:] = cv2.convertScaleAbs(roi, alpha=1.0 - PANEL_OPACITY)
    for i, line in enumerate(lines):
        org = (x + pad, y + pad + text_h + i * row_h)
        cv2.putText(img, line, org, FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)


class Renderer:
    """Turns a frame and its class map into the annotated image for the chosen view."""

    def __init__(
        self,
        class_names: Sequence[str],
        colours_rgb: Sequence[Sequence[int]],
        view: str = "overlay",
        alpha: float = 0.5,
        ignored: Sequence[int] = (),
        legend: str = "present",
    ) -> None:
        if view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
        if legend not in LEGENDS:
            raise ValueError(f"legend must be one of {LEGENDS}, got {legend!r}")
        self.class_names = tuple(class_names)
        self.view = view
        self.alpha = alpha
        self.legend = legend
        self.lut = colour_lut(colours_rgb, ignored)
        self.ignored = np.zeros(len(self.class_names), bool)
        self.ignored[list(ignored)] = True
        self._ignored_u8 = self.ignored.astype(np.uint8)
        self._any_ignored = bool(self.ignored.any())
        self._all_shown = tuple(int(i) for i in np.flatnonzero(~self.ignored))
        self._legends: dict[tuple, Sprite] = {}
        self._buffers: dict[tuple, np.ndarray] = {}  # colour maps, reused frame after frame

    def _buffer(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        key = (name, shape)
        if key not in self._buffers:
            self._buffers[key] = np.empty(shape, np.uint8)
        return self._buffers[key]

    def segmentation(
        self, frame: np.ndarray, classes: np.ndarray, uncertainty: np.ndarray | None = None
    ) -> np.ndarray:
        """The view without text: overlay, mask, frame and mask side by side, or overlay and
        uncertainty heat map side by side (``uncertainty``: ``[h, w]`` in 0..1, any size).

        The returned image is new each frame (a writer thread may still hold the last one); the
        colour maps in between are reused buffers.
        """
        # Colour at the class map's (model) size, then scale once: nearest-neighbour resizing
        # commutes with the table lookup and a small lookup is several times cheaper.
        h, w = frame.shape[:2]
        small = self._buffer("small", (*classes.shape, 3))
        np.take(self.lut, classes, axis=0, out=small)
        if self.view == "mask":
            return _resize_into(small, np.empty((h, w, 3), np.uint8))
        if self.view == "side":
            out = np.empty((h, 2 * w, 3), np.uint8)
            out[:, :w] = frame
            _resize_into(small, out[:, w:])
            return out
        colour = _resize_into(small, self._buffer("colour", (h, w, 3)))
        out = cv2.addWeighted(
            frame, 1.0 - self.alpha, colour, self.alpha, 0.0, dst=np.empty_like(frame)
        )
        if self._any_ignored:  # ignored classes show the frame, not a dimmed frame
            cv2.copyTo(frame, _resize_nearest(self._ignored_u8.take(classes), (w, h)), out)
        if self.view == "uncertainty":
            if uncertainty is None:
                raise ValueError("the uncertainty view needs an uncertainty map")
            return np.hstack((out, uncertainty_heatmap(uncertainty, (w, h))))
        return out

    def shown_classes(self, classes: np.ndarray) -> tuple[int, ...]:
        """Ids for the legend: all classes or those in ``classes``, never ignored ones."""
        if self.legend == "all":
            return self._all_shown
        n = len(self.class_names)
        counts = cv2.calcHist([classes], [0], None, [n], [0, n]).ravel()  # ~3x np.bincount
        return tuple(int(i) for i in np.flatnonzero((counts > 0) & ~self.ignored))

    def legend_for(self, ids: tuple[int, ...], scale: float, max_height: int) -> Sprite:
        key = (ids, scale, max_height)
        if key not in self._legends:
            if len(self._legends) >= _LEGEND_CACHE_SIZE:
                self._legends.clear()
            names = [self.class_names[i] for i in ids]
            self._legends[key] = legend_sprite(names, self.lut[list(ids)], scale, max_height)
        return self._legends[key]

    def render(
        self,
        frame: np.ndarray,
        classes: np.ndarray,
        hud: Sequence[str] = (),
        uncertainty: np.ndarray | None = None,
    ) -> np.ndarray:
        """Annotated BGR image: ``classes`` and ``uncertainty`` (any size, e.g. the model's) are
        scaled to the frame."""
        out = self.segmentation(frame, classes, uncertainty)
        scale = font_scale(frame.shape[0])
        margin = max(4, frame.shape[0] // 60)
        # the legend's right edge: the class panel's, left of a heat map
        right = frame.shape[1] if self.view == "uncertainty" else out.shape[1]
        if self.legend != "none":
            ids = self.shown_classes(classes)
            if ids:
                sprite = self.legend_for(ids, scale, out.shape[0] - 2 * margin)
                paste(out, sprite, max(0, right - sprite.gain.shape[1] - margin), margin)
        if self.view == "uncertainty":
            draw_heat_key(out, frame.shape[1] + margin, margin, frame.shape[1] // 3, scale)
        if hud:
            draw_text_panel(out, hud, margin, margin, scale)
        return out
