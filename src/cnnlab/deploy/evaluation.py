"""Evaluation on an in-memory image set with PyTorch or onnxruntime: one report for both, so they compare."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.module import CLASS_NAMES, FashionMNISTDataModule, InMemoryImages
from ..errors import CnnlabError, first_line

PROVIDERS = ("auto", "cpu", "cuda")
# PyTorch eval batches: on a CPU 256 images at a time run about 2x faster than 1024 (measured: 3.0 vs 5.5 s for
# 10,000 holdout images on 2 cores), the big activations of 1024 churn memory.
TORCH_BATCH = 256
SPLITS = ("holdout", "official")


# --- backends ------------------------------------------------------------------------------------------------


@torch.inference_mode()
def torch_logits(
    net: nn.Module, images: torch.Tensor, batch_size: int = TORCH_BATCH, device: torch.device | str = "cpu"
) -> np.ndarray:
    """Logits (N, 10) of ``net`` in eval mode for uint8 images (N, 1, 28, 28); the net itself is left as it was.

    On a CPU a channels-last copy of the net runs: 1.8x faster here than NCHW (1.9 s against 3.4 s for 10,000
    images on 2 threads; benchmarks/RESULTS.md), the same logits to 2e-7.
    """
    cpu = torch.device(device).type == "cpu"
    fmt = torch.channels_last if cpu else torch.contiguous_format
    model = copy.deepcopy(net).to(memory_format=fmt) if cpu else net  # type: ignore[call-overload]
    was_training = model.training
    model.eval()
    try:
        out = [
            model(images[i : i + batch_size].to(device).float().div_(255).contiguous(memory_format=fmt)).float().cpu()
            for i in range(0, len(images), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(out).numpy()


def ort_session(model: bytes | str | os.PathLike[str], provider: str = "cpu") -> Any:
    """An onnxruntime session tuned for batch throughput."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = torch.get_num_threads()  # one batch at a time: every thread on each operator
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if provider == "cuda" else ["CPUExecutionProvider"]
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, sess_options=opts, providers=providers)


def ort_logits(session: Any, images: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    """Logits (N, 10) for uint8 images (N, 1, 28, 28), batch by batch."""
    name = session.get_inputs()[0].name
    out = [
        session.run(None, {name: images[i : i + batch_size].numpy().astype(np.float32) / np.float32(255)})[0]
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out)


def loss_and_accuracy(logits: np.ndarray, labels: torch.Tensor | np.ndarray) -> dict[str, float]:
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    lg = torch.from_numpy(logits)
    return {"loss": float(F.cross_entropy(lg, y)), "acc": float((lg.argmax(1) == y).float().mean())}


def confusion_matrix(preds: np.ndarray, labels: torch.Tensor | np.ndarray) -> np.ndarray:
    """(10, 10) counts; rows: true class, columns: predicted class."""
    cm = np.zeros((10, 10), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels), np.asarray(preds)), 1)
    return cm


def evaluate_torch(
    net: nn.Module, dataset: InMemoryImages, batch_size: int = TORCH_BATCH, device: torch.device | str = "cpu"
) -> dict[str, float]:
    return loss_and_accuracy(torch_logits(net, dataset.images, batch_size, device), dataset.labels)


# --- `cnnlab evaluate` ---------------------------------------------------------------------------------------


@dataclass
class EvaluationReport:
    """One model evaluated on one split: accuracy (overall and per class), confusion matrix, speed."""

    model: str
    backend: str  # onnxruntime | pytorch
    provider: str
    split: str
    images: int
    batch_size: int
    accuracy: float
    per_class_accuracy: dict[str, float]
    confusion_matrix: list[list[int]]  # rows: true class, columns: predicted class
    seconds: float
    images_per_second: float
    checkpoint: str | None = None  # the .ckpt file a run name or folder resolved to (PyTorch models)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _onnx_predictor(path: Path, provider: str) -> tuple[Any, str]:
    import onnxruntime as ort

    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if provider == "cuda" and not has_cuda:
        raise CnnlabError("--provider cuda: this onnxruntime has no CUDA provider; install onnxruntime-gpu or use cpu")
    use = "cuda" if provider != "cpu" and has_cuda else "cpu"
    try:
        session = ort_session(path, use)
    except Exception as e:  # onnxruntime raises its own types (InvalidProtobuf, Fail, InvalidGraph, ...)
        raise CnnlabError(f"{path}: onnxruntime cannot load this model ({first_line(e, 240)})") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    shape = list(inputs[0].shape) if inputs else []
    if len(inputs) != 1 or len(shape) != 4 or shape[1:] != [1, 28, 28] or inputs[0].type != "tensor(float)":
        got = f"{[i.name for i in inputs]} {shape} {inputs[0].type if inputs else ''}"
        raise CnnlabError(f"{path}: model input is {got}; expected one float input of N x 1 x 28 x 28")
    if not outputs or list(outputs[0].shape)[-1:] != [10]:
        raise CnnlabError(f"{path}: model output is {list(outputs[0].shape) if outputs else None}; expected N x 10")
    return session, use


def _check(split: str, provider: str, batch_size: int) -> None:
    if split not in SPLITS:
        raise CnnlabError(f"--split {split!r}: unknown; choose one of {', '.join(SPLITS)}")
    if provider not in PROVIDERS:
        raise CnnlabError(f"--provider {provider!r}: unknown; choose one of {', '.join(PROVIDERS)}")
    if batch_size < 1:
        raise CnnlabError(f"--batch-size {batch_size}: must be at least 1")


def _is_onnx(path: Path) -> bool:
    if path.suffix == ".onnx" and not path.is_file():
        raise CnnlabError(f"{path}: no such file; export one with `cnnlab export RUN`")
    # .onnx and .ckpt say what they are; another file is a checkpoint when it is a zip archive (torch.save's format)
    return path.suffix == ".onnx" or (path.is_file() and path.suffix != ".ckpt" and path.read_bytes()[:2] != b"PK")


def _predictor(
    model: str | os.PathLike[str], provider: str, batch_size: int, logdir: Path, checkpoint: str
) -> tuple[Callable[[torch.Tensor], np.ndarray], bool, str, str | None]:
    """(predict, is_onnx, the provider used, the checkpoint file) for an ONNX file or a PyTorch checkpoint / run."""
    from ..model.checkpoints import load_network

    if _is_onnx(Path(model)):
        session, used = _onnx_predictor(Path(model), provider)
        return (lambda x: ort_logits(session, x, batch_size)), True, used, None
    if provider == "cuda" and not torch.cuda.is_available():
        raise CnnlabError("--provider cuda: PyTorch sees no CUDA device; use --provider cpu")
    loaded = load_network(model, logdir, checkpoint)
    used = "cuda" if provider != "cpu" and torch.cuda.is_available() else "cpu"
    net = loaded.net.to(used)
    return (lambda x: torch_logits(net, x, batch_size, used)), False, used, str(loaded.checkpoint)


def evaluate(
    model: str | os.PathLike[str],
    split: str = "holdout",
    batch_size: int = 1024,
    provider: str = "auto",
    data_dir: str | None = None,
    logdir: Path = Path("tb_logs"),
    checkpoint: str = "best",
) -> tuple[EvaluationReport, np.ndarray]:
    """Evaluate an ``.onnx`` file (onnxruntime) or a checkpoint / run (PyTorch); returns the report and predictions."""
    _check(split, provider, batch_size)
    predict, is_onnx, used, ckpt_file = _predictor(model, provider, batch_size, logdir, checkpoint)
    dataset = FashionMNISTDataModule(data_dir).eval_set(split)
    predict(dataset.images[:batch_size])  # warm-up: first-call allocations are not timed
    start = time.perf_counter()
    logits = predict(dataset.images)
    seconds = time.perf_counter() - start
    preds = logits.argmax(1)
    labels = dataset.labels.numpy()
    cm = confusion_matrix(preds, labels)
    per_class = {name: float(cm[k, k] / max(cm[k].sum(), 1)) for k, name in enumerate(CLASS_NAMES)}
    report = EvaluationReport(
        model=str(model),
        backend="onnxruntime" if is_onnx else "pytorch",
        provider=used,
        split=split,
        images=len(labels),
        batch_size=batch_size,
        accuracy=float((preds == labels).mean()),
        per_class_accuracy=per_class,
        confusion_matrix=cm.tolist(),
        seconds=round(seconds, 4),
        images_per_second=round(len(labels) / seconds, 1),
        checkpoint=ckpt_file,
    )
    return report, preds


@dataclass
class Evaluation:
    reports: list[EvaluationReport]  # one, or two for --compare
    payload: dict[str, Any]  # what --json prints and evaluation.json holds
    agreement: float | None = None  # --compare: share of images both models predict alike
    accuracy_difference: float | None = None
    speed_ratio: float | None = None  # the first model's images per second over the second's


def evaluate_models(
    model: str,
    compare: str | None = None,
    split: str = "holdout",
    batch_size: int = 1024,
    provider: str = "auto",
    data_dir: str | None = None,
    logdir: Path = Path("tb_logs"),
    out: str | os.PathLike[str] | None = None,
    checkpoint: str = "best",
) -> Evaluation:
    """Evaluate one model, or two side by side with their agreement; with ``out``, the confusion-matrix PNGs and
    evaluation.json too."""
    results = [
        evaluate(m, split, batch_size, provider, data_dir, logdir, checkpoint)
        for m in [model, *([compare] if compare else [])]
    ]
    reports = [r for r, _ in results]
    if compare:
        (a, pa), (b, pb) = results
        extra = {
            "agreement": float(np.mean(pa == pb)),
            "accuracy_difference": a.accuracy - b.accuracy,
            "speed_ratio": a.images_per_second / b.images_per_second,
        }
        result = Evaluation(reports, {"reports": [r.to_dict() for r in reports], **extra}, **extra)
    else:
        result = Evaluation(reports, reports[0].to_dict())
    if out:
        _write_evaluation(result, Path(out))
    return result


def _write_evaluation(result: Evaluation, out: Path) -> None:
    from ..atomic import atomic_write_json
    from ..plots import plot_confusion

    for r in result.reports:
        name = Path(r.model).name
        title = f"{name} on {r.split}: accuracy {r.accuracy:.4f}"
        plot_confusion(r.confusion_matrix, title, out / f"confusion_{name.replace('.', '_')}.png")
    atomic_write_json(out / "evaluation.json", result.payload)
