import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cnnlab.cli import app

runner = CliRunner()


def test_module_entry_point_help():
    proc = subprocess.run([sys.executable, "-m", "cnnlab", "--help"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "fit" in proc.stdout


_NO_TORCH = """
import sys
from cnnlab.cli import app
for args in {argv!r}:
    try:
        app(args, prog_name="cnnlab")
    except SystemExit as e:
        print("exit", e.code)
print("loaded:", sorted(m for m in ("torch", "lightning") if m in sys.modules))
"""


def test_help_and_option_errors_never_load_torch():
    # A structural check in a fresh interpreter: --help, every command's --help and option errors answer before
    # torch or Lightning is imported (that import alone takes seconds).
    commands = ("fit", "export", "evaluate", "compare", "study", "report", "filters")
    argv = [["--help"], *([c, "--help"] for c in commands), ["fit", "--frac", "abc"], ["fit", "--seed", "-1"],
            ["study", "--jobs", "0"], ["study", "--fracs", "x"], ["study", "--seeds", "0"]]  # fmt: skip
    code = _NO_TORCH.format(argv=argv)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line for line in lines if line.startswith("exit")] == ["exit 0"] * 8 + ["exit 2"] * 5, proc.stdout
    assert lines[-1] == "loaded: []", proc.stdout


def test_fit_help_lists_the_options():
    result = runner.invoke(app, ["fit", "--help"])
    assert result.exit_code == 0, result.output
    for opt in ("--frac", "--dropout", "--epochs", "--resume", "--eval-train", "--devices", "--precision"):
        assert opt in result.output


def test_fit_through_the_cli(synth_dir, in_tmp):
    result = runner.invoke(
        app, ["fit", "--data-dir", str(synth_dir), "--frac", "0.5", "--epochs", "1", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "test: holdout" in result.output and "training time per epoch" in result.output
    assert (in_tmp / "tb_logs" / "frac0.5_drop0.0_e1" / "version_0" / "run.json").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--frac", "0"], "--frac 0.0: must be in (0, 1]"),
        (["--frac", "1.5"], "--frac 1.5: must be in (0, 1]"),
        (["--dropout", "1"], "--dropout 1.0: must be in [0, 1)"),
        (["--epochs", "0"], "--epochs 0: must be at least 1"),
        (["--optimizer", "adagrad"], "--optimizer 'adagrad': unknown; choose one of rmsprop, rmsprop-tf, adam, sgd"),
        (["--data-dir", "/nonexistent"], "--data-dir /nonexistent: missing"),
        (["--resume", "--name", "nothing"], "--resume: no run named 'nothing'"),
        (["--accelerator", "tpu9"], "hardware options:"),
    ],
)
def test_bad_values_exit_2_with_one_line(args, message, in_tmp):
    result = runner.invoke(app, ["fit", "--no-progress", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_corrupt_data_exits_2(synth_dir, tmp_path, in_tmp):
    import shutil

    shutil.copytree(synth_dir, tmp_path / "d")
    (tmp_path / "d" / "train-images-idx3-ubyte.gz").write_bytes(b"garbage")
    result = runner.invoke(app, ["fit", "--no-progress", "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 2
    assert "train-images-idx3-ubyte.gz: not an unsigned-byte IDX file" in result.stderr


def test_fit_options_are_written_once_and_study_shares_their_help():
    """study offers every fit option that makes sense for a grid, with fit's own help (FitConfig's metadata)."""
    import typer.core
    import typer.main

    from cnnlab.runs import EXPERIMENT_SETTINGS
    from cnnlab.training.config import FitConfig

    assert FitConfig.kind("setting") == EXPERIMENT_SETTINGS
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]

    def helps(name):
        return {p.name: p.help for p in commands[name].params if isinstance(p, typer.core.TyperOption)}

    fit, study = helps("fit"), helps("study")
    shared = set(fit) & set(study)
    assert set(fit) - shared == {"frac", "dropout", "name", "resume"}  # the grid's own --fracs, --dropouts...
    assert {"devices", "strategy", "channels_last", "init", "val_split", "precision", "threads"} <= shared
    assert all(fit[k] == study[k] and fit[k] for k in shared)


def test_only_the_cli_prints():
    """No module outside cnnlab/cli imports typer or rich, or calls print."""
    import ast
    from pathlib import Path

    import cnnlab

    root = Path(cnnlab.__file__).parent
    for path in root.rglob("*.py"):
        if "cli" in path.relative_to(root).parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                names = []
            assert not any(n.split(".")[0] in ("typer", "rich") for n in names), path
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "print", path
