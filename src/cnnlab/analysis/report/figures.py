"""The report's figures. Every learning-curve figure shares one loss axis and one accuracy axis (the exercise:
watch the y-axis); colour says the dropout, line style the data size, line weight training (thin) or validation
(thick)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...plots import _fonts, plt, save_figure
from .experiments import Experiment
from .findings import LongRun

_DROPOUT_COLOURS = ("#c0392b", "#1f5fa8", "#2e8b57", "#8e44ad", "#d35400")  # no dropout: red; 0.5: blue
_FRAC_STYLES = ("-", "--", ":", "-.")


def _curve(e: Experiment, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Epochs, mean, min and max over the seeds of one history column (None when a seed lacks it)."""
    n = min(len(r.history) for r in e.runs)
    if not all(key in row for r in e.runs for row in r.history[:n]):
        return None
    v = np.array([[row[key] for row in r.history[:n]] for r in e.runs], dtype=float)
    return np.arange(1, n + 1), v.mean(0), v.min(0), v.max(0)


def limits(experiments: list[Experiment]) -> dict[str, tuple[float, float]]:
    """One y-range for every loss panel and one for every accuracy panel, over all curves of all experiments."""
    lo = {"loss": np.inf, "acc": np.inf}
    hi = {"loss": -np.inf, "acc": -np.inf}
    for e in experiments:
        for metric in ("loss", "acc"):
            for key in (f"train_{metric}", f"val_{metric}", f"train_eval_{metric}"):
                c = _curve(e, key)
                if c is None:
                    continue
                finite = np.concatenate([c[2], c[3]])
                finite = finite[np.isfinite(finite)]
                if finite.size:
                    lo[metric], hi[metric] = min(lo[metric], finite.min()), max(hi[metric], finite.max())
    loss_hi = hi["loss"] if np.isfinite(hi["loss"]) else 1.0
    acc_lo = lo["acc"] if np.isfinite(lo["acc"]) else 0.0
    return {"loss": (0.0, float(loss_hi) * 1.05), "acc": (max(0.0, float(acc_lo) - 0.02), 1.005)}


def _styles(experiments: list[Experiment]) -> dict[str, tuple[str, str]]:
    drops = sorted({e.dropout for e in experiments})
    fracs = sorted({e.frac for e in experiments})
    return {
        e.key: (_DROPOUT_COLOURS[drops.index(e.dropout) % 5], _FRAC_STYLES[fracs.index(e.frac) % 4])
        for e in experiments
    }


def overview(
    experiments: list[Experiment], names: dict[str, str], path: Path, lang: str, lim: dict[str, tuple[float, float]]
) -> Path:
    """Training and validation of every experiment in one frame: loss left, accuracy right."""
    with _fonts(lang) as t:
        fig, axes = plt.subplots(1, 2, figsize=(12.5, 5.2))
        styles = _styles(experiments)
        for e in experiments:
            colour, style = styles[e.key]
            for ax, metric in zip(axes, ("loss", "acc"), strict=True):
                for split, width, alpha in (("train", 1.0, 0.55), ("val", 2.2, 1.0)):
                    c = _curve(e, f"{split}_{metric}")
                    if c is None:
                        continue
                    label = t["series"].format(
                        name=names[e.key], split=t["train" if split == "train" else "validation"]
                    )
                    ax.plot(
                        c[0],
                        c[1],
                        color=colour,
                        linestyle=style,
                        linewidth=width,
                        alpha=alpha,
                        label=label if metric == "loss" else None,
                    )
        for ax, metric in zip(axes, ("loss", "acc"), strict=True):
            ax.set_ylim(*lim[metric])
            ax.set_xlabel(t["epoch"])
            ax.set_ylabel(t["loss"] if metric == "loss" else t["accuracy"])
            ax.grid(alpha=0.3)
        fig.legend(loc="lower center", ncol=2, fontsize=8.5, bbox_to_anchor=(0.5, -0.01))
        rows = -(-2 * len(experiments) // 2)
        fig.suptitle(t["overview_note"], fontsize=9.5)
        fig.tight_layout(rect=(0, 0.045 * rows, 1, 0.96))
        return save_figure(fig, path)


def experiment(
    e: Experiment,
    name: str,
    path: Path,
    lang: str,
    lim: dict[str, tuple[float, float]],
    reference: Experiment | None = None,
    reference_name: str = "",
) -> Path:
    """Training against validation for one experiment (mean of its seeds, band: min to max), on the shared axes;
    a dotted line at the epoch where the smoothed validation loss bottoms out."""
    with _fonts(lang) as t:
        fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.0))
        for ax, metric in zip(axes, ("loss", "acc"), strict=True):
            for key, colour, label in (
                (f"train_{metric}", "tab:blue", t["train"]),
                (f"train_eval_{metric}", "tab:cyan", t["train_off"]),
                (f"val_{metric}", "tab:orange", t["validation"]),
            ):
                c = _curve(e, key)
                if c is None:
                    continue
                ax.plot(c[0], c[1], color=colour, label=label)
                if e.n > 1:
                    ax.fill_between(c[0], c[2], c[3], color=colour, alpha=0.2)
            if reference is not None:
                c = _curve(reference, f"val_{metric}")
                if c is not None:
                    ax.plot(c[0], c[1], color="grey", linestyle="--", label=reference_name)
            ax.axvline(e.min_epoch, color="grey", linestyle=":", linewidth=1)
            ax.set_ylim(*lim[metric])
            ax.set_xlabel(t["epoch"])
            ax.set_ylabel(t["loss"] if metric == "loss" else t["accuracy"])
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        seeds = t["seeds_band"].format(n=e.n) if e.n > 1 else t["one_seed"]
        fig.suptitle(t["exp_title"].format(name=name, seeds=seeds, epoch=f"{e.min_epoch:g}"), fontsize=10)
        fig.tight_layout()
        return save_figure(fig, path)


def long_run(lr: LongRun, names: dict[str, str], path: Path, lang: str, lim: dict[str, tuple[float, float]]) -> Path:
    return experiment(
        lr.run, names[lr.run.key], path, lang, lim, lr.short, names.get(lr.short.key, "") if lr.short else ""
    )
