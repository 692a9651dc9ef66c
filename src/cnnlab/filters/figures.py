"""The figures of `cnnlab filters`: the filters as tiles, their RGB planes, the feature maps, the exercise's
input | filter | map overview and the tuning curves."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..plots import kernel_tile, plt, save_figure


def plot_filters(
    weight: Any, info: list[dict[str, Any]], path: str | os.PathLike[str], normalize: str, title: str
) -> Path:
    w = weight.numpy()
    fig, axes = plt.subplots(4, 8, figsize=(12, 6.8))
    global_scale = float(np.abs(w).max()) or 1.0
    for i, ax in enumerate(axes.flat):
        scale = (float(np.abs(w[i]).max()) or 1.0) if normalize == "per-filter" else global_scale
        ax.imshow(kernel_tile(w[i], scale), interpolation="nearest")  # nearest: each weight stays one crisp square
        ax.set_title(f"{i}: {info[i]['category']}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title}\n32 filters 3x3, {normalize} scaling; mid-gray = 0, brighter = positive weight", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_filters_rgb(weight: Any, path: str | os.PathLike[str], title: str) -> Path:
    """Each filter's R, G and B planes on one diverging colour scale."""
    w = weight.numpy()
    m = float(np.abs(w).max()) or 1.0
    fig, axes = plt.subplots(6, 16, figsize=(16, 6.8))
    for i in range(32):
        band, col = divmod(i, 16)
        for c, plane in enumerate("RGB"):
            ax = axes[3 * band + c, col]
            im = ax.imshow(w[i, c], cmap="RdBu_r", vmin=-m, vmax=m, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_title(str(i), fontsize=8)
            if col == 0:
                ax.set_ylabel(plane, rotation=0, labelpad=10)
    fig.colorbar(im, ax=axes, fraction=0.02, pad=0.01, label="weight")
    fig.suptitle(f"{title}: R, G, B planes of each filter (red positive, blue negative)", fontsize=10)
    return save_figure(fig, path)


def plot_maps(maps: Any, path: str | os.PathLike[str], title: str, signed: bool, dead: list[int] | None = None) -> Path:
    """The 32 feature maps on one shared scale (so their strengths compare); dead channels marked."""
    m = maps.numpy()
    top = float(np.abs(m).max()) or 1.0
    fig, axes = plt.subplots(4, 8, figsize=(14, 7.6))
    for i, ax in enumerate(axes.flat):
        if signed:
            im = ax.imshow(m[i], cmap="RdBu_r", vmin=-top, vmax=top)
        else:
            im = ax.imshow(m[i], cmap="gray", vmin=0, vmax=top)
        is_dead = dead is not None and i in dead
        ax.set_title(f"{i}" + (" dead (all 0)" if is_dead else ""), fontsize=8, color="red" if is_dead else "black")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes, fraction=0.02, pad=0.01)
    fig.suptitle(f"{title}: {m.shape[1]}x{m.shape[2]} maps, one shared scale", fontsize=10)
    return save_figure(fig, path)


def plot_overview(
    shown: np.ndarray,
    weight: Any,
    act: Any,
    path: str | os.PathLike[str],
    title: str,
    dead: list[int],
    activation: str = "BN + ReLU",
) -> Path:
    """Per filter, as the exercise shows it: input | filter colour | feature map after the activation."""
    w, a = weight.numpy(), act.numpy()
    top = float(a.max()) or 1.0
    fig, axes = plt.subplots(8, 12, figsize=(15, 11))
    for i in range(32):
        row, group = divmod(i, 4)
        ax_in, ax_f, ax_map = axes[row, 3 * group : 3 * group + 3]
        ax_in.imshow(shown)
        ax_f.imshow(kernel_tile(w[i], float(np.abs(w[i]).max()) or 1.0), interpolation="nearest")
        ax_map.imshow(a[i], cmap="gray", vmin=0, vmax=top)
        ax_f.set_title(f"filter {i}" + (" (dead)" if i in dead else ""), fontsize=7)
        for ax in (ax_in, ax_f, ax_map):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{title}\neach triple: input | filter | feature map after {activation} (shared scale)", fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.93, wspace=0.05, hspace=0.25)
    return save_figure(fig, path)


def plot_tuning(
    xs: np.ndarray,
    resp: np.ndarray,
    path: str | os.PathLike[str],
    xlabel: str,
    title: str,
    info: list[dict[str, Any]],
    hue_axis: bool = False,
) -> Path:
    """Small multiples: one panel per filter, mean activation against the probe parameter."""
    fig, axes = plt.subplots(4, 8, figsize=(16, 8), sharex=True)
    top = float(resp.max()) or 1.0
    for i, ax in enumerate(axes.flat):
        ax.plot(xs, resp[:, i], color="black", linewidth=1.2)
        if hue_axis:
            from matplotlib.colors import hsv_to_rgb

            strip = hsv_to_rgb(np.stack([xs / 360, np.ones(len(xs)), np.ones(len(xs))], -1))[None]
            ax.imshow(strip, extent=(xs[0], xs[-1], -0.08 * top, -0.01 * top), aspect="auto")
        ax.set_ylim(-0.1 * top if hue_axis else 0, top * 1.05)
        ax.set_xlim(xs[0], xs[-1])
        ax.set_title(f"{i}: {info[i]['category']}", fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in axes[-1]:
        ax.set_xlabel(xlabel, fontsize=7)
    fig.suptitle(f"{title}: mean activation_1 per filter (shared y-axis)", fontsize=10)
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.07, top=0.92, wspace=0.3, hspace=0.35)  # tight_layout is slow
    return save_figure(fig, path)
