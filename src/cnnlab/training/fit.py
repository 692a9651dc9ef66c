"""``fit``: train the exercise's CNN with Lightning and record the run (TensorBoard, history.csv, run.json)."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import signal
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, RichProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException

from .. import __version__
from ..atomic import atomic_path
from ..data.module import FashionMNISTDataModule
from ..errors import CnnlabError, TrainingInterrupted, first_line
from ..hardware import Precision, choose_precision, describe, set_threads
from ..model.checkpoints import load_checkpoint_dict
from ..model.lit import FashionClassifier, NonFiniteLoss
from ..runs import (
    RUN_JSON,
    checkpoint_path,
    clean_stray_temp,
    create_version,
    read_run,
    resume_target,
    version_of,
    write_predictions,
)
from ..tblog import RunBoard, summary_text
from . import interrupts
from .config import FitConfig
from .interrupts import StopRequest
from .measure import board_figures, measure_test_sets
from .recorder import RunRecorder, now

_RUN_DIR_ENV = "CNNLAB_RUN_DIR"  # tells DDP worker processes (which re-run the command) which folder rank 0 made


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
    resumed = FitConfig(**merged)
    resumed.validate()  # the saved settings are checked like any others (prepare trusts what it is given)
    return resumed


def prepare(cfg: FitConfig) -> tuple[FashionMNISTDataModule, FashionClassifier]:
    """Seed, then build the data (read and split) and the model: the seed fixes subset, shuffle and init. ``cfg``
    is trusted: FitConfig.validate (which ``fit`` runs first) has checked every setting once."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = FashionMNISTDataModule(
        data_dir=cfg.data_dir,
        frac=cfg.frac,
        val_split=cfg.val_split,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        eval_train=cfg.eval_train,
        checked=True,
    )
    model = FashionClassifier(
        dropout=cfg.dropout,
        lr=cfg.lr,
        optimizer=cfg.optimizer,
        batch_size=cfg.batch_size,
        init=cfg.init,
        channels_last=cfg.channels_last,
        compile=cfg.compile,
        thread_invariant=cfg.thread_invariant,
        checked=True,
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
    info: dict[str, Any] = read_run(run_dir) if cfg.resume else {"started": now()}
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
    try:
        stop.check()  # asked to stop while the data loaded: no run folder is made
    except TrainingInterrupted as e:
        raise TrainingInterrupted(f"interrupted by {e.reason} before the run started; nothing was written", e.reason,
                                  e.signum) from None  # fmt: skip
    run_dir = _open_run_folder(cfg, trainer, recorder, run_dir, dm, model, precision)
    status = _train(cfg, trainer, recorder, model, dm)
    reporter = trainer.is_global_zero and recorder.board is not None  # DDP workers: rank 0 alone reports the run
    test = _finish(recorder, model, dm, trainer.strategy.root_device, stop) if reporter else {}
    return FitResult(
        run_dir=run_dir,
        status=status,
        history=recorder.history,
        test=test,
        epoch_seconds=recorder.epoch_seconds,
        best=recorder.info.get("best", {}),
        reporter=reporter,
    )


def _finish(
    recorder: RunRecorder, model: FashionClassifier, dm: FashionMNISTDataModule, device: torch.device, stop: StopRequest
) -> dict[str, dict[str, Any]]:
    """Rank 0, once training ended: the test sets measured, predictions.npz, run.json "finished", the board closed."""
    run_dir = recorder.run_dir
    try:
        measured = measure_test_sets(model, dm, run_dir, recorder.history, device, stop.check)
    except TrainingInterrupted as e:  # every epoch is committed: --resume only measures the test sets
        raise _record_stop(recorder, e) from None
    write_predictions(run_dir, measured.predictions)  # before "finished": a finished run always has them
    clean_stray_temp(run_dir)
    recorder.write_info(status="finished", test=measured.test)
    recorder.start_board()  # a resume with no epoch left to train never started it
    board = recorder.board
    assert board is not None
    with contextlib.closing(board):
        board.finish(len(recorder.history), measured.test, summary_text(recorder.info), board_figures(measured))
    return measured.test


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
    recorder.start_run(run_dir, info, board)
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
