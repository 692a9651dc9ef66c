"""The optimizer forms: cnnlab's rmsprop is Keras 2's (and torch's), rmsprop-tf is Keras 3's / tf.keras'."""

import pytest
import torch

from cnnlab.model.lit import FashionClassifier, RMSpropTF


def _steps(optimizer_cls, grads, **kw):
    p = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)
    opt = optimizer_cls([p], **kw)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach()


def test_rmsprop_tf_follows_the_keras3_formula():
    grads = [torch.tensor([0.3, -1e-4, 2.0]), torch.tensor([-0.1, 3e-4, 1.5])]
    w, v = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    for g in grads:
        v = 0.9 * v + 0.1 * g.double() ** 2
        w = w - 0.01 * g.double() / torch.sqrt(v + 1e-7)
    got = _steps(RMSpropTF, grads, lr=0.01, rho=0.9, eps=1e-7)
    torch.testing.assert_close(got.double(), w, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("g", "same"), [(1.0, True), (1e-5, False)])
def test_the_two_forms_differ_where_gradients_are_tiny(g, same):
    keras2 = _steps(torch.optim.RMSprop, [torch.full((3,), g)], lr=0.01, alpha=0.9, eps=1e-7)
    keras3 = _steps(RMSpropTF, [torch.full((3,), g)], lr=0.01, rho=0.9, eps=1e-7)
    start = torch.tensor([1.0, -2.0, 0.5])
    ratio = ((start - keras3) / (start - keras2)).abs()
    # g = 1: both steps are lr * g / sqrt(0.1 g^2); g = 1e-5: sqrt(v) = 3.2e-6 is far below the sqrt(1e-7) floor
    assert torch.allclose(ratio, torch.ones(3), rtol=1e-4) if same else bool((ratio < 0.05).all())


def test_the_lightning_module_builds_each_form():
    assert isinstance(FashionClassifier(optimizer="rmsprop-tf").configure_optimizers(), RMSpropTF)
    opt = FashionClassifier(optimizer="rmsprop").configure_optimizers()
    assert isinstance(opt, torch.optim.RMSprop) and opt.defaults["alpha"] == 0.9 and opt.defaults["eps"] == 1e-7
