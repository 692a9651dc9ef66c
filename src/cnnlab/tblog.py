"""TensorBoard as the lab notebook, laid out the way Keras' TensorBoard callback does it.

A run folder ``<logdir>/<name>/version_N/`` holds sub-runs ``train/``, ``validation/`` (and ``train_eval/``,
dropout off) that share the tags ``epoch_loss`` and ``epoch_accuracy``: TensorBoard draws one chart per tag with
the train and validation curves of every run on it. The run folder itself holds the HParams session (settings
and metrics), the run's own scalars (``run/*``, ``test/*``), its summary text and its images.

The event files are derived data: history.csv and run.json are the record. A process that writes a run (a new
run, or one resumed in a new process) writes every event file afresh from the history and then deletes the
older ones, so each folder keeps one event file and a resumed run one HParams entry, with its new settings.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

# sub-run -> (loss column, accuracy column) of history.csv; the tags are Keras' own
SUBRUNS = {
    "train": ("train_loss", "train_acc"),
    "validation": ("val_loss", "val_acc"),
    "train_eval": ("train_eval_loss", "train_eval_acc"),
}
LOSS_TAG, ACC_TAG = "epoch_loss", "epoch_accuracy"
# The settings the HParams tab lists (run.json's config, plus the precision actually used).
HPARAMS = ("frac", "dropout", "seed", "epochs", "optimizer", "lr", "batch_size", "init", "precision")
# HParams metrics: (tag, sub-run, column title). The plugin shows each scalar's last value.
METRICS = (
    (LOSS_TAG, "validation", "val loss (final)"),
    (ACC_TAG, "validation", "val acc (final)"),
    ("run/best_val_loss", "", "val loss (min)"),
    ("run/best_val_acc", "", "val acc (max)"),
    ("run/best_epoch", "", "epoch of min val loss"),
    ("run/val_loss_rise_pct", "", "val loss rise over its min (%)"),
    (ACC_TAG, "train", "train acc (final)"),
    ("test/best/holdout/acc", "", "holdout acc (best ckpt)"),
    ("test/best/official/acc", "", "official test acc (best ckpt)"),
)


def event_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("events.out.tfevents.*")) if folder.is_dir() else []


def _writer(folder: Path) -> SummaryWriter:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(folder))


def _hparams_summaries(hparams: dict[str, Any], status: str | None = None) -> list[Any]:
    """The HParams plugin's experiment (columns) and session start (this run's values), or a session end."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    def summary(tag: str, data: Any) -> Any:
        meta = metadata.create_summary_metadata(data)
        return Summary(value=[Summary.Value(tag=tag, metadata=meta, tensor=metadata.NULL_TENSOR)])

    if status is not None:
        end = plugin_data_pb2.SessionEndInfo(status=api_pb2.Status.Value(status))
        return [summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end))]
    start = plugin_data_pb2.SessionStartInfo()
    infos = []
    for key in HPARAMS:
        value = hparams.get(key)
        if isinstance(value, str):
            start.hparams[key].string_value = value
            kind = "DATA_TYPE_STRING"
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            start.hparams[key].number_value = float(value)
            kind = "DATA_TYPE_FLOAT64"
        else:
            continue
        infos.append(api_pb2.HParamInfo(name=key, type=api_pb2.DataType.Value(kind)))
    metrics = [
        api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag, group=group), display_name=title)
        for tag, group, title in METRICS
    ]
    # Every run writes the same experiment (the plugin takes the first it finds), so the columns never depend
    # on which run TensorBoard happens to read first.
    experiment = api_pb2.Experiment(hparam_infos=infos, metric_infos=metrics)
    return [
        summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment)),
        summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start)),
    ]


def summary_text(info: dict[str, Any]) -> str:
    """A run's settings, best epoch and test figures (from run.json) as Markdown for the TEXT tab."""
    config, best, test = info.get("config", {}), info.get("best", {}), info.get("test", {})
    lines = [
        f"**{info.get('name')} / version_{info.get('version')}**: {info.get('status')}, "
        f"{info.get('epochs_completed')} epochs",
        "",
        "| setting | value |",
        "|---|---|",
    ]
    used = info.get("precision", {}).get("used")
    for key in HPARAMS:
        value = used if key == "precision" else config.get(key)
        if value is not None:
            lines.append(f"| {key} | {value} |")
    if best:
        lines += [
            "",
            f"Lowest validation loss at epoch {best['epoch']}: {best['val_loss']:.4f} (val acc {best['val_acc']:.4f}).",
        ]
    if test:
        lines += ["", "| weights | holdout acc | official test acc |", "|---|---:|---:|"]
        for which, title in (("best", "best checkpoint"), ("last", "last epoch")):
            if which in test:
                m = test[which]
                lines.append(
                    f"| {title} (epoch {m['epoch']}) | {m['holdout']['acc']:.4f} | {m['official']['acc']:.4f} |"
                )
    return "\n".join(lines)


class RunBoard:
    """The event files of one run folder; written by one process (rank 0)."""

    def __init__(self, run_dir: Path, hparams: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.hparams = hparams
        self._writers: dict[str, SummaryWriter] = {}
        self._best: dict[str, float] | None = None  # the epoch of lowest validation loss so far
        self._best_acc = -math.inf

    def _get(self, sub: str = "") -> SummaryWriter:
        if sub not in self._writers:
            self._writers[sub] = _writer(self.run_dir / sub if sub else self.run_dir)
        return self._writers[sub]

    def start_session(self, history: list[dict[str, float]], epoch_seconds: list[float]) -> None:
        """Start the HParams session and replay the history into new event files, then drop the older files."""
        folders = [self.run_dir, *(self.run_dir / sub for sub in SUBRUNS)]
        old = [f for folder in folders for f in event_files(folder)]
        self._add_raw(_hparams_summaries(self.hparams), 0)
        for i, row in enumerate(history):
            self.epoch(row, epoch_seconds[i] if i < len(epoch_seconds) else None, flush=False)
        self.flush()
        for f in old:  # the new files now hold everything the old ones did
            f.unlink(missing_ok=True)

    def epoch(self, row: dict[str, float], seconds: float | None, flush: bool = True) -> None:
        """The next epoch's history row: Keras-style curves and the run's best-so-far figures (kept running, so a
        replayed history costs one pass)."""
        from .runs import best_row, val_loss_rise_pct

        step = int(row["epoch"])
        for sub, (loss, acc) in SUBRUNS.items():
            if loss in row:
                self._get(sub).add_scalar(LOSS_TAG, row[loss], step)
                self._get(sub).add_scalar(ACC_TAG, row[acc], step)
        self._best = best_row([r for r in (self._best, row) if r is not None])  # the earlier one on ties
        self._best_acc = max(self._best_acc, row["val_acc"])
        root = self._get()
        if self._best is not None:
            root.add_scalar("run/best_val_loss", self._best["val_loss"], step)
            root.add_scalar("run/best_epoch", self._best["epoch"], step)
        root.add_scalar("run/best_val_acc", self._best_acc, step)
        rise = val_loss_rise_pct([self._best, row]) if self._best is not None else 0.0
        root.add_scalar("run/val_loss_rise_pct", rise, step)
        if seconds is not None:
            root.add_scalar("run/epoch_seconds", seconds, step)
        if flush:
            self.flush()

    def finish(self, step: int, test: dict[str, dict[str, Any]], text: str, images: dict[str, Any]) -> None:
        """The run's test figures, its summary text and its images (matplotlib figures); the session ends."""
        root = self._get()
        for which, measured in test.items():
            for split, values in measured.items():
                if isinstance(values, dict):
                    for k, v in values.items():
                        root.add_scalar(f"test/{which}/{split}/{k}", v, step)
        root.add_text("summary", text, step)
        for tag, fig in images.items():
            root.add_figure(tag, fig, step)  # closes the figure
        self._add_raw(_hparams_summaries(self.hparams, status="STATUS_SUCCESS"), step)
        self.flush()

    def _add_raw(self, summaries: list[Any], step: int) -> None:
        for summary in summaries:  # raw protobufs: no public SummaryWriter API takes one
            self._get()._get_file_writer().add_summary(summary, step)

    def flush(self) -> None:
        for w in self._writers.values():
            w.flush()

    def close(self) -> None:
        for w in self._writers.values():
            w.close()
        self._writers.clear()


def board_dir(logdir: str | os.PathLike[str], command: str, out: str | os.PathLike[str]) -> Path:
    """The TensorBoard run of a command's figures: ``<logdir>/<command>/<output folder's name>``, e.g.
    ``tb_logs/compare/comparison``, so they sit beside the training runs under names that say where they came from."""
    return Path(logdir) / command / (Path(out).resolve().name or command)


def write_board(folder: Path, images: list[Path] | None = None, texts: dict[str, str] | None = None) -> Path:
    """A TensorBoard run of figures (PNG files, one image tag each) and Markdown texts, replacing its older files."""
    from PIL import Image

    folder = Path(folder)
    old = event_files(folder)
    with contextlib.closing(_writer(folder)) as writer:
        for path in images or []:
            with Image.open(path) as im:
                writer.add_image(Path(path).stem, np.asarray(im.convert("RGB")), 0, dataformats="HWC")
        for tag, text in (texts or {}).items():
            writer.add_text(tag, text, 0)
    for f in old:
        f.unlink(missing_ok=True)
    return folder
