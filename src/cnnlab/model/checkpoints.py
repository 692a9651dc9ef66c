"""Loading trained networks from cnnlab checkpoints, safely: tensors and plain data only, never code."""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import CnnlabError, first_line
from ..runs import read_run, resolve_checkpoint
from .network import KerasCNN


@dataclass
class LoadedNetwork:
    net: KerasCNN  # in eval mode
    checkpoint: Path
    run_dir: Path | None
    hparams: dict[str, Any] = field(default_factory=dict)
    run_info: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.run_info.get("name") or self.checkpoint.stem)


def load_checkpoint_dict(path: Path) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True``: a pickle that would run code is refused, not executed."""
    if path.is_dir():
        raise CnnlabError(f"{path}: is a folder, not a checkpoint file")
    if not zipfile.is_zipfile(path):  # torch.save writes zip archives; anything else is not a checkpoint of ours
        raise CnnlabError(f"{path}: not a PyTorch checkpoint (truncated, or not the zip archive torch.save writes)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        why = next((ln.strip() for ln in str(e).splitlines() if "unsupported" in ln.lower()), "objects beyond tensors")
        raise CnnlabError(f"{path}: refused to load: it holds more than weights and plain data ({why[:160]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CnnlabError(
            f"{path}: not a readable PyTorch checkpoint (truncated or corrupt? {first_line(e)})"
        ) from None
    if not isinstance(ckpt, dict):
        raise CnnlabError(f"{path}: not a checkpoint (holds a {type(ckpt).__name__}, not a dict)")
    return ckpt


def load_network(source: str | os.PathLike[str], logdir: Path = Path("tb_logs"), which: str = "best") -> LoadedNetwork:
    """The plain network of a cnnlab checkpoint (or a run's ``which`` checkpoint), in eval mode on the CPU."""
    path, run_dir = resolve_checkpoint(source, logdir, which)
    ckpt = load_checkpoint_dict(path)
    state, hparams = ckpt.get("state_dict"), ckpt.get("hyper_parameters", {})
    if not isinstance(state, dict) or not isinstance(hparams, dict):
        raise CnnlabError(f"{path}: not a Lightning checkpoint of a cnnlab model (no state_dict)")
    dropout = hparams.get("dropout", 0.0)
    net = KerasCNN(dropout=float(dropout) if isinstance(dropout, (int, float)) and 0 <= dropout < 1 else 0.0)
    weights = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    try:
        net.load_state_dict(weights, strict=True)
    except (RuntimeError, TypeError) as e:
        raise CnnlabError(f"{path}: a checkpoint of another model, not cnnlab's CNN ({first_line(e)})") from None
    net.eval()
    info = read_run(run_dir) if run_dir else {}
    return LoadedNetwork(net, path, run_dir, dict(hparams), info)
