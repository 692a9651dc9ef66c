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
INTERRUPT_WAIT_S = 900  # how long the parent waits for workers to stop after Ctrl-C (an epoch commit at most)


@dataclass
class Event:
    """What a study reports as it goes: a run skipped (done earlier), started, ready (a worker process is up),
    an epoch committed, and how the run ended."""

    kind: str  # skip | start | ready | epoch | done | diverged | failed | interrupted
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


def pick_gpu(load: list[int], per_gpu: int) -> int | None:
    """The least loaded GPU that has room for another job (``per_gpu`` jobs each), or None."""
    free = [g for g, n in enumerate(load) if n < per_gpu]
    return min(free, key=lambda g: (load[g], g)) if free else None


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


def _worker(task: Task, events: Any) -> None:
    """A worker process: one run, its epochs reported as events; every ending is reported, none raises."""
    os.setpgrp()  # the terminal's Ctrl-C goes to the parent alone; it passes one SIGINT on (see the docstring)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # the parent started us with SIGINT ignored
    name, cfg = task.cfg.run_name, task.cfg
    for logger in ("lightning.pytorch", "lightning.fabric"):  # "GPU available: ..." x N would garble the display
        logging.getLogger(logger).setLevel(logging.WARNING)
    device = (
        f"cuda:{cfg.devices.rstrip(',')}"
        if cfg.devices.endswith(",")
        else f"cpu, {cfg.threads} thread{'s' if cfg.threads != 1 else ''}"
    )
    events.put(Event("ready", task.index, name, epochs=cfg.epochs, device=device))
    try:
        from .lit import NonFiniteLoss
        from .training import fit

        def observer(row: dict[str, float], seconds: float) -> None:
            events.put(
                Event(
                    "epoch",
                    task.index,
                    name,
                    int(row["epoch"]),
                    cfg.epochs,
                    row.get("val_loss"),
                    row.get("val_acc"),
                    seconds,
                )
            )

        try:
            result = fit(cfg, resume_dir=task.resume_dir, observer=observer)
            events.put(Event("done", task.index, name, epochs=cfg.epochs, run_dir=str(result.run_dir)))
        except NonFiniteLoss as e:
            events.put(Event("diverged", task.index, name, message=str(e), run_dir=e.run_dir))
    except (TrainingInterrupted, KeyboardInterrupt):
        events.put(Event("interrupted", task.index, name))
    except BaseException as e:  # reported to the parent, which decides; a worker never dies silently
        events.put(Event("failed", task.index, name, message=first_line(e, 300) or type(e).__name__))


class _Pool:
    def __init__(self, jobs: int, per_gpu: int, on_event: Callable[[Event], None], total: int) -> None:
        self.ctx = mp.get_context("spawn")  # fork would copy the parent's torch threads and CUDA state
        self.events: Any = self.ctx.Queue()
        self.jobs, self.per_gpu, self.on_event, self.total = jobs, per_gpu, on_event, total
        self.running: dict[int, tuple[Any, int | None, str]] = {}  # index -> (process, gpu, run name)
        self.ready: set[int] = set()
        self.finals: dict[int, Event] = {}
        self.stopping = False

    def start(self, task: Task, gpus: int) -> bool:
        cfg = dataclasses.replace(task.cfg, progress=False)
        gpu = None
        if gpus:
            load = [0] * gpus
            for _, g, _ in self.running.values():
                if g is not None:
                    load[g] += 1
            gpu = pick_gpu(load, self.per_gpu)
            if gpu is None:
                return False
            cfg = dataclasses.replace(cfg, devices=f"{gpu},")
        else:
            cfg = dataclasses.replace(cfg, threads=cfg.threads or threads_per_job(self.jobs))
        process = self.ctx.Process(target=_worker, args=(Task(task.index, cfg, task.resume_dir), self.events))
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the child starts deaf to it: no half-imported stop
        try:
            process.start()
        finally:
            signal.signal(signal.SIGINT, previous)
        self.running[task.index] = (process, gpu, cfg.run_name)
        how = "resuming" if cfg.resume else "training"
        self.on_event(Event("start", task.index, cfg.run_name, epochs=cfg.epochs, total=self.total, message=how))
        return True

    def handle(self, event: Event) -> None:
        if event.kind == "ready":
            self.ready.add(event.index)
            if self.stopping:
                self._interrupt(event.index)
        if event.kind in FINAL:
            self.finals[event.index] = event
            process, _, _ = self.running.pop(event.index, (None, None, ""))
            if process is not None:
                process.join(timeout=60)
        self.on_event(event)

    def poll(self, timeout: float) -> None:
        try:
            self.handle(self.events.get(timeout=timeout))
        except queue_mod.Empty:
            self._reap()

    def _reap(self) -> None:
        """A worker that died without a final event (killed by the OS, say) is reported as failed."""
        for index, (process, _, name) in list(self.running.items()):
            if process.exitcode is None:
                continue
            while True:  # its last events may still be in the pipe
                try:
                    self.handle(self.events.get(timeout=1))
                except queue_mod.Empty:
                    break
            if index in self.running:
                self.handle(Event("failed", index, name, message=f"worker process ended with code {process.exitcode}"))

    def _interrupt(self, index: int) -> None:
        process, _, _ = self.running.get(index, (None, None, ""))
        if process is not None and process.pid is not None and process.exitcode is None:
            os.kill(process.pid, signal.SIGINT)

    def stop(self) -> None:
        """Ctrl-C: one SIGINT to each worker (those still starting get theirs when ready), then wait for them."""
        self.stopping = True
        for index in list(self.running):
            if index in self.ready:
                self._interrupt(index)
        deadline = time.monotonic() + INTERRUPT_WAIT_S
        while self.running and time.monotonic() < deadline:
            self.poll(1.0)
        for process, _, _ in self.running.values():  # past the deadline: stop them the hard way
            process.terminate()


def run_parallel(
    tasks: list[Task], jobs: int, on_event: Callable[[Event], None], per_gpu: int = 1, total: int = 0
) -> dict[int, Event]:
    """Train the tasks, ``jobs`` at a time (or ``per_gpu`` per GPU when they train on CUDA GPUs); returns each
    task's final event by index. Ctrl-C stops every worker at its epoch boundary, then raises TrainingInterrupted.
    """
    check_jobs(jobs, per_gpu)
    pool = _Pool(jobs, per_gpu, on_event, total or len(tasks))
    gpus = _uses_gpu(tasks[0].cfg) if tasks else 0
    pending = list(tasks)
    try:
        while pending or pool.running:
            while pending and len(pool.running) < jobs and pool.start(pending[0], gpus):
                pending.pop(0)
            pool.poll(1.0)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the workers' cleanup short
        try:
            pool.stop()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        raise TrainingInterrupted(
            "interrupted; every run keeps its last finished epoch: rerun the same study command to resume them"
        ) from None
    return pool.finals
