"""A run's configuration: every option of `cnnlab fit`, with its help text and its kind, in one place. The
command line builds its options from these fields (cli/options.py); light to import (no torch)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

from ..data import check_fractions
from ..errors import CnnlabError
from ..model import check_hparams
from ..runs import check_name


def _option(default: Any, help: str, kind: str, **cli: Any) -> Any:
    """A FitConfig field with its command-line help (one text for `fit` and `study`) and its kind: "setting" (an
    experiment setting, runs.EXPERIMENT_SETTINGS), "seed", "measure", "run" (where and under what name) or
    "hardware" (how it runs: never changes the results beyond float rounding)."""
    return field(default=default, metadata={"help": help, "kind": kind, **cli})


@dataclass
class FitConfig:
    frac: float = _option(0.2, "Fraction of the 50,000-image training pool to use (0, 1].", "setting")
    dropout: float = _option(0.0, "Dropout after the first Dense layer, [0, 1); 0 = none.", "setting")
    epochs: int = _option(40, "Epochs to train (a resumed run trains up to this many).", "setting")
    batch_size: int = _option(32, "Training batch size.", "setting")
    lr: float = _option(1e-4, "Learning rate.", "setting")
    optimizer: str = _option(
        "rmsprop",
        "rmsprop (Keras 2, the exercise's: / (sqrt(v) + eps)), rmsprop-tf (Keras 3 and tf.keras: / sqrt(v + eps)), "
        "adam or sgd.",
        "setting",
    )
    init: str = _option("keras", "Weight init: keras (glorot-uniform, zero bias) or torch.", "setting")
    seed: int = _option(42, "Fixes the data subset, the shuffle and the initialization.", "seed")
    val_split: float = _option(0.1, "Keras validation_split: the last part of the subset.", "setting")
    eval_train: bool = _option(False, "Also measure train loss/acc with dropout off after each epoch.", "measure")
    data_dir: str | None = _option(None, "Folder with the four Fashion-MNIST IDX files.", "run", path=True)
    name: str | None = _option(None, "Run name (default: from the settings, e.g. frac0.2_drop0.0).", "run")
    logdir: str = _option("tb_logs", "TensorBoard log folder; runs go to LOGDIR/NAME/version_N.", "run", path=True)
    resume: bool = _option(False, "Continue the latest run of this name from its last checkpoint.", "run")
    accelerator: str = _option("auto", "Lightning accelerator: auto, cpu, gpu...", "hardware")
    devices: str = _option("1", "Devices per node: 1, 2, auto, or a list like 0,1.", "hardware")
    num_nodes: int = _option(1, "Nodes for multi-node DDP.", "hardware")
    strategy: str = _option("auto", "Lightning strategy: auto, ddp...", "hardware")
    precision: str = _option(
        "32-true",
        "32-true (the exercise's float32), bf16-mixed, 16-mixed..., or auto: bf16-mixed where the hardware runs it "
        "natively (a GPU with bf16, a CPU with avx512_bf16 or AMX), else 32-true.",
        "hardware",
    )
    threads: int | None = _option(
        None, "CPU threads (default: PyTorch's, which follows OMP_NUM_THREADS when set).", "hardware"
    )
    thread_invariant: bool = _option(
        False,
        "Sum the weight gradients on one thread, so a run's result is the same on any thread count; costs 1.29x "
        "per epoch on two threads (benchmarks/RESULTS.md) and more on more cores. Off (the default), the libraries "
        "split those sums among the threads: a run's last bits depend on its thread count, which `study` keeps "
        "fixed whatever --jobs.",
        "hardware",
    )
    channels_last: bool = _option(False, "Channels-last (NHWC) memory format: faster on some hardware.", "hardware")
    compile: bool = _option(False, "torch.compile the network (costs a compile at start).", "hardware")
    progress: bool = _option(True, "Show the progress bar and model summary.", "hardware")

    @classmethod
    def kind(cls, kind: str) -> tuple[str, ...]:
        """The names of the fields of one kind, in order."""
        return tuple(f.name for f in fields(cls) if f.metadata["kind"] == kind)

    @property
    def run_name(self) -> str:
        if self.name is not None:
            return check_name(self.name)
        # the epoch count joins the name when it is not the default, so 40-, 400- and 4,000-epoch runs never mix
        return self.family + (f"_e{self.epochs}" if self.epochs != FitConfig.epochs else "")

    @property
    def family(self) -> str:
        """The default name without the epoch count: what --resume looks for when extending a run's epochs."""
        name = f"frac{self.frac}_drop{float(self.dropout)}"
        if self.optimizer != "rmsprop":
            name += f"_{self.optimizer}"
        if self.seed != FitConfig.seed:
            name += f"_seed{self.seed}"
        return name

    def validate(self) -> None:
        """Every setting's valid range, checked in this one place before anything starts (no torch needed)."""
        for name, low in (("epochs", 1), ("batch_size", 1), ("num_nodes", 1), ("threads", 1)):
            value = getattr(self, name)
            if value is not None and value < low:
                raise CnnlabError(f"{_flag(name)} {value}: must be at least {low}")
        if not 0 <= self.seed <= MAX_SEED:
            raise CnnlabError(f"--seed {self.seed}: must be in 0..{MAX_SEED} (NumPy's seed range), e.g. 42")
        check_hparams(self.dropout, self.lr, self.optimizer, self.init)  # the model's ranges (model/__init__.py)
        check_fractions(self.frac, self.val_split)  # the split's (data/__init__.py)
        check_name(self.run_name)


MAX_SEED = 2**32 - 1  # NumPy's seeds (Lightning seeds NumPy, Python and torch with the same number)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def study_grid(base: FitConfig, fracs: list[float], dropouts: list[float], seeds: int) -> list[FitConfig]:
    """The study's runs: every fraction x dropout x seed (base.seed, base.seed + 1, ...), each checked."""
    if seeds < 1:
        raise CnnlabError(f"--seeds {seeds}: must be at least 1")
    configs = [
        dataclasses.replace(base, frac=f, dropout=d, seed=base.seed + s, name=None, resume=False)
        for f in fracs
        for d in dropouts
        for s in range(seeds)
    ]
    for cfg in configs:
        cfg.validate()  # every bad value is reported before the first run starts
    return configs
