"""The exercise's network: Keras' classic ``cifar10_cnn`` layout on 28x28x1 input (889,834 parameters).

A plain ``nn.Module``: it knows nothing about Lightning (see ``lit.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from . import INIT_CHOICES
from .numerics import Conv2d, Linear


class KerasCNN(nn.Module):
    def __init__(self, dropout: float = 0.0, init: str = "keras") -> None:
        super().__init__()
        layers: list[nn.Module] = [
            Conv2d(1, 32, 3, padding=1), nn.ReLU(),  # (N, 32, 28, 28)  Keras padding='same'
            Conv2d(32, 32, 3), nn.ReLU(),  # (N, 32, 26, 26)  padding='valid'
            nn.MaxPool2d(2),  # (N, 32, 13, 13)
            Conv2d(32, 64, 3, padding=1), nn.ReLU(),  # (N, 64, 13, 13)
            Conv2d(64, 64, 3), nn.ReLU(),  # (N, 64, 11, 11)
            nn.MaxPool2d(2),  # (N, 64, 5, 5)
            nn.Flatten(),  # (N, 1600)
            Linear(64 * 5 * 5, 512), nn.ReLU(),
        ]  # fmt: skip
        if dropout > 0:  # the exercise's variant (b): Dropout after the first Dense + ReLU
            layers.append(nn.Dropout(dropout))
        layers.append(Linear(512, 10))  # logits; softmax lives in the loss
        self.layers = nn.Sequential(*layers)
        if init == "keras":
            self.apply(_keras_init)
        elif init != "torch":
            raise ValueError(f"init must be one of {INIT_CHOICES}, got {init!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 1, 28, 28) in [0, 1] -> (N, 10) logits
        return self.layers(x)

    @property
    def first_conv(self) -> nn.Conv2d:
        conv = self.layers[0]
        assert isinstance(conv, nn.Conv2d)
        return conv


def _keras_init(m: nn.Module) -> None:
    # Keras' defaults: glorot_uniform kernels (same fan-in/fan-out as torch's xavier), zero biases.
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
