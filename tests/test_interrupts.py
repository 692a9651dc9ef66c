"""Stops that always stop (interrupts.py): SIGINT and SIGTERM end `fit` and a parallel `study` at an epoch
boundary, whatever moment they come, every run `interrupted` or `finished`, resumable, nothing corrupt."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cnnlab.errors import TrainingInterrupted
from cnnlab.training.interrupts import STUDY_STOPPED, StopRequest, watching

PY = [sys.executable, "-m", "cnnlab"]


def test_a_request_records_the_first_signal_and_never_raises_by_itself():
    stop = StopRequest()
    stop.check()  # nothing requested: nothing happens
    stop.record(signal.SIGTERM)
    stop.record(signal.SIGINT)  # a second signal changes nothing
    assert stop.reason == "SIGTERM"
    with pytest.raises(TrainingInterrupted) as e:
        stop.check()
    assert e.value.signum == signal.SIGTERM and e.value.reason == "SIGTERM"


def test_a_study_worker_stops_on_the_shared_event_alone():
    event = mp.get_context("spawn").Event()
    stop = StopRequest(shared=event)
    assert stop.reason is None
    event.set()
    assert stop.reason == STUDY_STOPPED


def test_watching_installs_one_handler_per_process_and_restores_the_old_one():
    before = signal.getsignal(signal.SIGTERM)
    with watching() as outer:
        with watching() as inner:  # a study's fit shares the study's request
            assert inner is outer
            signal.raise_signal(signal.SIGTERM)  # recorded, not raised
        assert outer.reason == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == before


# --- the processes -------------------------------------------------------------------------------------------


def _latest(name: Path) -> Path:
    """A run name's newest version (a run stopped before its first epoch has nothing to resume: the next command
    starts a new version)."""
    found = sorted(name.glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    return found[-1] if found else name / "version_0"


def _rows(run: Path) -> int:
    history = run / "history.csv"
    return len(history.read_text().splitlines()) - 1 if history.exists() else 0


def _ckpt_mtime(run: Path) -> float:
    ckpt = run / "checkpoints" / "last.ckpt"
    return ckpt.stat().st_mtime_ns if ckpt.exists() else 0


class _Launch:
    """One command, its output in files (read while it runs: no pipe to fill), signalled at an observable moment."""

    def __init__(self, args: list[str], folder: Path, n: int) -> None:
        self.out, self.err = folder / f"out{n}.txt", folder / f"err{n}.txt"
        env = os.environ | {"PYTHONUNBUFFERED": "1"}  # each line in the file as soon as it is printed
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(args, stdout=out, stderr=err, text=True, env=env)

    def said(self, text: str) -> bool:
        return text in self.out.read_text() + self.err.read_text()

    def finish(self, timeout: float = 900) -> tuple[int, str]:
        self.proc.wait(timeout=timeout)
        return self.proc.returncode, self.err.read_text()


def _check_stopped(rc: int, err: str, signum: int, runs: list[Path], epochs: int) -> None:
    """One trial's outcome: the exit code of the signal (or 0 when everything had finished), one line, no
    traceback; every run folder interrupted or finished, its history, run.json and last checkpoint agreeing."""
    assert "Traceback" not in err, err[-3000:]
    assert rc in (0, 128 + signum), (rc, err[-3000:])
    if rc:
        assert err.strip().splitlines()[-1].startswith("error: interrupted"), err[-2000:]
    for run in (version for name in runs for version in name.glob("version_*")):
        info = json.loads((run / "run.json").read_text())
        assert info["status"] in ("interrupted", "finished"), (run, info["status"])
        assert info["epochs_completed"] == _rows(run) <= epochs
        if info["status"] == "finished":
            assert _rows(run) == epochs and "test" in info and (run / "predictions.npz").is_file()
        else:
            assert info["interrupted_by"] in ("Ctrl-C (SIGINT)", "SIGTERM", STUDY_STOPPED)
        if info["epochs_completed"]:
            ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
            assert ckpt["epoch"] + 1 == info["epochs_completed"]  # the checkpoint holds the last committed epoch
        assert not list(run.rglob("*.tmp"))


def _check_complete(runs: list[Path], epochs: int) -> None:
    from cnnlab.runs import read_history

    for run in map(_latest, runs):
        assert [r["epoch"] for r in read_history(run)] == list(range(1, epochs + 1))  # none lost, none repeated
        assert json.loads((run / "run.json").read_text())["status"] == "finished"


def _moments(runs: list[Path], epochs: int, launch: _Launch, started: str):
    """The moments a stop may come, each an observable state (no sleeps): start-up, mid-epoch (a new epoch's
    checkpoint just written, the next epoch begun), during a commit (its history row written, its checkpoint not
    yet), the final test-set evaluation (every epoch committed)."""
    rows = {r: _rows(_latest(r)) for r in runs}
    saved = {r: _ckpt_mtime(_latest(r)) for r in runs}
    done = launch.proc.poll

    def began_epoch() -> bool:
        return any(_ckpt_mtime(_latest(r)) != saved[r] and _rows(_latest(r)) < epochs for r in runs)

    return {
        "start-up": lambda: launch.said(started) or done() is not None,
        "mid-epoch": lambda: began_epoch() or done() is not None,
        "commit": lambda: any(_rows(_latest(r)) > rows[r] for r in runs) or done() is not None,
        "test sets": lambda: all(_rows(_latest(r)) == epochs for r in runs) or done() is not None,
    }


TRIALS = [("start-up", signal.SIGINT), ("mid-epoch", signal.SIGTERM), ("commit", signal.SIGINT),
          ("start-up", signal.SIGTERM), ("mid-epoch", signal.SIGINT), ("commit", signal.SIGTERM),
          ("test sets", signal.SIGTERM)]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("command", ["study", "fit"])
def test_stops_at_any_moment_leave_every_run_resumable(command, synth_dir, tmp_path, wait_for):
    # The same command again and again, each time stopped at another moment by SIGINT or SIGTERM; each rerun
    # resumes what the last one left; the last one runs to the end. A study trains two runs in two workers.
    epochs, logdir = 16, tmp_path / "tb"
    common = ["--data-dir", str(synth_dir), "--logdir", str(logdir), "--epochs", str(epochs), "--no-progress"]
    if command == "study":
        args = [*PY, "study", "--jobs", "2", "--threads", "1", "--fracs", "0.5", "--dropouts", "0,0.5",
                "--out", str(tmp_path / "s"), "--lang", "en", *common]  # fmt: skip
        runs = [logdir / f"frac0.5_drop{d}_e{epochs}" for d in ("0.0", "0.5")]
        started = "in this study"  # the plan line: the workers are starting
    else:
        args = [*PY, "fit", "--frac", "0.5", "--name", "f", *common]
        runs = [logdir / "f"]
        started = "GPU available"  # Lightning's first words: the data is read, the Trainer built
    for n, (moment, signum) in enumerate(TRIALS):
        resume = command == "fit" and (_latest(runs[0]) / "checkpoints" / "last.ckpt").exists()
        launch = _Launch(args + (["--resume"] if resume else []), tmp_path, n)
        wait_for(_moments(runs, epochs, launch, started)[moment])
        if launch.proc.poll() is None:
            launch.proc.send_signal(signum)
        rc, err = launch.finish()
        _check_stopped(rc, err, signum, runs, epochs)
        if moment in ("mid-epoch", "commit"):  # signalled after a commit, long before the last epoch
            assert rc == 128 + signum, f"trial {n} ({moment}): the stop was lost"
    resume = command == "fit" and (_latest(runs[0]) / "checkpoints" / "last.ckpt").exists()
    rc, err = _Launch(args + (["--resume"] if resume else []), tmp_path, len(TRIALS)).finish()
    assert rc == 0, err[-3000:]
    _check_complete(runs, epochs)


@pytest.mark.slow
def test_sigterm_on_fit_is_an_interrupted_run_that_resumes(synth_dir, tmp_path, wait_for):
    # What a scheduler (SLURM, Kubernetes, `timeout`) sends to preempt a job: exit 143, one line, run.json says
    # why, and --resume continues from the last committed epoch.
    logdir, run = tmp_path / "tb", tmp_path / "tb" / "t" / "version_0"
    args = [*PY, "fit", "--data-dir", str(synth_dir), "--logdir", str(logdir), "--frac", "0.5", "--epochs", "500",
            "--name", "t", "--no-progress"]  # fmt: skip
    launch = _Launch(args, tmp_path, 0)
    wait_for(lambda: _rows(run) >= 2 or launch.proc.poll() is not None)
    launch.proc.send_signal(signal.SIGTERM)
    rc, err = launch.finish()
    assert rc == 143 and "Traceback" not in err, err[-2000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: interrupted by SIGTERM after epoch") and "--resume" in line, line
    info = json.loads((run / "run.json").read_text())
    done = info["epochs_completed"]
    assert info["status"] == "interrupted" and info["interrupted_by"] == "SIGTERM" and "--resume" in info["message"]
    more = [*PY, "fit", "--data-dir", str(synth_dir), "--logdir", str(logdir), "--epochs", str(done + 2), "--name",
            "t", "--resume", "--no-progress"]  # fmt: skip
    resumed = _Launch(more, tmp_path, 1)
    rc, err = resumed.finish()
    assert rc == 0, err[-2000:]
    from cnnlab.runs import read_history

    assert [r["epoch"] for r in read_history(run)] == list(range(1, done + 3))
