"""Probe images generated in code: deterministic, no downloads. Each is uint8 RGB (size, size, 3)."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw

SIZE = 299  # InceptionV3's input
PROBES = ("rainbow", "hues", "gratings", "shapes", "checker")
DEFAULT_PROBES = ("rainbow", "shapes")


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorized HSV (each in [0, 1]) -> uint8 RGB."""
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    rgb = np.zeros((*h.shape, 3))
    for k, (r, g, b) in enumerate(choices):
        mask = i == k
        rgb[mask] = np.stack([np.broadcast_to(c, h.shape)[mask] for c in (r, g, b)], -1)
    return np.round(rgb * 255).astype(np.uint8)


def rainbow(size: int = SIZE) -> np.ndarray:
    """A horizontal hue gradient (red -> yellow -> green -> cyan -> blue -> magenta), full saturation."""
    h = np.broadcast_to(np.linspace(0, 1, size, endpoint=False), (size, size))
    return hsv_to_rgb(h, np.ones_like(h), np.ones_like(h))


def hue_wheel(size: int = SIZE) -> np.ndarray:
    """Hue by angle around the centre, saturation by radius (white centre), on a mid-gray ground."""
    y, x = np.mgrid[0:size, 0:size] - (size - 1) / 2
    r = np.hypot(x, y) / (size / 2)
    h = (np.arctan2(y, x) / (2 * np.pi)) % 1
    img = hsv_to_rgb(h, np.clip(r, 0, 1), np.ones_like(h))
    img[r > 1] = 128
    return img


def grating(orientation_deg: float, period: float, size: int = SIZE, phase: float = 0.0) -> np.ndarray:
    """A sinusoidal luminance grating; orientation is the direction the intensity changes along (0 = left-right)."""
    y, x = np.mgrid[0:size, 0:size].astype(float)
    t = np.deg2rad(orientation_deg)
    lum = 0.5 + 0.5 * np.sin(2 * np.pi * (x * np.cos(t) + y * np.sin(t)) / period + phase)
    return np.repeat(np.round(lum * 255).astype(np.uint8)[..., None], 3, -1)


def gratings(size: int = SIZE) -> np.ndarray:
    """Four quadrants: gratings at 0, 45, 90 and 135 degrees; the top row finer (period 6 px) than the bottom (14)."""
    y, x = np.mgrid[0:size, 0:size]
    top, left = y < size // 2, x < size // 2
    out = np.empty((size, size, 3), np.uint8)
    quadrants = ((top & left, 0, 6), (top & ~left, 45, 6), (~top & left, 90, 14), (~top & ~left, 135, 14))
    for mask, angle, period in quadrants:
        out[mask] = grating(angle, period, size)[mask]
    return out


def shapes(size: int = SIZE) -> np.ndarray:
    """A circle, a square, a triangle and stripes, dark and coloured, on a plain light ground."""
    img = Image.new("RGB", (size, size), (225, 225, 225))
    d = ImageDraw.Draw(img)
    s = size / 299
    d.ellipse([20 * s, 20 * s, 130 * s, 130 * s], fill=(20, 20, 20))
    d.rectangle([170 * s, 25 * s, 275 * s, 130 * s], fill=(200, 30, 30))
    d.polygon([(75 * s, 165 * s), (20 * s, 275 * s), (130 * s, 275 * s)], fill=(30, 60, 200))
    for k in range(5):
        d.rectangle([(165 + 24 * k) * s, 165 * s, (177 + 24 * k) * s, 275 * s], fill=(30, 150, 40))
    return np.asarray(img)


def checker(size: int = SIZE, square: int = 23) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    board = ((x // square + y // square) % 2 * 255).astype(np.uint8)
    return np.repeat(board[..., None], 3, -1)


def solid_hue(hue: float, size: int = SIZE) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb(hue % 1, 1, 1)
    return np.broadcast_to(np.round(np.array([r, g, b]) * 255).astype(np.uint8), (size, size, 3)).copy()


def make_probe(name: str, size: int = SIZE) -> np.ndarray:
    return {"rainbow": rainbow, "hues": hue_wheel, "gratings": gratings, "shapes": shapes, "checker": checker}[name](
        size
    )
