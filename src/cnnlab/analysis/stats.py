"""The statistics behind the report's verdicts, computed from run records alone and rendered nowhere.

- Overfitting is judged on the curve's tail, never on one epoch: the median validation loss of the last ``k``
  epochs against the minimum of the curve's running median over ``k`` epochs. One spike or one dip at the end
  moves neither, so removing the last epoch does not flip a verdict that the curve does not support.
- Two conditions are compared twice: over seeds (Welch's t interval of the difference of the means, when each
  side has two or more seeds), and image by image on the 10,000 holdout images (an exact McNemar test on the two
  checkpoints' predictions, with a paired bootstrap interval of the accuracy difference), which also works with
  one seed per side. The tests are scipy's, not hand-written.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

TAIL_EPOCHS = 5  # k: the tail and the running median's window (a fifth of the exercise's 40 epochs at most)
RISE_THRESHOLD_PCT = 10.0  # tail this far above the smoothed minimum = overfitting
ALPHA = 0.05  # the tests' level: a claim holds when p < 0.05 and the effect has the claimed sign


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """The mean over seeds and their sample standard deviation, the one rule for every "mean ± std": with one
    value there is no spread to give (None), never 0."""
    if not values:
        raise ValueError("mean_std needs at least one value")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def tail_epochs(n_epochs: int, k: int = TAIL_EPOCHS) -> int:
    """The tail length for a curve of ``n_epochs``: k, but never more than a quarter of the curve (at least 1)."""
    return max(1, min(k, n_epochs // 4))


def running_median(values: list[float], k: int) -> list[float]:
    """The median of each window of ``k`` consecutive values (len(values) - k + 1 of them)."""
    return [statistics.median(values[i : i + k]) for i in range(len(values) - k + 1)]


@dataclass
class TailRise:
    """How far the end of a validation-loss curve sits above its smoothed minimum, and how surely."""

    k: int  # epochs in the tail and in the smoothing window
    tail: float  # median of the last k validation losses
    smoothed_min: float  # minimum of the running median over k epochs
    min_epoch: int  # the epoch at the centre of that minimum's window (where the curve bottoms out)
    rise_pct: float  # 100 * (tail / smoothed_min - 1)
    threshold_pct: float
    se_pct: float = 0.0  # jackknife standard error of rise_pct over the tail's epochs (each left out once)

    @property
    def verdict(self) -> str:
        """overfits / none when the rise is clear of the threshold by two standard errors, else borderline."""
        if self.rise_pct - 2 * self.se_pct > self.threshold_pct:
            return "overfits"
        if self.rise_pct + 2 * self.se_pct < self.threshold_pct:
            return "none"
        return "borderline"

    @property
    def overfits(self) -> bool:
        return self.verdict == "overfits"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"verdict": self.verdict, "overfits": self.overfits}


def _rise(values: list[float], k: int) -> tuple[float, float, int, float]:
    smooth = running_median(values, k)
    i = min(range(len(smooth)), key=smooth.__getitem__)
    tail, low = statistics.median(values[-k:]), smooth[i]
    return tail, low, i + (k + 1) // 2, (100 * (tail / low - 1) if low > 0 else 0.0)


def tail_rise(val_losses: list[float], k: int = TAIL_EPOCHS, threshold_pct: float = RISE_THRESHOLD_PCT) -> TailRise:
    """The overfitting measure of one curve (non-finite losses left out). Its uncertainty is the jackknife over the
    tail: the rise computed again with each of the last k epochs left out; a curve whose rise sits within two
    standard errors of the threshold is borderline, so no single epoch decides the verdict."""
    values = [v for v in val_losses if math.isfinite(v)]
    if not values:
        raise ValueError("no finite validation loss")
    k = tail_epochs(len(values), k)
    tail, low, epoch, rise = _rise(values, k)
    se = 0.0
    if k > 1 and len(values) > k:
        n = len(values)
        loo = [_rise(values[: n - k + j] + values[n - k + j + 1 :], k)[3] for j in range(k)]
        mean = statistics.fmean(loo)
        se = math.sqrt((k - 1) / k * sum((x - mean) ** 2 for x in loo))
    return TailRise(k, tail, low, epoch, rise, threshold_pct, se)


@dataclass
class SeedInterval:
    """The difference of two conditions' means over seeds, with Welch's 95% interval (None with one seed a side)."""

    n_before: int
    n_after: int
    mean_before: float
    mean_after: float
    difference: float  # after - before
    low: float | None = None
    high: float | None = None
    p_value: float | None = None

    @property
    def one_seed(self) -> bool:
        return self.low is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"test": "Welch t" if not self.one_seed else None}


def seed_interval(before: list[float], after: list[float], confidence: float = 0.95) -> SeedInterval:
    from scipy import stats

    out = SeedInterval(len(before), len(after), float(np.mean(before)), float(np.mean(after)), 0.0)
    out.difference = out.mean_after - out.mean_before
    if len(before) > 1 and len(after) > 1:
        result = stats.ttest_ind(after, before, equal_var=False)
        ci = result.confidence_interval(confidence)
        out.low, out.high, out.p_value = float(ci.low), float(ci.high), float(result.pvalue)
    return out


@dataclass
class PairedTest:
    """Two checkpoints on the same images: an exact McNemar test and a paired bootstrap interval."""

    images: int
    acc_before: float
    acc_after: float
    only_before_right: int  # images the first checkpoint got right and the second wrong
    only_after_right: int
    p_value: float  # exact McNemar (two-sided binomial test on the discordant images)
    low: float  # 95% paired bootstrap interval of acc_after - acc_before
    high: float

    @property
    def difference(self) -> float:
        return self.acc_after - self.acc_before

    @property
    def significant(self) -> bool:
        return self.p_value < ALPHA

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"test": "exact McNemar", "difference": self.difference}


def paired_test(right_before: np.ndarray, right_after: np.ndarray, seed: int = 0) -> PairedTest:
    """``right_*``: per image, whether each checkpoint classified it correctly (the same images, same order)."""
    from scipy import stats

    a, b = np.asarray(right_before, bool), np.asarray(right_after, bool)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError("paired_test needs two equal-length, non-empty vectors over the same images")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    discordant = only_a + only_b
    p = float(stats.binomtest(only_a, discordant, 0.5).pvalue) if discordant else 1.0
    diff = b.astype(np.float64) - a.astype(np.float64)
    if discordant:
        boot = stats.bootstrap((diff,), np.mean, n_resamples=2000, confidence_level=0.95, method="percentile",
                               random_state=np.random.default_rng(seed))  # fmt: skip
        low, high = float(boot.confidence_interval.low), float(boot.confidence_interval.high)
    else:
        low = high = 0.0
    return PairedTest(len(a), float(a.mean()), float(b.mean()), only_a, only_b, p, low, high)


def pooled_paired_test(pairs: list[tuple[np.ndarray, np.ndarray]]) -> PairedTest:
    """Several seed pairs (seed s of one condition with seed s of the other), pooled image by image: each image
    counts once per pair, so three seeds test 30,000 paired classifications."""
    return paired_test(np.concatenate([a for a, _ in pairs]), np.concatenate([b for _, b in pairs]))
