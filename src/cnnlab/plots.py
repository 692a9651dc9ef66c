"""Figures, written atomically as PNG files (matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .atomic import atomic_path  # noqa: E402
from .data.classes import CLASS_NAMES  # noqa: E402
from .runs import best_row  # noqa: E402


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 100) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_confusion(cm: list[list[int]], title: str, path: str | os.PathLike[str]) -> Path:
    return save_figure(confusion_figure(cm, title), path)


def confusion_figure(cm: Any, title: str) -> Any:
    m = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(10), CLASS_NAMES, rotation=45, ha="right")
    ax.set_yticks(range(10), CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(10):
        for j in range(10):
            if m[i, j]:
                ax.text(
                    j,
                    i,
                    str(m[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if m[i, j] > m.max() / 2 else "black",
                )
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title)
    return fig


_PANELS = ("train_loss", "val_loss", "train_acc", "val_acc")
# Curve labels come from the text catalogs ([figure]); Japanese only where a CJK font is installed (see cjk_font).
CJK_FONTS = ("Noto Sans CJK JP", "Noto Sans JP", "IPAexGothic", "IPAGothic", "TakaoGothic")


def cjk_font() -> str | None:
    """A font that has Japanese glyphs (Debian: `apt-get install fonts-noto-cjk`), or None."""
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    return next((n for n in CJK_FONTS if n in names), None)


def figure_lang(lang: str) -> str:
    """The language figures are labelled in: Japanese needs a CJK font, else English."""
    return "ja" if lang == "ja" and cjk_font() else "en"


@contextlib.contextmanager
def _fonts(lang: str) -> Iterator[dict[str, str]]:
    font = cjk_font() if lang == "ja" else None
    with matplotlib.rc_context({"font.family": [font, "DejaVu Sans"]} if font else {}):
        yield figure_text("ja" if font else "en")


def figure_text(lang: str) -> dict[str, str]:
    from .text import catalog

    return dict(catalog(lang).raw("figure"))


def _settings(run: Any, t: dict[str, str] | None = None) -> str:
    t = t or figure_text("en")
    return f"frac {run.setting('frac')}, {t['dropout']} {run.setting('dropout')}, {t['seed']} {run.setting('seed')}"


def plot_runs(series: list[Any], path: str | os.PathLike[str], log_loss: bool = False, lang: str = "en") -> Path:
    """Four panels against epoch, a line per series (a run, or the mean of a group's seeds with a min-max band);
    both loss panels share one y-axis and both accuracy panels another."""
    with _fonts(lang) as t:
        fig, axes = plt.subplots(2, 2, figsize=(12, 8.5), sharex=True, sharey="row")
        colours = [plt.get_cmap("tab10")(i) for i in range(10)]
        runs = [run for s in series for run in s.runs]
        bands = any(len(s.runs) > 1 for s in series)
        for i, s in enumerate(series):
            members, colour = s.runs, colours[i % len(colours)]
            n = min(len(m.history) for m in members)
            epochs = [r["epoch"] for r in members[0].history[:n]]
            for ax, key in zip(axes.flat, _PANELS, strict=True):
                values = np.array([[r[key] for r in m.history[:n]] for m in members])
                ax.plot(epochs, values.mean(0), color=colour, label=s.label if key == "train_loss" else None)
                if len(members) > 1:
                    ax.fill_between(epochs, values.min(0), values.max(0), color=colour, alpha=0.2)
                eval_key = key.replace("train_", "train_eval_")
                if key.startswith("train_") and all(eval_key in r for m in members for r in m.history[:n]):
                    ev = np.array([[r[eval_key] for r in m.history[:n]] for m in members]).mean(0)
                    ax.plot(epochs, ev, color=colour, linestyle="--")
        for ax, key in zip(axes.flat, _PANELS, strict=True):
            ax.set_title(t[key])
            ax.grid(alpha=0.3)
        if log_loss:
            axes[0, 0].set_yscale("log")
        for ax in axes[1]:
            ax.set_xlabel(t["epoch"])
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[0, 0].set_ylabel(t["loss"] + (t["log"] if log_loss else ""))
        axes[1, 0].set_ylabel(t["accuracy"])
        dashed = any("train_eval_loss" in r for run in runs for r in run.history)
        note = t["note"] + (t["dashed"] if dashed else "") + (t["bands"] if bands else "")
        fig.suptitle(f"{t['title']} ({note})", fontsize=10)
        fig.legend(loc="lower center", ncol=min(2, len(series)), fontsize=9, bbox_to_anchor=(0.5, -0.02 * len(series)))
        fig.tight_layout(rect=(0, 0.04, 1, 0.97))
        return save_figure(fig, path)


def plot_run_curves(run: Any, path: str | os.PathLike[str], log_loss: bool = False, lang: str = "en") -> Path:
    """Train against validation for one run (or a series' mean curves): the classic overfitting picture."""
    with _fonts(lang) as t:
        fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
        epochs = [r["epoch"] for r in run.history]
        for ax, metric in ((loss_ax, "loss"), (acc_ax, "acc")):
            ax.plot(epochs, [r[f"train_{metric}"] for r in run.history], label=t["train"], color="tab:blue")
            ax.plot(epochs, [r[f"val_{metric}"] for r in run.history], label=t["validation"], color="tab:orange")
            if all(f"train_eval_{metric}" in r for r in run.history):
                ax.plot(
                    epochs,
                    [r[f"train_eval_{metric}"] for r in run.history],
                    label=t["train_off"],
                    color="tab:blue",
                    linestyle="--",
                )
            ax.set_xlabel(t["epoch"])
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend()
        best = best_row(run.history) or run.history[-1]  # the best checkpoint's epoch (runs.best_row)
        loss_ax.axvline(best["epoch"], color="grey", linestyle=":", label=t["min"])
        loss_ax.set_ylabel(t["loss"] + (t["log"] if log_loss else ""))
        if log_loss:
            loss_ax.set_yscale("log")
        acc_ax.set_ylabel(t["accuracy"])
        title = getattr(run, "title", None) or f"{run.label}: {_settings(run, t)}"
        fig.suptitle(f"{title}; {t['min_at']} {best['epoch']}", fontsize=10)
        fig.tight_layout()
        return save_figure(fig, path)


def plot_curve_sets(curves: dict[str, list[dict[str, float]]], path: str | os.PathLike[str], lang: str = "en") -> Path:
    """Learning curves of several trainings (e.g. cnnlab and Keras forms) on the four shared-axis panels."""
    with _fonts(lang) as t:
        fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharex=True, sharey="row")
        for name, rows in curves.items():
            epochs = range(1, len(rows) + 1)
            style = "--" if name.lower().startswith("keras") else "-"
            for ax, key in zip(axes.flat, _PANELS, strict=True):
                ax.plot(epochs, [r[key] for r in rows], style, label=name if key == "train_loss" else None)
        for ax, key in zip(axes.flat, _PANELS, strict=True):
            ax.set_title(t[key])
            ax.grid(alpha=0.3)
        for ax in axes[1]:
            ax.set_xlabel(t["epoch"])
        axes[0, 0].set_ylabel(t["loss"])
        axes[1, 0].set_ylabel(t["accuracy"])
        fig.legend(loc="lower center", ncol=min(4, len(curves)), fontsize=9)
        fig.tight_layout(rect=(0, 0.05, 1, 1))
        return save_figure(fig, path)


# --- first-layer figures -------------------------------------------------------------------------------------


def save_image(rgb: np.ndarray, path: str | os.PathLike[str]) -> Path:
    from PIL import Image

    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")
    return path


def kernel_tile(w: np.ndarray, scale: float) -> np.ndarray:
    """A (C, 3, 3) kernel as an image: signed weights around mid-gray, symmetric, 0 = gray."""
    img = 0.5 + np.moveaxis(w, 0, -1) / (2 * scale)
    img = np.clip(img, 0, 1)
    return np.repeat(img, 3, -1) if img.shape[-1] == 1 else img


def kernels_figure(weight: Any, title: str) -> Any:
    """A first conv layer's kernels (out, in, k, k), one tile per output channel and input plane, each on its own
    symmetric scale: mid-gray = 0, brighter = positive."""
    w = np.asarray(weight, dtype=np.float32)
    n, planes = w.shape[0], w.shape[1]
    cols = min(8, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols * planes, figsize=(1.2 * cols * planes, 1.3 * rows + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for i in range(n):
        scale = float(np.abs(w[i]).max()) or 1.0
        for c in range(planes):
            ax = axes[i // cols, (i % cols) * planes + c]
            ax.imshow(kernel_tile(w[i, c : c + 1], scale), interpolation="nearest")
            ax.set_title(str(i) if planes == 1 else f"{i}.{c}", fontsize=8)
    fig.suptitle(f"{title}\nmid-gray = 0, brighter = positive weight (each filter on its own scale)", fontsize=9)
    fig.tight_layout()
    return fig
