"""fastnet: a fast, accurate CIFAR-10 network in the spirit of airbench94 (Keller Jordan, 2024).

A frozen 2x2 "whitening" convolution whose filters come from the eigenvectors of the covariance of
2x2 input patches, then three conv groups (64, 256, 256 channels), each conv-pool-BN-GELU-conv-BN-GELU,
a 3x3 max-pool, and a bias-free linear head scaled by 1/9. 1.97 M parameters, 118 M multiply-adds
(0.24 GFLOP) per 32x32 image. Every op exports to plain ONNX (Conv, MaxPool, BatchNormalization,
Erf-based GELU, MatMul, Mul).
"""
from __future__ import annotations

import torch
from torch import nn


class _BatchNorm(nn.BatchNorm2d):
    """BN with a fixed unit scale (only the shift trains) and a fast-moving running average."""

    def __init__(self, num_features: int, momentum: float = 0.6, eps: float = 1e-12):
        super().__init__(num_features, eps=eps, momentum=1 - momentum)
        self.weight.requires_grad = False


class _Conv(nn.Conv2d):
    def __init__(self, cin: int, cout: int, kernel_size: int = 3, padding: int | str = "same", bias: bool = False):
        super().__init__(cin, cout, kernel_size=kernel_size, padding=padding, bias=bias)

    def reset_parameters(self):
        super().reset_parameters()
        if self.bias is not None:
            self.bias.data.zero_()
        # Identity-initialise the first cin filters: the group starts close to a pass-through, which
        # makes the short schedule converge faster.
        w = self.weight.data
        nn.init.dirac_(w[: w.size(1)])


class _ConvGroup(nn.Sequential):
    def __init__(self, cin: int, cout: int, bn_momentum: float):
        super().__init__(
            _Conv(cin, cout), nn.MaxPool2d(2), _BatchNorm(cout, bn_momentum), nn.GELU(),
            _Conv(cout, cout), _BatchNorm(cout, bn_momentum), nn.GELU(),
        )


class FastNet(nn.Module):
    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (64, 256, 256),
                 bn_momentum: float = 0.6, scaling_factor: float = 1 / 9):
        super().__init__()
        whiten_width = 2 * 3 * 2 * 2
        self.whiten = nn.Conv2d(3, whiten_width, kernel_size=2, padding=0, bias=True)
        self.whiten.weight.requires_grad = False
        nn.init.zeros_(self.whiten.bias)
        self.features = nn.Sequential(
            nn.GELU(),
            _ConvGroup(whiten_width, widths[0], bn_momentum),
            _ConvGroup(widths[0], widths[1], bn_momentum),
            _ConvGroup(widths[1], widths[2], bn_momentum),
            nn.MaxPool2d(3),
            nn.Flatten(),
        )
        self.head = nn.Linear(widths[2], num_classes, bias=False)
        self.scaling_factor = scaling_factor

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the whitening filters from normalised training images [n, 3, 32, 32].

        Each eigenvector v of the 2x2x3 patch covariance (eigenvalue l) gives the filters
        +v/sqrt(l+eps) and -v/sqrt(l+eps), so the GELU that follows sees both signs.
        """
        c, h, w = images.shape[1:]
        k = self.whiten.kernel_size[0]
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1)  # n, c, h', w', k, k
        patches = patches.transpose(1, 3).reshape(-1, c * k * k)
        patches = patches - patches.mean(0, keepdim=True)
        cov = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov.double())
        eigenvalues, eigenvectors = eigenvalues.flip(0).float(), eigenvectors.T.flip(0).float()
        filters = eigenvectors.reshape(c * k * k, c, k, k)
        filters = filters / torch.sqrt(eigenvalues.clamp_min(0) + eps).view(-1, 1, 1, 1)
        self.whiten.weight.copy_(torch.cat([filters, -filters]))

    def features_of(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (used for the Fréchet distance of GAN samples)."""
        return self.features(self.whiten(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features_of(x)) * self.scaling_factor


def fastnet(num_classes: int = 10, **kwargs) -> FastNet:
    return FastNet(num_classes=num_classes, **kwargs)
