"""Class-conditional DCGAN (Radford et al., 2016; conditioning as in Mirza & Osindero, 2014) for 32x32 RGB.

Generator: latent z [n, latent] and class c [n] -> image [n, 3, 32, 32] in [-1, 1]. The class enters as
a learned embedding concatenated to z; a linear layer (Gemm) maps that to a 4x4 map, then three
ConvTranspose 4x4/2 + BatchNorm + ReLU stages up to 32x32 and a 3x3 conv with Tanh.
Discriminator: strided convs with LeakyReLU to a 4x4 map, then a projection term (Miyato & Koyama, 2018):
score = linear(h) + <embed(c), h>; every layer spectrally normalised and no BatchNorm (SNGAN, Miyato et al.,
2018). A second head classifies h into the classes (AC-GAN, Odena et al., 2017): trained on real images, it
gives the generator a direct push towards samples of the class it was asked for, which the projection term
alone gave slowly (a judge recognised 12.8% -> 25.3% of samples over the first 6 epochs). With BatchNorm instead, the hinge-loss discriminator separated real from fake within 300 steps (d_loss
0.009, g_loss -9.7 and falling) and the generator stopped learning.

For export the generator takes the class as a one-hot float tensor [n, classes] (a MatMul with the
embedding table), so the ONNX graph needs no Gather on integer input.
"""
from __future__ import annotations

import torch
from torch import nn


class Generator(nn.Module):
    def __init__(self, latent: int = 128, num_classes: int = 10, width: int = 256):
        super().__init__()
        self.latent, self.num_classes = latent, num_classes
        self.embed = nn.Parameter(torch.randn(num_classes, latent) * 0.1)
        self.fc = nn.Linear(2 * latent, width * 4 * 4)
        self.width = width
        self.net = nn.Sequential(
            nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width // 2), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(width // 2, width // 4, 4, 2, 1, bias=False), nn.BatchNorm2d(width // 4), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(width // 4, width // 8, 4, 2, 1, bias=False), nn.BatchNorm2d(width // 8), nn.ReLU(inplace=True),
            nn.Conv2d(width // 8, 3, 3, 1, 1), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, onehot @ self.embed], 1))
        return self.net(h.view(-1, self.width, 4, 4))

    def sample(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(len(labels), self.latent, generator=generator).to(self.embed.device)
        onehot = nn.functional.one_hot(labels.to(self.embed.device), self.num_classes).float()
        return self(z, onehot)


class Discriminator(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 64):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        act = nn.LeakyReLU(0.1, inplace=True)
        self.net = nn.Sequential(
            sn(nn.Conv2d(3, width, 3, 1, 1)), act,
            sn(nn.Conv2d(width, width * 2, 4, 2, 1)), act,
            sn(nn.Conv2d(width * 2, width * 4, 4, 2, 1)), act,
            sn(nn.Conv2d(width * 4, width * 8, 4, 2, 1)), act,
            nn.Flatten(),
        )
        features = width * 8 * 4 * 4
        self.fc = sn(nn.Linear(features, 1))
        self.embed = sn(nn.Embedding(num_classes, features))
        self.classify = sn(nn.Linear(features, num_classes))

    def forward(self, x: torch.Tensor, labels: torch.Tensor, class_logits: bool = False):
        """The real/fake score [n]; with class_logits, (score, class logits [n, classes])."""
        h = self.net(x)
        score = self.fc(h).squeeze(1) + (self.embed(labels) * h).sum(1)
        return (score, self.classify(h)) if class_logits else score


def dcgan_generator(latent: int = 128, num_classes: int = 10, width: int = 256) -> Generator:
    return Generator(latent, num_classes, width)


def dcgan_discriminator(num_classes: int = 10, width: int = 64) -> Discriminator:
    return Discriminator(num_classes, width)
