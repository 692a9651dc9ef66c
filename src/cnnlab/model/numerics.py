"""Training whose result does not depend on the CPU thread count.

Measured with torch 2.14 on the CPU: every operator of the network gives bit-identical results on 1 and 2
threads except the weight and bias gradients of the convolutions (oneDNN) and of the last dense layer (MKL), sums
over the batch that the library splits among the threads and adds up in a thread-dependent order. Those last-bit
differences grow within two epochs into curves that differ in the third digit, so a study run with ``--jobs 2``
(one thread each) would not reproduce the same run trained alone on two threads. ``Conv2d`` and ``Linear`` below
compute those gradients on one thread when asked (`--thread-invariant`; off by default, it costs 1.29x per epoch on
two threads, benchmarks/RESULTS.md): the rest of the step keeps every thread, and one thread's sum is the same
whoever asks for it. On one thread nothing changes, bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


@contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _serial(module: nn.Module, input: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether this call takes the single-thread weight gradient: CPU float32 training, outside any tracer."""
    return (
        getattr(module, "thread_invariant", False)
        and weight.requires_grad
        and torch.is_grad_enabled()
        and input.device.type == "cpu"
        and not torch.is_autocast_enabled("cpu")  # bf16 autocast is a speed choice; it keeps its own kernels
        and not torch.compiler.is_compiling()
        and not torch.jit.is_scripting()
        and not torch.jit.is_tracing()
        and not torch.onnx.is_in_onnx_export()
    )


class _ConvSerialWeightGrad(torch.autograd.Function):
    """conv2d whose input gradient uses every thread and whose weight and bias gradients use one."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, conv: nn.Conv2d
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.conv = conv
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        conv: nn.Conv2d = ctx.conv
        args = (list(conv.stride), list(conv.padding), list(conv.dilation), False, [0, 0], conv.groups)
        bias_sizes = [weight.shape[0]] if ctx.has_bias else None
        backward = torch.ops.aten.convolution_backward
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = backward(grad, x, weight, bias_sizes, *args, [True, False, False])[0]
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            with _one_thread():
                _, grad_w, grad_b = backward(grad, x, weight, bias_sizes, *args, [False, True, ctx.has_bias])
        return grad_x, grad_w, grad_b, None


class _LinearSerialWeightGrad(torch.autograd.Function):
    """linear whose input gradient uses every thread and whose weight and bias gradients use one."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad_x = grad @ weight if ctx.needs_input_grad[0] else None
        grad_w = grad_b = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            with _one_thread():
                grad_2d, x_2d = grad.reshape(-1, grad.shape[-1]), x.reshape(-1, x.shape[-1])
                grad_w = grad_2d.t() @ x_2d
                grad_b = grad_2d.sum(0) if ctx.has_bias else None
        return grad_x, grad_w, grad_b


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters, same checkpoint keys) whose CPU training result does not depend on the
    thread count while ``thread_invariant`` is on (see the module's docstring); off, it is ``nn.Conv2d``."""

    thread_invariant = False  # off unless set_thread_invariant turns it on (FitConfig.thread_invariant)

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        # convolution_backward takes int paddings: the string forms ("same") keep nn.Conv2d's path
        if _serial(self, input, weight) and self.padding_mode == "zeros" and isinstance(self.padding, tuple):
            return _ConvSerialWeightGrad.apply(input, weight, bias, self)  # type: ignore[no-any-return]
        return super()._conv_forward(input, weight, bias)


class Linear(nn.Linear):
    """``nn.Linear`` with the same single-thread weight gradient as ``Conv2d``."""

    thread_invariant = False  # off unless set_thread_invariant turns it on (FitConfig.thread_invariant)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if _serial(self, input, self.weight):
            return _LinearSerialWeightGrad.apply(input, self.weight, self.bias)  # type: ignore[no-any-return]
        return super().forward(input)


def set_thread_invariant(module: nn.Module, on: bool) -> None:
    """Turn the single-thread weight gradients on or off in every ``Conv2d`` and ``Linear`` of ``module``."""
    for m in module.modules():
        if isinstance(m, (Conv2d, Linear)):
            m.thread_invariant = on
