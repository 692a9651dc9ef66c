"""Checks on the real Fashion-MNIST files (skipped, with the reason, when they are absent)."""

import json

import pytest
import torch

from cnnlab.data.module import FashionMNISTDataModule, load_fashion_mnist

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def dm20(real_dir):
    dm = FashionMNISTDataModule(real_dir, frac=0.2, seed=42)
    dm.setup("fit")
    return dm


def test_official_files(real_dir):
    d = load_fashion_mnist(real_dir)
    assert d.train_images.shape == (60_000, 28, 28) and d.test_images.shape == (10_000, 28, 28)
    assert torch.bincount(d.train_labels).tolist() == [6_000] * 10


def test_split_sizes(dm20, real_dir):
    assert dm20.split_sizes == {"train": 9_000, "val": 1_000, "holdout": 10_000, "official": 10_000}
    full = FashionMNISTDataModule(real_dir, frac=1.0, seed=42)
    full.setup("fit")
    assert full.split_sizes == {"train": 45_000, "val": 5_000, "holdout": 10_000, "official": 10_000}
    used20 = set(torch.cat([dm20.split.train, dm20.split.val]).tolist())
    assert used20 <= set(torch.cat([full.split.train, full.split.val]).tolist())
    assert torch.equal(dm20.split.holdout, full.split.holdout)


def test_same_training_images_every_epoch(dm20):
    loader = dm20.train_dataloader()
    seen = []
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)
        x = torch.cat([b[0] for b in loader]).flatten(1)
        seen.append(torch.sort(x.sum(1) * 1000 + x[:, 300:320].sum(1)).values)
    assert len(seen[0]) == 9_000 and torch.equal(seen[0], seen[1])


def test_same_seed_same_split_and_first_batch_loss(real_dir):
    # Through prepare(), the seeding fit() itself does; the global generator is disturbed in between.
    from cnnlab.training.config import FitConfig
    from cnnlab.training.fit import prepare

    losses, hashes = [], []
    for disturb in (1, 2):
        torch.manual_seed(disturb)
        dm, model = prepare(FitConfig(data_dir=str(real_dir), frac=0.2, seed=42))
        loss, _ = model.model_step(next(iter(dm.train_dataloader())))
        losses.append(float(loss.detach()))
        hashes.append(dm.split.train_hash)
    assert losses[0] == losses[1] and hashes[0] == hashes[1]


@pytest.mark.slow
def test_cli_fit_on_real_data_writes_the_contract(real_dir, in_tmp):
    from typer.testing import CliRunner

    from cnnlab.cli import app

    result = CliRunner().invoke(app, ["fit", "--frac", "0.02", "--epochs", "1", "--data-dir", str(real_dir)])
    assert result.exit_code == 0, result.output
    run = in_tmp / "tb_logs" / "frac0.02_drop0.0_e1" / "version_0"
    for f in ("history.csv", "run.json", "checkpoints/last.ckpt", "checkpoints/best.ckpt"):
        assert (run / f).is_file(), f
    for folder in (run, run / "train", run / "validation"):  # TensorBoard: one event file per folder
        assert len(list(folder.glob("events.out.tfevents.*"))) == 1, folder
    info = json.loads((run / "run.json").read_text())
    assert info["split"] == {"train": 900, "val": 100, "holdout": 10_000, "official": 10_000}
    assert info["test"]["last"]["official"]["acc"] > 0.3  # one epoch on 900 images is far above chance (0.1)
    assert info["test"]["best"] == info["test"]["last"]  # one epoch: the best checkpoint is the last
