import pytest
from typer.testing import CliRunner

from cnnlab import study as study_mod
from cnnlab.cli import app
from cnnlab.study import run_study
from cnnlab.training import FitConfig

runner = CliRunner()


@pytest.mark.slow
def test_study_runs_the_grid_and_a_rerun_trains_nothing(synth_dir, tmp_path, monkeypatch):
    base = FitConfig(epochs=2, data_dir=str(synth_dir), logdir=str(tmp_path / "tb"), progress=False, lr=1e-3)
    lines: list[str] = []
    result = run_study(base, [0.3, 0.6], [0.0, 0.5], out=tmp_path / "study", log=lines.append)
    assert len(result.rows) == 4 and lines[0].startswith("[1/4] frac0.3_drop0.0: training")
    assert "ETA" in lines[1]
    readme = (tmp_path / "study" / "README.md").read_text()
    assert readme.count("\n| frac") == 4 and "![curves.png](curves.png)" in readme

    def no_training(cfg):
        raise AssertionError(f"trained {cfg.run_name} again")

    monkeypatch.setattr(study_mod, "fit", no_training)
    lines.clear()
    run_study(base, [0.3, 0.6], [0.0, 0.5], out=tmp_path / "study", log=lines.append)
    assert all("finished earlier" in line for line in lines) and len(lines) == 4


@pytest.mark.slow
def test_study_resumes_an_interrupted_run(synth_dir, tmp_path):
    from cnnlab.training import fit

    base = FitConfig(epochs=2, data_dir=str(synth_dir), logdir=str(tmp_path / "tb"), progress=False, lr=1e-3)
    first = fit(FitConfig(**(vars(base) | {"frac": 0.3})))
    # simulate a run killed after its first epoch: mark it running with one epoch recorded
    import json

    info = json.loads((first.run_dir / "run.json").read_text())
    assert info["status"] == "finished"
    info["status"] = "interrupted"
    (first.run_dir / "run.json").write_text(json.dumps(info))
    lines: list[str] = []
    run_study(base, [0.3], [0.0], out=tmp_path / "s", log=lines.append)
    assert "resuming" in lines[0]


def test_study_bad_values_exit_2(in_tmp):
    for args, message in [(["--fracs", "0.2,x"], "--fracs '0.2,x'"), (["--fracs", "2"], "--frac 2.0"),
                          (["--seeds", "0"], "--seeds 0"), (["--dropouts", "1"], "--dropout 1.0")]:  # fmt: skip
        result = runner.invoke(app, ["study", *args])
        assert result.exit_code == 2, result.output
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
