"""What a first convolution layer sees: InceptionV3's ``Conv2d_1a_3x3`` (Keras' ``conv2d_1`` / ``activation_1``)
or the first layer of a cnnlab checkpoint. Filters, feature maps taken with forward hooks, a filter taxonomy
and tuning curves.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch import nn

from .errors import CnnlabError, first_line
from .probes import DEFAULT_PROBES, PROBES, grating, make_probe, solid_hue

WEIGHT_CHOICES = ("imagenet", "random")  # or a PATH
NORMALIZE_CHOICES = ("per-filter", "global")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PARTNER_COSINE = -0.7  # an opposite-sign partner: cosine similarity at or below this
STEM_KEYS = ("conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var")


# --- the layer under study -----------------------------------------------------------------------------------


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
    return Stem(title, random, model, block.conv, block, 299,
                run_stem=lambda x: block(model._transform_input(x)), run_full=model)  # fmt: skip


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
    from .checkpoints import load_checkpoint_dict

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
    from .checkpoints import load_network

    loaded = load_network(source)
    net = loaded.net
    conv, relu = net.layers[0], net.layers[1]
    return Stem(f"cnnlab {loaded.name} first conv layer", False, net, conv, relu, 28,
                run_stem=lambda x: relu(conv(x)), run_full=net)  # fmt: skip


# --- images and hooks ----------------------------------------------------------------------------------------


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Any image Pillow reads -> uint8 RGB. 16-bit, palette, alpha, CMYK and animated (first frame) included."""
    p = Path(path)
    if p.is_dir():
        raise CnnlabError(f"{p}: is a folder, not an image; give image files (JPEG, PNG, ...)")
    if not p.is_file():
        raise CnnlabError(f"{p}: no such image file")
    try:
        with Image.open(p) as img:
            img.seek(0)  # animated GIF/PNG/WebP: the first frame
            img.draft("RGB", (1024, 1024))  # JPEG: decode huge photos at a reduced scale
            img.load()
            if max(img.size) > 2048:  # huge but legal: shrink early, the network sees 299 px anyway
                img.thumbnail((2048, 2048))
            return _to_rgb(img)
    except Image.DecompressionBombError:
        raise CnnlabError(
            f"{p}: refused: over Pillow's decompression-bomb limit of {2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels"
        ) from None
    except Exception as e:  # Pillow's decoders raise many types on corrupt data (OSError, TypeError, struct.error...)
        raise CnnlabError(f"{p}: not a readable image ({first_line(e, 160)}); use a JPEG or PNG") from None


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):  # high bit depth: scale to 8 bits, not clip
        a = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16"):
            lo, hi = 0.0, 65535.0
        elif img.mode == "F":  # floats: stretch their own range
            lo, hi = float(a.min()), float(a.max())
        else:  # 32-bit integers: scale by the largest value
            lo, hi = 0.0, max(float(a.max()), 1.0)
        gray = np.clip((a - lo) / ((hi - lo) or 1.0) * 255, 0, 255)
        return np.repeat(gray.astype(np.uint8)[..., None], 3, -1)
    if img.mode in ("P", "PA") or "A" in img.getbands():  # transparency: composite on white
        rgba = img.convert("RGBA")
        ground = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(ground, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def prepare(stem: Stem, rgb: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """The network input (1, C, S, S) and the image as the network sees it (S, S, 3) uint8, for display."""
    t = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)  # (3, H, W) uint8, a writable copy
    if stem.channels == 1:  # a cnnlab checkpoint: grayscale 28x28 like Fashion-MNIST
        t = TF.rgb_to_grayscale(t)
    if tuple(t.shape[1:]) != (stem.size, stem.size):
        # what the pretrained weights expect: resize to 342 (for 299) and centre-crop
        t = TF.resize(t, [round(stem.size * 342 / 299)], antialias=True)
        t = TF.center_crop(t, [stem.size, stem.size])
    display = t.permute(1, 2, 0).numpy()
    x = t.float().div(255).unsqueeze(0)
    if stem.channels == 3:
        x = TF.normalize(x, list(IMAGENET_MEAN), list(IMAGENET_STD))
    return x, np.repeat(display, 3, -1) if display.shape[-1] == 1 else display


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


# --- taxonomy ------------------------------------------------------------------------------------------------

# An orthonormal colour basis: luminance and two colour-opponent axes (red-green, blue-yellow).
LUMINANCE = np.array([1.0, 1.0, 1.0]) / math.sqrt(3)
RED_GREEN = np.array([1.0, -1.0, 0.0]) / math.sqrt(2)
BLUE_YELLOW = np.array([-1.0, -1.0, 2.0]) / math.sqrt(6)
_YY, _XX = np.mgrid[-1:2, -1:2].astype(float)  # kernel coordinates: x to the right, y down
CATEGORY_RULE = (
    "colour energy >= 50% of the filter's energy: 'colour' when most of that colour energy is spatially uniform, "
    "else 'colour-edge'; otherwise, uniform (DC) luminance >= 50% of the luminance energy: 'low-frequency'; "
    "otherwise, a linear ramp (oriented gradient) >= 50% of the non-uniform luminance energy: 'edge' "
    "('colour-edge' when colour is >= 25% of the energy); everything else: 'other'"
)


def describe_filter(w: np.ndarray) -> dict[str, Any]:
    """Energy split, orientation and category of one (C, 3, 3) kernel (C = 3 RGB, or 1 gray)."""
    if w.shape[0] == 3:
        lum = np.tensordot(LUMINANCE, w, 1)
        colour = [np.tensordot(RED_GREEN, w, 1), np.tensordot(BLUE_YELLOW, w, 1)]
    else:
        lum, colour = w[0], []
    e_lum = float((lum**2).sum())
    e_col = float(sum((c**2).sum() for c in colour))
    energy = e_lum + e_col or 1e-30
    e_lum_dc = 9 * float(lum.mean()) ** 2
    e_col_dc = float(sum(9 * c.mean() ** 2 for c in colour))
    gx, gy = float((lum * _XX).sum() / 6), float((lum * _YY).sum() / 6)  # least-squares plane through the kernel
    e_grad = 6 * (gx**2 + gy**2)
    grad_frac = e_grad / (e_lum - e_lum_dc) if e_lum - e_lum_dc > 1e-12 else 0.0
    colour_frac = e_col / energy
    if colour_frac >= 0.5:
        category = "colour" if e_col_dc / (e_col or 1e-30) >= 0.5 else "colour-edge"
    elif e_lum_dc / (e_lum or 1e-30) >= 0.5:
        category = "low-frequency"
    elif grad_frac >= 0.5:
        category = "colour-edge" if colour_frac >= 0.25 else "edge"
    else:
        category = "other"
    return {
        "l2_norm": math.sqrt(float((w**2).sum())),
        "mean_weight": float(w.mean()),
        "luminance_energy": e_lum / energy,
        "colour_energy": colour_frac,
        "luminance_dc": float(lum.mean()),  # > 0 brightens, < 0 a negative-photo-like response
        # direction the luminance weights increase along: 0 = left to right (a vertical edge), 90 = top to bottom
        "orientation_deg": round(math.degrees(math.atan2(gy, gx)) % 180, 1) if e_grad > 1e-12 else None,
        "oriented_fraction": grad_frac,
        "category": category,
    }


def describe_filters(weight: torch.Tensor) -> list[dict[str, Any]]:
    w = weight.double().numpy()
    flat = w.reshape(len(w), -1)
    unit = flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-30)
    cos = unit @ unit.T
    np.fill_diagonal(cos, np.inf)
    out = []
    for i, k in enumerate(w):
        j = int(np.argmin(cos[i]))
        partner = {"partner": j, "partner_cosine": round(float(cos[i, j]), 3)} if cos[i, j] <= PARTNER_COSINE else {}
        out.append({"index": i, **describe_filter(k), "partner": None, **partner})
    return out


# --- tuning curves -------------------------------------------------------------------------------------------


def _mean_activation(stem: Stem, images: list[np.ndarray]) -> np.ndarray:
    x = torch.cat([prepare(stem, im)[0] for im in images])
    return capture(stem, x)["activation_1"].mean(dim=(2, 3)).numpy()  # (len(images), 32)


def hue_tuning(stem: Stem, step: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Mean activation of each filter for uniform images of every hue (full saturation and value)."""
    hues = np.arange(0, 360, step)
    return hues, _mean_activation(stem, [solid_hue(h / 360, stem.size) for h in hues])


def orientation_tuning(stem: Stem, step: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """Mean activation against grating orientation; the strongest of two spatial periods counts."""
    angles = np.arange(0, 180, step)
    periods = (6, 12) if stem.size > 100 else (3, 6)
    responses = [_mean_activation(stem, [grating(float(a), p, stem.size) for a in angles]) for p in periods]
    return angles, np.max(responses, axis=0)


# --- the command ---------------------------------------------------------------------------------------------


@dataclass
class FiltersResult:
    title: str
    out: Path
    filters: list[dict[str, Any]]
    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def _image_name(path: Path, taken: set[str]) -> str:
    base = re.sub(r"[^\w.-]", "_", path.stem) or "image"
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    taken.add(name)
    return name


def run_filters(
    images: list[str] | None = None,
    probes: list[str] | None = None,
    weights: str = "imagenet",
    out: str | os.PathLike[str] = "filters_out",
    normalize: str = "per-filter",
    tensorboard: str | None = None,
    model: str | None = None,
    seed: int = 0,
    data_dir: str | None = None,
) -> FiltersResult:
    """Draw the first layer's filters and its feature maps for images and probes; write figures and summary.json."""
    from . import plots
    from .atomic import atomic_write_json

    if normalize not in NORMALIZE_CHOICES:
        raise CnnlabError(f"--normalize {normalize!r}: unknown; choose {' or '.join(NORMALIZE_CHOICES)}")
    chosen = [p for item in probes or [] for p in (PROBES if item == "all" else [item])]
    for p in chosen:
        if p not in PROBES:
            raise CnnlabError(f"--probe {p!r}: unknown; choose from {', '.join(PROBES)} or all")
    inputs: list[tuple[str, np.ndarray]] = []
    taken: set[str] = set(PROBES)
    for path in images or []:
        inputs.append((_image_name(Path(path), taken), load_image(path)))  # every file is checked before any work
    stem = load_checkpoint_stem(model) if model else load_inception(weights, seed)
    if not images and not chosen:
        if model:  # a cnnlab model: a few Fashion-MNIST holdout images
            from .data import CLASS_NAMES, FashionMNISTDataModule

            holdout = FashionMNISTDataModule(data_dir).eval_set("holdout")
            for i in range(4):
                img = holdout.images[i, 0].numpy()
                label = CLASS_NAMES[int(holdout.labels[i])].replace("/", "-").replace(" ", "_")
                inputs.append((f"fashion{i}_{label}", np.repeat(img[..., None], 3, -1)))
        else:
            chosen = list(DEFAULT_PROBES)
    inputs += [(p, make_probe(p, stem.size)) for p in chosen]
    out = Path(out)
    result = FiltersResult(stem.title, out, describe_filters(stem.weight))
    title = f"{stem.title}: first conv layer"
    result.files += [plots.plot_filters(stem.weight, result.filters, out / "filters.png", normalize, title)]
    if stem.channels == 3:
        result.files.append(plots.plot_filters_rgb(stem.weight, out / "filters_rgb.png", title))
    for name, rgb in inputs:
        x, shown = prepare(stem, rgb)
        maps = capture(stem, x)
        act = maps["activation_1"][0]  # (32, 149, 149) for InceptionV3
        dead = [int(i) for i in torch.nonzero(act.flatten(1).amax(1) <= 0).flatten()]
        result.images[name] = {"mean_activation": [round(float(v), 6) for v in act.mean(dim=(1, 2))],
                               "dead_channels": dead}  # fmt: skip
        result.files += [
            plots.save_image(shown, out / f"{name}_input.png"),
            plots.plot_maps(maps["conv2d_1"][0], out / f"{name}_conv2d_1.png", f"{name}: conv2d_1 ({stem.title})",
                            signed=True),
            plots.plot_maps(act, out / f"{name}_activation_1.png", f"{name}: activation_1 ({stem.title})",
                            signed=False, dead=dead),
            plots.plot_overview(shown, stem.weight, act, out / f"{name}_overview.png", f"{name}: {title}", dead),
        ]  # fmt: skip
    tuning = {}
    if stem.channels == 3:
        hues, resp = hue_tuning(stem)
        tuning["hue"] = {"x": np.asarray(hues).tolist(), "response": np.asarray(resp).round(6).tolist()}
        result.files.append(plots.plot_tuning(hues, resp, out / "tuning_hue.png", "hue (degrees)",
                                              f"hue tuning ({stem.title})", result.filters, hue_axis=True))  # fmt: skip
    angles, resp = orientation_tuning(stem)
    tuning["orientation"] = {"x": np.asarray(angles).tolist(), "response": np.asarray(resp).round(6).tolist()}
    result.files.append(plots.plot_tuning(angles, resp, out / "tuning_orientation.png", "grating orientation (degrees)",
                                          f"orientation tuning ({stem.title})", result.filters))  # fmt: skip
    summary = {"title": stem.title, "random_weights": stem.random, "category_rule": CATEGORY_RULE,
               "filters": result.filters, "images": result.images, "tuning": tuning}  # fmt: skip
    atomic_write_json(out / "summary.json", summary)
    result.files.append(out / "summary.json")
    if tensorboard:
        from .tblog import board_dir, write_board

        write_board(board_dir(tensorboard, "filters", out), [f for f in result.files if f.suffix == ".png"])
    return result
