"""The layer under study: InceptionV3's ``Conv2d_1a_3x3`` with its weights (ImageNet, random, a .pth or a Keras
.h5 file) or the first layer of a cnnlab checkpoint, and its feature maps taken with forward hooks."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CnnlabError, first_line

STEM_KEYS = ("conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var")


@dataclass
class Stem:
    title: str  # says where the weights came from; "random weights" when they are random
    random: bool
    model: nn.Module  # the whole network (for the full-forward check)
    conv: nn.Module  # hooked: its output is conv2d_1
    block: nn.Module  # hooked: its output is activation_1 (after BN and ReLU for InceptionV3)
    size: int  # input side: 299 or 28
    run_stem: Callable[[torch.Tensor], Any]  # runs only as far as activation_1
    run_full: Callable[[torch.Tensor], Any]
    activation: str = "BN + ReLU"  # what activation_1 is taken after (InceptionV3's stem block)
    network: str = "InceptionV3"

    @property
    def weight(self) -> torch.Tensor:  # (32, C, 3, 3)
        w = self.conv.weight
        assert isinstance(w, torch.Tensor)
        return w.detach()

    @property
    def channels(self) -> int:
        return int(self.weight.shape[1])


def _inception_model(init_weights: bool) -> nn.Module:
    from torchvision.models import inception_v3

    # transform_input=True: the ImageNet-normalized input is mapped to [-1, 1], as these weights (and Keras') expect
    return inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=init_weights)


def _inception_stem(model: Any, title: str, random: bool) -> Stem:
    block = model.Conv2d_1a_3x3
    return Stem(
        title,
        random,
        model,
        block.conv,
        block,
        299,
        run_stem=lambda x: block(model._transform_input(x)),
        run_full=model,
    )


def imagenet_state_dict() -> dict[str, torch.Tensor]:
    """torchvision's IMAGENET1K_V1 weights from the torch hub cache, downloaded into it when online."""
    from torchvision.models import Inception_V3_Weights

    url = Inception_V3_Weights.IMAGENET1K_V1.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    try:
        return torch.hub.load_state_dict_from_url(url, progress=True, check_hash=True, weights_only=True)
    except Exception as e:  # offline machines fail in many ways (URLError, socket errors, partial files)
        raise CnnlabError(
            f"InceptionV3 ImageNet weights are not in the torch hub cache ({cached}) and could not be downloaded "
            f"({first_line(e, 160)}); put {url} at that path, or pass --weights PATH (torchvision .pth or Keras .h5) "
            "or --weights random"
        ) from None


def keras_stem_weights(path: Path) -> dict[str, torch.Tensor]:
    """Keras InceptionV3 ``.h5`` weights -> torchvision's Conv2d_1a_3x3 tensors. Read as data only (h5py)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            root = f.get("model_weights", f)
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in root.attrs.get("layer_names", list(root))]
            conv = next(n for n in names if re.fullmatch(r"conv2d(_\d+)?", n))  # conv2d_1 in the original file
            bn = next(n for n in names if re.fullmatch(r"batch_normalization(_\d+)?", n))

            def arrays(layer: str) -> dict[str, np.ndarray]:
                group = root[layer]
                wnames = [w.decode() if isinstance(w, bytes) else str(w) for w in group.attrs["weight_names"]]
                return {w.split("/")[-1].split(":")[0]: np.asarray(group[w]) for w in wnames}

            cw, bw = arrays(conv), arrays(bn)
    except (OSError, KeyError, StopIteration, ValueError) as e:
        raise CnnlabError(
            f"{path}: not Keras InceptionV3 weights with conv2d and batch_normalization layers ({e})"
        ) from None
    kernel = torch.from_numpy(cw["kernel"]).float()
    if kernel.shape != (3, 3, 3, 32):
        raise CnnlabError(f"{path}: first conv kernel is {tuple(kernel.shape)}, expected (3, 3, 3, 32) as conv2d_1")
    beta = torch.from_numpy(bw["beta"]).float()
    return {
        "conv.weight": kernel.permute(3, 2, 0, 1).contiguous(),  # Keras HWIO -> torch OIHW
        "bn.weight": torch.from_numpy(bw["gamma"]).float() if "gamma" in bw else torch.ones_like(beta),  # scale=False
        "bn.bias": beta,
        "bn.running_mean": torch.from_numpy(bw["moving_mean"]).float(),
        "bn.running_var": torch.from_numpy(bw["moving_variance"]).float(),
    }


def load_inception(weights: str = "imagenet", seed: int = 0) -> Stem:
    """torchvision's InceptionV3 with ``imagenet``, ``random`` (seeded) or file weights (.pth or Keras .h5)."""
    if weights == "random":
        torch.manual_seed(seed)
        return _inception_stem(_inception_model(init_weights=True), f"random weights (seed {seed})", True)
    model: Any = _inception_model(init_weights=False)
    if weights == "imagenet":
        model.load_state_dict(imagenet_state_dict())
        return _inception_stem(model, "ImageNet weights (torchvision IMAGENET1K_V1)", False)
    path = Path(weights)
    if not path.is_file():
        raise CnnlabError(f"--weights {weights!r}: not imagenet, random, or an existing weights file")
    if path.suffix.lower() in (".h5", ".hdf5", ".keras"):
        model.Conv2d_1a_3x3.load_state_dict(keras_stem_weights(path))
        return _inception_stem(model, f"Keras weights ({path.name}, stem only)", False)
    from ..model.checkpoints import load_checkpoint_dict

    state = load_checkpoint_dict(path)
    state = state.get("state_dict", state)
    stem = {k: state.get(f"Conv2d_1a_3x3.{k}") for k in STEM_KEYS}
    if any(v is None for v in stem.values()):
        raise CnnlabError(f"{path}: not an InceptionV3 state dict (no Conv2d_1a_3x3.conv.weight and its BN)")
    try:
        missing = model.load_state_dict(state, strict=False).missing_keys
    except RuntimeError as e:
        raise CnnlabError(f"{path}: weights do not fit InceptionV3 ({first_line(e)})") from None
    return _inception_stem(model, f"weights from {path.name}" + (" (partial)" if missing else ""), False)


def load_checkpoint_stem(source: str) -> Stem:
    """The first conv layer (and its ReLU) of a cnnlab checkpoint: 32 grayscale 3x3 filters on 28x28 input."""
    from ..model.checkpoints import load_network

    loaded = load_network(source)
    net = loaded.net
    conv, relu = net.layers[0], net.layers[1]
    return Stem(
        f"cnnlab {loaded.name}",
        False,
        net,
        conv,
        relu,
        28,
        run_stem=lambda x: relu(conv(x)),
        run_full=net,
        activation="ReLU",  # the Fashion-MNIST network has no batch norm
        network="Fashion-MNIST CNN",
    )


def capture(stem: Stem, x: torch.Tensor, full: bool = False) -> dict[str, torch.Tensor]:
    """conv2d_1 and activation_1 for a batch, taken with forward hooks; hooks and the train/eval mode are restored."""
    maps: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            maps[name] = output.detach().clone()

        return hook

    handles = [
        stem.conv.register_forward_hook(keep("conv2d_1")),
        stem.block.register_forward_hook(keep("activation_1")),
    ]
    was_training = stem.model.training
    stem.model.eval()
    try:
        with torch.inference_mode():
            (stem.run_full if full else stem.run_stem)(x)
    finally:
        for h in handles:
            h.remove()
        stem.model.train(was_training)
    return maps
