"""Thread-invariant training (numerics.py): the same gradients on any thread count, and the right gradients."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import nn

from cnnlab.model.network import KerasCNN
from cnnlab.model.numerics import Conv2d, Linear, set_thread_invariant


@contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)  # two threads split the batch sums even on a one-core machine
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _grads(net: nn.Module, threads: int, batch: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(batch, 1, 28, 28, generator=g), torch.randint(0, 10, (batch,), generator=g)
    net.zero_grad()
    with _threads(threads):
        nn.functional.cross_entropy(net(x), y).backward()
    return {name: p.grad.clone() for name, p in net.named_parameters()}


def _net(invariant: bool) -> KerasCNN:
    torch.manual_seed(0)
    net = KerasCNN(dropout=0.0)
    set_thread_invariant(net, invariant)
    return net


@pytest.mark.parametrize("threads", [2, 3])
def test_gradients_bit_identical_on_any_thread_count(threads):
    net = _net(invariant=True)
    one = _grads(net, 1)
    many = _grads(net, threads)
    for name in one:
        assert torch.equal(one[name], many[name]), name


def test_gradients_are_the_usual_ones():
    # the single-thread path computes the same gradients as nn.Conv2d / nn.Linear, up to summation order
    fast, invariant = _grads(_net(invariant=False), 2), _grads(_net(invariant=True), 2)
    for name in fast:
        torch.testing.assert_close(invariant[name], fast[name], rtol=1e-5, atol=1e-7)
    # and on one thread they are exactly the library's, so one-thread runs are unchanged bit for bit
    fast, invariant = _grads(_net(invariant=False), 1), _grads(_net(invariant=True), 1)
    assert all(torch.equal(invariant[n], fast[n]) for n in fast)


@pytest.mark.parametrize(
    "conv",
    [
        Conv2d(3, 4, 3, stride=2, padding=1),
        Conv2d(4, 6, 3, padding=2, dilation=2, bias=False),
        Conv2d(4, 4, 1, groups=2),
    ],
)
def test_conv_options_and_input_gradient(conv):
    x = torch.randn(5, conv.in_channels, 9, 9, requires_grad=True)
    reference = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                          conv.dilation, conv.groups, bias=conv.bias is not None)  # fmt: skip
    reference.load_state_dict(conv.state_dict())
    out = conv(x)
    grad = torch.randn_like(out)
    (gx, *gp) = torch.autograd.grad(out, [x, *conv.parameters()], grad)
    (rx, *rp) = torch.autograd.grad(reference(x), [x, *reference.parameters()], grad)
    torch.testing.assert_close(out, reference(x))
    for a, b in zip([gx, *gp], [rx, *rp], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_linear_on_batches_of_sequences():
    layer = Linear(6, 3)
    reference = nn.Linear(6, 3)
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(4, 5, 6, requires_grad=True)
    got = torch.autograd.grad(layer(x).square().sum(), [x, *layer.parameters()])
    want = torch.autograd.grad(reference(x).square().sum(), [x, *reference.parameters()])
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)


def test_plain_ops_for_inference_and_export():
    # no autograd Function where none is needed: inference, and torch.export (the ONNX exporter's front end)
    # sees the usual aten.conv2d and aten.linear
    net = _net(invariant=True).eval()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert net(x).grad_fn is None
    program = torch.export.export(net, (x,))
    ops = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert {"aten.conv2d.default", "aten.linear.default"} <= ops
    assert all("aten." in op for op in ops), ops
    torch.testing.assert_close(program.module()(x), net(x))


def test_checkpoint_keys_unchanged():
    # the layers are nn.Conv2d / nn.Linear subclasses with the same parameters: old checkpoints load
    net = KerasCNN()
    assert all(isinstance(m, (nn.Conv2d, nn.Linear)) for m in net.modules() if isinstance(m, (Conv2d, Linear)))
    plain = {k: v.shape for k, v in net.state_dict().items()}
    assert list(plain) == [f"layers.{i}.{p}" for i in (0, 2, 5, 7, 11, 13) for p in ("weight", "bias")]
