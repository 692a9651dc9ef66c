"""What TensorBoard shows, read with TensorBoard's own readers: the HParams plugin's handlers (as its tab asks
them), the event multiplexer for scalars, images and text."""

import json

import pytest
from tensorboard import context
from tensorboard.backend.event_processing import data_provider, event_multiplexer, plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2, backend_context, get_experiment, list_session_groups
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.tblog import event_files
from cnnlab.training.config import FitConfig
from cnnlab.training.fit import fit


def _multiplexer(logdir, plugin=False):
    """Every run under logdir; the plugin flavour is what TensorBoard's server (and so the HParams tab) reads."""
    kind = plugin_event_multiplexer if plugin else event_multiplexer
    mux = kind.EventMultiplexer(size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    return mux


def hparams_tab(logdir):
    """(columns, sessions) as the HPARAMS tab gets them: hparam and metric names, then per session (a run folder,
    relative to the logdir) its settings, metric values and status."""
    mux = _multiplexer(logdir, plugin=True)
    provider = data_provider.MultiplexerDataProvider(mux, str(logdir))
    backend = backend_context.Context(
        base_plugin.TBContext(logdir=str(logdir), multiplexer=mux, data_provider=provider)
    )
    ctx = context.RequestContext()
    experiment = get_experiment.Handler(ctx, backend, "", api_pb2.GetExperimentRequest()).run()
    every_status = list(api_pb2.Status.values())
    request = api_pb2.ListSessionGroupsRequest(start_index=0, slice_size=1000, allowed_statuses=every_status)
    groups = list_session_groups.Handler(ctx, backend, "", request).run().session_groups
    columns = ([h.name for h in experiment.hparam_infos],
               [(m.name.group, m.name.tag) for m in experiment.metric_infos])  # fmt: skip
    sessions = {}
    for group in groups:
        for session in group.sessions:
            hparams = {k: v.string_value or v.number_value for k, v in group.hparams.items()}
            metrics = {(m.name.group, m.name.tag): m.value for m in session.metric_values}
            sessions[session.name] = {"hparams": hparams, "metrics": metrics, "status": session.status}
    return columns, sessions


def _tags(mux, run):
    return mux.Runs()[run]


def _scalars(mux, run, tag):
    return [(e.step, e.value) for e in mux.Scalars(run, tag)]


def _cfg(synth_dir, tmp_path, **kw):
    base = {"data_dir": str(synth_dir), "logdir": str(tmp_path / "tb"), "frac": 0.5, "epochs": 1, "progress": False,
            "lr": 1e-3}  # fmt: skip
    return FitConfig(**(base | kw))


def test_a_run_is_an_hparams_session_with_its_settings_and_metrics(trained):
    logdir = trained.run_dir.parent.parent
    columns, sessions = hparams_tab(logdir)
    hparam_names, metric_names = columns
    assert set(hparam_names) == {"frac", "dropout", "seed", "epochs", "optimizer", "lr", "batch_size", "init",
                                 "precision"}  # fmt: skip
    assert ("validation", "epoch_loss") in metric_names and ("", "test/best/official/acc") in metric_names
    info = json.loads((trained.run_dir / "run.json").read_text())
    session = sessions[f"{trained.run_dir.parent.name}/version_0"]
    assert session["hparams"] == {"frac": 0.5, "dropout": 0.5, "seed": 42, "epochs": 3, "optimizer": "rmsprop",
                                  "lr": pytest.approx(1e-3), "batch_size": 32, "init": "keras",
                                  "precision": "32-true"}  # fmt: skip
    m = session["metrics"]
    last = trained.history[-1]
    assert m[("validation", "epoch_loss")] == pytest.approx(last["val_loss"])
    assert m[("validation", "epoch_accuracy")] == pytest.approx(last["val_acc"])
    assert m[("train", "epoch_accuracy")] == pytest.approx(last["train_acc"])
    assert m[("", "run/best_val_loss")] == pytest.approx(info["best"]["val_loss"])
    assert m[("", "run/best_epoch")] == info["best"]["epoch"]
    assert m[("", "run/best_val_acc")] == pytest.approx(max(r["val_acc"] for r in trained.history))
    rise = 100 * (last["val_loss"] / info["best"]["val_loss"] - 1)
    assert m[("", "run/val_loss_rise_pct")] == pytest.approx(rise, abs=1e-4)
    assert m[("", "test/best/holdout/acc")] == pytest.approx(info["test"]["best"]["holdout"]["acc"])
    assert m[("", "test/best/official/acc")] == pytest.approx(info["test"]["best"]["official"]["acc"])
    assert session["status"] == api_pb2.Status.Value("STATUS_SUCCESS")


def test_train_and_validation_are_sub_runs_with_shared_tags_keras_style(trained):
    run = trained.run_dir
    mux = _multiplexer(run)
    assert {"train", "validation", "train_eval"} <= set(mux.Runs())
    for sub, column in (("train", "train"), ("validation", "val"), ("train_eval", "train_eval")):
        loss = _scalars(mux, sub, "epoch_loss")
        acc = _scalars(mux, sub, "epoch_accuracy")
        assert [s for s, _ in loss] == [1, 2, 3] and [s for s, _ in acc] == [1, 2, 3], sub  # the epoch is the step
        assert [v for _, v in loss] == pytest.approx([r[f"{column}_loss"] for r in trained.history])
        assert [v for _, v in acc] == pytest.approx([r[f"{column}_acc"] for r in trained.history])
    # the run folder itself: no curves of its own (they are in the sub-runs), the run's figures instead
    root = _tags(mux, ".")
    assert not {"epoch_loss", "epoch_accuracy"} & set(root["scalars"])
    assert {"run/best_val_loss", "run/epoch_seconds", "test/last/holdout/acc"} <= set(root["scalars"])


def test_a_run_has_its_confusion_matrix_filters_and_summary_text(trained):
    from tensorboard.plugins.text import metadata as text_metadata
    from tensorboard.util import tensor_util

    mux = _multiplexer(trained.run_dir)
    images = _tags(mux, ".")["images"]
    assert {"confusion_matrix/holdout", "filters/conv1"} <= set(images)
    for tag in ("confusion_matrix/holdout", "filters/conv1"):
        (event,) = mux.Images(".", tag)
        assert event.step == 3 and event.width > 200 and event.height > 200
        assert event.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"
    text_tag = "summary/text_summary"  # torch's add_text adds "/text_summary"
    assert text_tag in mux.PluginRunToTagToContent(text_metadata.PLUGIN_NAME)["."]
    (event,) = mux.Tensors(".", text_tag)
    text = tensor_util.make_ndarray(event.tensor_proto).item().decode()
    info = json.loads((trained.run_dir / "run.json").read_text())
    assert f"Lowest validation loss at epoch {info['best']['epoch']}" in text
    assert f"{info['test']['best']['holdout']['acc']:.4f}" in text and "| dropout | 0.5 |" in text


def test_a_resumed_run_keeps_one_event_file_per_folder_and_one_session(synth_dir, tmp_path):
    first = fit(_cfg(synth_dir, tmp_path, epochs=1))
    fit(_cfg(synth_dir, tmp_path, epochs=2, resume=True))
    run = first.run_dir
    for folder in (run, run / "train", run / "validation"):
        assert len(event_files(folder)) == 1, folder
    mux = _multiplexer(run)
    assert [s for s, _ in _scalars(mux, "validation", "epoch_loss")] == [1, 2]
    _, sessions = hparams_tab(tmp_path / "tb")
    assert list(sessions) == [f"{run.parent.name}/version_0"]
    assert sessions[f"{run.parent.name}/version_0"]["hparams"]["epochs"] == 2  # updated, not a second entry


@pytest.mark.slow
def test_study_lists_every_run_in_hparams_and_writes_its_figures_and_findings(synth_dir, in_tmp):
    result = CliRunner().invoke(app, ["study", "--epochs", "2", "--fracs", "0.3,0.6", "--data-dir", str(synth_dir),
                                      "--lr", "1e-3", "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    logdir = in_tmp / "tb_logs"
    _, sessions = hparams_tab(logdir)
    assert sorted(sessions) == [f"frac{f}_drop{d}_e2/version_0" for f in (0.3, 0.6) for d in (0.0, 0.5)]
    for name, session in sessions.items():
        assert session["hparams"]["frac"] == float(name[4:7]) and session["hparams"]["epochs"] == 2
        assert ("validation", "epoch_loss") in session["metrics"]
    mux = _multiplexer(logdir)
    for name in sessions:
        assert {"epoch_loss", "epoch_accuracy"} <= set(_tags(mux, f"{name}/train")["scalars"])
        assert {"epoch_loss", "epoch_accuracy"} <= set(_tags(mux, f"{name}/validation")["scalars"])
        assert "confusion_matrix/holdout" in _tags(mux, name)["images"]
    assert "curves" in _tags(mux, "study/study_out")["images"]
    for lang in ("en", "ja"):
        assert "findings/text_summary" in _tags(mux, f"study/study_out/report_{lang}")["tensors"]
