"""The network: ``network`` (the plain ``KerasCNN``, no Lightning), ``numerics`` (its thread-invariant ``Conv2d`` and
``Linear``), ``lit`` (its ``LightningModule``: loss, metrics, optimizers) and ``checkpoints`` (loading a trained one).

Light to import (no torch): the model's settings and their valid ranges live here, for ``FitConfig.validate`` to
check before torch loads; import the heavy parts from their modules.
"""

from __future__ import annotations

from ..errors import CnnlabError

OPTIMIZERS = ("rmsprop", "rmsprop-tf", "adam", "sgd")
INIT_CHOICES = ("keras", "torch")


def check_hparams(dropout: float, lr: float, optimizer: str, init: str) -> None:
    """The model's settings' valid ranges, written once: ``FitConfig.validate`` checks them before a run starts,
    a ``FashionClassifier`` built directly (not from a validated config) on construction."""
    if not 0 <= dropout < 1:
        raise CnnlabError(f"--dropout {dropout}: must be in [0, 1), e.g. 0.5")
    if not 0 < lr < float("inf"):
        raise CnnlabError(f"--lr {lr}: must be a positive number, e.g. 1e-4")
    if optimizer not in OPTIMIZERS:
        raise CnnlabError(f"--optimizer {optimizer!r}: unknown; choose one of {', '.join(OPTIMIZERS)}")
    if init not in INIT_CHOICES:
        raise CnnlabError(f"--init {init!r}: unknown; choose one of {', '.join(INIT_CHOICES)}")
