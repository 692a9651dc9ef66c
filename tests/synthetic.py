"""A tiny, learnable Fashion-MNIST look-alike for the tests (the session fixture ``synth_dir`` in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab.data.idx import write_idx


def synthetic_fashion_mnist(folder: Path, n_train: int = 600, n_test: int = 100, seed: int = 0) -> Path:
    """Write a tiny, learnable Fashion-MNIST look-alike (class k brightens row band k) for the tests."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for part, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(labels):
            images[i, 2 + 2 * k : 4 + 2 * k, :] = 230
        write_idx(folder / f"{part}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{part}-labels-idx1-ubyte.gz", labels)
    return folder
