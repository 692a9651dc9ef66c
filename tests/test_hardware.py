"""--precision auto and the slow-bf16 warning follow the CPU's flags; --threads sets the threads a run records."""

import json
import warnings

import pytest
import torch
from typer.testing import CliRunner

from cnnlab import hardware
from cnnlab.cli import app
from cnnlab.hardware import SlowPrecisionWarning, choose_precision

runner = CliRunner()


@pytest.fixture
def cpu(monkeypatch):
    """Pretend to be a CPU with the given flags (and no GPU)."""

    def with_flags(*flags):
        monkeypatch.setattr(hardware, "cpu_flags", lambda: set(flags))
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    return with_flags


@pytest.mark.parametrize(("flags", "used"), [(("avx2",), "32-true"), (("avx2", "avx512_bf16"), "bf16-mixed"),
                                             (("amx_bf16",), "bf16-mixed")])  # fmt: skip
def test_auto_picks_bf16_only_where_it_is_native(cpu, flags, used):
    cpu(*flags)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto never warns
        chosen = choose_precision("auto", "auto")
    assert chosen.used == used and chosen.requested == "auto" and chosen.why


def test_bf16_on_a_cpu_without_it_warns_and_goes_on(cpu):
    cpu("avx2", "fma")
    with pytest.warns(SlowPrecisionWarning, match="about 11x slower than 32-true"):
        assert choose_precision("bf16-mixed", "cpu").used == "bf16-mixed"
    cpu("avx512_bf16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert choose_precision("bf16-mixed", "cpu").used == "bf16-mixed"
        assert choose_precision("32-true", "cpu").used == "32-true"


@pytest.fixture
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_fit_records_the_precision_choice_and_the_threads(cpu, synth_dir, in_tmp, keep_threads):
    cpu("avx2")
    args = ["fit", "--data-dir", str(synth_dir), "--frac", "0.5", "--epochs", "1", "--no-progress"]
    result = runner.invoke(app, [*args, "--precision", "auto", "--threads", "1", "--name", "auto"])
    assert result.exit_code == 0, result.output
    info = json.loads((in_tmp / "tb_logs" / "auto" / "version_0" / "run.json").read_text())
    assert info["precision"]["used"] == "32-true" and "without avx512_bf16 or AMX" in info["precision"]["why"]
    assert info["config"]["precision"] == "auto" and info["hardware"]["torch_threads"] == 1
    result = runner.invoke(app, [*args, "--precision", "bf16-mixed", "--name", "slow"])
    assert result.exit_code == 0, result.output
    warned = [ln for ln in result.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warned) == 1 and "--precision bf16-mixed on a CPU without avx512_bf16 or AMX" in warned[0]


def test_bad_thread_counts_are_one_line(in_tmp):
    for args in (["fit", "--threads", "0"], ["evaluate", "x.onnx", "--threads", "0"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "--threads 0: must be at least 1" in result.stderr, result.output
