"""study --jobs: several runs at once in worker processes, the same results as one at a time, Ctrl-C for all."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.runs import is_resumable, read_history
from cnnlab.training.config import FitConfig
from cnnlab.training.jobs import auto_jobs, plan_slots, threads_per_run
from cnnlab.training.study import run_study

runner = CliRunner()


def test_each_run_gets_a_thread_count_from_the_grid_not_from_jobs():
    assert threads_per_run(4, cores=2) == 1 and threads_per_run(2, cores=16) == 8
    assert threads_per_run(1, cores=2) == 2  # one run alone takes every core
    assert threads_per_run(8, cores=2) == 1  # never zero
    assert threads_per_run(3, cores=16) == 5
    assert auto_jobs(threads=1, gpus=0, per_gpu=1, cores=2) == 2 and auto_jobs(8, 0, 1, cores=16) == 2
    assert auto_jobs(threads=5, gpus=2, per_gpu=3) == 6  # on GPUs: per_gpu runs on each


def test_workers_get_a_cpu_share_or_a_gpu_each():
    cpu = plan_slots(jobs=2, runs=4, gpus=0, per_gpu=1, threads=3)
    assert [(w.gpu, w.threads) for w in cpu] == [(None, 3)] * 2
    assert len(plan_slots(jobs=4, runs=1, gpus=0, per_gpu=1)) == 1  # never more workers than runs
    assert [w.gpu for w in plan_slots(jobs=8, runs=8, gpus=2, per_gpu=1)] == [0, 1]  # one run per GPU
    assert [w.gpu for w in plan_slots(jobs=8, runs=8, gpus=2, per_gpu=3)] == [0, 1, 0, 1, 0, 1]
    assert [w.gpu for w in plan_slots(jobs=3, runs=8, gpus=4, per_gpu=2)] == [0, 1, 2]


@pytest.mark.parametrize("args, needle", [(["--jobs", "0"], "--jobs 0"), (["--jobs-per-gpu", "0"], "--jobs-per-gpu 0")])
def test_bad_job_counts_exit_2(args, needle, in_tmp):
    result = runner.invoke(app, ["study", *args])
    assert result.exit_code == 2 and needle in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_run_failing_in_a_worker_is_one_line(in_tmp):
    result = runner.invoke(app, ["study", "--jobs", "2", "--epochs", "1", "--fracs", "0.3", "--data-dir", "nowhere"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "2 run(s) failed" in lines[0] and "nowhere" in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_jobs_2_trains_the_same_runs_as_jobs_1(synth_dir, tmp_path):
    # The runs of a study train on a thread count taken from the grid and the machine, never from --jobs (a run's
    # last bits depend on its thread count: without that rule the histories differ by ~1e-4 after an epoch).
    histories, threads = {}, {}
    for jobs in (1, 2):
        base = FitConfig(epochs=2, data_dir=str(synth_dir), logdir=str(tmp_path / f"tb{jobs}"), progress=False,
                         lr=1e-3)  # fmt: skip
        events = []
        grid = ([0.3, 0.6], [0.0, 0.5])
        result = run_study(base, *grid, out=tmp_path / f"s{jobs}", jobs=jobs, on_event=events.append)
        assert len(result.comparison.rows) == 4
        runs = sorted((tmp_path / f"tb{jobs}").glob("*/version_0"))
        histories[jobs] = {run.parent.name: read_history(run) for run in runs}
        threads[jobs] = {json.loads((run / "run.json").read_text())["hardware"]["torch_threads"] for run in runs}
        if jobs == 2:
            kinds = [(e.index, e.kind) for e in events]
            for index in range(1, 5):  # every run: started, two epochs reported, done
                assert [k for i, k in kinds if i == index] == ["start", "epoch", "epoch", "done"]
            epochs = [e for e in events if e.kind == "epoch"]
            assert all(e.val_loss is not None and e.seconds > 0 for e in epochs)
            (plan,) = [e for e in events if e.kind == "plan"]
            assert plan.jobs == 2 and {e.device for e in events if e.kind == "start"} == {
                f"cpu, {plan.threads} thread{'s' if plan.threads > 1 else ''}"
            }
            assert len({e.pid for e in events if e.kind == "start"}) == 2  # two workers shared the four runs
    assert threads[1] == threads[2] and len(threads[1]) == 1  # recorded in run.json: one count, whatever --jobs
    assert list(histories[1]) == list(histories[2]) and len(histories[1]) == 4
    for name, rows in histories[1].items():
        for a, b in zip(rows, histories[2][name], strict=True):
            assert a.keys() == b.keys()
            assert all(abs(a[k] - b[k]) <= 1e-6 for k in a), (name, a, b)


def _epochs(run):
    history = run / "history.csv"
    return len(history.read_text().splitlines()) - 1 if history.exists() else 0


@pytest.mark.slow
def test_ctrl_c_stops_every_job_and_leaves_every_run_resumable(synth_dir, tmp_path, wait_for):
    logdir = tmp_path / "tb"
    args = [sys.executable, "-m", "cnnlab", "study", "--jobs", "2", "--epochs", "400", "--fracs", "0.3",
            "--dropouts", "0,0.5", "--data-dir", str(synth_dir), "--logdir", str(logdir), "--out", str(tmp_path / "s"),
            "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    runs = [logdir / f"frac0.3_drop{d}_e400" / "version_0" for d in ("0.0", "0.5")]
    wait_for(lambda: all(_epochs(run) >= 2 for run in runs) or proc.poll() is not None)
    assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGINT)  # as the terminal does: to the whole foreground group
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("error: interrupted") and "Traceback" not in err + out
    for run in runs:
        info = json.loads((run / "run.json").read_text())
        ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
        assert info["status"] == "interrupted" and ckpt["epoch"] + 1 == info["epochs_completed"] < 400
        assert is_resumable(run)
