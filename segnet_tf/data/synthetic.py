"""Procedural dashcam-like road scenes with exact CamVid labels (numpy + OpenCV, no TensorFlow).

A scene is laid out in metres in front of a pinhole camera (a road with lanes, pavements, facades
or hedges on both sides, a backdrop at the end of the street, and cars, people, cyclists, trees,
poles and signs standing on the ground), then painted far to near so every pixel's label is the
class of the surface that is drawn last there: labels are exact, never estimated. Textures, haze,
shadows and random exposure make the image side plausible enough that a small SegNet learns
real cues in a few CPU minutes; it is a smoke-test and demo dataset, not a CamVid substitute.

The layout is drawn from ``numpy.random.default_rng(seed)`` without looking at pixel sizes, so one
seed gives the same street at any resolution.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from segnet_tf.data.config import CAMVID, DatasetConfig
from segnet_tf.data.datasets import Dataset, save_dataset
from segnet_tf.data.io import DatasetError

_ID = {name: i for i, name in enumerate(CAMVID.class_names)}
SKY, BUILDING, POLE, ROAD = _ID["Sky"], _ID["Building"], _ID["Pole"], _ID["Road"]
PAVEMENT, TREE, SIGN, FENCE = _ID["Pavement"], _ID["Tree"], _ID["SignSymbol"], _ID["Fence"]
CAR, PEDESTRIAN, BICYCLIST = _ID["Car"], _ID["Pedestrian"], _ID["Bicyclist"]

_NEAR = 0.3  # metres; ground and facades start here, below the bottom of the frame
_SUBPIXEL = 4  # fixed-point bits for OpenCV drawing, so small far objects keep their shape

_BUILDING_COLOURS = [
    (150, 82, 62),
    (188, 168, 138),
    (205, 202, 192),
    (118, 108, 98),
    (168, 150, 122),
    (140, 140, 148),
    (112, 62, 52),
    (180, 120, 90),
]
_CAR_COLOURS = [
    (225, 225, 228),
    (170, 172, 178),
    (35, 36, 40),
    (150, 30, 32),
    (40, 60, 120),
    (30, 70, 45),
    (120, 120, 125),
    (200, 190, 160),
    (90, 20, 25),
    (70, 110, 160),
]
_CLOTHES = [
    (30, 30, 35),
    (40, 55, 95),
    (150, 35, 40),
    (200, 200, 195),
    (90, 90, 95),
    (110, 80, 50),
    (60, 90, 60),
    (170, 150, 110),
    (45, 45, 70),
]
_SKIN = [(224, 180, 150), (190, 140, 105), (140, 95, 65), (95, 65, 45)]


# --------------------------------------------------------------------------- drawing primitives


@dataclass(frozen=True)
class _Camera:
    """Pinhole camera ``height`` metres above flat ground, looking along +z; y is up."""

    f: float
    cx: float
    horizon: float
    height: float

    def project(self, pts: np.ndarray) -> np.ndarray:
        """``[N, 3]`` (x, y, z) metres -> ``[N, 2]`` (u, v) pixels."""
        pts = np.asarray(pts, np.float64)
        z = np.maximum(pts[:, 2], 1e-3)
        return np.stack(
            [
                self.cx + self.f * pts[:, 0] / z,
                self.horizon + self.f * (self.height - pts[:, 1]) / z,
            ],
            axis=1,
        )

    def scale(self, z: float) -> float:
        """Pixels per metre at depth ``z``."""
        return self.f / z


class _Painter:
    """Image, label and depth buffers painted far to near; masks are drawn in local patches."""

    def __init__(self, size: tuple[int, int], cam: _Camera, rng: np.random.Generator):
        self.h, self.w = size
        self.cam = cam
        self.image = np.zeros((self.h, self.w, 3), np.float32)
        self.label = np.full((self.h, self.w), SKY, np.uint8)
        self.depth = np.full((self.h, self.w), np.inf, np.float32)
        fine = rng.standard_normal((self.h, self.w)).astype(np.float32)
        self.fine = cv2.GaussianBlur(fine, (0, 0), 0.6)
        self.leaf = _value_noise(rng, self.h, self.w, max(self.w // 160, 2))
        self.coarse = _value_noise(rng, self.h, self.w, max(self.w // 24, 2))
        self.blotch = _value_noise(rng, self.h, self.w, max(self.w // 7, 2))

    def _patch(self, pts: np.ndarray, pad: float = 1.0) -> tuple[int, int, int, int] | None:
        x0 = max(int(np.floor(pts[:, 0].min() - pad)), 0)
        y0 = max(int(np.floor(pts[:, 1].min() - pad)), 0)
        x1 = min(int(np.ceil(pts[:, 0].max() + pad)) + 1, self.w)
        y1 = min(int(np.ceil(pts[:, 1].max() + pad)) + 1, self.h)
        return None if x1 <= x0 or y1 <= y0 else (y0, x0, y1, x1)

    @staticmethod
    def _fixed(pts: np.ndarray, y0: int, x0: int) -> np.ndarray:
        return np.round((pts - [x0, y0]) * (1 << _SUBPIXEL)).astype(np.int32)

    def poly_mask(self, polys: Sequence[np.ndarray]):
        """Filled pixel polygons -> (y0, x0, mask) or None when off-screen."""
        polys = [np.clip(np.asarray(p, np.float64), -1e5, 1e5) for p in polys]
        box = self._patch(np.concatenate(polys))
        if box is None:
            return None
        y0, x0, y1, x1 = box
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [self._fixed(p, y0, x0) for p in polys], 1, cv2.LINE_8, _SUBPIXEL)
        return y0, x0, mask

    def ellipse_mask(self, centre, axes, angle: float = 0.0, thickness: int = -1):
        (u, v), (a, b) = centre, axes
        r = max(a, b) + abs(thickness)
        box = self._patch(np.array([[u - r, v - r], [u + r, v + r]]))
        if box is None:
            return None
        y0, x0, y1, x1 = box
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        c = tuple(self._fixed(np.array([[u, v]]), y0, x0)[0])
        ax = (max(int(a * (1 << _SUBPIXEL)), 1), max(int(b * (1 << _SUBPIXEL)), 1))
        cv2.ellipse(mask, c, ax, angle, 0, 360, 1, thickness, cv2.LINE_8, _SUBPIXEL)
        return y0, x0, mask

    def line_mask(self, pts: np.ndarray, width: float):
        """A thick pixel polyline; width is at least one pixel so thin parts never vanish."""
        t = max(int(round(width)), 1)
        box = self._patch(pts, pad=t)
        if box is None:
            return None
        y0, x0, y1, x1 = box
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.polylines(mask, [self._fixed(pts, y0, x0)], False, 1, t, cv2.LINE_8, _SUBPIXEL)
        return y0, x0, mask

    def fill(
        self,
        drawn,
        colour,
        cls: int | None,
        z,
        grain: float = 5.0,
        blotch: float = 0.06,
        leaf: float = 0.0,
    ):
        """Paint a mask from ``*_mask``: textured colour, class ``cls`` (None keeps the label,
        for paint on a surface such as lane marks or windows) and depth ``z`` (scalar or array).
        ``grain``, ``blotch`` and ``leaf`` scale pixel noise, large stains and foliage speckle."""
        if drawn is None:
            return
        y0, x0, mask = drawn
        sl = np.s_[y0 : y0 + mask.shape[0], x0 : x0 + mask.shape[1]]
        m = mask.astype(bool)
        if not m.any():
            return
        col = np.asarray(colour, np.float32)
        tex = 1.0 + blotch * self.coarse[sl][..., None] + leaf * self.leaf[sl][..., None]
        value = col * tex + grain * self.fine[sl][..., None]
        self.image[sl][m] = np.broadcast_to(value, m.shape + (3,))[m]
        if cls is not None:
            self.label[sl][m] = cls
        self.depth[sl][m] = np.broadcast_to(np.asarray(z, np.float32), m.shape)[m]

    def shade(self, drawn, factor: float, on: tuple[int, ...] | None = None) -> None:
        """Darken (shadow) what is already painted, only on classes ``on`` if given; labels
        do not change."""
        if drawn is None:
            return
        y0, x0, mask = drawn
        sl = np.s_[y0 : y0 + mask.shape[0], x0 : x0 + mask.shape[1]]
        m = mask.astype(bool)
        if on is not None:
            m &= np.isin(self.label[sl], on)
        self.image[sl][m] *= factor

    def quad(self, pts3d, colour, cls, **kw) -> None:
        pts3d = np.asarray(pts3d, np.float64)
        self.fill(self.poly_mask([self.cam.project(pts3d)]), colour, cls, pts3d[:, 2].min(), **kw)


def _value_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    grid = rng.standard_normal((h // cell + 2, w // cell + 2)).astype(np.float32)
    big = cv2.resize(
        grid, (grid.shape[1] * cell, grid.shape[0] * cell), interpolation=cv2.INTER_CUBIC
    )
    return big[:h, :w]


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _pick(rng: np.random.Generator, items: Sequence):
    return items[int(rng.integers(len(items)))]


def _jitter(rng: np.random.Generator, colour, amount: float = 12.0) -> np.ndarray:
    return np.clip(np.asarray(colour, np.float32) + rng.normal(0, amount, 3), 0, 255)


def _front(x0: float, x1: float, y0: float, y1: float, z: float) -> list:
    """Corners of an upright rectangle facing the camera at depth z."""
    return [[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]]


def _wall(x: float, y0: float, y1: float, z0: float, z1: float) -> list:
    """Corners of an upright rectangle along the street, on the plane x = const."""
    return [[x, y0, z0], [x, y1, z0], [x, y1, z1], [x, y0, z1]]


def _flat(x0: float, x1: float, y: float, z0: float, z1: float) -> list:
    """Corners of a horizontal rectangle at height y (ground strips, roofs)."""
    return [[x0, y, z0], [x1, y, z0], [x1, y, z1], [x0, y, z1]]


def _limb(a: tuple[float, float], b: tuple[float, float], width: float) -> list:
    """A body part from point a to point b (x, y in metres), ``width`` wide."""
    h = width / 2
    return [[a[0] - h, a[1]], [a[0] + h, a[1]], [b[0] + h, b[1]], [b[0] - h, b[1]]]


# --------------------------------------------------------------------------- scene parts


@dataclass(frozen=True)
class _Street:
    left_kerb: float  # x of the road's left edge (negative)
    right_kerb: float
    lanes: tuple[float, ...]  # x of lane edges, left to right (inner ones are painted lines)
    left_wall: float  # x of the left facade / hedge line (pavement outer edge)
    right_wall: float
    far: float  # z of the backdrop closing the street
    parking: tuple[bool, bool]  # parked cars along the left / right kerb


def _sky(p: _Painter, rng: np.random.Generator, overcast: bool) -> np.ndarray:
    if overcast:
        top = _jitter(rng, (196, 202, 212), 10)
        low = np.clip(top + _u(rng, 10, 35), 0, 250)
    else:
        top = _jitter(rng, (95, 140, 205), 15)
        low = _jitter(rng, (190, 208, 228), 10)
    t = np.clip(np.arange(p.h, dtype=np.float32) / max(p.cam.horizon, 1.0), 0, 1)[:, None, None]
    sky = top * (1 - t) + low * t
    clouds = np.clip(p.blotch * 0.8 + 0.1, 0, 1)[..., None] * (0.15 if overcast else 0.5)
    p.image[:] = sky * (1 - clouds) + np.float32(235) * clouds + 2.0 * p.fine[..., None]
    return low


def _ground(p: _Painter, rng: np.random.Generator, st: _Street, sunny: bool) -> None:
    cam, far = p.cam, st.far
    rows = np.arange(p.h, dtype=np.float32)[:, None]
    ground_z = cam.f * cam.height / np.maximum(rows - cam.horizon, 1e-3)

    def strip(x0: float, x1: float, z0: float = _NEAR, z1: float = far):
        return p.poly_mask([cam.project(_flat(x0, x1, 0, z0, z1))])

    def paint(drawn, colour, cls, **kw) -> None:  # ground depth varies along each strip
        z = None if drawn is None else ground_z[drawn[0] : drawn[0] + drawn[2].shape[0]]
        p.fill(drawn, colour, cls, z, **kw)

    asphalt = _jitter(rng, (96, 96, 102), 10)
    paint(strip(st.left_kerb, st.right_kerb), asphalt, ROAD, grain=8, blotch=0.035)
    for _ in range(int(rng.integers(0, 4))):  # repair patches
        x, z = _u(rng, st.left_kerb, st.right_kerb), _u(rng, 3, far / 2)
        patch = strip(x, x + _u(rng, 0.5, 2.5), z, z + _u(rng, 1, 6))
        paint(patch, asphalt * _u(rng, 0.75, 0.9), ROAD, grain=6)
    paving = _jitter(rng, _pick(rng, [(160, 158, 150), (175, 165, 150), (150, 112, 100)]), 8)
    joints_end = min(far, np.sqrt(cam.f * cam.height * 1.2 / 3))  # joints >= 3 pixels apart
    for x0, x1, kerb in ((st.left_wall, st.left_kerb, -0.15), (st.right_kerb, st.right_wall, 0.15)):
        paint(strip(x0, x1), paving, PAVEMENT, grain=6, blotch=0.05)
        edge = x1 if kerb < 0 else x0
        paint(strip(min(edge, edge + kerb), max(edge, edge + kerb)), paving * 1.12, PAVEMENT)
        for z in np.arange(_NEAR + _u(rng, 0, 1.2), joints_end, 1.2):
            p.shade(p.line_mask(cam.project([[x0, 0, z], [x1, 0, z]]), 1), 0.85)
    white = _jitter(rng, (215, 215, 205), 8)
    dash, gap = _u(rng, 2, 4), _u(rng, 3, 8)
    for x in st.lanes[1:-1]:
        for z in np.arange(_u(rng, _NEAR, 2), far, dash + gap):
            p.fill(strip(x - 0.07, x + 0.07, z, min(z + dash, far)), white, ROAD, z, grain=4)
    for x in (st.left_kerb + 0.3, st.right_kerb - 0.3):
        if rng.random() < 0.5:
            paint(strip(x - 0.05, x + 0.05), white * 0.9, ROAD, grain=4)
    if rng.random() < 0.15:  # zebra crossing
        z = _u(rng, 6, 20)
        for x in np.arange(st.left_kerb + 0.3, st.right_kerb - 0.3, 1.0):
            p.fill(strip(x, x + 0.5, z, z + 3), white, ROAD, z, grain=4)
    if sunny:  # a facade shadow across part of the road
        side = st.left_wall if rng.random() < 0.5 else st.right_wall
        width = _u(rng, 1, 6) * (1 if side < 0 else -1)
        p.shade(strip(min(side, side + width), max(side, side + width)), _u(rng, 0.5, 0.7))


def _facade(
    p: _Painter,
    rng: np.random.Generator,
    x: float,
    z0: float,
    z1: float,
    height: float,
    light: float,
) -> None:
    """A building face on the plane x = const, with floors of windows and maybe a shop."""
    colour = _jitter(rng, _pick(rng, _BUILDING_COLOURS), 10) * light
    p.quad(_wall(x, 0, height, z0, z1), colour, BUILDING, grain=5, blotch=0.08)
    p.quad(_wall(x, height - 0.4, height, z0, z1), colour * 0.8, BUILDING)  # cornice
    glass = _jitter(rng, (60, 70, 80), 10) * light
    win_w, pitch = _u(rng, 0.8, 1.6), _u(rng, 2.2, 3.5)
    shop = rng.random() < 0.4
    for floor in np.arange(3.0 if shop else 1.0, height - 1.6, 3.0):
        win_h = _u(rng, 1.2, 1.7)
        for z in np.arange(z0 + _u(rng, 0.4, 1.2), z1 - win_w, pitch):
            shine = glass * _u(rng, 0.85, 1.5)
            p.quad(_wall(x, floor, floor + win_h, z, z + win_w), shine, None, grain=3)
    if shop:
        front = _jitter(rng, _pick(rng, [(50, 50, 60), (120, 40, 35), (40, 70, 60)]), 10) * light
        p.quad(_wall(x, 0, 2.8, z0, z1), front, BUILDING)
        p.quad(_wall(x, 0.4, 2.4, z0 + 0.5, z1 - 0.5), glass * 1.3, None, grain=3)


def _hedge(
    p: _Painter,
    rng: np.random.Generator,
    x: float,
    z0: float,
    z1: float,
    low: float,
    high: float,
    light: float,
) -> None:
    """A vegetation wall with a ragged top, from z0 to z1 on the plane x = const."""
    zs = np.linspace(z0, z1, 40)
    walk = np.cumsum(rng.normal(0, 0.35, zs.size)) * 0.3 + rng.random(zs.size) * 0.6
    tops = low + (high - low) * np.clip(walk, 0, 1)
    pts = np.concatenate([[[x, 0, z0]], np.stack([np.full_like(zs, x), tops, zs], 1), [[x, 0, z1]]])
    green = _jitter(rng, (58, 88, 40), 10) * light
    p.fill(p.poly_mask([p.cam.project(pts)]), green, TREE, z0, grain=8, blotch=0.12, leaf=0.3)


def _side(p: _Painter, rng: np.random.Generator, st: _Street, left: bool, sun: float) -> None:
    """Facades, hedges and a railing along one side of the street, far to near."""
    wall = st.left_wall if left else st.right_wall
    out = -1.0 if left else 1.0
    light = sun if left else 2.0 - sun
    kind = _pick(rng, ["urban", "urban", "suburban", "park"])
    if kind != "park":  # buildings end to end, so no ground behind them shows
        setback = 0.0 if kind == "urban" else _u(rng, 3, 10)
        z = st.far
        while z > _NEAR:
            length, height = _u(rng, 8, 25), _u(rng, 6, 18)
            _facade(p, rng, wall + out * setback, max(z - length, _NEAR), z, height, light)
            z -= length
    if kind != "urban":  # taller than the camera, so it hides the ground behind it
        low, high = (p.cam.height + 0.4, 3.0) if kind == "suburban" else (4.0, 12.0)
        _hedge(p, rng, wall, _NEAR, st.far, low, high, light)
    if rng.random() < 0.35:
        z0, z1 = _u(rng, 2, 10), _u(rng, 15, 40)
        x = wall - out * 0.3
        metal = [(60, 60, 62), (120, 120, 115), (140, 100, 60)]
        colour = _jitter(rng, _pick(rng, metal), 8) * light
        for y in (0.35, 0.9, 1.2):
            p.quad(_wall(x, y, y + 0.07, z0, z1), colour, FENCE, grain=3)
        for z in np.arange(z0, z1, _u(rng, 0.15, 2.0)):
            p.quad(_wall(x, 0, 1.25, z, z + 0.06), colour, FENCE, grain=3)


def _backdrop(p: _Painter, rng: np.random.Generator, st: _Street) -> None:
    """Frontal buildings or trees closing the street at z = far."""
    z, x = st.far, st.left_wall - 5
    while x < st.right_wall + 5:
        width = _u(rng, 6, 20)
        if rng.random() < 0.3:
            green = _jitter(rng, (60, 85, 45), 10)
            top = _u(rng, 5, 12)
            corners = [[x, 0, z], [x, top, z], [x + width, top * 0.8, z], [x + width, 0, z]]
            p.quad(corners, green, TREE, grain=8, blotch=0.1, leaf=0.3)
        else:
            colour = _jitter(rng, _pick(rng, _BUILDING_COLOURS), 10)
            top = _u(rng, 6, 25)
            p.quad(_front(x, x + width, 0, top, z), colour, BUILDING, blotch=0.08)
            glass = _jitter(rng, (60, 70, 80), 10)
            for wy in np.arange(1.0, top - 1.5, 3.0):
                for wx in np.arange(x + 0.8, x + width - 1.2, 2.5):
                    p.quad(_front(wx, wx + 1.2, wy, wy + 1.5, z), glass, None, grain=3)
        x += width


def _box(p: _Painter, x0, x1, y0, y1, z0, z1, colour, cls: int) -> None:
    """An axis-aligned box: the faces a camera at x=0, y=height can see, back to front."""
    c = np.asarray(colour, np.float32)
    if y1 < p.cam.height:
        p.quad(_flat(x0, x1, y1, z0, z1), c * 1.08, cls, grain=3)
    if x0 > 0:
        p.quad(_wall(x0, y0, y1, z0, z1), c * 0.78, cls, grain=3)
    if x1 < 0:
        p.quad(_wall(x1, y0, y1, z0, z1), c * 0.78, cls, grain=3)
    p.quad(_front(x0, x1, y0, y1, z0), c * 0.92, cls, grain=3)


def _car(p: _Painter, rng: np.random.Generator, x: float, z: float, facing: bool) -> None:
    """A car whose near face (rear, or front when ``facing``) is at depth z, centred on x."""
    w, length = _u(rng, 1.65, 1.95), _u(rng, 3.8, 4.9)
    body_h = _u(rng, 0.85, 1.1)
    roof = body_h + _u(rng, 0.45, 0.6)
    paint = _jitter(rng, _pick(rng, _CAR_COLOURS), 8)
    glass = np.array([45, 52, 60], np.float32) * _u(rng, 0.8, 1.4)
    x0, x1 = x - w / 2, x + w / 2
    shadow = p.poly_mask([p.cam.project(_flat(x0 - 0.1, x1 + 0.1, 0, z - 0.2, z + length))])
    p.shade(shadow, 0.45, on=(ROAD, PAVEMENT))
    for wx in (x0, x1 - 0.25):  # tyres
        for wz in (z + 0.5, z + length - 1.2):
            _box(p, wx, wx + 0.25, 0, 0.62, wz, wz + 0.7, (25, 25, 27), CAR)
    _box(p, x0, x1, 0.28, body_h, z, z + length, paint, CAR)
    cab0, cab1 = z + length * _u(rng, 0.15, 0.3), z + length * _u(rng, 0.65, 0.8)
    c0, c1 = x0 + 0.12, x1 - 0.12
    _box(p, c0, c1, body_h, roof, cab0, cab1, glass, CAR)
    p.quad(_flat(c0, c1, roof - 0.05, cab0, cab1), paint * 1.05, CAR)
    for pillar in (c0, c1 - 0.1):
        p.quad(_front(pillar, pillar + 0.1, body_h, roof, cab0), paint * 0.9, CAR)
    lamp = (230, 230, 210) if facing else (190, 25, 25)
    for lx in (x0 + 0.08, x1 - 0.33):
        p.quad(_front(lx, lx + 0.25, 0.7, 0.85, z), lamp, CAR, grain=2)
    p.quad(_front(x - 0.26, x + 0.26, 0.4, 0.52, z), (225, 220, 200), CAR, grain=2)  # plate


def _person_parts(rng: np.random.Generator, height: float, profile: bool):
    """Body polygons in metres (x right, y up, feet at 0) with their colours: two legs, the
    torso, then the arms (one in profile). Also skin, hair and shoulder height for the head."""
    s = height / 1.75
    top, trousers = _jitter(rng, _pick(rng, _CLOTHES)), _jitter(rng, _pick(rng, _CLOTHES[:6]))
    skin = _jitter(rng, _pick(rng, _SKIN), 6)
    hair = _jitter(rng, (40, 30, 25), 10)
    stride = _u(rng, 0.0, 0.3) * s if profile else 0.0
    half = (0.13 if profile else 0.22) * s
    hip, shoulder = 0.92 * s, 1.45 * s
    parts = []
    for sign in (-1, 1):
        foot = sign * stride + (0 if profile else sign * 0.1 * s)
        leg = _limb((foot, 0), (sign * 0.02 * s, hip), 0.14 * s)
        parts.append((leg, trousers * (0.85 if sign < 0 else 1.0)))
    torso = [
        [-half, hip - 0.05 * s],
        [half, hip - 0.05 * s],
        [half * 1.05, shoulder],
        [-half * 1.05, shoulder],
    ]
    parts.append((torso, top))
    for sign in (1,) if profile else (-1, 1):
        ax = 0.0 if profile else sign * (half + 0.04 * s)
        parts.append((_limb((ax, shoulder), (ax + stride * 0.8, 0.95 * s), 0.09 * s), top * 0.9))
    return parts, skin, hair, shoulder


def _pedestrian(p: _Painter, rng: np.random.Generator, x: float, z: float) -> None:
    height = _u(rng, 1.5, 1.9)
    parts, skin, hair, shoulder = _person_parts(rng, height, profile=rng.random() < 0.6)
    for poly, colour in parts:
        p.quad([[x + px, py, z] for px, py in poly], colour, PEDESTRIAN, grain=4)
    _head(p, x, shoulder + 0.04, z, height, skin, hair, PEDESTRIAN)
    if rng.random() < 0.3:  # a bag
        bx = x + _u(rng, 0.15, 0.3)
        bag = _jitter(rng, _pick(rng, _CLOTHES))
        p.quad(_front(bx, bx + 0.3, 0.6, 0.95, z), bag, PEDESTRIAN)


def _head(p: _Painter, x: float, neck: float, z: float, height: float, skin, hair, cls) -> None:
    r = 0.115 * height / 1.75
    ((u, v),) = p.cam.project([[x, neck + r, z]])
    k = p.cam.scale(z)
    p.fill(p.ellipse_mask((u, v), (r * k * 0.85, r * k)), skin, cls, z, grain=3)
    p.fill(p.ellipse_mask((u, v - r * k * 0.35), (r * k * 0.9, r * k * 0.65)), hair, cls, z)


def _bicyclist(p: _Painter, rng: np.random.Generator, x: float, z: float) -> None:
    """A rider on a bicycle in profile (crossing) or seen from behind (riding ahead)."""
    frame = _jitter(rng, _pick(rng, [(30, 30, 30), (160, 30, 30), (40, 60, 140), (200, 200, 200)]))
    k = p.cam.scale(z)
    tyre_w = max(0.05 * k, 1.0)
    parts, skin, hair, shoulder = _person_parts(rng, _u(rng, 1.6, 1.85), profile=True)
    (_, trousers), (_, top) = parts[0], parts[2]

    def stroke(points, width: float, colour) -> None:
        line = p.cam.project([[px, py, z] for px, py in points])
        p.fill(p.line_mask(line, width * k), colour, BICYCLIST, z)

    if rng.random() < 0.5:  # profile: two wheels and a diamond frame in the plane z
        r, base = 0.34, 1.05
        hubs = [(x - base / 2, r), (x + base / 2, r)]
        for hub in hubs:
            ((u, v),) = p.cam.project([[*hub, z]])
            ring = p.ellipse_mask((u, v), (r * k, r * k), thickness=int(tyre_w))
            p.fill(ring, (25, 25, 25), BICYCLIST, z)
        seat, bar, crank = (x - 0.15, 0.95), (x + 0.42, 1.0), (x - 0.05, 0.3)
        stroke([hubs[0], crank, seat, hubs[0], seat, bar, crank, bar, hubs[1]], 0.05, frame)
        stroke([seat, (seat[0] + 0.15, 1.55), (bar[0], bar[1] + 0.05)], 0.28, top)  # torso, arm
        stroke([seat, (x + 0.1, 0.6), (crank[0] + 0.1, crank[1])], 0.14, trousers)  # leg
        _head(p, seat[0] + 0.2, 1.55, z, 1.75, skin, hair, BICYCLIST)
    else:  # from behind: a thin wheel under a rider
        (u0, v0), (u1, v1) = p.cam.project([[x, 0.0, z], [x, 0.68, z]])
        wheel = p.ellipse_mask(((u0 + u1) / 2, (v0 + v1) / 2), (tyre_w, (v0 - v1) / 2))
        p.fill(wheel, (25, 25, 25), BICYCLIST, z)
        p.quad(_front(x - 0.3, x + 0.3, 1.0, 1.04, z), frame, BICYCLIST)  # handlebar
        for poly, colour in parts[2:]:  # torso and arm, lifted onto the saddle
            p.quad([[x + px, py + 0.05, z] for px, py in poly], colour, BICYCLIST)
        for sign in (-1, 1):
            p.quad(_front(x + sign * 0.05, x + sign * 0.16, 0.3, 1.0, z), trousers, BICYCLIST)
        _head(p, x, shoulder + 0.09, z, 1.75, skin, hair, BICYCLIST)


def _tree(p: _Painter, rng: np.random.Generator, x: float, z: float) -> None:
    """A trunk under a crown of overlapping blobs with a ragged (noise-thresholded) edge."""
    trunk_h, crown = _u(rng, 1.8, 3.5), _u(rng, 1.5, 3.2)
    w = _u(rng, 0.15, 0.35)
    p.quad(
        _front(x - w / 2, x + w / 2, 0, trunk_h + crown, z),
        _jitter(rng, (75, 60, 45), 10),
        TREE,
        grain=6,
    )
    n = int(rng.integers(4, 9))
    blob_x = x + rng.normal(0, crown * 0.45, n)
    blob_y = trunk_h + crown + rng.normal(0, crown * 0.35, n)
    radii = crown * rng.uniform(0.45, 0.8, n) * p.cam.scale(z)
    centres = p.cam.project(np.stack([blob_x, blob_y, np.full(n, z)], 1))
    box = p._patch(np.concatenate([centres - radii[:, None], centres + radii[:, None]]))
    if box is None:
        return
    y0, x0, y1, x1 = box
    soft = np.zeros((y1 - y0, x1 - x0), np.float32)
    for (u, v), r in zip(centres, radii, strict=True):
        cv2.circle(soft, (int(round(u - x0)), int(round(v - y0))), max(int(round(r)), 1), 1.0, -1)
    soft = cv2.GaussianBlur(soft, (0, 0), max(float(radii.mean()) * 0.15, 0.5))
    ragged = soft + 0.175 * p.coarse[y0:y1, x0:x1] + 0.15 * p.fine[y0:y1, x0:x1]
    green = _jitter(rng, _pick(rng, [(55, 85, 35), (75, 100, 45), (45, 70, 40)]), 10)
    mask = (ragged > 0.5).astype(np.uint8)
    p.fill((y0, x0, mask), green, TREE, z, grain=8, blotch=0.12, leaf=0.35)


def _pole(p: _Painter, rng: np.random.Generator, x: float, z: float, toward_road: float) -> None:
    """A lamp post, sign post or traffic light; the post is Pole, plates and lamps SignSymbol."""
    colour = _jitter(rng, _pick(rng, [(90, 92, 95), (60, 70, 60), (140, 140, 140)]), 8)
    w = _u(rng, 0.1, 0.22)
    kind = _pick(rng, ["lamp", "sign", "sign", "lights"])
    height = {"lamp": _u(rng, 5, 9), "sign": _u(rng, 2.4, 3.2), "lights": _u(rng, 3, 4)}[kind]
    p.quad(_front(x - w / 2, x + w / 2, 0, height, z), colour, POLE, grain=3)
    k = p.cam.scale(z)
    if kind == "lamp":
        tip = x + toward_road * _u(rng, 1, 2.5)
        arm = p.cam.project([[x, height - 0.1, z], [tip, height + 0.2, z]])
        p.fill(p.line_mask(arm, w * k), colour, POLE, z)
        head = [
            [tip - 0.3, height, z],
            [tip + 0.3, height, z],
            [tip + 0.25, height + 0.3, z],
            [tip - 0.25, height + 0.3, z],
        ]
        p.quad(head, colour * 0.8, POLE)
    elif kind == "sign":
        ((u, v),) = p.cam.project([[x, height, z]])
        r = _u(rng, 0.28, 0.4) * k
        shape = _pick(rng, ["round", "triangle", "square"])
        if shape == "round":
            p.fill(p.ellipse_mask((u, v), (r, r)), (190, 30, 35), SIGN, z, grain=3)
            inner = _pick(rng, [(235, 235, 230), (30, 70, 170)])
            p.fill(p.ellipse_mask((u, v), (r * 0.72, r * 0.72)), inner, SIGN, z, grain=3)
        elif shape == "triangle":
            tri = np.array([[u, v - r], [u + r, v + r * 0.75], [u - r, v + r * 0.75]])
            p.fill(p.poly_mask([tri]), (190, 30, 35), SIGN, z, grain=3)
            centre = tri.mean(axis=0)
            p.fill(p.poly_mask([centre + (tri - centre) * 0.55]), (235, 235, 230), SIGN, z)
        else:
            plate = np.array(
                [[u - r, v - r], [u + r, v - r], [u + r, v + 0.6 * r], [u - r, v + 0.6 * r]]
            )
            paint = _pick(rng, [(30, 70, 170), (30, 110, 60), (235, 235, 230)])
            p.fill(p.poly_mask([plate]), paint, SIGN, z, grain=3)
    else:
        p.quad(_front(x - 0.17, x + 0.17, height, height + 0.9, z), (28, 30, 30), SIGN, grain=2)
        lit = int(rng.integers(3))
        for i, colour in enumerate([(200, 40, 30), (210, 150, 30), (40, 180, 80)]):
            ((u, v),) = p.cam.project([[x, height + 0.75 - 0.3 * i, z]])
            lamp = p.ellipse_mask((u, v), (0.1 * k, 0.1 * k))
            p.fill(lamp, colour if i == lit else (60, 60, 55), SIGN, z)


# --------------------------------------------------------------------------- the scene


def _street(rng: np.random.Generator) -> _Street:
    lane = _u(rng, 3.0, 3.6)
    parking = (bool(rng.random() < 0.5), bool(rng.random() < 0.5))
    own_left = -_u(rng, 1.2, 2.0)  # the camera drives in the leftmost lane, as in CamVid (UK)
    lanes = tuple(own_left + lane * i for i in range(int(rng.choice([2, 2, 3, 4])) + 1))
    left_kerb = own_left - (2.2 if parking[0] else 0.0)
    right_kerb = lanes[-1] + (2.2 if parking[1] else 0.0)
    return _Street(
        left_kerb=left_kerb,
        right_kerb=right_kerb,
        lanes=lanes,
        left_wall=left_kerb - _u(rng, 1.5, 4.0),
        right_wall=right_kerb + _u(rng, 1.5, 4.0),
        far=_u(rng, 60, 140),
        parking=parking,
    )


def _objects(rng: np.random.Generator, st: _Street) -> list[tuple[float, Callable]]:
    """(depth, draw) for everything standing on the ground, to be drawn far to near."""
    objs: list[tuple[float, Callable]] = []

    def add(z: float, fn: Callable, *args) -> None:
        # each object gets its own generator so drawing order never changes what is drawn
        sub = np.random.default_rng(rng.integers(2**63))
        objs.append((z, lambda p: fn(p, sub, *args)))

    n_lanes = len(st.lanes) - 1
    for i, (a, b) in enumerate(itertools.pairwise(st.lanes)):
        for z in rng.uniform(5, st.far * 0.7, int(rng.integers(0, 3))):
            add(float(z), _car, (a + b) / 2 + rng.normal(0, 0.25), float(z), i >= n_lanes // 2)
    for side, parked in zip((-1, 1), st.parking, strict=True):
        if parked:
            kerb = st.left_kerb + 1.1 if side < 0 else st.right_kerb - 1.1
            z = _u(rng, 3, 12)
            while z < st.far * 0.6:
                add(z, _car, kerb, z, rng.random() < 0.5)
                z += _u(rng, 5.0, 12.0)
    for x0, x1, toward in ((st.left_wall, st.left_kerb, 1.0), (st.right_kerb, st.right_wall, -1.0)):
        kerb_x = x1 - 0.45 if toward > 0 else x0 + 0.45
        for _ in range(int(rng.integers(0, 5))):
            z = _u(rng, 4, st.far * 0.7)
            add(z, _tree, _u(rng, x0 + 0.5, x1 - 0.5), z)
        for _ in range(int(rng.integers(1, 5))):
            z = _u(rng, 3, st.far * 0.6)
            add(z, _pole, kerb_x, z, toward)
        for _ in range(int(rng.integers(0, 7))):
            z = _u(rng, 3, 25)
            add(z, _pedestrian, _u(rng, x0 + 0.4, x1 - 0.4), z)
    if rng.random() < 0.2:
        z = _u(rng, 5, 25)
        add(z, _pedestrian, _u(rng, st.left_kerb, st.right_kerb), z)  # crossing the road
    for _ in range(int(rng.choice([0, 0, 1, 1, 2]))):
        z = _u(rng, 5, 35)
        add(z, _bicyclist, st.lanes[0] + _u(rng, 0.4, 1.0), z)
    return sorted(objs, key=lambda o: -o[0])


def _finish(p: _Painter, rng: np.random.Generator, haze_colour: np.ndarray) -> np.ndarray:
    """Haze with distance, exposure, white balance, vignette, blur and sensor noise."""
    depth = np.where(np.isfinite(p.depth), p.depth, 0.0)
    haze = (_u(rng, 0.1, 0.45) * (1 - np.exp(-depth / _u(rng, 40, 120))))[..., None]
    img = p.image * (1 - haze) + haze_colour * haze
    img = img * _u(rng, 0.75, 1.2) * rng.uniform(0.92, 1.08, 3).astype(np.float32)
    img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** _u(rng, 0.8, 1.25)
    yy, xx = np.mgrid[0 : p.h, 0 : p.w].astype(np.float32)
    r2 = ((yy / p.h - 0.5) ** 2 + (xx / p.w - 0.5) ** 2) / 0.5
    img = img * (1 - _u(rng, 0.05, 0.3) * r2)[..., None]
    img = cv2.GaussianBlur(img, (0, 0), _u(rng, 0.4, 0.9) * max(p.w / 480, 0.5))
    img = img + rng.normal(0, _u(rng, 1.5, 5.0), img.shape).astype(np.float32)
    return np.clip(img, 0, 255).round().astype(np.uint8)


def render_scene(seed: int, size: tuple[int, int] = (360, 480)) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic road scene: (uint8 RGB ``[H, W, 3]``, uint8 CamVid class ids ``[H, W]``).

    Deterministic in ``seed``; every pixel is labelled (no void), with CamVid's 11 classes.
    """
    h, w = size
    if h < 8 or w < 8:
        raise ValueError(f"synthetic scene size {size} is too small; use at least 8x8")
    rng = np.random.default_rng(seed)
    texture_rng = np.random.default_rng([seed, 1])  # pixel-sized draws, kept out of the layout
    cam = _Camera(
        f=_u(rng, 0.75, 1.0) * w,
        cx=_u(rng, 0.42, 0.58) * w,
        horizon=_u(rng, 0.36, 0.5) * h,
        height=_u(rng, 1.2, 1.6),
    )
    st = _street(rng)
    sunny = bool(rng.random() < 0.4)
    sun = _u(rng, 0.7, 1.3) if sunny else _u(rng, 0.9, 1.1)
    p = _Painter((h, w), cam, texture_rng)
    haze_colour = _sky(p, rng, overcast=not sunny)
    _ground(p, rng, st, sunny)
    _backdrop(p, rng, st)
    _side(p, rng, st, left=True, sun=sun)
    _side(p, rng, st, left=False, sun=sun)
    for _, draw in _objects(rng, st):
        draw(p)
    return _finish(p, rng, haze_colour), p.label


# --------------------------------------------------------------------------- as a dataset


@dataclass(frozen=True)
class SyntheticSample:
    """A scene rendered on demand from its seed; behaves like a file :class:`Sample`."""

    seed: int
    size: tuple[int, int] = (360, 480)

    @property
    def name(self) -> str:
        return f"scene_{self.seed:010d}"

    def load(self, config: DatasetConfig) -> tuple[np.ndarray, np.ndarray]:
        if config.class_names != CAMVID.class_names:
            raise DatasetError(
                f"synthetic scenes are labelled with CamVid's classes, not {config.name!r}'s"
            )
        return render_scene(self.seed, self.size)

    def load_label(self, config: DatasetConfig) -> np.ndarray:
        return self.load(config)[1]


def synthetic_dataset(
    train: int = 200,
    val: int = 50,
    test: int = 0,
    size: tuple[int, int] = (360, 480),
    seed: int = 0,
) -> Dataset:
    """A :class:`Dataset` of ``train`` / ``val`` / ``test`` scenes (empty splits are left out).

    Scene seeds are derived from ``(seed, split, index)``, so splits never share a scene and
    growing one split does not change the others.
    """
    counts = {"train": train, "val": val, "test": test}
    splits = {}
    for k, (name, n) in enumerate(counts.items()):
        if n < 0:
            raise ValueError(f"synthetic_dataset: {name}={n} must be >= 0")
        if n:
            seeds = [
                int(np.random.SeedSequence([seed, k, i]).generate_state(1)[0]) for i in range(n)
            ]
            splits[name] = tuple(SyntheticSample(s, tuple(size)) for s in seeds)
    return Dataset(root=None, config=CAMVID, splits=splits)


def write_synthetic_dataset(
    out_dir: str | Path,
    train: int = 200,
    val: int = 50,
    test: int = 0,
    size: tuple[int, int] = (360, 480),
    seed: int = 0,
) -> Path:
    """Render a synthetic dataset to PNGs in the CamVid layout (``open_dataset`` reads it)."""
    return save_dataset(synthetic_dataset(train, val, test, size, seed), out_dir)
