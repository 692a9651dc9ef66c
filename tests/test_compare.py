import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from cnnlab.analysis.compare import compare_runs
from cnnlab.cli import app
from runfolders import make_run, steady, steady_with_eval

runner = CliRunner()


def _run(logdir, name, val_loss, eval_train=False, **kw):
    """A run folder written by hand (runfolders.make_run): no training, so every expected number is known."""
    curves = steady_with_eval if eval_train else steady
    return make_run(logdir, name=name, val_loss=val_loss, curves=curves, test_acc=(0.81, 0.8), **kw)


@pytest.fixture
def two_runs(tmp_path):
    logdir = tmp_path / "tb"
    over = _run(logdir, "frac0.2_drop0.0", [0.9, 0.5, 0.4, 0.6, 0.8], eval_train=True)
    fine = _run(logdir, "frac0.2_drop0.5", [0.9, 0.6, 0.5, 0.45, 0.47], dropout=0.5)
    return logdir, over, fine


def test_summary_numbers_are_right(two_runs, tmp_path):
    logdir, over, fine = two_runs
    result = compare_runs([str(over), "frac0.2_drop0.5"], tmp_path / "out", logdir)
    a, b = result.rows
    assert a["min_val_loss_epoch"] == 3 and a["best_val_loss"] == 0.4 and a["final_val_loss"] == 0.8
    assert a["val_loss_rise_pct"] == pytest.approx(100.0) and a["overfitting"] is True
    assert a["gap_acc"] == pytest.approx((0.5 + 0.2) - (0.5 + 0.15))
    assert a["gap_loss"] == pytest.approx(0.8 - 0.2)
    assert a["best_val_acc"] == pytest.approx(0.65) and a["test_official_acc_last"] is None
    assert a["test_holdout_acc_best"] == 0.81 and a["test_holdout_acc_last"] == 0.8
    assert b["min_val_loss_epoch"] == 4 and b["val_loss_rise_pct"] == pytest.approx(100 * (0.47 / 0.45 - 1))
    assert b["overfitting"] is False  # +4.4% is under the 10% threshold
    assert compare_runs([str(over), str(fine)], tmp_path / "o2", logdir, threshold=150).rows[0]["overfitting"] is False


def test_files_are_written_and_valid_pngs(two_runs, tmp_path):
    logdir, over, fine = two_runs
    out = tmp_path / "out"
    compare_runs([str(over), str(fine)], out, logdir, log_loss=True)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["curves.png", "curves_frac0.2_drop0.0.png", "curves_frac0.2_drop0.5.png", "summary.json",
                     "summary.md"]  # fmt: skip
    with Image.open(out / "curves.png") as im:
        assert im.format == "PNG" and im.size[0] > 900 and im.size[1] > 700
    with Image.open(out / "curves_frac0.2_drop0.0.png") as im:
        assert im.format == "PNG" and im.size[0] > 800 and im.size[1] > 300
    summary = json.loads((out / "summary.json").read_text())
    assert [r["run"] for r in summary["runs"]] == ["frac0.2_drop0.0", "frac0.2_drop0.5"]
    md = (out / "summary.md").read_text()
    assert md.count("\n| frac0.2") == 2 and "yes (+100%)" in md
    assert "holdout acc (best ckpt)" in md and "holdout acc (last epoch)" in md and "| 0.8100 | 0.8000 |" in md


def test_seeds_are_aggregated_with_mean_and_std(tmp_path):
    logdir = tmp_path / "tb"
    runs = [str(_run(logdir, f"s{s}", [0.9, 0.5 + 0.1 * s], seed=s)) for s in (1, 2)]
    result = compare_runs(runs, tmp_path / "out", logdir)
    (row,) = result.rows
    assert row["final_val_loss"]["mean"] == pytest.approx(0.65) and row["final_val_loss"]["std"] == pytest.approx(
        0.0707, abs=1e-4
    )
    assert "± 0.0707" in result.table and "(mean of 2 seeds: 1, 2)" in row["run"]


def _rows_without_spread(result):
    return all(not isinstance(v, dict) for row in result.rows for k, v in row.items() if k != "settings")


def test_runs_that_differ_in_another_setting_are_never_averaged(tmp_path):
    logdir = tmp_path / "tb"
    a = _run(logdir, "frac0.2_drop0.0", [0.9, 0.5])
    b = _run(logdir, "frac0.2_drop0.0_adam", [0.9, 0.7], settings={"optimizer": "adam", "lr": 1e-3})
    result = compare_runs([str(a), str(b)], tmp_path / "out", logdir)
    assert len(result.rows) == 2 and _rows_without_spread(result) and "±" not in result.table
    labels = [r["run"] for r in result.rows]
    assert labels == ["frac0.2_drop0.0 (lr 0.0001, optimizer rmsprop)",
                      "frac0.2_drop0.0_adam (lr 0.001, optimizer adam)"]  # fmt: skip


def test_two_versions_with_the_same_seed_are_not_seeds(tmp_path):
    logdir = tmp_path / "tb"
    runs = [str(_run(logdir, "same", [0.9, 0.5 + 0.1 * v], version=v)) for v in (0, 1)]
    result = compare_runs(runs, tmp_path / "out", logdir)
    assert [r["run"] for r in result.rows] == ["same/version_0", "same/version_1"] and _rows_without_spread(result)


def test_groups_average_and_single_runs_stand_side_by_side(tmp_path):
    logdir = tmp_path / "tb"
    seeds = [str(_run(logdir, f"d_seed{s}", [0.9, 0.5 + 0.01 * s], seed=s, dropout=0.5)) for s in (1, 2, 3)]
    alone = str(_run(logdir, "e80", [0.9, 0.4, 0.45]))
    result = compare_runs([*seeds, alone], tmp_path / "out", logdir)
    averaged, single = result.rows
    assert averaged["run"] == "frac 0.2, dropout 0.5, epochs 2 (mean of 3 seeds: 1, 2, 3)"
    assert averaged["final_val_loss"]["mean"] == pytest.approx(0.52) and single["run"] == "e80 (epochs 3)"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert len(summary["runs"]) == 4 and len(summary["table"]) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["only_one"], "two or more runs"),
        (["nope1", "nope2"], "nope1: not a run folder"),
        (["{a}", "{b}", "--threshold", "0"], "--threshold 0.0"),
    ],
)
def test_bad_input_exits_2(two_runs, args, message, in_tmp):
    logdir, over, fine = two_runs
    args = [a.format(a=over, b=fine) for a in args]
    result = runner.invoke(app, ["compare", *args, "--logdir", str(logdir)])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_compare_cli(two_runs, in_tmp):
    logdir, over, fine = two_runs
    result = runner.invoke(app, ["compare", str(over), str(fine)])
    assert result.exit_code == 0, result.output
    assert "| frac0.2_drop0.0 |" in result.output and (in_tmp / "comparison" / "curves.png").is_file()


def test_compare_writes_its_figures_as_a_named_tensorboard_run(two_runs, in_tmp):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from cnnlab.tblog import event_files

    logdir, over, fine = two_runs
    for _ in range(2):  # a second compare into the same run replaces its event file instead of adding one
        result = runner.invoke(app, ["compare", str(over), str(fine), "--out", "cmp", "--tensorboard", "tb"])
        assert result.exit_code == 0, result.output
    board = in_tmp / "tb" / "compare" / "cmp"
    assert len(event_files(board)) == 1
    acc = EventAccumulator(str(board), size_guidance={"images": 0})
    acc.Reload()
    assert {"curves", "curves_frac0.2_drop0.0", "curves_frac0.2_drop0.5"} <= set(acc.Tags()["images"])
    assert "summary/text_summary" in acc.Tags()["tensors"]  # the table, in the TEXT tab


def test_a_nan_validation_loss_is_never_the_best_epoch(tmp_path):
    """The best epoch has one rule (runs.best_row): run.json's "best" (as training writes it), compare's rows and
    the report agree on it when a validation loss is NaN, here the first one, where a plain min() would stop."""
    from cnnlab.analysis.report import write_report
    from cnnlab.runs import read_history, read_run
    from cnnlab.tblog import summary_text
    from cnnlab.training.recorder import RunRecorder

    logdir = tmp_path / "tb"
    losses = [float("nan"), 0.8, 0.5, 0.6, 0.7, 0.65, 0.7, 0.75]
    runs = [make_run(logdir, dropout=d, name=f"frac0.2_drop{d}", val_loss=losses, curves=steady) for d in (0.0, 0.5)]
    recorder = RunRecorder()
    recorder.start_run(runs[0], read_run(runs[0]), board=None)
    recorder.history = read_history(runs[0])
    recorder.write_info()
    info = read_run(runs[0])
    assert info["best"]["epoch"] == 3 and "Lowest validation loss at epoch 3" in summary_text(info)
    rows = compare_runs([str(r) for r in runs], tmp_path / "cmp", logdir).rows
    assert [r["min_val_loss_epoch"] for r in rows] == [3, 3]
    keras = tmp_path / "keras3.json"  # the report's Keras 3 table names its curves' best epoch by the same rule
    keras.write_text(json.dumps({"keras 3": read_history(runs[0])}))
    result = write_report([str(r) for r in runs], tmp_path / "report", logdir=logdir, keras_curves=keras)
    (table,) = [b for b in result.document.tables if b.rows and b.rows[0][0] == "keras 3"]
    assert table.rows[0][3] == "0.5000 (3)"
