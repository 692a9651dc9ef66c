import csv
import json
import os
import subprocess
import sys

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cnnlab.errors import CnnlabError
from cnnlab.model.lit import FashionClassifier
from cnnlab.training.config import FitConfig
from cnnlab.training.fit import fit


def _cfg(synth_dir, tmp_path, **kw):
    base = {"data_dir": str(synth_dir), "logdir": str(tmp_path / "tb"), "frac": 0.5, "epochs": 1, "progress": False,
            "lr": 1e-3}  # fmt: skip
    return FitConfig(**(base | kw))


def _scalars(run_dir, sub=""):
    acc = EventAccumulator(str(run_dir / sub))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_fit_writes_the_run_folder_contract(trained):
    run = trained.run_dir
    assert run.parent.name == "frac0.5_drop0.5_e3" and run.name == "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "checkpoints" / "best.ckpt").is_file()
    assert list(run.glob("events.out.tfevents.*"))
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert list(rows[0]) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "train_eval_loss",
                             "train_eval_acc"]  # fmt: skip
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished"
    assert info["split"] == {"train": 225, "val": 25, "holdout": 100, "official": 100}
    assert info["hparams"]["dropout"] == 0.5 and info["hparams"]["lr"] == 1e-3 and info["hparams"]["frac"] == 0.5
    assert len(info["train_indices_sha256"]) == 16
    assert len(info["epoch_seconds"]) == 3 and all(s > 0 for s in info["epoch_seconds"])
    assert info["versions"]["torch"] == torch.__version__
    for sub in ("train", "validation", "train_eval"):  # Keras' layout: tests/test_tensorboard.py has the details
        scalars = _scalars(run, sub)
        for tag in ("epoch_loss", "epoch_accuracy"):
            assert [s for s, _ in scalars[tag]] == [1, 2, 3], (sub, tag)  # the epoch is the step
    assert _scalars(run, "validation")["epoch_loss"][-1][1] == pytest.approx(float(rows[-1]["val_loss"]))
    best_epoch = min(range(3), key=lambda i: float(rows[i]["val_loss"])) + 1
    assert info["best"]["epoch"] == best_epoch


def test_test_metrics_are_measured_on_the_best_and_the_last_weights(trained, synth_dir):
    from cnnlab.data.module import FashionMNISTDataModule
    from cnnlab.deploy.evaluation import evaluate_torch
    from cnnlab.model.checkpoints import load_network

    info = json.loads((trained.run_dir / "run.json").read_text())
    assert info["test"]["best"]["epoch"] == info["best"]["epoch"] and info["test"]["last"]["epoch"] == 3
    dm = FashionMNISTDataModule(synth_dir, frac=0.5)
    scalars = _scalars(trained.run_dir)
    for which in ("best", "last"):
        net = load_network(trained.run_dir, which=which).net
        for split in ("holdout", "official"):
            measured = evaluate_torch(net, dm.eval_set(split))
            assert info["test"][which][split] == pytest.approx(measured), (which, split)
            assert scalars[f"test/{which}/{split}/acc"][0][1] == pytest.approx(measured["acc"])


def test_the_run_keeps_every_test_image_prediction_of_both_checkpoints(trained, synth_dir):
    # predictions.npz lets the report pair two runs image by image without their checkpoints or the data
    from cnnlab.data.module import FashionMNISTDataModule
    from cnnlab.deploy.evaluation import torch_logits
    from cnnlab.model.checkpoints import load_network
    from cnnlab.runs import read_predictions

    info = json.loads((trained.run_dir / "run.json").read_text())
    pred = read_predictions(trained.run_dir)
    dm = FashionMNISTDataModule(synth_dir, frac=0.5)
    for which in ("best", "last"):
        assert int(pred[f"{which}_epoch"]) == info["test"][which]["epoch"]
        net = load_network(trained.run_dir, which=which).net
        for split in ("holdout", "official"):
            data = dm.eval_set(split)
            assert pred[f"{which}_{split}"].dtype == "uint8" and len(pred[f"{which}_{split}"]) == len(data.labels)
            assert (pred[f"{split}_labels"] == data.labels.numpy()).all()
            assert (pred[f"{which}_{split}"] == torch_logits(net, data.images).argmax(1)).all()
            acc = (pred[f"{which}_{split}"] == pred[f"{split}_labels"]).mean()
            assert acc == pytest.approx(info["test"][which][split]["acc"], abs=1e-6)


def test_eval_train_measures_without_dropout(trained, synth_dir):
    # train_eval after the last epoch must be the final weights evaluated in eval mode (dropout off) on the training
    # subset; with dropout left on (p = 0.5) the figures would differ.
    from cnnlab.data.module import FashionMNISTDataModule
    from cnnlab.deploy.evaluation import evaluate_torch
    from cnnlab.model.checkpoints import load_network

    net = load_network(trained.run_dir, which="last").net
    dm = FashionMNISTDataModule(synth_dir, frac=0.5, seed=42)
    measured = evaluate_torch(net, dm.eval_set("train"))
    last = trained.history[-1]
    assert last["train_eval_loss"] == pytest.approx(measured["loss"], rel=1e-5)
    assert last["train_eval_acc"] == pytest.approx(measured["acc"])
    net.train()  # the same weights with dropout active give another loss: the comparison can tell them apart
    with torch.no_grad():
        x, y = dm.eval_set("train").images.float() / 255, dm.eval_set("train").labels
        dropout_on = float(torch.nn.functional.cross_entropy(net(x), y))
    assert abs(dropout_on - measured["loss"]) > 0.1 * measured["loss"]  # far beyond the 1e-5 match above


def test_epoch_losses_are_means_over_images_not_batches(synth_dir, tmp_path, monkeypatch):
    # 25 validation images in batches of 8, 8, 8 and 1: a mean of batch means would weigh the last image 8x
    import functools

    from cnnlab.data.module import FashionMNISTDataModule
    from cnnlab.deploy.evaluation import evaluate_torch
    from cnnlab.model.checkpoints import load_network

    init = FashionMNISTDataModule.__init__
    monkeypatch.setattr(FashionMNISTDataModule, "__init__", functools.partialmethod(init, eval_batch_size=8))
    result = fit(_cfg(synth_dir, tmp_path, epochs=1))
    dm = FashionMNISTDataModule(synth_dir, frac=0.5)
    measured = evaluate_torch(load_network(result.run_dir, which="last").net, dm.eval_set("val"))
    assert len(dm.eval_set("val").labels) == 25
    assert result.history[-1]["val_loss"] == pytest.approx(measured["loss"], rel=1e-5)
    assert result.history[-1]["val_acc"] == pytest.approx(measured["acc"])


def test_the_epoch_loss_weighs_each_batch_by_its_images():
    model = FashionClassifier()
    model._record("train", torch.tensor(1.0), torch.ones(3))  # a batch of 3 images, mean loss 1
    model._record("train", torch.tensor(2.0), torch.ones(1))  # the last, smaller batch
    assert model.epoch_metrics()["train/loss"] == pytest.approx(1.25)  # (3 * 1 + 2) / 4, not (1 + 2) / 2


def test_epoch_seconds_exclude_validation(synth_dir, tmp_path, monkeypatch):
    # A fake clock, not the wall clock: each training step takes 1 s, each validation step 1000 s.
    from cnnlab.training.recorder import RunRecorder

    now = [0.0]
    train_step, val_step = FashionClassifier.training_step, FashionClassifier.validation_step

    def timed(step, seconds):
        def wrapper(self, *args, **kwargs):
            now[0] += seconds
            return step(self, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(RunRecorder, "clock", staticmethod(lambda: now[0]))
    monkeypatch.setattr(FashionClassifier, "training_step", timed(train_step, 1.0))
    monkeypatch.setattr(FashionClassifier, "validation_step", timed(val_step, 1000.0))
    result = fit(_cfg(synth_dir, tmp_path, epochs=2))
    assert result.epoch_seconds == [8.0, 8.0]  # 225 training images in batches of 32: 8 steps an epoch


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
    assert [s for s, _ in _scalars(first.run_dir, "validation")["epoch_loss"]] == [1, 2, 3]
    ckpt = torch.load(first.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 2  # zero-based: three epochs done


def test_resume_matches_an_uninterrupted_run(synth_dir, tmp_path):
    straight = fit(_cfg(synth_dir, tmp_path, epochs=2, name="straight")).history
    fit(_cfg(synth_dir, tmp_path, epochs=1, name="split"))
    resumed = fit(_cfg(synth_dir, tmp_path, epochs=2, name="split", resume=True)).history
    assert resumed[1]["train_loss"] == pytest.approx(straight[1]["train_loss"], rel=1e-5)


def test_resume_without_a_run_is_a_clear_error(synth_dir, tmp_path):
    with pytest.raises(CnnlabError, match="no run named 'frac0.5_drop0.0_e1'.*drop --resume"):
        fit(_cfg(synth_dir, tmp_path, resume=True))


def test_nonfinite_loss_stops_and_keeps_the_last_good_epoch(synth_dir, tmp_path, monkeypatch):
    step = FashionClassifier.model_step

    def poisoned(self, batch):
        loss, correct = step(self, batch)
        return (loss * float("nan") if self.current_epoch == 1 else loss), correct

    monkeypatch.setattr(FashionClassifier, "model_step", poisoned)
    with pytest.raises(CnnlabError, match="non-finite .* in epoch 2"):
        fit(_cfg(synth_dir, tmp_path, epochs=3))
    run = tmp_path / "tb" / "frac0.5_drop0.0_e3" / "version_0"
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
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and proc.stdout.count("training time per epoch") == 1  # one summary
    runs = list((tmp_path / "tb" / "frac0.5_drop0.0_e2").iterdir())
    assert [r.name for r in runs] == ["version_0"]  # the worker process wrote into rank 0's folder
    info = json.loads((runs[0] / "run.json").read_text())
    assert info["status"] == "finished" and info["epochs_completed"] == 2
    assert (runs[0] / "checkpoints" / "last.ckpt").is_file() and set(info["test"]) == {"best", "last"}


def _scripted_val_loss(monkeypatch, losses):
    """Validation losses set per epoch (1-based), so which epoch is best is known in advance."""
    step = FashionClassifier.model_step

    def scripted(self, batch):
        loss, correct = step(self, batch)
        if self.trainer.validating:
            loss = torch.full_like(loss, losses[self.current_epoch + 1])
        return loss, correct

    monkeypatch.setattr(FashionClassifier, "model_step", scripted)


def test_best_checkpoint_is_the_best_epoch_after_every_resume(synth_dir, tmp_path, monkeypatch):
    _scripted_val_loss(monkeypatch, {1: 1.0, 2: 0.5, 3: 0.8, 4: 0.7, 5: 0.4})
    run = fit(_cfg(synth_dir, tmp_path, epochs=2, name="r")).run_dir
    for epochs, best in ((3, 2), (4, 2), (5, 5)):
        fit(_cfg(synth_dir, tmp_path, epochs=epochs, name="r", resume=True))
        info = json.loads((run / "run.json").read_text())
        ckpt = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
        assert info["best"]["epoch"] == best and ckpt["epoch"] + 1 == best, (epochs, info["best"], ckpt["epoch"])
        assert info["test"]["best"]["epoch"] == best


def test_a_failed_start_leaves_no_version_folder(synth_dir, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(synth_dir, bad)
    (bad / "t10k-labels-idx1-ubyte.gz").write_bytes(b"garbage")
    for kw in ({"data_dir": str(bad)}, {"devices": "0", "accelerator": "cpu"}, {"strategy": "bogus"}):
        with pytest.raises(CnnlabError):
            fit(_cfg(synth_dir, tmp_path, name="x", **kw))
    assert not (tmp_path / "tb" / "x").exists() or not list((tmp_path / "tb" / "x").iterdir())


def test_resume_after_a_failed_start_continues_the_last_good_version(synth_dir, tmp_path, monkeypatch):
    good = fit(_cfg(synth_dir, tmp_path, name="g")).run_dir
    step = FashionClassifier.training_step

    def crashes(self, batch, batch_idx):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(FashionClassifier, "training_step", crashes)
    with pytest.raises(RuntimeError):
        fit(_cfg(synth_dir, tmp_path, name="g"))
    failed = tmp_path / "tb" / "g" / "version_1"
    assert json.loads((failed / "run.json").read_text())["status"] == "failed"  # the crash is on record
    monkeypatch.setattr(FashionClassifier, "training_step", step)
    resumed = fit(_cfg(synth_dir, tmp_path, name="g", epochs=2, resume=True))
    assert resumed.run_dir == good and [r["epoch"] for r in resumed.history] == [1, 2]


def test_resume_removes_what_a_killed_write_left(synth_dir, tmp_path):
    run = fit(_cfg(synth_dir, tmp_path)).run_dir
    strays = [run / ".history.csv.k2j4.tmp", run / "checkpoints" / ".last.ckpt.x81q.tmp"]
    for p in strays:
        p.write_bytes(b"half a file")
    fit(_cfg(synth_dir, tmp_path, epochs=2, resume=True))
    assert not any(p.exists() for p in strays) and not list(run.rglob("*.tmp"))


def test_the_seed_fixes_initialization_data_and_first_loss(synth_dir, tmp_path):
    # prepare() is what fit() runs before training: the seed alone must fix the weights, the subset and the order,
    # whatever the global random state was before.
    from cnnlab.training.fit import prepare

    def first_step(seed):
        torch.manual_seed(1234 + seed * 7)  # disturb the global generator: prepare must seed it itself
        dm, model = prepare(_cfg(synth_dir, tmp_path, seed=seed))
        x, y = next(iter(dm.train_dataloader()))
        loss, _ = model.model_step((x, y))
        return float(loss.detach()), dm.split.train_hash, model.net.state_dict()

    (a_loss, a_hash, a_w), (b_loss, b_hash, b_w) = first_step(5), first_step(5)
    c_loss, c_hash, c_w = first_step(6)
    assert a_loss == b_loss and a_hash == b_hash and all(torch.equal(a_w[k], b_w[k]) for k in a_w)
    assert a_hash != c_hash and not torch.equal(a_w["layers.0.weight"], c_w["layers.0.weight"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_test_sets_are_measured_on_the_training_device(synth_dir, tmp_path, monkeypatch):
    from cnnlab.training import measure as training

    devices = []
    real = training.torch_logits

    def spy(net, images, batch_size=1024, device="cpu"):
        devices.append(torch.device(device).type)
        return real(net, images, batch_size, device)

    monkeypatch.setattr(training, "torch_logits", spy)
    fit(_cfg(synth_dir, tmp_path, accelerator="gpu"))
    assert devices and set(devices) == {"cuda"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_training_images_live_there(synth_dir, tmp_path, monkeypatch):
    from cnnlab.data.module import FashionMNISTDataModule

    seen = []
    real = FashionMNISTDataModule.train_dataloader

    def spy(self):
        seen.append(self.train_set.images.device.type)
        return real(self)

    monkeypatch.setattr(FashionMNISTDataModule, "train_dataloader", spy)
    result = fit(_cfg(synth_dir, tmp_path, accelerator="gpu", epochs=2))
    assert seen and set(seen) == {"cuda"} and result.status == "finished"


def test_the_epoch_count_joins_the_default_name():
    assert FitConfig().run_name == "frac0.2_drop0.0" and FitConfig(epochs=400).run_name == "frac0.2_drop0.0_e400"
    assert FitConfig(epochs=4000, dropout=0.5, seed=7).run_name == "frac0.2_drop0.5_seed7_e4000"
    assert FitConfig(epochs=400, name="mine").run_name == "mine"


def test_measuring_the_training_set_does_not_change_the_training(synth_dir, tmp_path):
    # --eval-train adds a loader per epoch; if it drew from the global RNG, every later dropout mask would move.
    # Both fits here on one thread, so the two are comparable to the last bit.
    from cnnlab.training.config import FitConfig
    from cnnlab.training.fit import fit

    histories = []
    for eval_train in (True, False):
        cfg = FitConfig(data_dir=str(synth_dir), logdir=str(tmp_path / str(eval_train)), frac=0.5, epochs=3,
                        dropout=0.5, lr=1e-3, eval_train=eval_train, threads=1, progress=False)  # fmt: skip
        histories.append(fit(cfg).history)
    with_eval, plain = histories
    assert "train_eval_acc" in with_eval[-1] and "train_eval_acc" not in plain[-1]
    for a, b in zip(with_eval, plain, strict=True):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert a[key] == b[key], (a["epoch"], key)
