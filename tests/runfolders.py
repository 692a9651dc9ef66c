"""Run folders written by hand for the analysis tests: run.json, history.csv and, optionally, predictions.npz."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.atomic import atomic_write_json
from cnnlab.runs import best_row, write_history, write_predictions

HOLDOUT = 10_000


def make_run(
    logdir: Path,
    frac: float = 0.2,
    dropout: float = 0.0,
    seed: int = 42,
    *,
    val_loss: list[float],
    train_acc: float = 0.97,
    val_acc: float = 0.87,
    train_loss: float = 0.08,
    holdout_right: float | None = None,
    epochs: int | None = None,
    name: str | None = None,
    rng_seed: int = 0,
    base_right: np.ndarray | None = None,
    flip: int = 0,
    curves: Callable[[int], dict[str, float]] | None = None,
    version: int = 0,
    settings: dict[str, Any] | None = None,
    test_acc: tuple[float, float] | None = None,
) -> Path:
    """One run whose validation loss follows ``val_loss`` (one value per epoch). With ``holdout_right`` the run keeps
    predictions: that fraction of holdout images right; or ``base_right`` with ``flip`` wrong images made right.

    ``curves(epoch)`` gives each history row's other columns (train loss and accuracy, validation accuracy, the
    train_eval columns if any) instead of the defaults; ``settings`` replace config entries; ``test_acc`` records
    the holdout accuracy of the best checkpoint (the epoch runs.best_row picks, as training does) and of the last
    epoch, without predictions."""
    name = name or f"frac{frac}_drop{dropout}_seed{seed}"
    run = logdir / name / f"version_{version}"
    run.mkdir(parents=True)
    n = len(val_loss)

    def default_curves(epoch: int) -> dict[str, float]:
        return {"train_loss": train_loss + 0.5 / epoch, "train_acc": train_acc - 0.1 / epoch, "val_acc": val_acc}

    rows = [{"epoch": e, "val_loss": v} | (curves or default_curves)(e) for e, v in enumerate(val_loss, 1)]
    write_history(run, rows)
    config = {
        "frac": frac,
        "dropout": dropout,
        "seed": seed,
        "epochs": epochs or n,
        "batch_size": 32,
        "lr": 1e-4,
        "optimizer": "rmsprop",
        "init": "keras",
        "val_split": 0.1,
        "precision": "32-true",
        "threads": 1,
    } | (settings or {})
    train = int(45_000 * frac)
    info = {
        "name": name,
        "status": "finished",
        "config": config,
        "epoch_seconds": [3.0] * n,
        "split": {"train": train, "val": train // 9, "holdout": HOLDOUT, "official": 10_000},
    }
    if holdout_right is not None or base_right is not None:
        labels = np.arange(HOLDOUT, dtype=np.uint8) % 10
        if base_right is None:
            base_right = np.random.default_rng(rng_seed).random(HOLDOUT) < holdout_right
        right = base_right.copy()
        right[np.flatnonzero(~right)[:flip]] = True
        pred = np.where(right, labels, (labels + 1) % 10).astype(np.uint8)
        write_predictions(
            run,
            {
                "best_holdout": pred,
                "last_holdout": pred,
                "holdout_labels": labels,
                "best_official": pred,
                "last_official": pred,
                "official_labels": labels,
            },
        )
        acc = float(right.mean())
        test = {"holdout": {"acc": acc, "loss": 0.4}, "official": {"acc": acc, "loss": 0.4}}
        info["test"] = {w: dict(test, epoch=n) for w in ("best", "last")}
    if test_acc is not None:
        best = best_row(rows)
        best_epoch = int(best["epoch"]) if best else n
        info["test"] = {
            "best": {"epoch": best_epoch, "holdout": {"acc": test_acc[0], "loss": 0.5}},
            "last": {"epoch": n, "holdout": {"acc": test_acc[1], "loss": 0.6}},
        }
    atomic_write_json(run / "run.json", info)
    return run


def steady(epoch: int) -> dict[str, float]:
    """Curves that move by a known step each epoch: train loss 1/epoch, train acc 0.5 + 0.04 epoch, val acc 0.5 +
    0.03 epoch (so every figure of a comparison is known exactly)."""
    return {"train_loss": 1.0 / epoch, "train_acc": 0.5 + 0.04 * epoch, "val_acc": 0.5 + 0.03 * epoch}


def steady_with_eval(epoch: int) -> dict[str, float]:
    """``steady``, with the dropout-off training measurement (train_eval) too."""
    return steady(epoch) | {"train_eval_loss": 0.9 / epoch, "train_eval_acc": 0.55 + 0.04 * epoch}


def flat(n: int = 40, low: float = 0.35) -> list[float]:
    """A validation loss that falls and then stays level."""
    return [1.0, 0.7, 0.5, 0.42, 0.38] + [low + 0.004 * (i % 3) for i in range(n - 5)]


def rising(n: int = 40) -> list[float]:
    """A validation loss with a minimum near epoch 6, then a steady climb (overfitting)."""
    return [1.0, 0.7, 0.5, 0.4, 0.33, 0.3] + [0.3 + 0.012 * i for i in range(n - 6)]
