import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from typer.testing import CliRunner

from cnnlab import atomic
from cnnlab.cli import app
from cnnlab.deploy import export
from cnnlab.deploy.evaluation import evaluate, ort_logits, ort_session, torch_logits
from cnnlab.deploy.export import export_onnx
from cnnlab.errors import CnnlabError
from cnnlab.model.checkpoints import load_network

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(trained):
    return trained.run_dir


@pytest.fixture(scope="module")
def exported(run_dir, synth_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "model.onnx"
    return export_onnx(run_dir, out, data_dir=str(synth_dir))


def test_export_is_valid_self_contained_and_eval_mode(exported):
    model = onnx.load(str(exported.output))
    onnx.checker.check_model(model, full_check=True)
    assert [f.name for f in exported.output.parent.iterdir()] == ["model.onnx"]  # no external-data side file
    assert "Dropout" not in {n.op_type for n in model.graph.node}
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "image" and out.name == "logits"
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 28, 28]


def test_metadata(exported, run_dir):
    meta = {p.key: p.value for p in onnx.load(str(exported.output)).metadata_props}
    assert json.loads(meta["class_names"])[9] == "Ankle boot"
    assert "/ 255" in meta["input_scaling"]
    assert json.loads(meta["hparams"])["dropout"] == 0.5
    assert meta["source_checkpoint"].endswith("best.ckpt")
    assert meta["train_indices_sha256"] == json.loads((run_dir / "run.json").read_text())["train_indices_sha256"]


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_onnxruntime_matches_torch_for_any_batch_size(exported, run_dir, batch):
    images = torch.randint(0, 256, (batch, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    got = ort_logits(ort_session(exported.output), images)
    want = torch_logits(load_network(run_dir).net, images)
    assert got.shape == (batch, 10)
    assert np.abs(got - want).max() <= 1e-4
    assert exported.max_abs_diff <= 1e-4 and exported.parity_images == "holdout"


def test_failed_parity_writes_nothing(run_dir, tmp_path, synth_dir, monkeypatch):
    monkeypatch.setattr(export, "torch_logits", lambda net, images: torch_logits(net, images) + 1.0)
    with pytest.raises(CnnlabError, match="export check failed.*nothing was written"):
        export_onnx(run_dir, tmp_path / "m.onnx", data_dir=str(synth_dir))
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_keeps_the_earlier_file(run_dir, tmp_path, synth_dir, monkeypatch, exported):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"earlier good file")

    def dies_midway(self, data):
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.Path, "write_bytes", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        export_onnx(run_dir, target, data_dir=str(synth_dir))
    assert target.read_bytes() == b"earlier good file"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary left behind


def test_onnx_and_checkpoint_evaluate_the_same(exported, run_dir, synth_dir):
    a, pa = evaluate(exported.output, data_dir=str(synth_dir))
    b, pb = evaluate(run_dir, data_dir=str(synth_dir))
    assert (a.backend, b.backend) == ("onnxruntime", "pytorch")
    assert a.accuracy == b.accuracy and a.confusion_matrix == b.confusion_matrix and (pa == pb).all()
    assert a.images == 100 and sum(map(sum, a.confusion_matrix)) == 100
    assert a.accuracy == pytest.approx(np.trace(np.array(a.confusion_matrix)) / 100)


def test_evaluate_json_and_compare(exported, run_dir, synth_dir, tmp_path):
    args = ["--data-dir", str(synth_dir), "--split", "official"]
    result = runner.invoke(app, ["evaluate", str(exported.output), "--json", *args])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for key in ("model", "split", "images", "accuracy", "per_class_accuracy", "confusion_matrix", "seconds",
                "images_per_second"):  # fmt: skip
        assert key in report
    assert report["split"] == "official" and len(report["per_class_accuracy"]) == 10
    result = runner.invoke(app, ["evaluate", str(exported.output), "--compare", str(run_dir), "--out",
                                 str(tmp_path / "ev"), *args])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "predictions agree on 100.00%" in result.output
    assert len(list((tmp_path / "ev").glob("confusion_*.png"))) == 2


def _onnx_with_input(path, shape):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, ["missing.onnx"], "missing.onnx: no such file"),
        (lambda p: (p / "junk.onnx").write_bytes(b"\x08\x01garbage" * 10), ["junk.onnx"], "onnxruntime cannot load"),
        (lambda p: _onnx_with_input(str(p / "rgb.onnx"), [1, 3, 224, 224]), ["rgb.onnx"], "expected one float input"),
        (lambda p: (p / "a.ckpt").write_text("not a checkpoint"), ["a.ckpt"], "not a PyTorch checkpoint"),
        (None, ["nosuchrun"], "not a run folder"),
        (None, ["x.onnx", "--split", "train"], "--split 'train': unknown"),
        (None, ["x.onnx", "--provider", "tpu"], "--provider 'tpu': unknown"),
    ],
)
def test_evaluate_bad_inputs_exit_2(setup, args, message, in_tmp, synth_dir):
    if setup:
        setup(in_tmp)
    result = runner.invoke(app, ["evaluate", *args, "--data-dir", str(synth_dir)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_export_bad_inputs_exit_2(in_tmp, run_dir):
    for args, message in [(["nothing"], "not a run folder"), ([str(run_dir), "--quantize", "int4"], "--quantize"),
                          ([str(run_dir), "--opset", "5"], "--opset 5")]:  # fmt: skip
        result = runner.invoke(app, ["export", *args])
        assert result.exit_code == 2 and message in result.stderr, result.output


@pytest.mark.slow
def test_int8_quantization(run_dir, synth_dir, tmp_path):
    result = export_onnx(run_dir, tmp_path / "m.onnx", quantize="int8", data_dir=str(synth_dir))
    assert result.int8_output == tmp_path / "m.int8.onnx" and result.int8_output.is_file()
    q = onnx.load(str(result.int8_output))
    assert "QuantizeLinear" in {n.op_type for n in q.graph.node}
    assert result.int8_agreement is not None and result.int8_agreement > 0.8
    report, _ = evaluate(result.int8_output, data_dir=str(synth_dir))
    assert report.images == 100


def test_a_named_data_folder_never_falls_back_to_random_images(run_dir, in_tmp):
    result = runner.invoke(app, ["export", str(run_dir), "--data-dir", "/nonexistent"])
    assert result.exit_code == 2, result.output
    assert "--data-dir /nonexistent: missing" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (in_tmp / "exported").exists()


def test_without_the_dataset_the_fallback_is_said_and_recorded(run_dir, in_tmp, monkeypatch):
    from cnnlab.data import module as data

    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setattr(data, "SYSTEM_DIR", in_tmp / "no_system_copy")  # CACHE_DIR is data/ in the empty cwd
    result = runner.invoke(app, ["export", str(run_dir), "--output", "m.onnx"])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("warning: Fashion-MNIST not found") and "random" in result.stderr
    meta = {p.key: p.value for p in onnx.load(str(in_tmp / "m.onnx")).metadata_props}
    assert meta["parity_images"] == "random"


def test_checkpoint_choice_for_export_and_evaluate(run_dir, synth_dir, tmp_path):
    for which in ("best", "last"):
        result = export_onnx(run_dir, tmp_path / f"{which}.onnx", data_dir=str(synth_dir), checkpoint=which)
        meta = {p.key: p.value for p in onnx.load(str(result.output)).metadata_props}
        assert meta["source_checkpoint"].endswith(f"{which}.ckpt") and meta["parity_images"] == "holdout"
        report, _ = evaluate(run_dir, data_dir=str(synth_dir), checkpoint=which)
        assert report.checkpoint is not None and report.checkpoint.endswith(f"{which}.ckpt")
    result = runner.invoke(app, ["evaluate", str(run_dir), "--checkpoint", "newest", "--data-dir", str(synth_dir)])
    assert result.exit_code == 2 and "--checkpoint 'newest': unknown; choose one of best, last" in result.stderr
    help_text = " ".join(runner.invoke(app, ["export", "--help"]).output.replace("│", " ").split())
    assert "best (the epoch of lowest validation loss) or last" in help_text and "[default: best]" in help_text
