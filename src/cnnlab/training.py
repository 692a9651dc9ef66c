"""``fit``: train the exercise's CNN with Lightning and record the run (TensorBoard, history.csv, run.json)."""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import platform
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn

from . import __version__
from .atomic import atomic_path, atomic_write_json
from .checkpoints import load_checkpoint_dict
from .data import FashionMNISTDataModule, check_fractions
from .errors import CnnlabError, TrainingInterrupted, first_line
from .evaluation import evaluate_torch
from .lit import FashionClassifier, check_hparams
from .runs import LAST_CKPT, RUN_JSON, check_name, new_version_dir, read_run, versions, write_history

_RUN_DIR_ENV = "CNNLAB_RUN_DIR"  # tells DDP worker processes (which re-run the command) which folder rank 0 made
_HARDWARE = ("accelerator", "devices", "num_nodes", "strategy", "precision", "channels_last", "compile", "progress")


@dataclass
class FitConfig:
    frac: float = 0.2  # fraction of the 50,000-image training pool used (train + validation)
    dropout: float = 0.0  # Dropout(p) after the first Dense layer; 0 = none
    epochs: int = 40  # total epochs (with --resume: train up to this many)
    batch_size: int = 32
    lr: float = 1e-4
    optimizer: str = "rmsprop"
    init: str = "keras"
    seed: int = 42  # fixes the subset, the shuffle and the initialization
    val_split: float = 0.1
    eval_train: bool = False  # also measure train loss/acc with dropout off, after each epoch
    data_dir: str | None = None
    name: str | None = None  # default: derived from the settings, e.g. frac0.2_drop0.0
    logdir: str = "tb_logs"
    resume: bool = False
    accelerator: str = "auto"
    devices: str = "1"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    channels_last: bool = False  # NHWC memory format (a speed option)
    compile: bool = False  # torch.compile the network (a speed option)
    progress: bool = True  # progress bar and model summary

    @property
    def run_name(self) -> str:
        if self.name is not None:
            return check_name(self.name)
        name = f"frac{self.frac}_drop{float(self.dropout)}"
        if self.optimizer != "rmsprop":
            name += f"_{self.optimizer}"
        if self.seed != FitConfig.seed:
            name += f"_seed{self.seed}"
        return name

    def validate(self) -> None:
        if self.epochs < 1:
            raise CnnlabError(f"--epochs {self.epochs}: must be at least 1")
        if self.batch_size < 1:
            raise CnnlabError(f"--batch-size {self.batch_size}: must be at least 1")
        if self.num_nodes < 1:
            raise CnnlabError(f"--num-nodes {self.num_nodes}: must be at least 1")
        check_hparams(self.dropout, self.lr, self.optimizer, self.init)
        check_fractions(self.frac, self.val_split)
        check_name(self.run_name)


@dataclass
class FitResult:
    run_dir: Path
    status: str  # finished | interrupted | failed
    history: list[dict[str, float]] = field(default_factory=list)
    test: dict[str, dict[str, float]] = field(default_factory=dict)
    epoch_seconds: list[float] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=dict)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Every checkpoint (last and best) goes to a temporary file first: a kill mid-write never corrupts one."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


class RunRecorder(Callback):
    """After every epoch: history.csv, run.json and TensorBoard scalars (step = epoch), then last.ckpt.

    The files are written before the checkpoint, and the history also travels inside the checkpoint, so a run
    killed at any moment resumes with a history that matches its weights.
    """

    def __init__(self, run_dir: Path, info: dict[str, Any]) -> None:
        self.run_dir, self.info = run_dir, info
        self.history: list[dict[str, float]] = []
        self.epoch_seconds: list[float] = []
        self._t0 = 0.0
        self._train_seconds: float | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "epoch_seconds": self.epoch_seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history, self.epoch_seconds = list(state["history"]), list(state["epoch_seconds"])

    def _clock(self, pl_module: L.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)  # GPU work is asynchronous: wait before reading the clock
        return time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._train_seconds = None
        self._t0 = self._clock(pl_module)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The epoch's training batches are done: validation (and the best checkpoint's save) is not timed.
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
        with _commit():
            self.history.append(row)
            self.epoch_seconds.append(round(self._train_seconds, 4))
            if trainer.is_global_zero:
                write_history(self.run_dir, self.history)
                self.write_info(status="running")
                assert isinstance(trainer.logger, TensorBoardLogger)
                for key, value in metrics.items():
                    trainer.logger.experiment.add_scalar(key, value, epoch)
                trainer.logger.experiment.add_scalar("time/epoch_seconds", self._train_seconds, epoch)
                trainer.logger.experiment.flush()
            trainer.save_checkpoint(self.run_dir / LAST_CKPT, weights_only=False)  # all ranks call it; rank 0 writes

    def write_info(self, **updates: Any) -> None:
        self.info.update(updates)
        best = min(self.history, key=lambda r: r.get("val_loss", float("inf")), default=None)
        self.info.update(
            epochs_completed=len(self.history),
            epoch_seconds=self.epoch_seconds,
            best={"epoch": best["epoch"], "val_loss": best["val_loss"], "val_acc": best["val_acc"]} if best else {},
            final=self.history[-1] if self.history else {},
            updated=_now(),
        )
        atomic_write_json(self.run_dir / RUN_JSON, self.info)


class _ProgressBar(RichProgressBar):
    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)  # the run folder's version, shown as "0.000": noise next to the metrics
        return metrics


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")  # Lightning's advertisements for its cloud services


for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(_DropTips())


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


_interrupt = {"deferring": False, "pending": False}


@contextlib.contextmanager
def _sigint_stops_training() -> Iterator[None]:
    """Ctrl-C raises TrainingInterrupted: the epoch in progress is dropped, the last checkpoint stays."""

    def handler(signum: int, frame: Any) -> None:
        if _interrupt["deferring"]:  # inside an epoch's commit: finish writing it first
            _interrupt["pending"] = True
            return
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the cleanup
        raise TrainingInterrupted

    if threading.current_thread() is not threading.main_thread():  # signals can only be caught there
        yield
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _interrupt.update(deferring=False, pending=False)


@contextlib.contextmanager
def _commit() -> Iterator[None]:
    """history.csv, run.json and last.ckpt of one epoch are written together: Ctrl-C waits until they are."""
    _interrupt["deferring"] = True
    try:
        yield
    finally:
        _interrupt["deferring"] = False
    if _interrupt["pending"]:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise TrainingInterrupted


def _run_folder(cfg: FitConfig, name: str) -> Path:
    """The run folder: rank 0 makes (or, to resume, finds) it; DDP workers are told through the environment."""
    if os.environ.get("LOCAL_RANK", "0") != "0" and os.environ.get(_RUN_DIR_ENV):
        return Path(os.environ[_RUN_DIR_ENV])
    logdir = Path(cfg.logdir)
    if not cfg.resume:
        return new_version_dir(logdir, name)
    found = versions(logdir, name)
    if not found:
        raise CnnlabError(f"--resume: no run named {name!r} in {logdir}/ to resume; drop --resume to start one")
    return logdir / name / f"version_{found[-1]}"


def _resumed_config(cfg: FitConfig, run_dir: Path) -> FitConfig:
    """--resume keeps the run's own settings; only --epochs and the hardware options apply."""
    saved = read_run(run_dir).get("config")
    if not isinstance(saved, dict):
        raise CnnlabError(f"{run_dir / RUN_JSON}: has no saved config; cannot resume this run")
    known = {f.name for f in fields(FitConfig)}
    merged = {k: v for k, v in saved.items() if k in known}
    merged.update({k: getattr(cfg, k) for k in ("epochs", "resume", "logdir", *_HARDWARE)})
    return FitConfig(**merged)


def fit(cfg: FitConfig) -> FitResult:
    """Train one run as configured and return where it was recorded and what it measured."""
    cfg.validate()
    name = cfg.run_name
    run_dir = _run_folder(cfg, name)
    last = run_dir / LAST_CKPT
    if cfg.resume:
        if not last.is_file():
            raise CnnlabError(f"--resume: {last} does not exist (the run ended before its first epoch); start anew")
        load_checkpoint_dict(last)  # a clear error for a corrupt or unsafe file, before Lightning reads it
        cfg = _resumed_config(cfg, run_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = FashionMNISTDataModule(cfg.data_dir, cfg.frac, cfg.val_split, cfg.batch_size, seed=cfg.seed,
                                eval_train=cfg.eval_train)  # fmt: skip
    model = FashionClassifier(cfg.dropout, cfg.lr, cfg.optimizer, cfg.batch_size, cfg.init, cfg.channels_last,
                              cfg.compile)  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    assert dm.split is not None
    info: dict[str, Any] = read_run(run_dir) if cfg.resume else {"started": _now()}
    info.update(
        name=name,
        version=int(run_dir.name.removeprefix("version_")),
        status="running",
        config=asdict(cfg),
        hparams=dict(model.hparams)
        | {"frac": cfg.frac, "seed": cfg.seed, "epochs": cfg.epochs, "val_split": cfg.val_split},
        split=dm.split_sizes,
        train_indices_sha256=dm.split.train_hash,
        versions={
            "cnnlab": __version__,
            "torch": torch.__version__,
            "lightning": L.__version__,
            "python": platform.python_version(),
        },  # fmt: skip
    )
    recorder = RunRecorder(run_dir, info)
    best = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor="val/loss", mode="min",
                           save_top_k=1, enable_version_counter=False, auto_insert_metric_name=False)  # fmt: skip
    logger = TensorBoardLogger(cfg.logdir, name=name, version=info["version"], default_hp_metric=False)
    devices: Any = int(cfg.devices) if cfg.devices.isdigit() else cfg.devices
    try:
        trainer = L.Trainer(
            max_epochs=cfg.epochs, accelerator=cfg.accelerator, devices=devices, num_nodes=cfg.num_nodes,
            strategy=cfg.strategy, precision=cfg.precision,  # type: ignore[arg-type]
            logger=logger, callbacks=[recorder, best, *([_ProgressBar()] if cfg.progress else [])],
            plugins=[AtomicCheckpointIO()], num_sanity_val_steps=0,
            enable_progress_bar=cfg.progress, enable_model_summary=cfg.progress, log_every_n_steps=50,
            default_root_dir=run_dir,
        )  # fmt: skip
    except (ValueError, RuntimeError, TypeError) as e:  # Lightning's MisconfigurationException is a ValueError
        raise CnnlabError(f"hardware options: {first_line(e, 300)}") from None
    if trainer.is_global_zero and not cfg.resume:  # a resumed run keeps its run.json until its next epoch
        recorder.write_info()
    os.environ[_RUN_DIR_ENV] = str(run_dir)
    status = "failed"  # until fit returns: a crash of any kind is recorded as one
    try:
        with _sigint_stops_training(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*does not have many workers.*")  # in-memory batches need none
            warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
            warnings.filterwarnings("ignore", ".*Checkpoint directory .* exists and is not empty.*")
            warnings.filterwarnings("ignore", ".*isinstance.treespec, LeafSpec.*")  # Lightning vs newer torch
            trainer.fit(model, datamodule=dm, ckpt_path=last if cfg.resume else None, weights_only=True)
        status = "finished"
    except TrainingInterrupted:
        status = "interrupted"
        raise
    except CnnlabError as e:
        recorder.info["message"] = str(e)
        raise
    finally:
        os.environ.pop(_RUN_DIR_ENV, None)
        if trainer.is_global_zero and status != "finished":
            recorder.write_info(status=status)
    result = FitResult(run_dir, status, recorder.history, {}, recorder.epoch_seconds, recorder.info.get("best", {}))
    if not trainer.is_global_zero:
        return result
    # Test the final weights on the holdout and the official test set (rank 0 alone: no padded DDP samplers).
    for split in ("holdout", "official"):
        result.test[split] = evaluate_torch(model.net, dm.eval_set(split), device=model.device)
        for k, v in result.test[split].items():
            logger.experiment.add_scalar(f"test/{split}/{k}", v, len(recorder.history))
    logger.experiment.flush()
    recorder.write_info(status="finished", test=result.test)
    return result
