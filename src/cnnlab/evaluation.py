"""Evaluation of a network on an in-memory image set: logits, loss, accuracy, confusion matrix."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import InMemoryImages


@torch.inference_mode()
def torch_logits(
    net: nn.Module, images: torch.Tensor, batch_size: int = 1024, device: torch.device | str = "cpu"
) -> np.ndarray:
    """Logits (N, 10) of ``net`` in eval mode for uint8 images (N, 1, 28, 28); the net's mode is restored."""
    was_training = net.training
    net.eval()
    try:
        out = [
            net(images[i : i + batch_size].to(device).float().div_(255)).float().cpu()
            for i in range(0, len(images), batch_size)
        ]
    finally:
        net.train(was_training)
    return torch.cat(out).numpy()


def loss_and_accuracy(logits: np.ndarray, labels: torch.Tensor | np.ndarray) -> dict[str, float]:
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    lg = torch.from_numpy(logits)
    return {"loss": float(F.cross_entropy(lg, y)), "acc": float((lg.argmax(1) == y).float().mean())}


def evaluate_torch(
    net: nn.Module, dataset: InMemoryImages, batch_size: int = 1024, device: torch.device | str = "cpu"
) -> dict[str, float]:
    return loss_and_accuracy(torch_logits(net, dataset.images, batch_size, device), dataset.labels)
