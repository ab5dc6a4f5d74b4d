"""Loader for the example model folder: a three-layer MLP classifier (32 features -> 10 classes).

infermeter seeds torch (torch.manual_seed(--seed)) before calling `load`, stores the resulting
weights once, and loads them back for every engine, so the benchmark needs no weights file.
"""

import torch
from torch import nn

from infermeter.models.plugin import register_loader


class MLPClassifier(nn.Module):
    def __init__(self, features: int, hidden: int, classes: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(features, hidden), nn.LayerNorm(hidden), nn.GELU(),
            nn.Linear(hidden, hidden), nn.GELU(),
            nn.Linear(hidden, classes),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


@register_loader
def load(config: dict) -> nn.Module:
    features = config["inputs"][0]["example_shape"][-1]
    return MLPClassifier(features, hidden=128, classes=10)
