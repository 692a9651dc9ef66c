import shutil

import numpy as np
import pytest
import torch

from cnnlab.data import module as data
from cnnlab.data.idx import write_idx
from cnnlab.data.module import FashionMNISTDataModule, load_fashion_mnist, locate_data, make_split
from cnnlab.errors import CnnlabError


@pytest.fixture
def no_system_data(monkeypatch, tmp_path):
    """Point every default place at empty folders and make the download fail."""
    monkeypatch.delenv("CNNLAB_DATA_DIR", raising=False)
    monkeypatch.setattr(data, "SYSTEM_DIR", tmp_path / "system")
    monkeypatch.setattr(data, "CACHE_DIR", tmp_path / "cache")

    def offline(dest):
        raise CnnlabError("network unreachable")

    monkeypatch.setattr(data, "download_fashion_mnist", offline)


def test_explicit_dir_has_no_fallback(synth_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA_DIR", str(synth_dir))
    with pytest.raises(CnnlabError, match="--data-dir .*empty: missing the folder itself.*apt-get install"):
        locate_data(tmp_path / "empty")
    assert locate_data(synth_dir) == synth_dir


def test_search_order_env_then_system_then_cache(synth_dir, tmp_path, monkeypatch, no_system_data):
    shutil.copytree(synth_dir, tmp_path / "cache")
    assert locate_data() == tmp_path / "cache"
    shutil.copytree(synth_dir, tmp_path / "system")
    assert locate_data() == tmp_path / "system"
    monkeypatch.setenv("CNNLAB_DATA_DIR", str(synth_dir))
    assert locate_data() == synth_dir


def test_not_found_lists_every_place_and_both_fixes(tmp_path, monkeypatch, no_system_data):
    monkeypatch.setenv("CNNLAB_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(CnnlabError) as e:
        locate_data()
    msg = str(e.value)
    for place in ("env", "system", "cache", "download", "network unreachable", "apt-get install", "--data-dir"):
        assert place in msg
    assert "\n" not in msg


def test_download_is_tried_last(tmp_path, monkeypatch, no_system_data, synth_dir):
    def fake_download(dest):
        shutil.copytree(synth_dir, dest)
        return dest

    monkeypatch.setattr(data, "download_fashion_mnist", fake_download)
    assert locate_data() == tmp_path / "cache"


def test_raw_files_are_read_too(synth_dir, tmp_path):
    import gzip

    for f in synth_dir.iterdir():
        (tmp_path / f.name.removesuffix(".gz")).write_bytes(gzip.decompress(f.read_bytes()))
    raw, gz = load_fashion_mnist(tmp_path), load_fashion_mnist(synth_dir)
    assert torch.equal(raw.train_images, gz.train_images)


def _copy_with(synth_dir, tmp_path, name, array):
    shutil.copytree(synth_dir, tmp_path / "d")
    write_idx(tmp_path / "d" / name, array)
    return tmp_path / "d"


def test_labels_out_of_range(synth_dir, tmp_path):
    folder = _copy_with(synth_dir, tmp_path, "train-labels-idx1-ubyte.gz", np.full(600, 10, np.uint8))
    with pytest.raises(CnnlabError, match="train-labels-idx1-ubyte.gz: label 10 outside 0..9"):
        load_fashion_mnist(folder)


def test_image_label_count_mismatch(synth_dir, tmp_path):
    folder = _copy_with(synth_dir, tmp_path, "train-labels-idx1-ubyte.gz", np.zeros(599, np.uint8))
    with pytest.raises(CnnlabError, match="600 images but train-labels-idx1-ubyte.gz has 599 labels"):
        load_fashion_mnist(folder)


def test_wrong_image_size(synth_dir, tmp_path):
    folder = _copy_with(synth_dir, tmp_path, "t10k-images-idx3-ubyte.gz", np.zeros((100, 32, 32), np.uint8))
    with pytest.raises(CnnlabError, match="32x32, expected 28x28"):
        load_fashion_mnist(folder)


def test_split_sizes_follow_the_exercise():
    s = make_split(60_000, 0.2, 0.1, seed=1)
    assert (len(s.train), len(s.val), len(s.holdout)) == (9_000, 1_000, 10_000)
    s = make_split(60_000, 1.0, 0.1, seed=1)
    assert (len(s.train), len(s.val), len(s.holdout)) == (45_000, 5_000, 10_000)
    every = torch.cat([s.train, s.val, s.holdout])
    assert len(torch.unique(every)) == 60_000


def test_smaller_subset_lies_inside_larger_and_holdout_is_fixed():
    small, full = make_split(60_000, 0.2, 0.1, seed=3), make_split(60_000, 1.0, 0.1, seed=3)
    used_small = set(torch.cat([small.train, small.val]).tolist())
    assert used_small <= set(full.train.tolist()) | set(full.val.tolist())
    assert torch.equal(small.holdout, make_split(60_000, 0.5, 0.1, seed=99).holdout)


def test_seed_fixes_the_split():
    a, b, c = (make_split(60_000, 0.2, 0.1, seed=s) for s in (7, 7, 8))
    assert torch.equal(a.train, b.train) and a.train_hash == b.train_hash
    assert not torch.equal(a.train, c.train) and a.train_hash != c.train_hash


@pytest.mark.parametrize(("frac", "val_split"), [(0, 0.1), (1.5, 0.1), (-0.1, 0.1), (0.5, 0), (0.5, 1), (1e-6, 0.1)])
def test_bad_fractions(frac, val_split):
    with pytest.raises(CnnlabError, match="--frac|--val-split"):
        make_split(60_000, frac, val_split, seed=0)


def test_datamodule_batches_are_float_in_unit_range(synth_dir):
    dm = FashionMNISTDataModule(synth_dir, frac=0.5, batch_size=16)
    dm.setup("fit")
    assert dm.split_sizes == {"train": 225, "val": 25, "holdout": 100, "official": 100}
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min() >= 0 and x.max() <= 1


def _epoch_images(loader, epoch):
    loader.sampler.set_epoch(epoch)
    x = torch.cat([b[0] for b in loader]).flatten(1)
    return x, x[torch.argsort((x * torch.arange(784)).sum(1))]


def test_same_images_every_epoch_in_a_new_order(synth_dir):
    dm = FashionMNISTDataModule(synth_dir, frac=0.5, batch_size=16)
    dm.setup("fit")
    loader = dm.train_dataloader()
    (first, sorted0), (second, sorted1) = _epoch_images(loader, 0), _epoch_images(loader, 1)
    assert torch.equal(sorted0, sorted1)
    assert not torch.equal(first, second)
    assert torch.equal(_epoch_images(loader, 0)[0], first)  # a resumed epoch sees the same order
