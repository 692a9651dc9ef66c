"""``fit``: train the exercise's CNN with Lightning and record the run (TensorBoard, history.csv, run.json)."""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import platform
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, RichProgressBar
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from . import __version__, interrupts
from .atomic import atomic_path
from .checkpoints import load_checkpoint_dict, load_network
from .config import FitConfig
from .data import FashionMNISTDataModule
from .errors import CnnlabError, TrainingInterrupted, first_line
from .evaluation import confusion_matrix, loss_and_accuracy, torch_logits
from .hardware import Precision, choose_precision, describe, set_threads
from .interrupts import StopRequest
from .lit import FashionClassifier, NonFiniteLoss
from .runs import (
    RUN_JSON,
    best_row,
    checkpoint_path,
    clean_stray_temp,
    create_version,
    read_run,
    resume_target,
    version_of,
    write_history,
    write_predictions,
    write_run,
)
from .tblog import RunBoard, summary_text

_RUN_DIR_ENV = "CNNLAB_RUN_DIR"  # tells DDP worker processes (which re-run the command) which folder rank 0 made
TEST_SPLITS = ("holdout", "official")


@dataclass
class FitResult:
    run_dir: Path
    status: str  # finished | interrupted | failed
    history: list[dict[str, float]] = field(default_factory=list)
    test: dict[str, dict[str, Any]] = field(default_factory=dict)  # {"best"|"last": {"epoch", "holdout", ...}}
    epoch_seconds: list[float] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=dict)
    reporter: bool = True  # False in DDP worker processes: rank 0 alone reports the run


class AtomicCheckpointIO(TorchCheckpointIO):
    """Every checkpoint (last and best) goes to a temporary file first: a kill mid-write never corrupts one."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


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

    def start(self, run_dir: Path, info: dict[str, Any], board: RunBoard | None) -> None:
        self.run_dir, self.info, self.board = run_dir, info, board

    def start_board(self) -> None:
        """The event files afresh from the history (restored from last.ckpt on resume), once per process."""
        if self.board is not None and not self._board_started:
            self.board.start(self.history, self.epoch_seconds)
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
            updated=_now(),
        )
        write_run(self.run_dir, self.info)


class StopAtBatch(Callback):
    """The stop points of a training (interrupts.py): the start of every training and validation batch. Under DDP
    every rank stops at the same batch: any rank's request stops them all."""

    def __init__(self, stop: StopRequest) -> None:
        self.stop = stop

    def _check(self, trainer: L.Trainer) -> None:
        stopping = self.stop.reason is not None
        if trainer.world_size > 1:
            stopping = trainer.strategy.reduce_boolean_decision(stopping, all=False)
        if stopping:
            raise TrainingInterrupted(reason=self.stop.reason or "another rank was stopped", signum=self.signum)

    @property
    def signum(self) -> int:
        return self.stop.signum or signal.SIGINT

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self._check(trainer)

    def on_validation_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self._check(trainer)


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


def _worker_run_dir() -> Path | None:
    """In a DDP worker process (which re-runs the command), the folder rank 0 made or resumes."""
    if os.environ.get("LOCAL_RANK", "0") != "0" and os.environ.get(_RUN_DIR_ENV):
        return Path(os.environ[_RUN_DIR_ENV])
    return None


def _resumed_config(cfg: FitConfig, run_dir: Path) -> FitConfig:
    """--resume keeps the run's own settings; only --epochs and the hardware options apply."""
    saved = read_run(run_dir).get("config")
    if not isinstance(saved, dict):
        raise CnnlabError(f"{run_dir / RUN_JSON}: has no saved config; cannot resume this run")
    known = {f.name for f in fields(FitConfig)}
    merged = {k: v for k, v in saved.items() if k in known}
    merged.update({k: getattr(cfg, k) for k in ("epochs", "resume", "logdir", *FitConfig.kind("hardware"))})
    return FitConfig(**merged)


def prepare(cfg: FitConfig) -> tuple[FashionMNISTDataModule, FashionClassifier]:
    """Seed, then build the data (read and split) and the model: the seed fixes subset, shuffle and init."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = FashionMNISTDataModule(
        cfg.data_dir, cfg.frac, cfg.val_split, cfg.batch_size, seed=cfg.seed, eval_train=cfg.eval_train
    )
    model = FashionClassifier(
        cfg.dropout,
        cfg.lr,
        cfg.optimizer,
        cfg.batch_size,
        cfg.init,
        channels_last=cfg.channels_last,
        compile=cfg.compile,
        thread_invariant=cfg.thread_invariant,
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm, model


def _slurm_without_requeue() -> list[Any]:
    """On SLURM, Lightning's environment without its auto-requeue: on SIGUSR1 that saves a mid-epoch checkpoint of
    its own and calls `scontrol requeue`; a run resumes from its own last epoch instead (README: requeueing)."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def _trainer(cfg: FitConfig, recorder: RunRecorder, precision: str, stop: StopRequest) -> L.Trainer:
    """The Trainer, built before the run folder exists: bad hardware options fail without leaving one."""
    devices: Any = int(cfg.devices) if cfg.devices.isdigit() else cfg.devices
    try:
        return L.Trainer(
            max_epochs=cfg.epochs,
            accelerator=cfg.accelerator,
            devices=devices,
            num_nodes=cfg.num_nodes,
            strategy=cfg.strategy,
            precision=precision,  # type: ignore[arg-type]
            logger=False,  # RunRecorder writes TensorBoard's files (tblog.py), Keras' layout
            callbacks=[recorder, StopAtBatch(stop), *([_ProgressBar()] if cfg.progress else [])],
            enable_checkpointing=False,  # RunRecorder writes best.ckpt and last.ckpt
            plugins=[AtomicCheckpointIO(), *_slurm_without_requeue()],
            num_sanity_val_steps=0,
            enable_progress_bar=cfg.progress,
            enable_model_summary=cfg.progress,
            log_every_n_steps=50,
            default_root_dir=cfg.logdir,
        )
    except (MisconfigurationException, ValueError, RuntimeError, TypeError) as e:
        raise CnnlabError(f"hardware options: {first_line(e, 300)}") from None


def _run_info(
    cfg: FitConfig,
    dm: FashionMNISTDataModule,
    model: FashionClassifier,
    run_dir: Path,
    device: torch.device,
    precision: Precision,
) -> dict[str, Any]:
    assert dm.split is not None
    info: dict[str, Any] = read_run(run_dir) if cfg.resume else {"started": _now()}
    for stale in ("message", "interrupted_by"):  # a resumed run's earlier ending no longer describes it
        info.pop(stale, None)
    info.update(
        name=run_dir.parent.name,  # the folder's name: a resumed run keeps it whatever its epochs
        version=version_of(run_dir),
        status="running",
        config=asdict(cfg),
        hparams=dict(model.hparams)
        | {"frac": cfg.frac, "seed": cfg.seed, "epochs": cfg.epochs, "val_split": cfg.val_split},
        split=dm.split_sizes,
        train_indices_sha256=dm.split.train_hash,
        hardware=describe(device),
        precision=precision.to_dict(),
        versions={
            "cnnlab": __version__,
            "torch": torch.__version__,
            "lightning": L.__version__,
            "python": platform.python_version(),
        },
    )
    return info


def fit(
    cfg: FitConfig,
    resume_dir: Path | None = None,
    observer: Callable[[dict[str, float], float], None] | None = None,
) -> FitResult:
    """Train one run as configured and return where it was recorded and what it measured.

    With ``cfg.resume``, continues ``resume_dir`` or else the latest version of the run with a last checkpoint.
    Every check (settings, data, hardware) runs before a new run folder is created. ``observer(row, seconds)`` is
    called after each epoch is committed (history row, training seconds), in the process that records the run.
    SIGINT and SIGTERM stop it at an epoch boundary (interrupts.py): the run is recorded ``interrupted`` with the
    reason, resumable, and TrainingInterrupted is raised.
    """
    with interrupts.watching() as stop:
        return _fit(cfg, resume_dir, observer, stop)


def _fit(
    cfg: FitConfig,
    resume_dir: Path | None,
    observer: Callable[[dict[str, float], float], None] | None,
    stop: StopRequest,
) -> FitResult:
    cfg.validate()
    run_dir = _worker_run_dir()
    if cfg.resume:
        run_dir = (
            run_dir or resume_dir or resume_target(Path(cfg.logdir), cfg.run_name, None if cfg.name else cfg.family)
        )
        load_checkpoint_dict(checkpoint_path(run_dir, "last"))  # a clear error for a corrupt or unsafe file
        cfg = _resumed_config(cfg, run_dir)
    set_threads(cfg.threads)
    precision = choose_precision(cfg.precision, cfg.accelerator)
    dm, model = prepare(cfg)
    recorder = RunRecorder()
    recorder.observer = observer
    trainer = _trainer(cfg, recorder, precision.used, stop)
    stop.check()  # asked to stop while the data loaded: no run folder is made
    run_dir = _open_run_folder(cfg, trainer, recorder, run_dir, dm, model, precision)
    status = _train(cfg, trainer, recorder, model, dm)
    result = FitResult(run_dir, status, recorder.history, {}, recorder.epoch_seconds, recorder.info.get("best", {}))
    if not trainer.is_global_zero or recorder.board is None:
        result.reporter = False
        return result
    try:
        measured = measure_test_sets(model, dm, run_dir, recorder.history, trainer.strategy.root_device, stop.check)
    except TrainingInterrupted as e:  # every epoch is committed: --resume only measures the test sets
        raise _record_stop(recorder, e) from None
    result.test = measured.test
    write_predictions(run_dir, measured.predictions)  # before "finished": a finished run always has them
    clean_stray_temp(run_dir)
    recorder.write_info(status="finished", test=result.test)
    recorder.start_board()  # a resume with no epoch left to train never started it
    with contextlib.closing(recorder.board):
        recorder.board.finish(len(recorder.history), result.test, summary_text(recorder.info), _board_figures(measured))
    return result


def _open_run_folder(
    cfg: FitConfig,
    trainer: L.Trainer,
    recorder: RunRecorder,
    run_dir: Path | None,
    dm: FashionMNISTDataModule,
    model: FashionClassifier,
    precision: Precision,
) -> Path:
    """The run's folder (a new version, or the resumed one), its run.json and its TensorBoard writer (rank 0)."""
    if run_dir is None:
        run_dir = create_version(Path(cfg.logdir), cfg.run_name)
    elif trainer.is_global_zero:
        clean_stray_temp(run_dir)  # what a killed write left; this process is now the folder's only writer
    info = _run_info(cfg, dm, model, run_dir, trainer.strategy.root_device, precision)
    board = RunBoard(run_dir, {**info["config"], "precision": precision.used}) if trainer.is_global_zero else None
    recorder.start(run_dir, info, board)
    if trainer.is_global_zero and not cfg.resume:  # a resumed run keeps its run.json until its next epoch
        recorder.write_info()
    return run_dir


def _train(
    cfg: FitConfig, trainer: L.Trainer, recorder: RunRecorder, model: FashionClassifier, dm: FashionMNISTDataModule
) -> str:
    """Lightning's fit; a stop (interrupts.py) ends it at the epoch boundary, any other ending is recorded too."""
    run_dir = recorder.run_dir
    os.environ[_RUN_DIR_ENV] = str(run_dir)
    status = "failed"  # until fit returns: a crash of any kind is recorded as one
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*does not have many workers.*")  # in-memory batches need none
            warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
            warnings.filterwarnings("ignore", ".*isinstance.treespec, LeafSpec.*")  # Lightning vs newer torch
            last = checkpoint_path(run_dir, "last")
            trainer.fit(model, datamodule=dm, ckpt_path=last if cfg.resume else None, weights_only=True)
        status = "finished"
    except (TrainingInterrupted, SIGTERMException) as e:  # Lightning raises the latter on SIGTERM itself
        status = "interrupted"
        if not isinstance(e, TrainingInterrupted):
            e = TrainingInterrupted(reason="SIGTERM", signum=signal.SIGTERM)
        raise _record_stop(recorder, e, write=False) from None
    except CnnlabError as e:
        recorder.info["message"] = str(e)
        if isinstance(e, NonFiniteLoss):
            recorder.info["nonfinite_epoch"] = e.epoch
            e.run_dir = str(run_dir)
        raise
    finally:
        os.environ.pop(_RUN_DIR_ENV, None)
        if trainer.is_global_zero and status != "finished":
            recorder.write_info(status=status)
            if recorder.board is not None:
                recorder.board.close()
    return status


def _record_stop(recorder: RunRecorder, e: TrainingInterrupted, write: bool = True) -> TrainingInterrupted:
    """run.json says why the run stopped and how to go on; the returned error says the same in one line."""
    done = len(recorder.history)
    where = f"after epoch {done}" if done else "before its first epoch"
    how = "`cnnlab fit --resume` continues from there" if done else "nothing to resume: start it anew"
    recorder.info.update(interrupted_by=e.reason, message=f"stopped by {e.reason} {where}; {how}")
    if write and recorder.board is not None:  # rank 0 (_train's own ending writes in its finally)
        recorder.write_info(status="interrupted")
        recorder.board.close()
    message = f"interrupted by {e.reason} {where}; the last finished epoch's checkpoint is kept: rerun with --resume"
    return TrainingInterrupted(message if done else f"interrupted by {e.reason} {where}", e.reason, e.signum)


def _board_figures(measured: TestMeasurement) -> dict[str, Any]:
    from .plots import confusion_figure, kernels_figure

    best = measured.test.get("best", measured.test["last"])
    title = f"holdout, best checkpoint (epoch {best['epoch']}): accuracy {best['holdout']['acc']:.4f}"
    return {
        "confusion_matrix/holdout": confusion_figure(measured.confusion, title),
        "filters/conv1": kernels_figure(
            measured.first_conv, f"first conv layer, best checkpoint (epoch {best['epoch']})"
        ),
    }


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
