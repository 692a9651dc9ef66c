"""Each speed option must keep the results: same predictions and (nearly) the same loss as the default.
Speed itself is measured in benchmarks/, never asserted here."""

import pytest
import torch

from cnnlab.model.lit import FashionClassifier
from cnnlab.training.config import FitConfig
from cnnlab.training.fit import fit


def _fit(synth_dir, tmp_path, **kw):
    cfg = FitConfig(data_dir=str(synth_dir), logdir=str(tmp_path / "tb"), frac=0.5, epochs=2, lr=1e-3,
                    progress=False, **kw)  # fmt: skip
    return fit(cfg).history


@pytest.fixture(scope="module")
def default(synth_dir, tmp_path_factory):
    return _fit(synth_dir, tmp_path_factory.mktemp("d"))


@pytest.mark.parametrize(
    ("options", "tolerance"),
    [({"channels_last": True}, 1e-3), ({"precision": "bf16-mixed"}, 2e-2),
     ({"precision": "bf16-mixed", "channels_last": True}, 2e-2)],
)  # fmt: skip
def test_option_keeps_the_curves(synth_dir, tmp_path, default, options, tolerance):
    # tolerances: channels-last reorders float32 sums (~1e-6 per op); bf16 keeps 8 bits of mantissa
    got = _fit(synth_dir, tmp_path, **options)
    for a, b in zip(default, got, strict=True):
        assert abs(a["train_loss"] - b["train_loss"]) <= tolerance * max(1.0, a["train_loss"])
        assert abs(a["val_loss"] - b["val_loss"]) <= tolerance * max(1.0, a["val_loss"])


def _same_start(**kw):
    torch.manual_seed(0)
    return FashionClassifier(**kw).eval()


def test_channels_last_same_predictions():
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    a, b = _same_start()(x), _same_start(channels_last=True)(x)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert torch.equal(a.argmax(1), b.argmax(1))


@pytest.mark.slow
def test_compile_same_predictions_and_plain_checkpoint_keys():
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    plain, compiled = _same_start(), _same_start(compile=True)
    assert compiled.state_dict().keys() == plain.state_dict().keys()  # checkpoints stay loadable without compile
    with torch.no_grad():
        a, b = plain(x), compiled(x)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert torch.equal(a.argmax(1), b.argmax(1))
