"""Fashion-MNIST: find (or fetch) the IDX files, split them as the exercise does, serve in-memory batches."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import CnnlabError
from . import check_fractions
from .classes import CLASS_NAMES as CLASS_NAMES  # its home is classes.py, light enough for the CLI
from .idx import read_idx

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian/Ubuntu package dataset-fashion-mnist
CACHE_DIR = Path("data")
ENV_VAR = "CNNLAB_DATA_DIR"
HOLDOUT_FRACTION = 1 / 6  # 10,000 of the 60,000 official training images
SPLIT_SEED = 0  # fixes the pool/holdout split for every run, so test figures are comparable across seeds
INSTALL_HINT = "install it with `apt-get install dataset-fashion-mnist` (as root, or with sudo) or pass --data-dir DIR"


# --- finding the files ---------------------------------------------------------------------------------------


def _file_in(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def missing_files(folder: Path) -> list[str]:
    """The Fashion-MNIST files ``folder`` lacks (.gz or raw), or ["the folder itself"]; empty when it has all four."""
    if not folder.is_dir():
        return ["the folder itself"]
    return [stem for stem in FILES.values() if _file_in(folder, stem) is None]


def download_fashion_mnist(dest: Path = CACHE_DIR) -> Path:
    """Fetch the four files from torchvision's Fashion-MNIST mirrors into ``dest`` (md5-checked, atomic)."""
    from torchvision.datasets import FashionMNIST
    from torchvision.datasets.utils import download_url

    dest.mkdir(parents=True, exist_ok=True)
    errors = []
    for filename, md5 in FashionMNIST.resources:
        if (dest / filename).is_file():
            continue
        for mirror in FashionMNIST.mirrors:
            with tempfile.TemporaryDirectory(dir=dest) as tmp:
                try:
                    download_url(mirror + filename, tmp, filename, md5)
                except Exception as e:  # network errors come in many types; try the next mirror
                    errors.append(f"{mirror}: {e}")
                    continue
                os.replace(Path(tmp) / filename, dest / filename)
                break
        else:
            raise CnnlabError(f"download of {filename} failed ({'; '.join(errors)})")
    return dest


def locate_data(data_dir: str | os.PathLike[str] | None = None, download: bool = True) -> Path:
    """Return the folder holding the four Fashion-MNIST files, looking where the README says, in order."""
    if data_dir is not None:  # an explicit folder gets no fallback: the user asked for exactly this one
        folder = Path(data_dir)
        missing = missing_files(folder)
        if missing:
            raise CnnlabError(f"--data-dir {folder}: missing {', '.join(missing)} (.gz or raw); {INSTALL_HINT}")
        return folder
    candidates = []
    if os.environ.get(ENV_VAR):
        candidates.append((Path(os.environ[ENV_VAR]), f"${ENV_VAR}"))
    candidates += [(SYSTEM_DIR, "system package"), (CACHE_DIR, "local cache")]
    tried = []
    for folder, label in candidates:
        missing = missing_files(folder)
        if not missing:
            return folder
        tried.append(f"{folder} ({label}: missing {', '.join(missing)})")
    if download:
        try:
            return download_fashion_mnist(CACHE_DIR)
        except CnnlabError as e:
            tried.append(f"download into {CACHE_DIR}/ ({e})")
    raise CnnlabError(f"Fashion-MNIST not found; tried {'; '.join(tried)}; {INSTALL_HINT}")


# --- loading and splitting -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FashionArrays:
    """The four IDX files as tensors (not torchvision's FashionMNIST dataset)."""

    train_images: torch.Tensor  # (60000, 28, 28) uint8, the official training set
    train_labels: torch.Tensor  # (60000,) int64
    test_images: torch.Tensor  # (10000, 28, 28) uint8, the official test set
    test_labels: torch.Tensor  # (10000,) int64


def load_fashion_mnist(folder: str | os.PathLike[str]) -> FashionArrays:
    """Read and validate the four IDX files in ``folder``."""
    folder = Path(folder)
    arrays = {}
    for key, stem in FILES.items():
        path = _file_in(folder, stem)
        if path is None:
            raise CnnlabError(f"{folder / stem}(.gz): file not found; {INSTALL_HINT}")
        arr = read_idx(path, ndim=3 if key.endswith("images") else 1)
        if key.endswith("images") and arr.shape[1:] != (28, 28):
            raise CnnlabError(f"{path}: images are {arr.shape[1]}x{arr.shape[2]}, expected 28x28")
        if key.endswith("labels") and arr.size and arr.max() > 9:
            raise CnnlabError(f"{path}: label {int(arr.max())} outside 0..9")
        arrays[key] = (path, arr)
    for part in ("train", "test"):
        (ipath, images), (lpath, labels) = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if len(images) != len(labels):
            raise CnnlabError(f"{ipath}: {len(images):,} images but {lpath.name} has {len(labels):,} labels")
        if len(images) == 0:
            raise CnnlabError(f"{ipath}: holds no images")
    return FashionArrays(
        *(torch.from_numpy(arrays[k][1].copy()).to(torch.int64 if k.endswith("labels") else torch.uint8) for k in FILES)
    )


@dataclass(frozen=True)
class Split:
    train: torch.Tensor  # indices into the official training set
    val: torch.Tensor
    holdout: torch.Tensor

    @property
    def train_hash(self) -> str:
        """A short fingerprint of the training indices (and their order), stored in run.json."""
        return hashlib.sha256(self.train.numpy().astype("<i8").tobytes()).hexdigest()[:16]


def make_split(
    n: int, frac: float, val_split: float, seed: int, split_seed: int = SPLIT_SEED, *, checked: bool = False
) -> Split:
    """The exercise's split of the ``n`` official training images.

    A permutation seeded by ``split_seed`` cuts a fixed pool (5/6) and holdout (1/6); a permutation of the pool
    seeded by ``seed`` orders it, and the first round(frac * pool) images are used, so smaller fractions lie
    inside larger ones. Keras-style, the last ``val_split`` of that subset is validation. ``checked``: the
    fractions come from a validated FitConfig, so their ranges are not checked again.
    """
    if not checked:
        check_fractions(frac, val_split)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    n_holdout = round(n * HOLDOUT_FRACTION)
    pool, holdout = perm[: n - n_holdout], perm[n - n_holdout :]
    pool = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))]
    used = pool[: round(frac * len(pool))]
    n_val = round(val_split * len(used))
    n_train = len(used) - n_val
    if n_train < 1 or n_val < 1:
        raise CnnlabError(f"--frac {frac} leaves {n_train} training and {n_val} validation images; use a larger --frac")
    return Split(train=used[:n_train], val=used[n_train:], holdout=holdout)


# --- batches -------------------------------------------------------------------------------------------------


class InMemoryImages(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Images kept as one uint8 tensor; a batch is one indexing operation, no per-sample PIL work."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images = images.unsqueeze(1).contiguous()  # (N, 1, 28, 28) uint8
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i].float().div_(255), self.labels[i]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices, device=self.images.device)
        return self.images[idx].float().div_(255), self.labels[idx]


def _as_batch(batch: Any) -> Any:
    return batch  # __getitems__ already built the batch


class EpochShuffle(Sampler[int]):
    """A fresh permutation each epoch, seeded by (seed, epoch): a resumed run sees the same order."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this at the start of every epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())


def batches(
    dataset: InMemoryImages,
    batch_size: int,
    sampler: Sampler[int] | None = None,
    generator: torch.Generator | None = None,
) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=_as_batch, generator=generator)


class FashionMNISTDataModule(L.LightningDataModule):
    """The exercise's data: a training subset with Keras-style validation, a holdout and the official test set."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        frac: float = 0.2,  # fraction of the 50,000-image pool used (train + validation)
        val_split: float = 0.1,  # Keras' validation_split: the last 10% of the used subset
        batch_size: int = 32,
        eval_batch_size: int = 256,  # PyTorch on a CPU: 2x faster per image than 1024 (less memory churn)
        seed: int = 42,  # orders the pool (which images are used) and the per-epoch shuffle
        eval_train: bool = False,  # also evaluate the training subset with dropout off after every epoch
        download: bool = True,
        *,
        checked: bool = False,  # the values come from a validated FitConfig (training.fit.prepare)
    ) -> None:
        super().__init__()
        self.data_dir, self.download, self.checked = data_dir, download, checked
        self.frac, self.val_split, self.seed, self.eval_train = frac, val_split, seed, eval_train
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.data: FashionArrays | None = None
        self.split: Split | None = None

    def prepare_data(self) -> None:
        locate_data(self.data_dir, download=self.download)  # fetches on rank 0 only, if needed

    def setup(self, stage: str | None = None) -> None:
        if self.data is None:
            self.data = load_fashion_mnist(locate_data(self.data_dir, download=False))
            n = len(self.data.train_labels)
            self.split = make_split(n, self.frac, self.val_split, self.seed, checked=self.checked)
            d, s = self.data, self.split
            self.train_set = InMemoryImages(d.train_images[s.train], d.train_labels[s.train])
            self.val_set = InMemoryImages(d.train_images[s.val], d.train_labels[s.val])
            self.holdout_set = InMemoryImages(d.train_images[s.holdout], d.train_labels[s.holdout])
            self.official_set = InMemoryImages(d.test_images, d.test_labels)
        if self.trainer is not None:  # Lightning's setup: the device is known now
            self.place(self.trainer.strategy.root_device)

    def place(self, device: torch.device) -> bool:
        """Keep the training and validation images on a CUDA device when they fit easily (uint8: 35 MB for all of
        the pool): a batch is then one indexing operation on the GPU, with no host-to-device copy per step."""
        sets = (self.train_set, self.val_set)
        if device.type != "cuda" or all(s.images.device == device for s in sets):
            return False
        need = sum(s.images.nbytes + s.labels.nbytes for s in sets)
        free, _ = torch.cuda.mem_get_info(device)
        if need > free // 4:  # leave the GPU to the model; batches then travel as usual
            return False
        for s in sets:
            s.images, s.labels = s.images.to(device), s.labels.to(device)
        return True

    @property
    def split_sizes(self) -> dict[str, int]:
        return {
            "train": len(self.train_set),
            "val": len(self.val_set),
            "holdout": len(self.holdout_set),
            "official": len(self.official_set),
        }

    def train_dataloader(self) -> DataLoader:
        return batches(self.train_set, self.batch_size, EpochShuffle(len(self.train_set), self.seed))

    def val_dataloader(self) -> list[DataLoader]:
        loaders = [batches(self.val_set, self.eval_batch_size)]
        if self.eval_train:
            # Its own generator: each DataLoader iterator draws a base seed from the global RNG (torch's
            # _BaseDataLoaderIter), and a draw more per epoch would change every later dropout mask, so measuring
            # the training set would change the training it measures.
            loaders.append(batches(self.train_set, self.eval_batch_size, generator=torch.Generator()))
        return loaders

    def eval_set(self, split: str) -> InMemoryImages:
        """The named evaluation set: ``holdout``, ``official``, ``val`` or ``train``."""
        sets = {"holdout": "holdout_set", "official": "official_set", "val": "val_set", "train": "train_set"}
        if split not in sets:
            raise CnnlabError(f"--split {split}: unknown; choose one of {', '.join(sets)}")
        self.setup()
        return getattr(self, sets[split])
