"""Stops that always stop: SIGINT (Ctrl-C) and SIGTERM (a scheduler's preemption, `timeout`, `kill`) end training
at an epoch boundary, the same way in `fit`, in a study and in a study's worker processes.

The design, so that no moment can lose or half-do a stop:
- A handler here only records the request; it never raises. Training looks at the request at fixed points of
  its own: the start of each training and validation batch (``StopAtBatch``), before each test-set evaluation,
  and between a study's runs. An epoch's commit (history.csv, run.json, best and last checkpoints) contains none
  of those points, so it is always finished, and a second signal during the cleanup only records again.
- A parallel study's parent records the signal like anyone else and sets one shared event; its workers look at
  that event at the same fixed points. No signal has to reach a worker at the right moment: a worker still
  importing, between two runs, or inside Lightning's own exception handling sees the event at its next point.
  Workers start with SIGINT and SIGTERM blocked (pending, not lost) until their own handlers are in place.

Lightning's own SIGTERM handling (``Trainer.received_sigterm``, then ``SIGTERMException`` at the next batch) is
composed with ours, since we install ours before ``trainer.fit``; training maps that exception to the same stop.
Lightning's Ctrl-C handling is not used: it ends the process with ``sys.exit(1)`` from inside ``trainer.fit``.
Signal handlers belong to the process, so the active request is one per process (``watching``).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from ..errors import TrainingInterrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)
STUDY_STOPPED = "the study was stopped"


class StopRequest:
    """Whether training should stop, and why: a signal this process received, or the study's shared event."""

    def __init__(self, shared: Any = None) -> None:
        self.signum: int | None = None
        self.shared = shared  # a multiprocessing Event a parallel study's parent sets once

    def record(self, signum: int, frame: Any = None) -> None:
        if self.signum is None:  # the first signal says why; later ones change nothing
            self.signum = signum

    @property
    def reason(self) -> str | None:
        if self.signum is not None:
            return describe(self.signum)
        if self.shared is not None and self.shared.is_set():
            return STUDY_STOPPED
        return None

    def check(self) -> None:
        """Raise TrainingInterrupted if a stop was requested (call it only where stopping leaves nothing half done)."""
        reason = self.reason
        if reason is not None:
            raise TrainingInterrupted(reason=reason, signum=self.signum or signal.SIGINT)


def describe(signum: int) -> str:
    return "Ctrl-C (SIGINT)" if signum == signal.SIGINT else signal.Signals(signum).name


_active: StopRequest | None = None  # the process's request while one is being watched


@contextlib.contextmanager
def watching(shared: Any = None) -> Iterator[StopRequest]:
    """Record SIGINT and SIGTERM in a StopRequest for the duration; nested uses share the outer one (a study's
    fit). Outside the main thread no handler can be installed: the request then follows ``shared`` alone."""
    global _active
    if _active is not None:
        if shared is not None:
            _active.shared = shared
        yield _active
        return
    stop = StopRequest(shared)
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.signal(s, stop.record) for s in SIGNALS}
    _active = stop
    try:
        yield stop
    finally:
        _active = None
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """SIGINT and SIGTERM held pending (not lost) meanwhile: processes started here inherit the blocked mask and
    unblock once their handlers are in place (``unblock``)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def unblock() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
