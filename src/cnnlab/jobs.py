"""Several runs at once (``cnnlab study --jobs N``): each run in its own process, with its share of the CPU
threads or its own GPU, reporting its progress as events to the parent.

Ctrl-C: the workers sit in their own process group, so the terminal's SIGINT reaches the parent alone, which
passes exactly one SIGINT to each worker: fit's own handler then stops at the epoch boundary and keeps the run
resumable, the same as Ctrl-C on a single run. (Two signals could interrupt a worker's cleanup.)
"""

from __future__ import annotations

import dataclasses
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

from .errors import CnnlabError, TrainingInterrupted, first_line

if TYPE_CHECKING:
    from .config import FitConfig

FINAL = ("done", "diverged", "failed", "interrupted")
STUDY_INTERRUPTED = "interrupted; every run keeps its last finished epoch: rerun the same study command to resume"
INTERRUPT_WAIT_S = 900  # how long the parent waits for workers to stop after Ctrl-C (an epoch commit at most)


@dataclass
class Event:
    """What a study reports as it goes: a run skipped (done earlier), started, an epoch committed, and how the
    run ended."""

    kind: str  # skip | start | epoch | done | diverged | failed | interrupted
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


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """Each job's share of the CPU: cores // jobs, at least one (more threads than cores oversubscribe)."""
    return max(1, (cores or cpu_cores()) // jobs)


def check_jobs(jobs: int, per_gpu: int) -> None:
    if jobs < 1:
        raise CnnlabError(f"--jobs {jobs}: must be at least 1")
    if per_gpu < 1:
        raise CnnlabError(f"--jobs-per-gpu {per_gpu}: must be at least 1")


def _uses_gpu(cfg: FitConfig) -> int:
    """How many CUDA GPUs the jobs can share (0: train on the CPU)."""
    from .hardware import uses_cuda

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


def plan_slots(jobs: int, runs: int, gpus: int, per_gpu: int) -> list[_Slot]:
    """The workers to start: as many as jobs (never more than runs); on GPUs round robin, at most per_gpu on each
    (so 3 jobs on 4 GPUs take 3 GPUs); on the CPU each with its share of the cores."""
    if gpus:
        n = min(jobs, runs, gpus * per_gpu)
        return [_Slot(gpu=w % gpus) for w in range(n)]
    n = min(jobs, runs)
    return [_Slot(threads=threads_per_job(n)) for _ in range(n)]


def _observer(events: Any, index: int, cfg: FitConfig) -> Callable[[dict[str, float], float], None]:
    """fit's observer in a worker: each committed epoch becomes an event for the parent."""

    def observe(row: dict[str, float], seconds: float) -> None:
        loss, acc = row.get("val_loss"), row.get("val_acc")
        events.put(Event("epoch", index, cfg.run_name, int(row["epoch"]), cfg.epochs, loss, acc, seconds))

    return observe


def _worker(slot: _Slot, tasks: Any, events: Any, stop: Any) -> None:
    """A worker process: takes runs from ``tasks`` until there are none (or the parent stops the study), reporting
    each run's start, epochs and ending as events; it never raises. Torch and Lightning are imported once."""
    os.setpgrp()  # the terminal's Ctrl-C goes to the parent alone; it passes one SIGINT on (see the docstring)
    for logger in ("lightning.pytorch", "lightning.fabric"):  # "GPU available: ..." x N would garble the display
        logging.getLogger(logger).setLevel(logging.WARNING)
    from .lit import NonFiniteLoss
    from .training import fit

    signal.signal(signal.SIGINT, signal.default_int_handler)  # the parent started us with SIGINT ignored
    try:
        while not stop.is_set():
            task = tasks.get()
            if task is None:
                break
            cfg, name = slot.apply(task.cfg), task.cfg.run_name
            how = "resuming" if cfg.resume else "training"
            events.put(
                Event(
                    "start",
                    task.index,
                    name,
                    epochs=cfg.epochs,
                    message=how,
                    device=slot.describe(cfg),
                    pid=os.getpid(),
                )
            )
            try:
                if stop.is_set():  # stopped while this run was being taken
                    raise TrainingInterrupted
                result = fit(cfg, resume_dir=task.resume_dir, observer=_observer(events, task.index, cfg))
                events.put(Event("done", task.index, name, epochs=cfg.epochs, run_dir=str(result.run_dir)))
            except NonFiniteLoss as e:
                events.put(Event("diverged", task.index, name, message=str(e), run_dir=e.run_dir))
            except (TrainingInterrupted, KeyboardInterrupt):
                events.put(Event("interrupted", task.index, name))
                return
            except BaseException as e:  # reported to the parent, which decides; a worker never dies silently
                events.put(Event("failed", task.index, name, message=first_line(e, 300) or type(e).__name__))
    except KeyboardInterrupt:  # a SIGINT while waiting for a run: nothing to stop
        return


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
        slots = plan_slots(jobs, len(tasks), _uses_gpu(tasks[0].cfg) if tasks else 0, per_gpu)
        for task in tasks:
            self.tasks.put(task)
        for _ in slots:
            self.tasks.put(None)  # one end marker per worker
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # workers start deaf to it: no half-imported stop
        try:
            self.workers = [
                self.ctx.Process(target=_worker, args=(slot, self.tasks, self.events, self.stop_flag)) for slot in slots
            ]
            for w in self.workers:
                w.start()
        finally:
            signal.signal(signal.SIGINT, previous)

    def handle(self, event: Event) -> None:
        event.total = self.total
        if event.kind == "start":
            self.running[event.index] = event.pid
            if self.stop_flag.is_set():  # it took the run as the study was being stopped
                self._interrupt(event.pid)
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

    def busy(self) -> bool:
        return any(w.is_alive() for w in self.workers) and (bool(self.pending) or bool(self.running))

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

    def _interrupt(self, pid: int) -> None:
        if any(w.pid == pid and w.is_alive() for w in self.workers):
            os.kill(pid, signal.SIGINT)

    def stop(self) -> None:
        """Ctrl-C: no new runs; one SIGINT to each worker that is training (a run taken meanwhile gets its own
        when its start is reported), then wait for every worker to end."""
        self.stop_flag.set()
        for pid in set(self.running.values()):
            self._interrupt(pid)
        deadline = time.monotonic() + INTERRUPT_WAIT_S
        while any(w.is_alive() for w in self.workers) and time.monotonic() < deadline:
            self.poll(1.0)
        for w in self.workers:  # past the deadline: stop them the hard way
            if w.is_alive():
                w.terminate()

    def close(self) -> None:
        for w in self.workers:
            w.join(timeout=60)


def run_parallel(
    tasks: list[Task], jobs: int, on_event: Callable[[Event], None], per_gpu: int = 1, total: int = 0
) -> dict[int, Event]:
    """Train the tasks in ``jobs`` worker processes (or ``per_gpu`` per GPU when they train on CUDA GPUs);
    returns each task's final event by index. Ctrl-C stops every worker at its epoch boundary, then raises
    TrainingInterrupted."""
    check_jobs(jobs, per_gpu)
    if not tasks:
        return {}
    pool = _Pool(tasks, jobs, per_gpu, on_event, total or len(tasks))
    try:
        while pool.busy():
            pool.poll(1.0)
        pool.drain(0.5)  # what the last workers said just before they ended
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the workers' cleanup short
        try:
            pool.stop()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        raise TrainingInterrupted(STUDY_INTERRUPTED) from None
    pool.close()
    for index, name in pool.pending.items():  # no worker reported it: all of them died
        pool.finals[index] = Event("failed", index, name, message="no worker process was left to train it")
    return pool.finals
