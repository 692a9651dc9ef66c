"""The LightningModule around :class:`~cnnlab.model.KerasCNN`: loss, metrics, optimizer."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn
from torchmetrics import MeanMetric

from .errors import CnnlabError
from .model import INIT_CHOICES, KerasCNN

OPTIMIZERS = ("rmsprop", "adam", "sgd")
TEST_SETS = ("holdout", "official")  # the order of FashionMNISTDataModule.test_dataloader()


class NonFiniteLoss(CnnlabError):
    pass


def _mean() -> MeanMetric:
    # 'disable': no NaN scan, which would cost a host sync per step; non-finite losses are caught below instead.
    return MeanMetric(nan_strategy="disable")


class FashionClassifier(L.LightningModule):
    def __init__(
        self,
        dropout: float = 0.0,  # Dropout(p) after the first Dense + ReLU; 0 leaves the layer out
        lr: float = 1e-4,
        optimizer: str = "rmsprop",  # rmsprop (Keras settings), adam or sgd
        batch_size: int = 32,  # recorded with the hparams; the DataModule batches
        init: str = "keras",  # keras: glorot-uniform weights, zero biases; torch: PyTorch's defaults
    ) -> None:
        super().__init__()
        check_hparams(dropout=dropout, lr=lr, optimizer=optimizer, init=init)
        self.save_hyperparameters()
        self.net = KerasCNN(dropout, init)
        self.example_input_array = torch.zeros(1, 1, 28, 28)
        stages = ("train", "val", "train_eval", *(f"test_{s}" for s in TEST_SETS))
        self.metrics = nn.ModuleDict({f"{s}_{m}": _mean() for s in stages for m in ("loss", "acc")})
        self.nonfinite: torch.Tensor
        self.register_buffer("nonfinite", torch.zeros((), dtype=torch.bool), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def model_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        correct = (logits.argmax(1) == y).float()
        return loss, correct

    def _record(self, stage: str, tag: str, loss: torch.Tensor, correct: torch.Tensor) -> None:
        n = len(correct)
        loss_metric, acc_metric = self.metrics[f"{stage}_loss"], self.metrics[f"{stage}_acc"]
        assert isinstance(loss_metric, MeanMetric) and isinstance(acc_metric, MeanMetric)
        loss_metric(loss.detach(), n)
        acc_metric(correct)
        # Epoch-level only, and not sent to the logger: RunRecorder writes each epoch with the epoch as its step.
        for m, metric in (("loss", loss_metric), ("acc", acc_metric)):
            self.log(f"{tag}/{m}", metric, on_step=False, on_epoch=True, logger=False,
                     add_dataloader_idx=False, prog_bar=tag == "val", batch_size=n)  # fmt: skip

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, correct = self.model_step(batch)
        self.nonfinite |= ~torch.isfinite(loss.detach())  # no host sync here; checked once per epoch
        self._record("train", "train", loss, correct)
        return loss

    def validation_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        stage = "val" if dataloader_idx == 0 else "train_eval"
        loss, correct = self.model_step(batch)
        self._record(stage, stage, loss, correct)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        name = TEST_SETS[dataloader_idx]
        loss, correct = self.model_step(batch)
        self._record(f"test_{name}", f"test/{name}", loss, correct)

    def on_validation_epoch_start(self) -> None:
        if self.trainer.state.fn == TrainerFn.FITTING:
            self.raise_if_nonfinite()

    def on_train_epoch_end(self) -> None:
        self.raise_if_nonfinite()

    def raise_if_nonfinite(self) -> None:
        # Any rank's non-finite loss stops every rank, so DDP processes never wait on each other.
        if self.trainer.strategy.reduce_boolean_decision(bool(self.nonfinite), all=False):
            raise NonFiniteLoss(
                f"the training loss became non-finite (NaN or inf) in epoch {self.current_epoch + 1}; "
                "training stopped, checkpoints of the last good epoch are kept; try a lower --lr"
            )

    def configure_optimizers(self) -> Any:
        hp: Any = self.hparams
        if hp.optimizer == "rmsprop":  # Keras' RMSprop: rho 0.9, epsilon 1e-7 (torch defaults: 0.99, 1e-8)
            return torch.optim.RMSprop(self.parameters(), lr=hp.lr, alpha=0.9, eps=1e-7)
        if hp.optimizer == "adam":
            return torch.optim.Adam(self.parameters(), lr=hp.lr, eps=1e-7)
        return torch.optim.SGD(self.parameters(), lr=hp.lr)


def check_hparams(dropout: float, lr: float, optimizer: str, init: str) -> None:
    if not 0 <= dropout < 1:
        raise CnnlabError(f"--dropout {dropout}: must be in [0, 1), e.g. 0.5")
    if not 0 < lr < float("inf"):
        raise CnnlabError(f"--lr {lr}: must be a positive number, e.g. 1e-4")
    if optimizer not in OPTIMIZERS:
        raise CnnlabError(f"--optimizer {optimizer!r}: unknown; choose one of {', '.join(OPTIMIZERS)}")
    if init not in INIT_CHOICES:
        raise CnnlabError(f"--init {init!r}: unknown; choose one of {', '.join(INIT_CHOICES)}")
