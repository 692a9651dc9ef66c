"""Part 2's findings: what a first conv layer extracts, read from a ``cnnlab filters`` output folder."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...errors import CnnlabError

# Edge filters by the direction of their intensity gradient (degrees mod 180): a vertical edge has its gradient
# along x (0 degrees), a horizontal edge along y (90 degrees).
ORIENTATIONS = {"vertical": 0, "diagonal_45": 45, "horizontal": 90, "diagonal_135": 135}


@dataclass
class Layer:
    folder: Path
    network: str  # "Fashion-MNIST CNN" or "InceptionV3"
    title: str  # where the weights came from
    activation: str
    random_weights: bool
    filters: int
    categories: dict[str, int]
    edges_by_orientation: dict[str, int]
    partners: int  # filters with an opposite-sign partner
    low_frequency: list[int]  # blob-like filters (uniform response): their indices
    negative: list[int]  # low-frequency filters with a negative response (negative-photo-like maps)
    images: dict[str, dict[str, Any]]  # per input: dead channels, strongest filters
    hue_peaks: dict[int, int] = field(default_factory=dict)  # hue (degrees) -> the filter responding most
    orientation_peaks: dict[int, int] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)  # file names in the folder, overview figures first

    @property
    def inception(self) -> bool:
        return self.network == "InceptionV3"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["folder"] = str(self.folder)
        return d


def _nearest(angle: float) -> str:
    return min(ORIENTATIONS, key=lambda k: min(abs(angle - ORIENTATIONS[k]), 180 - abs(angle - ORIENTATIONS[k])))


def _peaks(tuning: dict[str, Any] | None) -> dict[int, int]:
    if not tuning:
        return {}
    return {
        int(round(x)): max(range(len(r)), key=lambda i: r[i])
        for x, r in zip(tuning["x"], tuning["response"], strict=True)
    }


def read_layer(folder: str | os.PathLike[str]) -> Layer:
    folder = Path(folder)
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        filt = summary["filters"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CnnlabError(
            f"--filters {folder}: no readable summary.json ({e}); run `cnnlab filters --out DIR` first"
        ) from None
    cats = Counter(f["category"] for f in filt)
    edges = Counter(
        _nearest(f["orientation_deg"])
        for f in filt
        if f["category"] in ("edge", "colour-edge") and f.get("orientation_deg") is not None
    )
    low = [f["index"] for f in filt if f["category"] == "low-frequency"]
    tuning = summary.get("tuning", {})
    overviews = sorted(p.name for p in folder.glob("*_overview.png"))
    figures = [n for n in ("filters.png", "filters_rgb.png") if (folder / n).is_file()] + overviews
    figures += [n for n in ("tuning_hue.png", "tuning_orientation.png") if (folder / n).is_file()]
    # summaries written before "network" was recorded: only InceptionV3 (colour input) has hue tuning
    network = summary.get("network") or ("InceptionV3" if tuning.get("hue") else "Fashion-MNIST CNN")
    return Layer(
        folder=folder,
        network=network,
        title=str(summary.get("title", "")),
        activation=str(summary.get("activation", "BN + ReLU" if network == "InceptionV3" else "ReLU")),
        random_weights=bool(summary.get("random_weights")),
        filters=len(filt),
        categories=dict(sorted(cats.items())),
        edges_by_orientation={k: edges.get(k, 0) for k in ORIENTATIONS},
        partners=sum(1 for f in filt if f.get("partner") is not None),
        low_frequency=low,
        negative=[f["index"] for f in filt if f["category"] == "low-frequency" and f.get("luminance_dc", 0) < 0],
        images={
            k: {"dead": v.get("dead_channels", []), "strongest": v.get("strongest", [])}
            for k, v in summary.get("images", {}).items()
        },
        hue_peaks=_peaks(tuning.get("hue")),
        orientation_peaks=_peaks(tuning.get("orientation")),
        figures=figures,
    )
