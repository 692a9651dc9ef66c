"""The LightningModule around :class:`~cnnlab.model.network.KerasCNN`: loss, metrics, optimizer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn
from torchmetrics import MeanMetric

from ..errors import CnnlabError
from . import check_hparams
from .network import KerasCNN
from .numerics import set_thread_invariant


class NonFiniteLoss(CnnlabError):
    def __init__(self, epoch: int) -> None:
        super().__init__(
            f"the training loss became non-finite (NaN or inf) in epoch {epoch}; "
            "training stopped, checkpoints of the last good epoch are kept; try a lower --lr"
        )
        self.epoch = epoch
        self.run_dir: str | None = None  # filled in by fit: the run that stopped


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
        channels_last: bool = False,  # NHWC memory format for the convolutions
        compile: bool = False,  # torch.compile the network's forward pass
        thread_invariant: bool = False,  # CPU weight gradients summed on one thread (numerics.py)
        *,
        checked: bool = False,  # the values come from a validated FitConfig (training.fit.prepare): not checked again
    ) -> None:
        super().__init__()
        if not checked:
            check_hparams(dropout=dropout, lr=lr, optimizer=optimizer, init=init)
        self.save_hyperparameters(ignore=["checked"])
        self.net = KerasCNN(dropout, init)
        set_thread_invariant(self.net, thread_invariant)
        self.example_input_array = torch.zeros(1, 1, 28, 28)
        stages = ("train", "val", "train_eval")
        self.metrics = nn.ModuleDict({f"{s}_{m}": _mean() for s in stages for m in ("loss", "acc")})
        self.nonfinite: torch.Tensor
        self.register_buffer("nonfinite", torch.zeros((), dtype=torch.bool), persistent=False)
        self.channels_last = channels_last
        if channels_last:
            self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        # Kept out of the module tree (object.__setattr__), so checkpoints hold the plain network's keys.
        self._compiled: Callable[[torch.Tensor], torch.Tensor] | None
        object.__setattr__(self, "_compiled", torch.compile(self.net) if compile else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x) if self._compiled is None else self._compiled(x)

    def model_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        correct = (logits.argmax(1) == y).float()
        return loss, correct

    def _record(self, stage: str, loss: torch.Tensor, correct: torch.Tensor) -> None:
        # update(), not a call: a call also computes the batch's own value. No self.log per step either: its
        # bookkeeping cost ~2 ms a step here; the epoch values are read once by epoch_metrics().
        # The batch mean once per image, so the epoch's loss is the mean over images (as Keras reports it), the
        # last, smaller batch weighing what it holds: MeanMetric(nan_strategy="disable") drops update()'s weight
        # argument (torchmetrics 1.9, Lightning-AI/torchmetrics#3434).
        self._metric(f"{stage}_loss").update(loss.detach().expand(len(correct)))
        self._metric(f"{stage}_acc").update(correct)

    def _metric(self, key: str) -> MeanMetric:
        metric = self.metrics[key]
        assert isinstance(metric, MeanMetric)
        return metric

    def epoch_metrics(self) -> dict[str, float]:
        """This epoch's means ("train/loss", "val/acc", ...; synced across DDP ranks), then reset for the next."""
        out = {}
        for key in self.metrics:
            metric = self._metric(key)
            if metric.update_count:
                stage, name = key.rsplit("_", 1)
                out[f"{stage}/{name}"] = float(metric.compute())
            metric.reset()
        return out

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, correct = self.model_step(batch)
        self.nonfinite |= ~torch.isfinite(loss.detach())  # no host sync here; checked once per epoch
        self._record("train", loss, correct)
        return loss

    def validation_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        loss, correct = self.model_step(batch)
        self._record("val" if dataloader_idx == 0 else "train_eval", loss, correct)

    def on_validation_epoch_start(self) -> None:
        if self.trainer.state.fn == TrainerFn.FITTING:
            self.raise_if_nonfinite()

    def on_validation_epoch_end(self) -> None:
        # For the progress bar only (once an epoch); RunRecorder writes the logs, with the epoch as the step.
        # compute() has already synced the ranks; sync_dist=True tells Lightning so (else DDP warns each run).
        for name in ("loss", "acc"):
            self.log(f"val/{name}", self._metric(f"val_{name}").compute(), prog_bar=True, logger=False, sync_dist=True)

    def raise_if_nonfinite(self) -> None:
        # Any rank's non-finite loss stops every rank, so DDP processes never wait on each other.
        if self.trainer.strategy.reduce_boolean_decision(bool(self.nonfinite), all=False):
            raise NonFiniteLoss(self.current_epoch + 1)

    def configure_optimizers(self) -> Any:
        hp: Any = self.hparams
        if hp.optimizer == "rmsprop":  # Keras 2's RMSprop: rho 0.9, epsilon 1e-7 (torch defaults: 0.99, 1e-8)
            return torch.optim.RMSprop(self.parameters(), lr=hp.lr, alpha=0.9, eps=1e-7)
        if hp.optimizer == "rmsprop-tf":  # Keras 3 / tf.keras: epsilon inside the square root
            return RMSpropTF(self.parameters(), lr=hp.lr, rho=0.9, eps=1e-7)
        if hp.optimizer == "adam":
            return torch.optim.Adam(self.parameters(), lr=hp.lr, eps=1e-7)
        return torch.optim.SGD(self.parameters(), lr=hp.lr)


class RMSpropTF(torch.optim.Optimizer):
    """RMSprop as Keras 3 and tf.keras compute it: ``w -= lr * g / sqrt(v + eps)``, with ``v = rho v + (1 - rho) g^2``.

    Keras 2 (the exercise's) and torch divide by ``sqrt(v) + eps`` instead. With eps = 1e-7 the difference is in
    the floor: sqrt(1e-7) = 3.2e-4, so a weight whose gradients are tiny takes proportionally smaller steps here,
    where the Keras 2 form lets it move by up to lr per step.
    """

    def __init__(self, params: Any, lr: float = 1e-3, rho: float = 0.9, eps: float = 1e-7) -> None:
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, rho, eps = group["lr"], group["rho"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                v = state["square_avg"]
                v.mul_(rho).addcmul_(p.grad, p.grad, value=1 - rho)
                p.addcdiv_(p.grad, v.add(eps).sqrt_(), value=-lr)
        return loss
