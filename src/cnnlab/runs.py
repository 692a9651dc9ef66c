"""Run folders: ``<logdir>/<name>/version_N/`` with history.csv, run.json and checkpoints/."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text
from .errors import CnnlabError

HISTORY = "history.csv"
RUN_JSON = "run.json"
LAST_CKPT = "checkpoints/last.ckpt"
BEST_CKPT = "checkpoints/best.ckpt"
_VERSION = re.compile(r"^version_(\d+)$")
_NAME = re.compile(r"^[\w.+=-]+$")


def check_name(name: str) -> str:
    if not name or not _NAME.match(name) or name in {".", ".."}:
        raise CnnlabError(f"--name {name!r}: use letters, digits and . _ - + = only (it becomes a folder name)")
    return name


def versions(logdir: Path, name: str) -> list[int]:
    folder = logdir / name
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _VERSION.match(p.name)) and p.is_dir())


def new_version_dir(logdir: Path, name: str) -> Path:
    """Create the next free ``version_N`` folder; mkdir is atomic, so two runs started at once never share one."""
    (logdir / name).mkdir(parents=True, exist_ok=True)
    n = (versions(logdir, name) or [-1])[-1] + 1
    while True:
        path = logdir / name / f"version_{n}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1


def resolve_run(run: str | os.PathLike[str], logdir: Path = Path("tb_logs")) -> Path:
    """A run folder, a ``<name>`` folder or a bare name (its latest version) -> the run folder."""
    path = Path(run)
    if (path / RUN_JSON).is_file():
        return path
    for folder in (path, logdir / str(run)):
        if folder.is_dir() and (found := versions(folder.parent, folder.name)):
            latest = folder / f"version_{found[-1]}"
            if (latest / RUN_JSON).is_file():
                return latest
    raise CnnlabError(
        f"{run}: not a run folder (no {RUN_JSON}) nor a run name in {logdir}/; train one with `cnnlab fit`"
    )


def read_run(run_dir: Path) -> dict[str, Any]:
    try:
        info = json.loads((run_dir / RUN_JSON).read_text())
    except (OSError, ValueError) as e:
        raise CnnlabError(f"{run_dir / RUN_JSON}: unreadable ({e}); is this a cnnlab run folder?") from None
    if not isinstance(info, dict):
        raise CnnlabError(f"{run_dir / RUN_JSON}: not a JSON object")
    return info


def read_history(run_dir: Path) -> list[dict[str, float]]:
    path = run_dir / HISTORY
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items() if v != ""} for row in rows]
    except (OSError, ValueError, TypeError) as e:
        raise CnnlabError(f"{path}: unreadable ({e})") from None


def write_history(run_dir: Path, rows: list[dict[str, float]]) -> None:
    columns = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc"]
    columns += [c for c in ("train_eval_loss", "train_eval_acc") if any(c in r for r in rows)]
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(run_dir / HISTORY, out.getvalue())
