"""Fashion-MNIST: ``idx`` (the strict IDX reader and writer), ``module`` (finding, loading and splitting the files,
the in-memory batches, the ``FashionMNISTDataModule``) and ``classes`` (the ten class names).

Light to import (no torch): the command line imports ``classes``, and ``FitConfig.validate`` the split's valid
ranges, before torch loads; import the heavy parts from their modules.
"""

from __future__ import annotations

from ..errors import CnnlabError


def check_fractions(frac: float, val_split: float) -> None:
    """The split's valid ranges, written once: ``FitConfig.validate`` checks them before a run starts,
    ``make_split`` called directly (not from a validated config) before it cuts."""
    if not 0 < frac <= 1:
        raise CnnlabError(f"--frac {frac}: must be in (0, 1], e.g. 0.2 for 20% of the training pool")
    if not 0 < val_split < 1:
        raise CnnlabError(f"--val-split {val_split}: must be in (0, 1), e.g. 0.1")
