"""The run folder contract, owned here alone: ``<logdir>/<name>/version_N/`` with history.csv, run.json,
predictions.npz and checkpoints/{last,best}.ckpt. Other modules create, find and read runs through these
functions; none of them builds or parses those paths itself.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .atomic import atomic_path, atomic_write_json, atomic_write_text
from .errors import CnnlabError

HISTORY = "history.csv"
RUN_JSON = "run.json"
PREDICTIONS = "predictions.npz"  # per-image predicted classes of the best and last checkpoints on the test sets
CHECKPOINTS = "checkpoints"
CHECKPOINT_CHOICES = ("best", "last")  # best: the epoch of lowest validation loss; last: the final epoch
HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")
EVAL_TRAIN_COLUMNS = ("train_eval_loss", "train_eval_acc")
# The settings that define an experiment. Runs equal in all of them differ only in their seed: one group, whose
# curves may be averaged. Hardware and display options (precision, devices, progress...) are not among them.
EXPERIMENT_SETTINGS = ("frac", "dropout", "epochs", "batch_size", "lr", "optimizer", "init", "val_split")
_VERSION = re.compile(r"^version_(\d+)$")
_NAME = re.compile(r"^[\w.+=-]+$")


# --- names, versions, paths ----------------------------------------------------------------------------------


def check_name(name: str) -> str:
    if not name or not _NAME.match(name) or name in {".", ".."}:
        raise CnnlabError(f"--name {name!r}: use letters, digits and . _ - + = only (it becomes a folder name)")
    return name


def version_dir(logdir: Path, name: str, version: int) -> Path:
    return Path(logdir) / name / f"version_{version}"


def version_of(run_dir: Path) -> int:
    m = _VERSION.match(run_dir.name)
    if not m:
        raise CnnlabError(f"{run_dir}: not a run folder (its name is not version_N)")
    return int(m.group(1))


def versions(logdir: Path, name: str) -> list[int]:
    folder = Path(logdir) / name
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _VERSION.match(p.name)) and p.is_dir())


def checkpoint_path(run_dir: Path, which: str = "last") -> Path:
    if which not in CHECKPOINT_CHOICES:
        raise CnnlabError(f"--checkpoint {which!r}: unknown; choose one of {', '.join(CHECKPOINT_CHOICES)}")
    return run_dir / CHECKPOINTS / f"{which}.ckpt"


def run_of_checkpoint(ckpt: Path) -> Path | None:
    """The run folder a checkpoint file belongs to, or None for a checkpoint outside any run folder."""
    run_dir = ckpt.parent.parent
    return run_dir if ckpt.parent.name == CHECKPOINTS and (run_dir / RUN_JSON).is_file() else None


def create_version(logdir: Path, name: str) -> Path:
    """Create the next free ``version_N`` folder; mkdir is atomic, so two runs started at once never share one.

    Call it only once the run can start (settings, data and hardware checked): a failed start leaves no folder.
    """
    (Path(logdir) / name).mkdir(parents=True, exist_ok=True)
    n = (versions(logdir, name) or [-1])[-1] + 1
    while True:
        try:
            path = version_dir(logdir, name, n)
            path.mkdir()
            return path
        except FileExistsError:
            n += 1


def clean_stray_temp(run_dir: Path) -> None:
    """Remove the hidden ``.*.tmp`` files a killed atomic write left (one process writes a run folder at a time)."""
    for folder in (run_dir, run_dir / CHECKPOINTS):
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


# --- reading and writing -------------------------------------------------------------------------------------


def read_run(run_dir: Path) -> dict[str, Any]:
    """run.json, checked (check_record): every reader of a run record goes through here."""
    path = run_dir / RUN_JSON
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CnnlabError(f"{path}: unreadable ({e}); is this a cnnlab run folder?") from None
    return check_record(info, path)


_NUMBER, _INT, _TEXT, _REAL = "a number", "a whole number", "a text", "a number, inf or NaN"
# The settings every reader of a run record may use, and what each must be.
RECORD_SETTINGS = {"frac": _NUMBER, "dropout": _NUMBER, "epochs": _INT, "batch_size": _INT, "lr": _NUMBER,
                   "optimizer": _TEXT, "init": _TEXT, "val_split": _NUMBER, "seed": _INT}  # fmt: skip
RUN_STATUSES = ("running", "finished", "interrupted", "failed")


def _is(value: Any, kind: str) -> bool:
    if kind == _TEXT:
        return isinstance(value, str)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) if kind == _INT else kind == _REAL or math.isfinite(value)


def _wrong(path: Path, field: str, value: Any, kind: str) -> CnnlabError:
    what = "missing" if value is None else f"{json.dumps(value)[:40]}, not {kind}"
    return CnnlabError(f"{path}: field '{field}' is {what}; not a run record cnnlab wrote (or edited by hand)")


def check_record(info: Any, path: Path) -> dict[str, Any]:
    """The one check of a run record's contents, naming the file and the first missing or wrong field: the
    settings readers use (in ``config``, or ``hparams`` for the oldest records), and when present the status,
    per-epoch seconds and test results."""
    if not isinstance(info, dict):
        raise CnnlabError(f"{path}: not a JSON object; not a run record cnnlab wrote")
    if not isinstance(info.get("config", {}), dict) or not isinstance(info.get("hparams", {}), dict):
        raise _wrong(path, "config", info.get("config"), "an object of settings")
    if "config" not in info and "hparams" not in info:
        raise _wrong(path, "config", None, "an object of settings")
    found = settings(info)
    for key, kind in RECORD_SETTINGS.items():
        if not _is(found.get(key), kind):
            raise _wrong(path, f"config.{key}", found.get(key), kind)
    if "status" in info and info["status"] not in RUN_STATUSES:
        raise _wrong(path, "status", info["status"], f"one of {', '.join(RUN_STATUSES)}")
    seconds = info.get("epoch_seconds", [])
    if not isinstance(seconds, list) or not all(_is(v, _NUMBER) for v in seconds):
        raise _wrong(path, "epoch_seconds", seconds, "a list of numbers")
    test = info.get("test", {})
    if not isinstance(test, dict):
        raise _wrong(path, "test", test, "an object")
    for which, measured in test.items():
        if not isinstance(measured, dict):
            raise _wrong(path, f"test.{which}", measured, "an object")
        # {"best": {"epoch": 3, "holdout": {"loss", "acc"}, ...}, ...}; cnnlab 0.1: {"holdout": {"loss", "acc"}}
        old_layout = "acc" in measured or "loss" in measured
        entries = {which: measured} if old_layout else {f"{which}.{k}": v for k, v in measured.items() if k != "epoch"}
        for where, figures in entries.items():
            for metric in ("loss", "acc"):
                value = figures.get(metric) if isinstance(figures, dict) else None
                if not _is(value, _REAL):  # a diverging net's test loss may be inf: still a measurement
                    raise _wrong(path, f"test.{where}.{metric}", value, _NUMBER)
    return info


def write_run(run_dir: Path, info: dict[str, Any]) -> None:
    atomic_write_json(run_dir / RUN_JSON, info)


def read_history(run_dir: Path) -> list[dict[str, float]]:
    path = run_dir / HISTORY
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items() if v != ""} for row in rows]
    except (OSError, ValueError, TypeError) as e:
        raise CnnlabError(f"{path}: unreadable ({e})") from None


def write_history(run_dir: Path, rows: list[dict[str, float]]) -> None:
    columns = [*HISTORY_COLUMNS, *(c for c in EVAL_TRAIN_COLUMNS if any(c in r for r in rows))]
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(run_dir / HISTORY, out.getvalue())


def write_predictions(run_dir: Path, arrays: dict[str, Any]) -> None:
    """predictions.npz: ``{best,last}_{holdout,official}`` (predicted class per image, uint8), ``{split}_labels``
    and ``{best,last}_epoch``; compressed, a few tens of KB, written atomically."""
    import numpy as np

    with atomic_path(run_dir / PREDICTIONS) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)  # a file object: numpy would append .npz to a temporary name


def read_predictions(run_dir: Path) -> dict[str, Any] | None:
    """The arrays of predictions.npz, or None for a run recorded without them (older cnnlab, or unfinished)."""
    import numpy as np

    path = run_dir / PREDICTIONS
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise CnnlabError(f"{path}: unreadable ({e}); rerun `cnnlab fit --resume` or delete it") from None


def best_row(history: list[dict[str, float]]) -> dict[str, float] | None:
    """The epoch of lowest validation loss (the first one on ties); a non-finite loss never counts."""
    finite = [r for r in history if math.isfinite(r.get("val_loss", math.inf))]
    return min(finite, key=lambda r: r["val_loss"], default=None)


def val_loss_rise_pct(history: list[dict[str, float]]) -> float:
    """How far the last validation loss is above its minimum, in percent (the overfitting measure)."""
    finite = [r["val_loss"] for r in history if math.isfinite(r.get("val_loss", math.inf))]
    if not finite or min(finite) <= 0 or not math.isfinite(history[-1]["val_loss"]):
        return 0.0
    return 100 * (history[-1]["val_loss"] / min(finite) - 1)


def _info_or_empty(run_dir: Path) -> dict[str, Any]:
    try:
        return read_run(run_dir)
    except CnnlabError:
        return {}


# --- a run's identity ----------------------------------------------------------------------------------------


def settings(info: dict[str, Any]) -> dict[str, Any]:
    """A run's settings: its saved config, completed by its hparams (older or hand-made run.json files)."""
    config, hparams = info.get("config"), info.get("hparams")
    return {**(hparams if isinstance(hparams, dict) else {}), **(config if isinstance(config, dict) else {})}


def group_key(info: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Every experiment setting except the seed: runs with equal keys may be averaged over their seeds."""
    s = settings(info)
    return tuple((k, s.get(k)) for k in EXPERIMENT_SETTINGS)


def differing_settings(infos: Iterable[dict[str, Any]]) -> list[str]:
    """The experiment settings (and seed) whose values are not the same in all these runs."""
    all_settings = [settings(i) for i in infos]
    return [k for k in (*EXPERIMENT_SETTINGS, "seed") if len({repr(s.get(k)) for s in all_settings}) > 1]


# --- finding runs --------------------------------------------------------------------------------------------


def is_finished(run_dir: Path) -> bool:
    return _info_or_empty(run_dir).get("status") == "finished"


def has_epochs(run_dir: Path) -> bool:
    return (run_dir / HISTORY).is_file()


def is_resumable(run_dir: Path) -> bool:
    return (run_dir / RUN_JSON).is_file() and checkpoint_path(run_dir, "last").is_file()


def latest(logdir: Path, name: str, accept: Callable[[Path], bool]) -> Path | None:
    for v in reversed(versions(logdir, name)):
        if accept(run_dir := version_dir(logdir, name, v)):
            return run_dir
    return None


def resolve_run(run: str | os.PathLike[str], logdir: Path = Path("tb_logs")) -> Path:
    """A run folder, or a run name / ``<logdir>/<name>`` folder -> its latest finished version (else the latest
    with at least one epoch, e.g. one still training or interrupted)."""
    path = Path(run)
    if (path / RUN_JSON).is_file():
        return path
    for folder in (path, Path(logdir) / str(run)):
        if folder.is_dir() and versions(folder.parent, folder.name):
            found = latest(folder.parent, folder.name, is_finished) or latest(folder.parent, folder.name, has_epochs)
            if found:
                return found
    raise CnnlabError(
        f"{run}: not a run folder (no {RUN_JSON}) nor a run name with a finished epoch in {logdir}/; "
        "train one with `cnnlab fit`"
    )


def resume_target(logdir: Path, name: str, family: str | None = None) -> Path:
    """The run ``--resume`` continues: the latest version of ``name`` with a last checkpoint. When ``name`` has none,
    the runs of its ``family`` (the same settings named for another epoch count: ``family`` or ``family_eN``) are
    tried, the most recently checkpointed first, so `--resume --epochs 80` extends a 40-epoch run."""
    found = latest(logdir, name, is_resumable)
    if found is None and family is not None and Path(logdir).is_dir():
        pattern = re.compile(rf"^{re.escape(family)}(_e\d+)?$")
        kin = [latest(logdir, p.name, is_resumable) for p in Path(logdir).iterdir() if pattern.match(p.name)]
        found = max((k for k in kin if k), key=lambda k: checkpoint_path(k, "last").stat().st_mtime, default=None)
    if found is None:
        if versions(logdir, name):
            raise CnnlabError(f"--resume: no version of {name!r} in {logdir}/ finished an epoch; start anew")
        raise CnnlabError(f"--resume: no run named {name!r} in {logdir}/ to resume; drop --resume to start one")
    return found


def matching_versions(logdir: Path, name: str, wanted: dict[str, Any], keys: Iterable[str]) -> list[Path]:
    """Versions of ``name`` whose saved settings equal ``wanted`` in every key, newest first."""
    keys = tuple(keys)
    found = []
    for v in reversed(versions(logdir, name)):
        run_dir = version_dir(logdir, name, v)
        saved = settings(_info_or_empty(run_dir))
        if saved and all(saved.get(k) == wanted.get(k) for k in keys):
            found.append(run_dir)
    return found


def resolve_checkpoint(
    source: str | os.PathLike[str], logdir: Path = Path("tb_logs"), which: str = "best"
) -> tuple[Path, Path | None]:
    """A ``.ckpt`` file, or a run folder / run name (then its ``which`` checkpoint) -> (checkpoint, run folder)."""
    path = Path(source)
    if path.is_file():
        return path, run_of_checkpoint(path)
    if path.suffix == ".ckpt":
        raise CnnlabError(f"{path}: no such checkpoint file")
    run_dir = resolve_run(source, logdir)
    ckpt = checkpoint_path(run_dir, which)
    if not ckpt.is_file():
        raise CnnlabError(f"{run_dir}: has no {which} checkpoint (the run ended before its first epoch)")
    return ckpt, run_dir
