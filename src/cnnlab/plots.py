"""Figures, written atomically as PNG files (matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .atomic import atomic_path  # noqa: E402
from .data import CLASS_NAMES  # noqa: E402


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 100) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_confusion(cm: list[list[int]], title: str, path: str | os.PathLike[str]) -> Path:
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
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if m[i, j] > m.max() / 2 else "black")  # fmt: skip
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title)
    return save_figure(fig, path)


_PANELS = (("train_loss", "train loss"), ("val_loss", "validation loss"),
           ("train_acc", "train accuracy"), ("val_acc", "validation accuracy"))  # fmt: skip


def _settings(run: Any) -> str:
    return f"frac {run.setting('frac')}, dropout {run.setting('dropout')}, seed {run.setting('seed')}"


def plot_runs(runs: list[Any], path: str | os.PathLike[str], log_loss: bool = False, bands: bool = False) -> Path:
    """Four panels against epoch; both loss panels share one y-axis and both accuracy panels another."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5), sharex=True, sharey="row")
    colours = [plt.get_cmap("tab10")(i) for i in range(10)]
    if bands:  # several seeds per setting: mean line and a min-max band
        groups: dict[str, list[Any]] = {}
        for run in runs:
            groups.setdefault(run.group, []).append(run)
        series = [(name, members) for name, members in groups.items()]
    else:
        series = [(f"{run.label} ({_settings(run)})", [run]) for run in runs]
    for i, (label, members) in enumerate(series):
        colour = colours[i % len(colours)]
        n = min(len(m.history) for m in members)
        epochs = [r["epoch"] for r in members[0].history[:n]]
        for ax, (key, _) in zip(axes.flat, _PANELS, strict=True):
            values = np.array([[r[key] for r in m.history[:n]] for m in members])
            ax.plot(epochs, values.mean(0), color=colour, label=label if key == "train_loss" else None)
            if len(members) > 1:
                ax.fill_between(epochs, values.min(0), values.max(0), color=colour, alpha=0.2)
            eval_key = key.replace("train_", "train_eval_")
            if key.startswith("train_") and all(eval_key in r for m in members for r in m.history[:n]):
                ev = np.array([[r[eval_key] for r in m.history[:n]] for m in members]).mean(0)
                ax.plot(epochs, ev, color=colour, linestyle="--")
    for ax, (_, title) in zip(axes.flat, _PANELS, strict=True):
        ax.set_title(title)
        ax.grid(alpha=0.3)
    if log_loss:
        axes[0, 0].set_yscale("log")
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    axes[0, 0].set_ylabel("cross-entropy loss" + (" (log scale)" if log_loss else ""))
    axes[1, 0].set_ylabel("accuracy")
    dashed = any("train_eval_loss" in r for run in runs for r in run.history)
    note = "train: running mean over each epoch, dropout active" + ("; dashed: dropout off" if dashed else "")
    fig.suptitle(f"learning curves ({note}" + ("; mean over seeds, band: min-max)" if bands else ")"), fontsize=10)
    fig.legend(loc="lower center", ncol=min(2, len(series)), fontsize=9, bbox_to_anchor=(0.5, -0.02 * len(series)))
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    return save_figure(fig, path)


def plot_run_curves(run: Any, path: str | os.PathLike[str], log_loss: bool = False) -> Path:
    """Train against validation for one run: the classic overfitting picture."""
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    epochs = [r["epoch"] for r in run.history]
    for ax, metric in ((loss_ax, "loss"), (acc_ax, "acc")):
        ax.plot(epochs, [r[f"train_{metric}"] for r in run.history], label="train", color="tab:blue")
        ax.plot(epochs, [r[f"val_{metric}"] for r in run.history], label="validation", color="tab:orange")
        if all(f"train_eval_{metric}" in r for r in run.history):
            ax.plot(epochs, [r[f"train_eval_{metric}"] for r in run.history], label="train (dropout off)",
                    color="tab:blue", linestyle="--")  # fmt: skip
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    best = min(run.history, key=lambda r: r["val_loss"])
    loss_ax.axvline(best["epoch"], color="grey", linestyle=":", label="min validation loss")
    loss_ax.set_ylabel("loss" + (" (log scale)" if log_loss else ""))
    if log_loss:
        loss_ax.set_yscale("log")
    acc_ax.set_ylabel("accuracy")
    fig.suptitle(f"{run.label}: {_settings(run)}; minimum validation loss at epoch {best['epoch']}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
