"""What each filter is: its energy split in a colour-opponent basis, its orientation, a category and an
opposite-sign partner; and tuning curves (mean activation against hue and grating orientation)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .images import prepare
from .probes import grating, solid_hue
from .stem import Stem, capture

PARTNER_COSINE = -0.7  # an opposite-sign partner: cosine similarity at or below this
# An orthonormal colour basis: luminance and two colour-opponent axes (red-green, blue-yellow).
LUMINANCE = np.array([1.0, 1.0, 1.0]) / math.sqrt(3)
RED_GREEN = np.array([1.0, -1.0, 0.0]) / math.sqrt(2)
BLUE_YELLOW = np.array([-1.0, -1.0, 2.0]) / math.sqrt(6)
_YY, _XX = np.mgrid[-1:2, -1:2].astype(float)  # kernel coordinates: x to the right, y down
CATEGORY_RULE = (
    "colour energy >= 50% of the filter's energy: 'colour' when most of that colour energy is spatially uniform, "
    "else 'colour-edge'; otherwise, uniform (DC) luminance >= 50% of the luminance energy: 'low-frequency'; "
    "otherwise, a linear ramp (oriented gradient) >= 50% of the non-uniform luminance energy: 'edge' "
    "('colour-edge' when colour is >= 25% of the energy); everything else: 'other'"
)


def describe_filter(w: np.ndarray) -> dict[str, Any]:
    """Energy split, orientation and category of one (C, 3, 3) kernel (C = 3 RGB, or 1 gray)."""
    if w.shape[0] == 3:
        lum = np.tensordot(LUMINANCE, w, 1)
        colour = [np.tensordot(RED_GREEN, w, 1), np.tensordot(BLUE_YELLOW, w, 1)]
    else:
        lum, colour = w[0], []
    e_lum = float((lum**2).sum())
    e_col = float(sum((c**2).sum() for c in colour))
    energy = e_lum + e_col or 1e-30
    e_lum_dc = 9 * float(lum.mean()) ** 2
    e_col_dc = float(sum(9 * c.mean() ** 2 for c in colour))
    gx, gy = float((lum * _XX).sum() / 6), float((lum * _YY).sum() / 6)  # least-squares plane through the kernel
    e_grad = 6 * (gx**2 + gy**2)
    grad_frac = e_grad / (e_lum - e_lum_dc) if e_lum - e_lum_dc > 1e-12 else 0.0
    colour_frac = e_col / energy
    if colour_frac >= 0.5:
        category = "colour" if e_col_dc / (e_col or 1e-30) >= 0.5 else "colour-edge"
    elif e_lum_dc / (e_lum or 1e-30) >= 0.5:
        category = "low-frequency"
    elif grad_frac >= 0.5:
        category = "colour-edge" if colour_frac >= 0.25 else "edge"
    else:
        category = "other"
    return {
        "l2_norm": math.sqrt(float((w**2).sum())),
        "mean_weight": float(w.mean()),
        "luminance_energy": e_lum / energy,
        "colour_energy": colour_frac,
        "luminance_dc": float(lum.mean()),  # > 0 brightens, < 0 a negative-photo-like response
        # direction the luminance weights increase along: 0 = left to right (a vertical edge), 90 = top to bottom
        "orientation_deg": round(math.degrees(math.atan2(gy, gx)) % 180, 1) if e_grad > 1e-12 else None,
        "oriented_fraction": grad_frac,
        "category": category,
    }


def describe_filters(weight: torch.Tensor) -> list[dict[str, Any]]:
    w = weight.double().numpy()
    flat = w.reshape(len(w), -1)
    unit = flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-30)
    cos = unit @ unit.T
    np.fill_diagonal(cos, np.inf)
    out = []
    for i, k in enumerate(w):
        j = int(np.argmin(cos[i]))
        partner = {"partner": j, "partner_cosine": round(float(cos[i, j]), 3)} if cos[i, j] <= PARTNER_COSINE else {}
        out.append({"index": i, **describe_filter(k), "partner": None, **partner})
    return out


def _mean_activation(stem: Stem, images: list[np.ndarray]) -> np.ndarray:
    x = torch.cat([prepare(stem, im)[0] for im in images])
    return capture(stem, x)["activation_1"].mean(dim=(2, 3)).numpy()  # (len(images), 32)


def hue_tuning(stem: Stem, step: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Mean activation of each filter for uniform images of every hue (full saturation and value)."""
    hues = np.arange(0, 360, step)
    return hues, _mean_activation(stem, [solid_hue(h / 360, stem.size) for h in hues])


def orientation_tuning(stem: Stem, step: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """Mean activation against grating orientation; the strongest of two spatial periods counts."""
    angles = np.arange(0, 180, step)
    periods = (6, 12) if stem.size > 100 else (3, 6)
    responses = [_mean_activation(stem, [grating(float(a), p, stem.size) for a in angles]) for p in periods]
    return angles, np.max(responses, axis=0)
