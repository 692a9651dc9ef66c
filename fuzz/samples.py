"""Valid seed files for fuzzing the readers (built in memory, deterministic)."""

from __future__ import annotations

import gzip
import io
import struct

import numpy as np
from PIL import Image


def idx_samples() -> list[bytes]:
    images = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    labels = np.array([0, 5, 9], dtype=np.uint8)
    raw = [
        struct.pack(">HBB", 0, 8, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes() for a in (images, labels)
    ]
    return raw + [gzip.compress(r, mtime=0) for r in raw]


def image_samples() -> list[bytes]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    out = []
    for img, fmt, kw in [
        (rgb, "PNG", {}),
        (rgb, "JPEG", {"quality": 80}),
        (rgb.convert("P"), "GIF", {}),
        (rgb.convert("L"), "PNG", {}),
        (rgb.convert("RGBA"), "PNG", {}),
        (rgb.convert("CMYK"), "TIFF", {}),
        (Image.fromarray(rng.integers(0, 65535, (16, 16), dtype=np.uint16)), "PNG", {}),
        (rgb, "BMP", {}),
        (rgb, "WEBP", {}),
    ]:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **kw)
        out.append(buf.getvalue())
    return out
