"""The end of a run: the holdout and official test sets measured with the best and the last weights, every image's
predicted class, and the figures TensorBoard shows for them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.module import FashionMNISTDataModule
from ..deploy.evaluation import confusion_matrix, loss_and_accuracy, torch_logits
from ..model.checkpoints import load_network
from ..model.lit import FashionClassifier
from ..runs import best_row, checkpoint_path

TEST_SPLITS = ("holdout", "official")


@dataclass
class TestMeasurement:
    test: dict[str, dict[str, Any]]  # {"best"|"last": {"epoch", "holdout": {loss, acc}, "official": {...}}}
    confusion: Any  # (10, 10) on the holdout, best checkpoint's weights
    first_conv: Any  # the best checkpoint's first conv kernels (32, 1, 3, 3)
    predictions: dict[str, Any]  # predictions.npz's arrays (runs.write_predictions)


def measure_test_sets(
    model: FashionClassifier,
    dm: FashionMNISTDataModule,
    run_dir: Path,
    history: list[dict[str, float]],
    device: torch.device,
    check: Callable[[], None] = lambda: None,
) -> TestMeasurement:
    """Loss and accuracy on the holdout and the official test set, for the last epoch's weights and for the best
    checkpoint's (what `export RUN` and `evaluate RUN` use by default), on the device that trained them; the
    confusion matrix and first-layer kernels of the best checkpoint (the last epoch's without one); every image's
    predicted class. ``check`` runs before each evaluation (it raises to stop)."""
    best = best_row(history)
    nets = {"last": (len(history), model.net)}
    if best is not None:
        best_net = model.net if best["epoch"] == len(history) else load_network(checkpoint_path(run_dir, "best")).net
        nets["best"] = (int(best["epoch"]), best_net)
    out = TestMeasurement({}, None, None, {})
    for split in TEST_SPLITS:
        out.predictions[f"{split}_labels"] = dm.eval_set(split).labels.numpy().astype(np.uint8)
    for which, (epoch, net) in nets.items():  # "best" comes last: its confusion matrix and kernels are kept
        out.predictions[f"{which}_epoch"] = np.int64(epoch)
        if which == "best" and net is model.net:  # the last epoch was the best: measured already
            out.test["best"] = dict(out.test["last"])
            for split in TEST_SPLITS:
                out.predictions[f"best_{split}"] = out.predictions[f"last_{split}"]
            continue
        net.to(device)
        out.test[which] = {"epoch": epoch}
        for split in TEST_SPLITS:
            check()  # a stop point between evaluations (interrupts.py)
            data = dm.eval_set(split)
            logits = torch_logits(net, data.images, device=device)
            out.test[which][split] = loss_and_accuracy(logits, data.labels)
            out.predictions[f"{which}_{split}"] = logits.argmax(1).astype(np.uint8)
            if split == "holdout":
                out.confusion = confusion_matrix(logits.argmax(1), data.labels)
        out.first_conv = net.first_conv.weight.detach().cpu().numpy()
        net.cpu()
    return out


def board_figures(measured: TestMeasurement) -> dict[str, Any]:
    """The best checkpoint's confusion matrix and first-layer kernels, as figures for TensorBoard."""
    from ..plots import confusion_figure, kernels_figure

    best = measured.test.get("best", measured.test["last"])
    title = f"holdout, best checkpoint (epoch {best['epoch']}): accuracy {best['holdout']['acc']:.4f}"
    return {
        "confusion_matrix/holdout": confusion_figure(measured.confusion, title),
        "filters/conv1": kernels_figure(
            measured.first_conv, f"first conv layer, best checkpoint (epoch {best['epoch']})"
        ),
    }
