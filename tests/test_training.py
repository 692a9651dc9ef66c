import csv
import json
import os
import subprocess
import sys
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cnnlab.errors import CnnlabError
from cnnlab.lit import FashionClassifier
from cnnlab.training import FitConfig, fit


def _cfg(synth_dir, tmp_path, **kw):
    base = {"data_dir": str(synth_dir), "logdir": str(tmp_path / "tb"), "frac": 0.5, "epochs": 1, "progress": False,
            "lr": 1e-3}  # fmt: skip
    return FitConfig(**(base | kw))


def _scalars(run_dir):
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_fit_writes_the_run_folder_contract(synth_dir, tmp_path):
    result = fit(_cfg(synth_dir, tmp_path, epochs=2, eval_train=True))
    run = result.run_dir
    assert run == tmp_path / "tb" / "frac0.5_drop0.0" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "checkpoints" / "best.ckpt").is_file()
    assert list(run.glob("events.out.tfevents.*"))
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert list(rows[0]) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "train_eval_loss",
                             "train_eval_acc"]  # fmt: skip
    assert [r["epoch"] for r in rows] == ["1", "2"]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished"
    assert info["split"] == {"train": 225, "val": 25, "holdout": 100, "official": 100}
    assert info["hparams"]["dropout"] == 0.0 and info["hparams"]["lr"] == 1e-3 and info["hparams"]["frac"] == 0.5
    assert len(info["train_indices_sha256"]) == 16
    assert len(info["epoch_seconds"]) == 2 and all(s > 0 for s in info["epoch_seconds"])
    assert set(info["test"]) == {"holdout", "official"} and 0 <= info["test"]["holdout"]["acc"] <= 1
    assert info["versions"]["torch"] == torch.__version__
    scalars = _scalars(run)
    for tag in ("train/loss", "train/acc", "val/loss", "val/acc", "train_eval/loss", "train_eval/acc"):
        assert [s for s, _ in scalars[tag]] == [1, 2], tag  # the epoch is the step
    assert scalars["val/loss"][-1][1] == pytest.approx(float(rows[-1]["val_loss"]))
    assert scalars["test/holdout/acc"][0][1] == pytest.approx(info["test"]["holdout"]["acc"])
    # measured, not assumed: the recorded test accuracy is what the final weights give
    assert info["test"]["holdout"]["acc"] == pytest.approx(result.test["holdout"]["acc"])


def test_eval_train_measures_without_dropout(synth_dir, tmp_path):
    rows = fit(_cfg(synth_dir, tmp_path, dropout=0.9, eval_train=True)).history
    assert rows[0]["train_eval_loss"] != rows[0]["train_loss"]


def test_epoch_seconds_exclude_validation(synth_dir, tmp_path, monkeypatch):
    step = FashionClassifier.validation_step

    def slow_validation(self, *args, **kwargs):
        time.sleep(1.0)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(FashionClassifier, "validation_step", slow_validation)
    result = fit(_cfg(synth_dir, tmp_path, epochs=2))
    assert all(0 < s < 1.0 for s in result.epoch_seconds), result.epoch_seconds  # 8 small batches, no sleep


def test_a_second_run_gets_a_new_version(synth_dir, tmp_path):
    fit(_cfg(synth_dir, tmp_path))
    assert fit(_cfg(synth_dir, tmp_path)).run_dir.name == "version_1"


def test_same_seed_same_results(synth_dir, tmp_path):
    a = fit(_cfg(synth_dir, tmp_path, seed=5)).history
    b = fit(_cfg(synth_dir, tmp_path, seed=5)).history
    c = fit(_cfg(synth_dir, tmp_path, seed=6)).history
    assert a[0]["train_loss"] == b[0]["train_loss"] and a[0]["val_loss"] == b[0]["val_loss"]
    assert a[0]["train_loss"] != c[0]["train_loss"]


def test_resume_continues_in_the_same_folder(synth_dir, tmp_path):
    first = fit(_cfg(synth_dir, tmp_path, epochs=1))
    again = fit(_cfg(synth_dir, tmp_path, epochs=3, resume=True))
    assert again.run_dir == first.run_dir
    assert [r["epoch"] for r in again.history] == [1, 2, 3]
    assert again.history[0] == first.history[0]
    assert [s for s, _ in _scalars(first.run_dir)["val/loss"]] == [1, 2, 3]
    ckpt = torch.load(first.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 2  # zero-based: three epochs done


def test_resume_matches_an_uninterrupted_run(synth_dir, tmp_path):
    straight = fit(_cfg(synth_dir, tmp_path, epochs=2, name="straight")).history
    fit(_cfg(synth_dir, tmp_path, epochs=1, name="split"))
    resumed = fit(_cfg(synth_dir, tmp_path, epochs=2, name="split", resume=True)).history
    assert resumed[1]["train_loss"] == pytest.approx(straight[1]["train_loss"], rel=1e-5)


def test_resume_without_a_run_is_a_clear_error(synth_dir, tmp_path):
    with pytest.raises(CnnlabError, match="no run named 'frac0.5_drop0.0'.*drop --resume"):
        fit(_cfg(synth_dir, tmp_path, resume=True))


def test_nonfinite_loss_stops_and_keeps_the_last_good_epoch(synth_dir, tmp_path, monkeypatch):
    step = FashionClassifier.model_step

    def poisoned(self, batch):
        loss, correct = step(self, batch)
        return (loss * float("nan") if self.current_epoch == 1 else loss), correct

    monkeypatch.setattr(FashionClassifier, "model_step", poisoned)
    with pytest.raises(CnnlabError, match="non-finite .* in epoch 2"):
        fit(_cfg(synth_dir, tmp_path, epochs=3))
    run = tmp_path / "tb" / "frac0.5_drop0.0" / "version_0"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0
    assert torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)["epoch"] == 0
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed" and "epoch 2" in info["message"] and info["epochs_completed"] == 1


@pytest.mark.parametrize(
    ("kw", "message"),
    [({"epochs": 0}, "--epochs 0"), ({"frac": 0}, "--frac 0"), ({"frac": 1.5}, "--frac 1.5"),
     ({"dropout": 1.0}, "--dropout 1.0"), ({"optimizer": "adagrad"}, "--optimizer 'adagrad'"),
     ({"name": "a/b"}, "--name 'a/b'"), ({"batch_size": 0}, "--batch-size 0")],
)  # fmt: skip
def test_bad_settings_fail_before_anything_is_written(synth_dir, tmp_path, kw, message):
    with pytest.raises(CnnlabError, match=message):
        fit(_cfg(synth_dir, tmp_path, **kw))
    assert not (tmp_path / "tb").exists()


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(synth_dir, tmp_path):
    cmd = [sys.executable, "-m", "cnnlab", "fit", "--data-dir", str(synth_dir), "--logdir", str(tmp_path / "tb"),
           "--frac", "0.5", "--epochs", "2", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp",
           "--no-progress"]  # fmt: skip
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "tb" / "frac0.5_drop0.0").iterdir())
    assert [r.name for r in runs] == ["version_0"]  # the worker process wrote into rank 0's folder
    info = json.loads((runs[0] / "run.json").read_text())
    assert info["status"] == "finished" and info["epochs_completed"] == 2
    assert (runs[0] / "checkpoints" / "last.ckpt").is_file()
