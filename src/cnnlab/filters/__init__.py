"""What a first convolution layer sees: InceptionV3's ``Conv2d_1a_3x3`` (Keras' ``conv2d_1`` / ``activation_1``)
or the first layer of a cnnlab checkpoint. Filters, feature maps taken with forward hooks, a filter taxonomy
and tuning curves.

stem (weights and hooks) -> images and probes (the inputs) -> taxonomy (what each filter is) -> figures; this
module composes them for `cnnlab filters`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CnnlabError
from . import figures
from .images import load_image, prepare
from .probes import DEFAULT_PROBES, PROBES, make_probe
from .stem import Stem, capture, load_checkpoint_stem, load_inception
from .taxonomy import CATEGORY_RULE, describe_filter, describe_filters, hue_tuning, orientation_tuning

__all__ = [
    "PROBES",
    "FiltersResult",
    "capture",
    "describe_filter",
    "describe_filters",
    "load_image",
    "load_inception",
    "make_probe",
    "prepare",
    "run_filters",
]

NORMALIZE_CHOICES = ("per-filter", "global")


@dataclass
class FiltersResult:
    title: str
    out: Path
    filters: list[dict[str, Any]]
    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def _image_name(path: Path, taken: set[str]) -> str:
    base = re.sub(r"[^\w.-]", "_", path.stem) or "image"
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    taken.add(name)
    return name


def _probes(probes: list[str] | None) -> list[str]:
    chosen = [p for item in probes or [] for p in (PROBES if item == "all" else [item])]
    for p in chosen:
        if p not in PROBES:
            raise CnnlabError(f"--probe {p!r}: unknown; choose from {', '.join(PROBES)} or all")
    return chosen


def _fashion_images(data_dir: str | None, n: int = 4) -> list[tuple[str, np.ndarray]]:
    """A few Fashion-MNIST holdout images, named after their class: the inputs for a cnnlab model."""
    from ..data.module import CLASS_NAMES, FashionMNISTDataModule

    holdout = FashionMNISTDataModule(data_dir).eval_set("holdout")
    out = []
    for i in range(n):
        label = CLASS_NAMES[int(holdout.labels[i])].replace("/", "-").replace(" ", "_")
        out.append((f"fashion{i}_{label}", np.repeat(holdout.images[i, 0].numpy()[..., None], 3, -1)))
    return out


def _feature_maps(stem: Stem, name: str, rgb: np.ndarray, out: Path, title: str) -> tuple[dict[str, Any], list[Path]]:
    """One input through the layer: its mean activations, dead channels and strongest filters, and its figures."""
    from .. import plots

    x, shown = prepare(stem, rgb)
    maps = capture(stem, x)
    act = maps["activation_1"][0]  # (32, 149, 149) for InceptionV3
    dead = [int(i) for i in torch.nonzero(act.flatten(1).amax(1) <= 0).flatten()]
    means = [round(float(v), 6) for v in act.mean(dim=(1, 2))]
    strongest = sorted(range(len(means)), key=lambda i: -means[i])[:5]
    info = {"mean_activation": means, "dead_channels": dead, "strongest": strongest}
    files = [
        plots.save_image(shown, out / f"{name}_input.png"),
        figures.plot_maps(
            maps["conv2d_1"][0], out / f"{name}_conv2d_1.png", f"{name}: conv2d_1 ({stem.title})", signed=True
        ),
        figures.plot_maps(
            act, out / f"{name}_activation_1.png", f"{name}: activation_1 ({stem.title})", signed=False, dead=dead
        ),
        figures.plot_overview(
            shown, stem.weight, act, out / f"{name}_overview.png", f"{name}: {title}", dead, stem.activation
        ),
    ]
    return info, files


def _tuning(stem: Stem, info: list[dict[str, Any]], out: Path) -> tuple[dict[str, Any], list[Path]]:
    """Hue tuning (colour layers only) and orientation tuning, as data and as figures."""
    tuning, files = {}, []
    curves = [("orientation", *orientation_tuning(stem), "grating orientation (degrees)")]
    if stem.channels == 3:
        curves.insert(0, ("hue", *hue_tuning(stem), "hue (degrees)"))
    for kind, xs, resp, xlabel in curves:
        tuning[kind] = {"x": np.asarray(xs).tolist(), "response": np.asarray(resp).round(6).tolist()}
        path = out / f"tuning_{kind}.png"
        title = f"{kind} tuning ({stem.title})"
        files.append(figures.plot_tuning(xs, resp, path, xlabel, title, info, hue_axis=kind == "hue"))
    return tuning, files


def run_filters(
    images: list[str] | None = None,
    probes: list[str] | None = None,
    weights: str = "imagenet",
    out: str | os.PathLike[str] = "filters_out",
    normalize: str = "per-filter",
    board_logdir: str | None = None,
    model: str | None = None,
    seed: int = 0,
    data_dir: str | None = None,
) -> FiltersResult:
    """Draw the first layer's filters and its feature maps for images and probes; write figures and summary.json.
    With ``board_logdir``, the figures also become the TensorBoard run ``<board_logdir>/filters/<out's name>``."""
    from ..atomic import atomic_write_json

    if normalize not in NORMALIZE_CHOICES:
        raise CnnlabError(f"--normalize {normalize!r}: unknown; choose {' or '.join(NORMALIZE_CHOICES)}")
    chosen = _probes(probes)
    taken: set[str] = set(PROBES)
    # every image file is read (and checked) before any work
    inputs = [(_image_name(Path(path), taken), load_image(path)) for path in images or []]
    stem = load_checkpoint_stem(model) if model else load_inception(weights, seed)
    if not images and not chosen:
        if model:
            inputs = _fashion_images(data_dir)
        else:
            chosen = list(DEFAULT_PROBES)
    inputs += [(p, make_probe(p, stem.size)) for p in chosen]
    out = Path(out)
    result = FiltersResult(stem.title, out, describe_filters(stem.weight))
    title = f"{stem.network} first conv layer ({stem.title})"
    result.files.append(figures.plot_filters(stem.weight, result.filters, out / "filters.png", normalize, title))
    if stem.channels == 3:
        result.files.append(figures.plot_filters_rgb(stem.weight, out / "filters_rgb.png", title))
    for name, rgb in inputs:
        result.images[name], files = _feature_maps(stem, name, rgb, out, title)
        result.files += files
    tuning, files = _tuning(stem, result.filters, out)
    result.files += files
    summary = {
        "title": stem.title,
        "random_weights": stem.random,
        "network": stem.network,
        "activation": stem.activation,
        "category_rule": CATEGORY_RULE,
        "filters": result.filters,
        "images": result.images,
        "tuning": tuning,
    }
    atomic_write_json(out / "summary.json", summary)
    result.files.append(out / "summary.json")
    if board_logdir:
        from ..tblog import board_dir, write_board

        write_board(board_dir(board_logdir, "filters", out), [f for f in result.files if f.suffix == ".png"])
    return result
