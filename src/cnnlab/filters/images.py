"""Images in: any file Pillow reads, as uint8 RGB, and the network input made from it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from ..errors import CnnlabError, first_line
from .stem import Stem

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Any image Pillow reads -> uint8 RGB. 16-bit, palette, alpha, CMYK and animated (first frame) included."""
    p = Path(path)
    if p.is_dir():
        raise CnnlabError(f"{p}: is a folder, not an image; give image files (JPEG, PNG, ...)")
    if not p.is_file():
        raise CnnlabError(f"{p}: no such image file")
    try:
        with Image.open(p) as img:
            img.seek(0)  # animated GIF/PNG/WebP: the first frame
            img.draft("RGB", (1024, 1024))  # JPEG: decode huge photos at a reduced scale
            img.load()
            if max(img.size) > 2048:  # huge but legal: shrink early, the network sees 299 px anyway
                img.thumbnail((2048, 2048))
            return _to_rgb(img)
    except Image.DecompressionBombError:
        raise CnnlabError(
            f"{p}: refused: over Pillow's decompression-bomb limit of {2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels"
        ) from None
    except Exception as e:  # Pillow's decoders raise many types on corrupt data (OSError, TypeError, struct.error...)
        raise CnnlabError(f"{p}: not a readable image ({first_line(e, 160)}); use a JPEG or PNG") from None


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):  # high bit depth: scale to 8 bits, not clip
        a = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16"):
            lo, hi = 0.0, 65535.0
        elif img.mode == "F":  # floats: stretch their own range
            lo, hi = float(a.min()), float(a.max())
        else:  # 32-bit integers: scale by the largest value
            lo, hi = 0.0, max(float(a.max()), 1.0)
        gray = np.clip((a - lo) / ((hi - lo) or 1.0) * 255, 0, 255)
        return np.repeat(gray.astype(np.uint8)[..., None], 3, -1)
    if img.mode in ("P", "PA") or "A" in img.getbands():  # transparency: composite on white
        rgba = img.convert("RGBA")
        ground = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(ground, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def prepare(stem: Stem, rgb: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """The network input (1, C, S, S) and the image as the network sees it (S, S, 3) uint8, for display."""
    t = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)  # (3, H, W) uint8, a writable copy
    if stem.channels == 1:  # a cnnlab checkpoint: grayscale 28x28 like Fashion-MNIST
        t = TF.rgb_to_grayscale(t)
    if tuple(t.shape[1:]) != (stem.size, stem.size):
        # what the pretrained weights expect: resize to 342 (for 299) and centre-crop
        t = TF.resize(t, [round(stem.size * 342 / 299)], antialias=True)
        t = TF.center_crop(t, [stem.size, stem.size])
    display = t.permute(1, 2, 0).numpy()
    x = t.float().div(255).unsqueeze(0)
    if stem.channels == 3:
        x = TF.normalize(x, list(IMAGENET_MEAN), list(IMAGENET_STD))
    return x, np.repeat(display, 3, -1) if display.shape[-1] == 1 else display
