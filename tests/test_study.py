from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.cli.render import study_line
from cnnlab.errors import CnnlabError
from cnnlab.training import study as study_mod
from cnnlab.training.config import FitConfig, study_grid
from cnnlab.training.study import run_study

runner = CliRunner()


def _printed(lines):
    """The lines a study trained one run at a time prints, collected."""

    def collect(event):
        line = study_line(event)
        if line is not None:
            lines.append(line)

    return collect


@pytest.mark.slow
def test_study_runs_the_grid_and_a_rerun_trains_nothing(synth_dir, tmp_path, monkeypatch):
    base = FitConfig(epochs=2, data_dir=str(synth_dir), logdir=str(tmp_path / "tb"), progress=False, lr=1e-3)
    lines: list[str] = []
    result = run_study(base, [0.3, 0.6], [0.0, 0.5], out=tmp_path / "study", on_event=_printed(lines), jobs=1)
    assert len(result.comparison.rows) == 4 and lines[0].startswith("[1/4] frac0.3_drop0.0_e2: training")
    assert "ETA" in lines[1]
    readme = (tmp_path / "study" / "README.md").read_text()
    assert readme.count("\n| frac") == 4 and "![curves.png](curves.png)" in readme

    def no_training(cfg, resume_dir=None):
        raise AssertionError(f"trained {cfg.run_name} again")

    monkeypatch.setattr(study_mod, "fit", no_training)
    lines.clear()
    run_study(base, [0.3, 0.6], [0.0, 0.5], out=tmp_path / "study", on_event=_printed(lines), jobs=1)
    assert all("finished earlier" in line for line in lines) and len(lines) == 4


@pytest.mark.slow
def test_study_resumes_an_interrupted_run(synth_dir, tmp_path):
    from cnnlab.training.fit import fit

    base = FitConfig(epochs=2, data_dir=str(synth_dir), logdir=str(tmp_path / "tb"), progress=False, lr=1e-3)
    first = fit(FitConfig(**(vars(base) | {"frac": 0.3})))
    # simulate a run killed after its first epoch: mark it running with one epoch recorded
    import json

    info = json.loads((first.run_dir / "run.json").read_text())
    assert info["status"] == "finished"
    info["status"] = "interrupted"
    (first.run_dir / "run.json").write_text(json.dumps(info))
    lines: list[str] = []
    run_study(base, [0.3], [0.0], out=tmp_path / "s", on_event=_printed(lines), jobs=1)
    assert "resuming" in lines[0]


def test_study_bad_values_exit_2(in_tmp):
    for args, message in [(["--fracs", "0.2,x"], "--fracs '0.2,x'"), (["--fracs", "2"], "--frac 2.0"),
                          (["--seeds", "0"], "--seeds 0"), (["--dropouts", "1"], "--dropout 1.0")]:  # fmt: skip
        result = runner.invoke(app, ["study", *args])
        assert result.exit_code == 2, result.output
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def _base(synth_dir, tmp_path):
    return FitConfig(epochs=2, data_dir=str(synth_dir), logdir=str(tmp_path / "tb"), progress=False, lr=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("crash_epoch", [1, 2])
def test_a_failed_run_is_trained_again_by_the_next_study(synth_dir, tmp_path, monkeypatch, crash_epoch):
    import json

    from cnnlab.model.lit import FashionClassifier

    step = FashionClassifier.training_step

    def crashes(self, batch, batch_idx):
        if self.current_epoch + 1 == crash_epoch:
            raise RuntimeError("the machine ran out of memory (simulated)")
        return step(self, batch, batch_idx)

    monkeypatch.setattr(FashionClassifier, "training_step", crashes)
    with pytest.raises(RuntimeError):
        run_study(_base(synth_dir, tmp_path), [0.3], [0.0], out=tmp_path / "s", jobs=1)
    monkeypatch.setattr(FashionClassifier, "training_step", step)
    lines: list[str] = []
    result = run_study(_base(synth_dir, tmp_path), [0.3], [0.0], out=tmp_path / "s", on_event=_printed(lines), jobs=1)
    assert ("resuming" if crash_epoch == 2 else "training") in lines[0]
    (row,) = result.comparison.rows
    assert row["epochs"] == 2
    info = json.loads((Path(row["run_dir"]) / "run.json").read_text())
    assert info["status"] == "finished" and info["epochs_completed"] == 2


@pytest.mark.slow
def test_a_diverged_run_is_a_result_the_study_keeps(synth_dir, tmp_path, monkeypatch):
    from cnnlab.model.lit import FashionClassifier

    step = FashionClassifier.model_step

    def diverges_with_dropout(self, batch):
        loss, correct = step(self, batch)
        return (loss * float("nan") if self.hparams.dropout and self.current_epoch == 1 else loss), correct

    monkeypatch.setattr(FashionClassifier, "model_step", diverges_with_dropout)
    lines: list[str] = []
    result = run_study(
        _base(synth_dir, tmp_path), [0.3], [0.0, 0.5], out=tmp_path / "s", on_event=_printed(lines), jobs=1
    )
    assert any("non-finite" in line and "epoch 2" in line for line in lines)
    assert [r["epochs"] for r in result.comparison.rows] == [2, 1]  # the diverged run shows its one good epoch

    def no_training(cfg, resume_dir=None):
        raise AssertionError(f"trained {cfg.run_name} again")

    monkeypatch.setattr(study_mod, "fit", no_training)
    lines.clear()
    run_study(_base(synth_dir, tmp_path), [0.3], [0.0, 0.5], out=tmp_path / "s", on_event=_printed(lines), jobs=1)
    assert "finished earlier" in lines[0] and "stopped on a non-finite loss earlier" in lines[1]


@pytest.mark.slow
def test_shards_train_each_run_once_and_collect_compares_them(synth_dir, tmp_path, monkeypatch):
    trained: list[str] = []
    real_fit = study_mod.fit

    def counting_fit(cfg, resume_dir=None):
        trained.append(cfg.run_name)
        return real_fit(cfg, resume_dir)

    monkeypatch.setattr(study_mod, "fit", counting_fit)
    base = FitConfig(epochs=1, data_dir=str(synth_dir), logdir=str(tmp_path / "tb"), progress=False, lr=1e-3)
    grid = ([0.3, 0.6], [0.0, 0.5])
    assert run_study(base, *grid, out=tmp_path / "s", shard=(1, 2), jobs=1).comparison is None
    assert trained == ["frac0.3_drop0.0_e1", "frac0.6_drop0.0_e1"]  # runs 1 and 3 of the grid
    with pytest.raises(CnnlabError, match=r"--collect: 2 of 4 runs are not finished: frac0.3_drop0.5_e1, frac0.6"):
        run_study(base, *grid, out=tmp_path / "s", collect=True, jobs=1)
    run_study(base, *grid, out=tmp_path / "s", shard=(2, 2), jobs=1)
    run_study(base, *grid, out=tmp_path / "s", shard=(1, 2), jobs=1)  # a repeat trains nothing
    assert sorted(trained) == sorted(c.run_name for c in study_grid(base, *grid, 1))  # each exactly once
    result = run_study(base, *grid, out=tmp_path / "s", collect=True, jobs=1)
    assert len(result.comparison.rows) == 4 and (tmp_path / "s" / "README.md").is_file()


def test_bad_shards_exit_2(in_tmp):
    for args, message in [(["--shard", "3/2"], "--shard '3/2'"), (["--shard", "x"], "--shard 'x'"),
                          (["--shard", "1/2", "--collect"], "--shard and --collect")]:  # fmt: skip
        result = runner.invoke(app, ["study", *args])
        assert result.exit_code == 2 and message in result.stderr, result.output


def test_ctrl_c_in_a_study_says_how_to_resume_it(synth_dir, in_tmp, monkeypatch):
    from cnnlab.errors import TrainingInterrupted

    def interrupted(cfg, resume_dir=None):
        raise TrainingInterrupted

    monkeypatch.setattr(study_mod, "fit", interrupted)
    result = runner.invoke(app, ["study", "--epochs", "1", "--fracs", "0.3", "--dropouts", "0",
                                 "--data-dir", str(synth_dir)])  # fmt: skip
    assert result.exit_code == 130
    assert result.stderr.strip() == (
        "error: interrupted; every run keeps its last finished epoch: rerun the same study command to resume"
    )
