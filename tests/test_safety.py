"""Hostile inputs, untrusted pickles, and crashes mid-run: one-line errors, nothing executed, nothing lost."""

import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.data.idx import read_idx_bytes, write_idx
from cnnlab.errors import CnnlabError
from cnnlab.filters import load_image, load_inception, prepare

runner = CliRunner()
PY = [sys.executable, "-m", "cnnlab"]


def _one_line_exit_2(result, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1, line
    for n in needles:
        assert n in line, line


@pytest.fixture(scope="module")
def trained(trained):
    return trained.run_dir


# --- IDX files -----------------------------------------------------------------------------------------------


def test_every_truncation_point_is_a_clear_error(tmp_path):
    write_idx(tmp_path / "x.gz", np.arange(5 * 28 * 28, dtype=np.uint8).reshape(5, 28, 28))
    raw = zlib.decompress((tmp_path / "x.gz").read_bytes(), 31)
    gz = (tmp_path / "x.gz").read_bytes()
    for blob in (raw, gz):
        for cut in range(len(blob)):
            with pytest.raises(CnnlabError, match="^t: "):
                read_idx_bytes(blob[:cut], "t", ndim=3)


def test_random_bytes_are_a_clear_error():
    rng = random.Random(0)
    for _ in range(300):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 200)))
        with pytest.raises(CnnlabError):
            read_idx_bytes(data, "r", ndim=3)


def test_huge_header_is_refused_before_allocation():
    import tracemalloc

    tracemalloc.start()
    with pytest.raises(CnnlabError, match="truncated"):
        read_idx_bytes(struct.pack(">HBB3I", 0, 8, 3, 1_300_000, 28, 28) + b"\0" * 100, "h", ndim=3)  # ~1 GB claimed
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 10_000_000


# --- images --------------------------------------------------------------------------------------------------


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_with_size(w, h):
    """A tiny file whose header claims w x h pixels: what a decompression bomb looks like before decoding."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b"")
    )


def test_decompression_bomb_is_refused(tmp_path):
    (tmp_path / "bomb.png").write_bytes(_png_with_size(40_000, 40_000))
    with pytest.raises(CnnlabError, match="bomb.png: refused: over Pillow's decompression-bomb limit"):
        load_image(tmp_path / "bomb.png")


def test_huge_legal_image_is_resized_not_refused(tmp_path):
    Image.new("RGB", (6000, 4000), (10, 200, 30)).save(tmp_path / "big.jpg", quality=50)
    rgb = load_image(tmp_path / "big.jpg")
    assert max(rgb.shape[:2]) <= 2048
    x, shown = prepare(load_inception("random"), rgb)
    assert x.shape == (1, 3, 299, 299) and shown.shape == (299, 299, 3)


@pytest.mark.parametrize("suffix", ["jpg", "png"])
def test_truncated_images(tmp_path, suffix):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(
        tmp_path / f"a.{suffix}"
    )
    data = (tmp_path / f"a.{suffix}").read_bytes()
    (tmp_path / f"t.{suffix}").write_bytes(data[: len(data) // 2])
    with pytest.raises(CnnlabError, match=f"t.{suffix}: not a readable image"):
        load_image(tmp_path / f"t.{suffix}")


# --- ONNX models and checkpoints -------------------------------------------------------------------------------


def _model(path, opset=17, external=False):
    x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 1, 28, 28])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])
    w = helper.make_tensor("w", TensorProto.FLOAT, [784, 10], np.zeros(7840, np.float32).tobytes(), raw=True)
    shape = helper.make_tensor("s", TensorProto.INT64, [2], np.array([-1, 784], np.int64).tobytes(), raw=True)
    nodes = [helper.make_node("Reshape", ["pixels", "s"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w, shape]),
                              opset_imports=[helper.make_opsetid("", opset)])  # fmt: skip
    onnx.save(model, str(path), save_as_external_data=external, all_tensors_to_one_file=True, location="w.data",
              size_threshold=0)  # fmt: skip


def test_other_input_name_with_the_right_shape_is_fine(tmp_path, synth_dir):
    _model(tmp_path / "named.onnx")
    result = runner.invoke(app, ["evaluate", str(tmp_path / "named.onnx"), "--data-dir", str(synth_dir), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["images"] == 100


def test_unsupported_opset(tmp_path, synth_dir):
    _model(tmp_path / "future.onnx", opset=99)
    result = runner.invoke(app, ["evaluate", str(tmp_path / "future.onnx"), "--data-dir", str(synth_dir)])
    _one_line_exit_2(result, "future.onnx: onnxruntime cannot load this model")


def test_missing_external_data(tmp_path, synth_dir):
    _model(tmp_path / "ext.onnx", external=True)
    (tmp_path / "w.data").unlink()
    result = runner.invoke(app, ["evaluate", str(tmp_path / "ext.onnx"), "--data-dir", str(synth_dir)])
    _one_line_exit_2(result, "ext.onnx: onnxruntime cannot load this model")


def test_truncated_and_foreign_checkpoints(tmp_path, trained, synth_dir):
    data = (trained / "checkpoints" / "last.ckpt").read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 3])
    _one_line_exit_2(runner.invoke(app, ["evaluate", str(tmp_path / "cut.ckpt"), "--data-dir", str(synth_dir)]),
                     "cut.ckpt: not a PyTorch checkpoint (truncated")  # fmt: skip
    torch.save({"state_dict": {"net.layers.0.weight": torch.zeros(5, 5)}, "hyper_parameters": {}}, tmp_path / "o.ckpt")
    _one_line_exit_2(runner.invoke(app, ["evaluate", str(tmp_path / "o.ckpt"), "--data-dir", str(synth_dir)]),
                     "o.ckpt: a checkpoint of another model")  # fmt: skip
    _one_line_exit_2(runner.invoke(app, ["export", str(tmp_path / "o.ckpt")]), "a checkpoint of another model")


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_not_run(tmp_path, trained, synth_dir, in_tmp):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}, "payload": _Evil(marker)}, evil)
    for args in (["evaluate", str(evil), "--data-dir", str(synth_dir)], ["export", str(evil)],
                 ["filters", "--weights", str(evil)]):  # fmt: skip
        _one_line_exit_2(runner.invoke(app, args), "refused to load", "posix.system")
    # --resume reads last.ckpt: a planted one is refused too
    run = tmp_path / "tb" / "r" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"config": {"data_dir": str(synth_dir)}}))
    torch.save({"payload": _Evil(marker)}, run / "checkpoints" / "last.ckpt")
    result = runner.invoke(app, ["fit", "--resume", "--name", "r", "--logdir", str(tmp_path / "tb"),
                                 "--data-dir", str(synth_dir)])  # fmt: skip
    _one_line_exit_2(result, "refused to load")
    assert not marker.exists()


# --- options -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "ok"),
    [(["--frac", "1.0"], True), (["--frac", "1.0001"], False), (["--dropout", "0.999"], True),
     (["--dropout", "1.0"], False), (["--dropout", "-0.001"], False), (["--epochs", "-1"], False),
     (["--batch-size", "1"], True), (["--batch-size", "0"], False), (["--lr", "1e-12"], True), (["--lr", "0"], False),
     (["--lr", "-1"], False), (["--lr", "inf"], False), (["--val-split", "0.999"], False), (["--name", ""], False),
     (["--data-dir", ""], False), (["--num-nodes", "0"], False), (["--precision", "64-bogus"], False)],
)  # fmt: skip
def test_numeric_bounds_and_empty_strings(args, ok, synth_dir, in_tmp):
    if ok:  # the boundary value is accepted by the settings check (a full fit adds nothing to that)
        from cnnlab.training.config import FitConfig

        key = args[0].removeprefix("--").replace("-", "_")
        FitConfig(**{key: type(getattr(FitConfig, key))(args[1])}).validate()
        return
    base = ["fit", "--epochs", "1", "--no-progress", "--frac", "0.5"]
    if "--data-dir" not in args:
        base += ["--data-dir", str(synth_dir)]
    _one_line_exit_2(runner.invoke(app, [*base, *args]))
    assert not (in_tmp / "tb_logs").exists() or not list((in_tmp / "tb_logs").rglob("version_*"))


@pytest.mark.parametrize("seed, ok", [("-1", False), ("0", True), ("4294967295", True), ("4294967296", False)])
def test_the_seed_range_is_checked_before_anything_starts(seed, ok, synth_dir, in_tmp):
    if ok:
        from cnnlab.training.config import FitConfig

        FitConfig(seed=int(seed)).validate()
        return
    _one_line_exit_2(runner.invoke(app, ["fit", "--seed", seed, "--data-dir", str(synth_dir)]), f"--seed {seed}")
    assert not (in_tmp / "tb_logs").exists()


@pytest.mark.parametrize(
    ("record", "field"),
    [({"name": "x", "status": "finished"}, "'config' is missing"),
     ({"config": {"frac": 0.2}}, "'config.dropout' is missing"),
     ({"config": {"frac": "0.2"}}, "'config.frac' is \"0.2\", not a number"),
     ({"config": "frac=0.2"}, "'config'"),
     ([1, 2], "not a JSON object")],
)  # fmt: skip
def test_a_foreign_or_hand_edited_run_record_is_one_line_naming_the_field(record, field, tmp_path, in_tmp):
    from cnnlab.runs import write_history

    full = {"frac": 0.2, "dropout": 0.0, "epochs": 1, "batch_size": 32, "lr": 1e-4, "optimizer": "rmsprop",
            "init": "keras", "val_split": 0.1, "seed": 42}  # fmt: skip
    if isinstance(record, dict) and isinstance(record.get("config"), dict) and len(record["config"]) == 1:
        record = {"config": full | record["config"]} if "dropout" not in field else record
    run = tmp_path / "r" / "version_0"
    run.mkdir(parents=True)
    write_history(run, [{"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0, "val_acc": 0.5}])
    (run / "run.json").write_text(json.dumps(record))
    for command in (["report", str(run), "--out", "rep"], ["compare", str(run), str(run)]):
        _one_line_exit_2(runner.invoke(app, command), "run.json", field)


@pytest.mark.parametrize(
    ("make", "args", "needle"),
    [
        (lambda p: (p / "afile").write_text("x"), ["--logdir", "afile"], "afile"),
        (None, ["--accelerator", "cpu", "--devices", "0"], "hardware options: `Trainer(devices=0)`"),
        (None, ["--strategy", "no-such-strategy"], "hardware options:"),
        (None, ["--precision", "64-bogus"], "hardware options:"),
        (None, ["--accelerator", "cpu", "--num-nodes", "0"], "--num-nodes 0"),
    ],
)
def test_setup_failures_are_one_line_and_leave_no_run_folder(make, args, needle, synth_dir, in_tmp):
    if make:
        make(in_tmp)
    result = runner.invoke(app, ["fit", "--no-progress", "--data-dir", str(synth_dir), "--frac", "0.5", *args])
    _one_line_exit_2(result, needle)
    assert not list(in_tmp.rglob("version_*"))


def test_output_paths_the_system_refuses_are_one_line(trained, synth_dir, in_tmp):
    (in_tmp / "afile").write_text("x")
    for args in (["compare", str(trained), str(trained), "--out", "afile/sub"],
                 ["evaluate", str(trained), "--data-dir", str(synth_dir), "--out", "afile/sub"],
                 ["filters", "--weights", "random", "--probe", "checker", "--out", "afile/sub"]):  # fmt: skip
        _one_line_exit_2(runner.invoke(app, args), "afile")


def test_paths_with_spaces_and_non_ascii(synth_dir, tmp_path, in_tmp):
    import shutil

    data = tmp_path / "données fashion"
    shutil.copytree(synth_dir, data)
    logdir = tmp_path / "my runs ü"
    result = runner.invoke(app, ["fit", "--data-dir", str(data), "--logdir", str(logdir), "--frac", "0.5",
                                 "--epochs", "1", "--no-progress", "--name", "ü-run"])  # fmt: skip
    assert result.exit_code == 0, result.output
    run = logdir / "ü-run" / "version_0"
    result = runner.invoke(app, ["export", str(run), "--output", str(tmp_path / "out dir é" / "m.onnx"),
                                 "--data-dir", str(data)])  # fmt: skip
    assert result.exit_code == 0, result.output


# --- crashes and interruptions -------------------------------------------------------------------------------


def _check_readable(logdir):
    for run_json in logdir.rglob("run.json"):
        json.loads(run_json.read_text())
        if (run_json.parent / "history.csv").exists():
            from cnnlab.runs import read_history

            read_history(run_json.parent)
    for ckpt in logdir.rglob("*.ckpt"):
        torch.load(ckpt, weights_only=True)
    assert not list(logdir.rglob("*.tmp")) or all(p.name.startswith(".") for p in logdir.rglob("*.tmp"))


def _epochs_committed(logdir, name):
    from cnnlab.runs import read_history

    histories = [read_history(run) for run in logdir.glob(f"{name}/version_*") if (run / "history.csv").exists()]
    return max((len(h) for h in histories), default=0)


@pytest.mark.slow
def test_sigkill_at_random_moments_never_corrupts_and_resume_continues(synth_dir, tmp_path, wait_for):
    # Kill moments are tied to observable progress (a new epoch committed), never to the machine's speed: after each
    # commit a random pause of up to half a second lands the kill anywhere in the next epoch, its writes included.
    from cnnlab.runs import read_history

    logdir = tmp_path / "tb"
    args = [*PY, "fit", "--data-dir", str(synth_dir), "--logdir", str(logdir), "--frac", "0.5", "--epochs", "30",
            "--name", "k", "--no-progress", "--lr", "1e-3"]  # fmt: skip
    rng = random.Random(7)
    for _ in range(4):
        resume = any(logdir.glob("k/version_*/checkpoints/last.ckpt"))
        before = _epochs_committed(logdir, "k")
        proc = subprocess.Popen(args + (["--resume"] if resume else []), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        wait_for(lambda b=before, p=proc: _epochs_committed(logdir, "k") > b or p.poll() is not None, timeout=600)
        time.sleep(rng.uniform(0.0, 0.5))
        proc.kill()
        proc.wait()
        _check_readable(logdir)
    result = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    run = sorted(logdir.glob("k/version_*"))[-1]
    epochs = [r["epoch"] for r in read_history(run)]
    assert epochs == list(range(1, 31))  # no epoch lost or repeated
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    assert not list(run.rglob("*.tmp"))  # what the kills left was cleaned up by the run that finished


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_with_the_last_checkpoint(synth_dir, tmp_path, wait_for):
    logdir = tmp_path / "tb"
    run = logdir / "c" / "version_0"
    args = [*PY, "fit", "--data-dir", str(synth_dir), "--logdir", str(logdir), "--frac", "0.5", "--epochs", "500",
            "--name", "c", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (run / "history.csv").exists() and len((run / "history.csv").read_text().splitlines()) >= 3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1].startswith("error: interrupted") and "Traceback" not in err
    info = json.loads((run / "run.json").read_text())
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert info["status"] == "interrupted" and ckpt["epoch"] + 1 == info["epochs_completed"]


@pytest.mark.slow
def test_two_runs_started_at_once_get_distinct_folders(synth_dir, tmp_path):
    args = [*PY, "fit", "--data-dir", str(synth_dir), "--logdir", str(tmp_path / "tb"), "--frac", "0.5",
            "--epochs", "1", "--name", "same", "--no-progress"]  # fmt: skip
    procs = [subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=900) == 0, p.stderr.read()
    runs = sorted(p.name for p in (tmp_path / "tb" / "same").iterdir())
    assert runs == ["version_0", "version_1"]
    for r in runs:
        assert json.loads((tmp_path / "tb" / "same" / r / "run.json").read_text())["status"] == "finished"


@pytest.mark.slow
def test_export_killed_mid_write_leaves_the_earlier_file(trained, tmp_path, synth_dir):
    target = tmp_path / "m.onnx"
    ok = runner.invoke(app, ["export", str(trained), "--output", str(target), "--data-dir", str(synth_dir)])
    assert ok.exit_code == 0, ok.output
    good = target.read_bytes()
    rng = random.Random(3)
    for _ in range(3):
        proc = subprocess.Popen([*PY, "export", str(trained), "--output", str(target), "--data-dir", str(synth_dir)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(rng.uniform(2.0, 6.0))
        proc.kill()
        proc.wait()
        onnx.checker.check_model(onnx.load(str(target)))  # the old file or a complete new one, never a partial
        assert [p.name for p in tmp_path.iterdir() if p.suffix == ".onnx"] == ["m.onnx"]
    assert len(target.read_bytes()) == len(good)


@pytest.mark.slow
def test_study_killed_mid_grid_finishes_without_redoing(synth_dir, tmp_path, wait_for):
    args = [*PY, "study", "--epochs", "2", "--fracs", "0.3,0.6", "--dropouts", "0", "--data-dir", str(synth_dir),
            "--logdir", str(tmp_path / "tb"), "--out", str(tmp_path / "s"), "--no-progress"]  # fmt: skip
    first = tmp_path / "tb" / "frac0.3_drop0.0_e2" / "version_0" / "run.json"
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: first.exists() and json.loads(first.read_text()).get("status") == "finished")
    proc.kill()
    proc.wait()
    result = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "[1/2] frac0.3_drop0.0_e2: finished earlier" in result.stdout
    assert (tmp_path / "s" / "README.md").read_text().count("\n| frac") == 2
    assert not (tmp_path / "tb" / "frac0.3_drop0.0_e2" / "version_1").exists()
