"""Several runs at once (``cnnlab study --jobs N``): each run in its own process, with its thread count or its
own GPU, reporting its progress as events to the parent.

Stopping (SIGINT, SIGTERM): the parent records the signal and sets one shared event; every worker looks at it at
its stop points (interrupts.py), so each run ends at its epoch boundary whatever moment the signal came.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import multiprocessing as mp
import os
import queue as queue_mod
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CnnlabError, TrainingInterrupted, first_line
from . import interrupts

if TYPE_CHECKING:
    from .config import FitConfig
    from .fit import FitResult

FINAL = ("done", "diverged", "failed", "interrupted")
STUDY_INTERRUPTED = "interrupted; every run keeps its last finished epoch: rerun the same study command to resume"


def study_interrupted(reason: str, signum: int) -> TrainingInterrupted:
    """A study's stop, as the CLI says it: the one message, with what stopped it."""
    return TrainingInterrupted(STUDY_INTERRUPTED + (f" ({reason})" if reason else ""), reason, signum)


INTERRUPT_WAIT_S = 900  # how long the parent waits for workers to stop after Ctrl-C (an epoch commit at most)


@dataclass
class Event:
    """What a study reports as it goes: its plan (runs at once, threads each), a run skipped (done earlier),
    started, an epoch committed, and how the run ended."""

    kind: str  # plan | skip | start | epoch | done | diverged | failed | interrupted
    index: int  # the run's position in the grid, from 1
    name: str
    epoch: int = 0
    epochs: int = 0
    val_loss: float | None = None
    val_acc: float | None = None
    seconds: float | None = None  # this epoch's training time
    message: str = ""
    run_dir: str | None = None
    device: str = ""  # what the worker trains on: "cpu, 2 threads", "cuda:1"
    total: int = 0  # runs in the grid
    eta_s: float | None = None  # "start" of a study trained one run at a time: the grid's time left
    pid: int = 0  # the worker process that trains the run
    jobs: int = 0  # "plan": runs trained at once
    threads: int = 0  # "plan": CPU threads per run


def train_outcome(
    index: int, name: str, epochs: int, train: Callable[[], FitResult]
) -> tuple[Event, BaseException | None]:
    """Train one run of a study (``train``: its fit) and turn how it ended into its final event: done, diverged (a
    non-finite loss is a result too), interrupted or failed. The exception that ended an interrupted or failed run
    comes with it: a study trained one run at a time stops on it at once, one trained in workers at its end."""
    from ..model.lit import NonFiniteLoss  # here, not above: a worker imports torch once its signals are set up

    try:
        run_dir = train().run_dir
    except NonFiniteLoss as e:
        return Event("diverged", index, name, message=str(e), run_dir=e.run_dir), None
    except TrainingInterrupted as e:
        return Event("interrupted", index, name, message=e.reason), e
    except BaseException as e:  # reported to the caller, which decides; a worker never dies silently
        return Event("failed", index, name, message=first_line(e, 300) or type(e).__name__), e
    return Event("done", index, name, epochs=epochs, run_dir=str(run_dir)), None


@dataclass
class Task:
    index: int
    cfg: FitConfig
    resume_dir: Path | None = None


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use (a cgroup or taskset may limit them)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_run(grid_size: int, cores: int | None = None) -> int:
    """The CPU threads each run of a study trains on: cores // grid size, at least one. It depends on the grid and
    the machine, never on --jobs, so training two runs at once gives the same results as one at a time (the last
    bits of a run depend on its thread count). On two cores, two one-thread runs side by side train 1.5x the runs
    per hour of one two-thread run after another (benchmarks/RESULTS.md); a grid of one run takes every core."""
    return max(1, (cores or cpu_cores()) // max(1, grid_size))


def auto_jobs(threads: int, gpus: int, per_gpu: int, cores: int | None = None) -> int:
    """--jobs auto: per_gpu runs on each GPU, else as many runs of ``threads`` threads as the cores hold."""
    if gpus:
        return gpus * per_gpu
    return max(1, (cores or cpu_cores()) // threads)


def check_jobs(jobs: int | None, per_gpu: int) -> None:
    if jobs is not None and jobs < 1:
        raise CnnlabError(f"--jobs {jobs}: must be at least 1 (or auto)")
    if per_gpu < 1:
        raise CnnlabError(f"--jobs-per-gpu {per_gpu}: must be at least 1")


def gpus_for(cfg: FitConfig) -> int:
    """How many CUDA GPUs the jobs can share (0: train on the CPU)."""
    from ..hardware import uses_cuda

    if not uses_cuda(cfg.accelerator):
        return 0
    import torch

    return torch.cuda.device_count()


@dataclass
class _Slot:
    """What one worker process trains on: a share of the CPU threads, or one GPU."""

    threads: int | None = None
    gpu: int | None = None

    def apply(self, cfg: FitConfig) -> FitConfig:
        if self.gpu is not None:
            return dataclasses.replace(cfg, devices=f"{self.gpu},", progress=False)
        return dataclasses.replace(cfg, threads=cfg.threads or self.threads, progress=False)

    def describe(self, cfg: FitConfig) -> str:
        if self.gpu is not None:
            return f"cuda:{self.gpu}"
        return f"cpu, {cfg.threads} thread{'s' if cfg.threads != 1 else ''}"


def plan_slots(jobs: int, runs: int, gpus: int, per_gpu: int, threads: int = 1) -> list[_Slot]:
    """The workers to start: as many as jobs (never more than runs); on GPUs round robin, at most per_gpu on each
    (so 3 jobs on 4 GPUs take 3 GPUs); on the CPU each with ``threads`` threads (threads_per_run)."""
    if gpus:
        n = min(jobs, runs, gpus * per_gpu)
        return [_Slot(gpu=w % gpus) for w in range(n)]
    return [_Slot(threads=threads) for _ in range(min(jobs, runs))]


def _observer(events: Any, index: int, cfg: FitConfig) -> Callable[[dict[str, float], float], None]:
    """fit's observer in a worker: each committed epoch becomes an event for the parent."""

    def observe(row: dict[str, float], seconds: float) -> None:
        loss, acc = row.get("val_loss"), row.get("val_acc")
        events.put(Event("epoch", index, cfg.run_name, int(row["epoch"]), cfg.epochs, loss, acc, seconds))

    return observe


def _worker(slot: _Slot, tasks: Any, events: Any, stop: Any) -> None:
    """A worker process: takes runs from ``tasks`` until there are none or the study is stopped, reporting each
    run's start, epochs and ending as events; it never raises. Torch and Lightning are imported once.

    It starts with SIGINT and SIGTERM blocked (the parent's signals_blocked): it leaves the terminal's process
    group, so the terminal's Ctrl-C reaches the parent alone, then watches its own signals and the study's
    ``stop`` event (interrupts.py) and unblocks; a signal sent meanwhile was pending, and now counts.
    """
    os.setpgrp()
    with interrupts.watching(shared=stop) as request:
        interrupts.unblock()
        from .fit import fit

        # After the imports: importing Lightning sets its loggers to INFO ("GPU available: ..." x N, garbling
        # the parent's display).
        for logger in ("lightning.pytorch", "lightning.fabric"):
            logging.getLogger(logger).setLevel(logging.WARNING)

        while request.reason is None:
            task = tasks.get()
            if task is None:
                break
            cfg, name = slot.apply(task.cfg), task.cfg.run_name
            if request.reason is not None:  # stopped while this run was being taken: the study reruns it
                events.put(Event("interrupted", task.index, name, message=request.reason))
                break
            how = "resuming" if cfg.resume else "training"
            where = slot.describe(cfg)
            events.put(Event("start", task.index, name, epochs=cfg.epochs, message=how, device=where, pid=os.getpid()))
            run = functools.partial(fit, cfg, resume_dir=task.resume_dir, observer=_observer(events, task.index, cfg))
            event, _ = train_outcome(task.index, name, cfg.epochs, run)
            events.put(event)  # the parent decides what a failure means: the study fails once every run ended
            if event.kind == "interrupted":
                break


class _Pool:
    """``jobs`` worker processes fed from one task queue; the parent turns their events into the grid's state."""

    def __init__(self, tasks: list[Task], jobs: int, per_gpu: int, on_event: Callable[[Event], None], total: int):
        self.ctx = mp.get_context("spawn")  # fork would copy the parent's torch threads and CUDA state
        self.tasks: Any = self.ctx.Queue()
        self.events: Any = self.ctx.Queue()
        self.stop_flag: Any = self.ctx.Event()
        self.on_event, self.total = on_event, total
        self.pending = {t.index: t.cfg.run_name for t in tasks}  # runs without a final event yet
        self.running: dict[int, int] = {}  # run index -> the pid of the worker training it
        self.finals: dict[int, Event] = {}
        gpus = gpus_for(tasks[0].cfg) if tasks else 0
        slots = plan_slots(jobs, len(tasks), gpus, per_gpu, (tasks[0].cfg.threads if tasks else None) or 1)
        for task in tasks:
            self.tasks.put(task)
        for _ in slots:
            self.tasks.put(None)  # one end marker per worker
        with interrupts.signals_blocked():  # the workers inherit the blocked mask (see _worker)
            self.workers = [
                self.ctx.Process(target=_worker, args=(slot, self.tasks, self.events, self.stop_flag)) for slot in slots
            ]
            for w in self.workers:
                w.start()

    def handle(self, event: Event) -> None:
        event.total = self.total
        if event.kind == "start":
            self.running[event.index] = event.pid
        if event.kind in FINAL:
            self.finals[event.index] = event
            self.running.pop(event.index, None)
            self.pending.pop(event.index, None)
        self.on_event(event)

    def poll(self, timeout: float) -> None:
        try:
            self.handle(self.events.get(timeout=timeout))
        except queue_mod.Empty:
            self._reap()

    def drain(self, timeout: float) -> None:
        """Handle the events still in the pipe, until none comes within ``timeout``."""
        while True:
            try:
                self.handle(self.events.get(timeout=timeout))
            except queue_mod.Empty:
                return

    def alive(self) -> bool:
        return any(w.is_alive() for w in self.workers)

    def busy(self) -> bool:
        return self.alive() and (bool(self.pending) or bool(self.running))

    def _reap(self) -> None:
        """A worker that died without reporting its run's end (killed by the OS, say): that run failed."""
        alive = {w.pid for w in self.workers if w.is_alive()}
        for index, pid in list(self.running.items()):
            if pid in alive:
                continue
            self.drain(1.0)  # its last events may still be in the pipe
            if index in self.running:
                code = next(w.exitcode for w in self.workers if w.pid == pid)
                name = self.pending.get(index, f"run {index}")
                self.handle(Event("failed", index, name, message=f"worker process ended with code {code}"))

    def close(self, timeout: float = 60) -> None:
        for w in self.workers:
            w.join(timeout=timeout)
        for w in self.workers:  # still there: stop it the hard way (its runs keep their last committed epoch)
            if w.is_alive():
                w.terminate()


def run_parallel(
    tasks: list[Task], jobs: int, on_event: Callable[[Event], None], per_gpu: int = 1, total: int = 0
) -> dict[int, Event]:
    """Train the tasks in ``jobs`` worker processes (or ``per_gpu`` per GPU when they train on CUDA GPUs);
    returns each task's final event by index. SIGINT or SIGTERM to this process (interrupts.py) sets the study's
    stop event once: every worker stops at its next stop point, each run at its epoch boundary, then
    TrainingInterrupted is raised."""
    check_jobs(jobs, per_gpu)
    if not tasks:
        return {}
    with interrupts.watching() as stop:
        pool = _Pool(tasks, jobs, per_gpu, on_event, total or len(tasks))
        try:
            while pool.busy():
                if stop.reason is not None:
                    pool.stop_flag.set()  # idempotent; the workers poll it
                pool.poll(0.5)
            pool.drain(0.5)  # what the last workers said just before they ended
        finally:  # stopped, done, or an error here: no worker takes another run; each ends at its stop point
            pool.stop_flag.set()
            deadline = time.monotonic() + INTERRUPT_WAIT_S  # a worker finishing its commit or test set, at most
            while pool.alive() and time.monotonic() < deadline:
                pool.poll(0.5)
            pool.drain(0.2)
            pool.close()
        if stop.reason is not None:
            raise study_interrupted(stop.reason, stop.signum or signal.SIGINT)
    for index, name in pool.pending.items():  # no worker reported it: all of them died
        pool.finals[index] = Event("failed", index, name, message="no worker process was left to train it")
    return pool.finals
