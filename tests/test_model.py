import pytest
import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.model.lit import FashionClassifier
from cnnlab.model.network import KerasCNN, count_parameters


def test_parameter_count_matches_keras():
    assert count_parameters(KerasCNN()) == 889_834
    assert count_parameters(KerasCNN(dropout=0.5)) == 889_834


def test_dropout_only_when_positive():
    assert not any(isinstance(m, nn.Dropout) for m in KerasCNN(0.0).modules())
    drops = [m for m in KerasCNN(0.5).modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 1 and drops[0].p == 0.5


def test_shapes_and_keras_init():
    net = KerasCNN()
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert all(float(m.bias.detach().abs().sum()) == 0 for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    fc = net.layers[-1]
    bound = (6 / (512 + 10)) ** 0.5  # glorot-uniform limit
    assert fc.weight.abs().max() <= bound and fc.weight.abs().max() > 0.9 * bound


def test_lightning_module_defaults_mirror_keras():
    model = FashionClassifier()
    opt = model.configure_optimizers()
    assert isinstance(opt, torch.optim.RMSprop)
    assert opt.defaults["lr"] == 1e-4 and opt.defaults["alpha"] == 0.9 and opt.defaults["eps"] == 1e-7
    assert model.hparams.batch_size == 32 and model.example_input_array.shape == (1, 1, 28, 28)


@pytest.mark.parametrize(
    "kwargs", [{"dropout": 1.0}, {"dropout": -0.1}, {"lr": 0}, {"lr": float("nan")}, {"optimizer": "adagrad"}]
)
def test_bad_hparams(kwargs):
    with pytest.raises(CnnlabError):
        FashionClassifier(**kwargs)
