"""The committed showcase (docs/exercise): its overfitting verdicts do not hang on any run's last epoch."""

import csv
from pathlib import Path

import pytest

from cnnlab.analysis.stats import tail_rise

RUNS = sorted((Path(__file__).parents[1] / "docs" / "exercise").glob("*runs*/**/history.csv"))


@pytest.mark.skipif(not RUNS, reason="the showcase's records are not in this checkout")
@pytest.mark.parametrize("history", RUNS, ids=lambda p: f"{p.parents[2].name}/{p.parents[1].name}")
def test_removing_the_last_epoch_changes_no_verdict(history):
    losses = [float(r["val_loss"]) for r in csv.DictReader(history.open())]
    assert tail_rise(losses).verdict == tail_rise(losses[:-1]).verdict
