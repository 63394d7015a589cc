"""seed_cnn: the small CIFAR-10 network of the article edgevision grew from.

Conv 32 3x3, MaxPool 2, Conv 64 3x3, MaxPool 2, Conv 64 3x3, Flatten, Dense 64, Dense 10, ReLU after
each hidden layer; valid (unpadded) convolutions on 32x32x3 as in the Keras original
(32 -> 30 -> 15 -> 13 -> 6 -> 4, so 4*4*64 = 1024 features), 122,570 parameters.
"""
from __future__ import annotations

from torch import nn


class SeedCNN(nn.Sequential):
    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__(
            nn.Conv2d(in_channels, 32, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3), nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Linear(4 * 4 * 64, 64), nn.ReLU(inplace=True),
            nn.Linear(64, num_classes),
        )


def seed_cnn(num_classes: int = 10, **kwargs) -> SeedCNN:
    return SeedCNN(num_classes=num_classes, **kwargs)
