"""``export_onnx``: a checkpoint -> one self-contained ``.onnx`` file, verified against PyTorch before it is kept."""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from .. import __version__
from ..atomic import atomic_write_bytes
from ..data.module import CLASS_NAMES, FashionMNISTDataModule
from ..errors import CnnlabError, first_line
from ..model.checkpoints import LoadedNetwork, load_network
from .evaluation import ort_logits, ort_session, torch_logits

PARITY_TOLERANCE = 1e-4
INPUT_SCALING = "float32 N x 1 x 28 x 28, pixel / 255 in [0, 1] (grayscale, white object on black)"
QUANTIZE_CHOICES = ("int8",)


@dataclass
class ExportResult:
    output: Path
    max_abs_diff: float
    images_checked: int
    parity_images: str  # "holdout" (real) or "random" (no dataset found, and no --data-dir given)
    int8_output: Path | None = None
    int8_agreement: float | None = None  # share of parity images whose int8 prediction equals float32's
    warning: str | None = None  # for the user: why the check used random images


@dataclass
class ReferenceImages:
    parity: torch.Tensor  # uint8 (N, 1, 28, 28): holdout images, compared between onnxruntime and PyTorch
    calibration: torch.Tensor  # uint8 (512, 1, 28, 28): training images, for int8 calibration
    kind: str  # "holdout" or "random"
    warning: str | None = None


def reference_images(data_dir: str | None, n: int = 1000) -> ReferenceImages:
    """The dataset's images for the parity check and calibration, read once. Only when no folder was named and
    none is found do seeded random images stand in, and the result says so (a named folder never falls back)."""
    try:
        dm = FashionMNISTDataModule(data_dir, download=False)
        return ReferenceImages(dm.eval_set("holdout").images[:n], dm.eval_set("train").images[:512], "holdout")
    except CnnlabError as e:
        if data_dir is not None:
            raise
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
        warning = (
            f"Fashion-MNIST not found ({first_line(e, 120)}...): the parity check used {n:,} seeded random "
            "images instead of holdout images (recorded in the model's metadata); pass --data-dir DIR to use them"
        )
        return ReferenceImages(images, images[:512], "random", warning)


def _to_onnx(net: torch.nn.Module, opset: int | None) -> onnx.ModelProto:
    net.eval()  # dropout off; the exporter traces whatever mode the module is in
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints progress lines
        program = torch.onnx.export(
            net,
            (torch.zeros(2, 1, 28, 28),),
            dynamo=True,
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes={"x": {0: torch.export.Dim("batch")}},  # batch axis stays dynamic
            opset_version=opset,
            external_data=False,  # default True would write a side file
            verbose=False,
        )
    assert program is not None
    return program.model_proto


def _metadata(loaded: LoadedNetwork, extra: dict[str, str] | None = None) -> dict[str, str]:
    meta = {
        "class_names": json.dumps(list(CLASS_NAMES)),
        "input_scaling": INPUT_SCALING,
        "hparams": json.dumps(loaded.run_info.get("hparams") or loaded.hparams, sort_keys=True),
        "source_checkpoint": str(loaded.checkpoint),
        "train_indices_sha256": str(loaded.run_info.get("train_indices_sha256", "")),
        "cnnlab_version": __version__,
    }
    return meta | (extra or {})


def _set_metadata(model: onnx.ModelProto, meta: dict[str, str]) -> None:
    del model.metadata_props[:]
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)


def export_onnx(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    opset: int | None = None,
    quantize: str | None = None,
    data_dir: str | None = None,
    logdir: Path = Path("tb_logs"),
    checkpoint: str = "best",
) -> ExportResult:
    """Export a checkpoint (or a run's best checkpoint) to ONNX; the file is written only if parity holds."""
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise CnnlabError(f"--quantize {quantize!r}: unknown; choose {', '.join(QUANTIZE_CHOICES)}")
    if opset is not None and not 17 <= opset <= 23:
        raise CnnlabError(f"--opset {opset}: choose an opset from 17 to 23 (or leave it to the exporter)")
    loaded = load_network(source, logdir, checkpoint)
    out = Path(output) if output else Path("exported") / f"{loaded.name}.onnx"
    if out.is_dir():
        raise CnnlabError(f"--output {out}: is a folder; give a file name ending in .onnx")
    ref = reference_images(data_dir)
    images = ref.parity
    model = _to_onnx(loaded.net, opset)
    _set_metadata(model, _metadata(loaded, {"parity_images": ref.kind}))
    onnx.checker.check_model(model, full_check=True)
    blob = model.SerializeToString()
    expected = torch_logits(loaded.net, images)
    got = ort_logits(ort_session(blob), images)
    diff = float(np.abs(got - expected).max())
    disagree = int((got.argmax(1) != expected.argmax(1)).sum())
    if not diff <= PARITY_TOLERANCE or disagree:
        raise CnnlabError(
            f"export check failed: onnxruntime differs from PyTorch by up to {diff:.2e} (limit {PARITY_TOLERANCE:g}) "
            f"and disagrees on {disagree} of {len(images)} images; nothing was written"
        )
    atomic_write_bytes(out, blob)  # only now, and atomically: a failed export never replaces a good file
    result = ExportResult(out, diff, len(images), ref.kind, warning=ref.warning)
    if quantize == "int8":
        result.int8_output, result.int8_agreement = quantize_int8(out, loaded, ref, expected.argmax(1))
    return result


def quantize_int8(
    float_model: Path, loaded: LoadedNetwork, ref: ReferenceImages, reference: np.ndarray
) -> tuple[Path, float]:
    """Static QDQ int8 quantization, calibrated on training images; written beside the float model."""
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calib, images = ref.calibration, ref.parity

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(
                [{"image": calib[i : i + 64].numpy().astype(np.float32) / 255} for i in range(0, len(calib), 64)]
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    out = float_model.with_suffix(".int8.onnx")
    with tempfile.TemporaryDirectory() as tmp:
        pre, q = Path(tmp) / "pre.onnx", Path(tmp) / "q.onnx"
        quant_pre_process(str(float_model), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(q),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        model = onnx.load(str(q))
    extra = {
        "quantization": "int8 static QDQ, per-channel weights",
        "float_model": str(float_model),
        "parity_images": ref.kind,
        "calibration_images": "train" if ref.kind == "holdout" else ref.kind,
    }
    _set_metadata(model, _metadata(loaded, extra))
    blob = model.SerializeToString()
    agreement = float((ort_logits(ort_session(blob), images).argmax(1) == reference).mean())
    atomic_write_bytes(out, blob)
    return out, agreement
