"""The run recorder: after every epoch, history.csv, run.json, TensorBoard (step = epoch), best.ckpt, last.ckpt."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn

from ..model.lit import FashionClassifier
from ..runs import best_row, checkpoint_path, write_history, write_run
from ..tblog import RunBoard


def now() -> str:
    """The time for run.json: UTC, to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class RunRecorder(Callback):
    """After every epoch: history.csv, run.json, TensorBoard (step = epoch), best.ckpt, then last.ckpt.

    The best checkpoint is kept here, not by Lightning's ModelCheckpoint: its choice comes from the same history
    (restored from last.ckpt on resume) as run.json's "best", so the two always name the same epoch. The files are
    written before last.ckpt, and the history also travels inside it, so a run killed at any moment resumes with a
    history that matches its weights.
    """

    clock = staticmethod(time.perf_counter)  # a test swaps in a fake clock

    def __init__(self) -> None:
        self.run_dir = Path()
        self.info: dict[str, Any] = {}
        self.history: list[dict[str, float]] = []
        self.epoch_seconds: list[float] = []
        self._t0 = 0.0
        self._train_seconds: float | None = None
        self.board: RunBoard | None = None  # rank 0 only
        self._board_started = False
        self.observer: Callable[[dict[str, float], float], None] | None = None  # told of each committed epoch

    def start_run(self, run_dir: Path, info: dict[str, Any], board: RunBoard | None) -> None:
        """Record into ``run_dir`` from now on, starting from its run.json ``info`` (``board``: rank 0 only)."""
        self.run_dir, self.info, self.board = run_dir, info, board

    def start_board(self) -> None:
        """The event files afresh from the history (restored from last.ckpt on resume), once per process."""
        if self.board is not None and not self._board_started:
            self.board.start_session(self.history, self.epoch_seconds)
            self._board_started = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start_board()

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "epoch_seconds": self.epoch_seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history, self.epoch_seconds = list(state["history"]), list(state["epoch_seconds"])

    def _clock(self, pl_module: L.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)  # GPU work is asynchronous: wait before reading the clock
        return self.clock()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._train_seconds = None
        self._t0 = self._clock(pl_module)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The epoch's training batches are done: validation and the checkpoint saves are not timed.
        # (trainer.training is False here: during fit's validation the trainer's stage is "validate".)
        if trainer.state.fn == TrainerFn.FITTING and self._train_seconds is None:
            self._train_seconds = self._clock(pl_module) - self._t0

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        assert isinstance(pl_module, FashionClassifier)
        pl_module.raise_if_nonfinite()
        if self._train_seconds is None:
            self._train_seconds = self._clock(pl_module) - self._t0
        epoch = trainer.current_epoch + 1
        metrics = pl_module.epoch_metrics()
        row: dict[str, float] = {"epoch": epoch}
        for key in ("train/loss", "train/acc", "val/loss", "val/acc", "train_eval/loss", "train_eval/acc"):
            if key in metrics:
                row[key.replace("/", "_")] = metrics[key]
        # The commit. It holds no stop point (interrupts.py), so a signal never cuts it short.
        self.history.append(row)
        self.epoch_seconds.append(round(self._train_seconds, 4))
        # Every rank sees the same synced metrics, so every rank takes part in the same saves.
        if best_row(self.history) is row:
            trainer.save_checkpoint(checkpoint_path(self.run_dir, "best"), weights_only=True)
        if trainer.is_global_zero:
            write_history(self.run_dir, self.history)
            self.write_info(status="running")
            if self.board is not None:
                self.board.epoch(row, self._train_seconds)
            if self.observer is not None:
                self.observer(row, self._train_seconds)
        trainer.save_checkpoint(checkpoint_path(self.run_dir, "last"), weights_only=False)

    def write_info(self, **updates: Any) -> None:
        self.info.update(updates)
        best = best_row(self.history)
        self.info.update(
            epochs_completed=len(self.history),
            epoch_seconds=self.epoch_seconds,
            best={"epoch": best["epoch"], "val_loss": best["val_loss"], "val_acc": best["val_acc"]} if best else {},
            final=self.history[-1] if self.history else {},
            updated=now(),
        )
        write_run(self.run_dir, self.info)
