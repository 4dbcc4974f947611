"""models.py: shapes, layer structure, and that each model can fit a small real batch."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from dataset import IndexDataset, to_model_input
from models import MODEL_NAMES, LeNet, MLP, build_model


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("batch", [2, 5])
def test_output_shape(name, batch):
    torch.manual_seed(0)
    model = build_model(name)
    out = model(torch.randn(batch, 1, 28, 28))
    assert out.shape == (batch, 10) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    model.eval()
    assert model(torch.randn(1, 1, 28, 28)).shape == (1, 10)  # single image in eval mode (BatchNorm)


def test_model_names():
    assert MODEL_NAMES == ["lenet", "mlp"]
    assert isinstance(build_model("lenet"), LeNet) and isinstance(build_model("mlp"), MLP)
    assert build_model("lenet") is not build_model("lenet")  # a fresh model each call


@pytest.mark.parametrize("name", ["resnet", "LeNet", ""])
def test_unknown_model(name):
    with pytest.raises(ValueError, match="unknown model") as e:
        build_model(name)
    assert "lenet" in str(e.value) and "mlp" in str(e.value)


def layers(model, kind):
    return [m for m in model.modules() if isinstance(m, kind)]


def test_lenet_structure():
    model = build_model("lenet")
    convs, linears = layers(model, nn.Conv2d), layers(model, nn.Linear)
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == \
        [(1, 6, (5, 5), (2, 2)), (6, 16, (5, 5), (0, 0))]
    assert [(l.in_features, l.out_features) for l in linears] == [(400, 120), (120, 84), (84, 10)]
    assert len(layers(model, nn.MaxPool2d)) == 2
    assert model.features(torch.zeros(3, 1, 28, 28)).shape == (3, 16, 5, 5)
    assert sum(p.numel() for p in model.parameters()) == 61_706


def test_mlp_structure():
    model = build_model("mlp")
    assert not layers(model, nn.Conv2d)
    assert [(l.in_features, l.out_features) for l in layers(model, nn.Linear)] == [(784, 300), (300, 100), (100, 10)]
    assert [b.num_features for b in layers(model, nn.BatchNorm1d)] == [300, 100]


@pytest.mark.parametrize("name, lr", [("lenet", 3e-3), ("mlp", 1e-2)])
def test_overfits_64_real_samples(tiny_data, name, lr):
    """Full-batch Adam on 64 real digits reaches 100% training accuracy (eval mode) within 100 steps."""
    ds = IndexDataset(tiny_data / "train.txt")
    x, y = to_model_input(ds.images[:64]), ds.labels[:64]
    assert len(set(y.tolist())) == 10
    torch.manual_seed(0)
    model = build_model(name)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    model.eval()
    with torch.no_grad():
        start_acc = (model(x).argmax(1) == y).float().mean().item()
        start_loss = loss_fn(model(x), y).item()
    assert start_acc < 0.5
    acc = 0.0
    for step in range(1, 101):
        model.train()
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if step % 10 == 0:
            model.eval()
            with torch.no_grad():
                acc = (model(x).argmax(1) == y).float().mean().item()
            if acc == 1.0:
                break
    assert acc == 1.0, f"{name}: train accuracy {acc:.3f} after {step} steps"
    model.eval()
    with torch.no_grad():
        assert loss_fn(model(x), y).item() < start_loss / 4
