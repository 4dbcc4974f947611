"""The two networks: LeNet (2 conv + 3 fully-connected layers) and an MLP control.

Both take a batch of 1x28x28 images normalised with MNIST's mean/std and return
10 logits per image.
"""
import torch
from torch import nn


class LeNet(nn.Module):
    """LeNet-5 style CNN: conv 1->6 (5x5, pad 2), pool, conv 6->16 (5x5), pool, FC 400->120->84->10."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # 6x14x14
            nn.Conv2d(6, 16, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),  # 16x5x5
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """Three fully-connected layers with BatchNorm: 784->300->100->10, the control without convolutions."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(28 * 28, 300), nn.BatchNorm1d(300), nn.ReLU(),
            nn.Linear(300, 100), nn.BatchNorm1d(100), nn.ReLU(),
            nn.Linear(100, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


MODELS = {"lenet": LeNet, "mlp": MLP}
MODEL_NAMES = sorted(MODELS)


def build_model(name: str) -> nn.Module:
    try:
        return MODELS[name]()
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}") from None
