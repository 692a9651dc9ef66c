"""The report's statistics (stats.py): tail-based overfitting, seed intervals, the paired per-image test."""

import numpy as np
import pytest
from scipy import stats as sps

from cnnlab.analysis.stats import paired_test, pooled_paired_test, seed_interval, tail_rise


def _one_epoch_rule(curve, threshold=10.0):
    """The old rule, for contrast: the last epoch alone against the minimum."""
    return 100 * (curve[-1] / min(curve) - 1) > threshold


def test_a_spike_in_the_last_epoch_is_not_overfitting():
    flat = [1.0, 0.6, 0.45, 0.4, 0.38] + [0.37 + 0.005 * (i % 3) for i in range(34)] + [0.55]  # 40 epochs
    assert _one_epoch_rule(flat)  # the one-epoch rule gets it wrong
    assert not tail_rise(flat).overfits
    assert not tail_rise(flat[:-1]).overfits  # and the verdict survives removing the last epoch


def test_a_rising_curve_that_dips_at_the_last_epoch_is_overfitting():
    rising = [1.0, 0.6, 0.45, 0.35, 0.3] + [0.3 + 0.01 * i for i in range(34)] + [0.31]
    assert not _one_epoch_rule(rising)  # the dip fools the one-epoch rule
    result = tail_rise(rising)
    assert result.overfits and result.rise_pct > 50
    assert tail_rise(rising[:-1]).overfits
    assert 4 <= result.min_epoch <= 8  # where the smoothed curve bottoms out


def test_short_curves_use_a_shorter_tail():
    assert tail_rise([1.0, 0.5, 0.4]).k == 1 and tail_rise([0.5] * 40).k == 5
    assert tail_rise([0.5] * 40).rise_pct == 0.0


def test_the_paired_test_is_scipys_exact_mcnemar():
    rng = np.random.default_rng(0)
    a = rng.random(10_000) < 0.85
    b = a.copy()
    b[rng.choice(np.flatnonzero(~a), 200, replace=False)] = True  # 200 images newly right,
    b[rng.choice(np.flatnonzero(a), 100, replace=False)] = False  # 100 newly wrong
    t = paired_test(a, b)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    assert (t.only_before_right, t.only_after_right) == (only_a, only_b) == (100, 200)
    assert t.p_value == pytest.approx(sps.binomtest(only_a, only_a + only_b, 0.5).pvalue)
    assert t.difference == pytest.approx(b.mean() - a.mean())
    assert t.low < t.difference < t.high and t.low > 0 and t.significant


def test_the_same_predictions_are_no_difference():
    a = np.array([True, False, True, True])
    t = paired_test(a, a)
    assert t.p_value == 1.0 and t.difference == 0.0 and not t.significant


def test_pooling_seed_pairs_counts_each_image_once_per_pair():
    a, b = np.array([True, False] * 50), np.array([True, True] * 50)
    t = pooled_paired_test([(a, b), (a, b), (a, b)])
    assert t.images == 300 and t.only_after_right == 150


def test_seed_intervals_need_two_seeds_a_side():
    assert seed_interval([0.8], [0.82]).one_seed
    si = seed_interval([0.80, 0.81, 0.79], [0.85, 0.86, 0.84])
    assert not si.one_seed and si.low < si.difference < si.high and si.low > 0
    assert si.difference == pytest.approx(0.05)


def test_a_rise_within_its_noise_of_the_threshold_is_borderline():
    # a slow, noisy rise to about the threshold: the verdict must not hang on whichever epoch came last
    base = [1.0, 0.6, 0.45, 0.4] + [0.3] * 20
    tail = [0.33, 0.35, 0.30, 0.31, 0.36, 0.30]
    for curve in (base + tail, base + tail[:-1]):
        r = tail_rise(curve)
        assert r.verdict == "borderline" and not r.overfits, (r.rise_pct, r.se_pct)
    assert tail_rise(base + [0.5] * 6).verdict == "overfits" and tail_rise(base + [0.301] * 6).verdict == "none"
