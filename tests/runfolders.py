"""Run folders written by hand for the analysis tests: run.json, history.csv and, optionally, predictions.npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab.atomic import atomic_write_json
from cnnlab.runs import write_history, write_predictions

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
) -> Path:
    """One run whose validation loss follows ``val_loss`` (one value per epoch). With ``holdout_right`` the run keeps
    predictions: that fraction of holdout images right; or ``base_right`` with ``flip`` wrong images made right."""
    name = name or f"frac{frac}_drop{dropout}_seed{seed}"
    run = logdir / name / "version_0"
    run.mkdir(parents=True)
    n = len(val_loss)
    rows = [
        {
            "epoch": e + 1,
            "train_loss": train_loss + 0.5 / (e + 1),
            "train_acc": train_acc - 0.1 / (e + 1),
            "val_loss": v,
            "val_acc": val_acc,
        }
        for e, v in enumerate(val_loss)
    ]
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
    }
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
    atomic_write_json(run / "run.json", info)
    return run


def flat(n: int = 40, low: float = 0.35) -> list[float]:
    """A validation loss that falls and then stays level."""
    return [1.0, 0.7, 0.5, 0.42, 0.38] + [low + 0.004 * (i % 3) for i in range(n - 5)]


def rising(n: int = 40) -> list[float]:
    """A validation loss with a minimum near epoch 6, then a steady climb (overfitting)."""
    return [1.0, 0.7, 0.5, 0.4, 0.33, 0.3] + [0.3 + 0.012 * i for i in range(n - 6)]
