"""MobileNetV2 (Sandler et al., 2018) with the standard ImageNet shapes: width multiplier 1.0,
inverted residuals with ReLU6 (exported as Clip), 1280-channel head. Random initialisation (it serves
runtime tests and benchmarks).
"""
from __future__ import annotations

from torch import nn

# (expansion, output channels, repeats, first stride)
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True,
            eps: float = 1e-5) -> list[nn.Module]:
    """Conv (no bias, "same" padding) + BN (+ ReLU6)."""
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout, eps=eps)]
    return layers + [nn.ReLU6(inplace=True)] if act else layers


class InvertedResidual(nn.Module):
    """1x1 expand, depthwise kxk, linear 1x1 project; identity shortcut when shapes match.
    EfficientNet-Lite's MBConv is the same block with 5x5 kernels in some stages."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, kernel: int = 3, eps: float = 1e-5):
        super().__init__()
        mid = cin * expand
        layers = conv_bn(cin, mid, 1, eps=eps) if expand != 1 else []
        layers += conv_bn(mid, mid, kernel, stride, groups=mid, eps=eps) + conv_bn(mid, cout, 1, act=False, eps=eps)
        self.layers = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.layers(x)
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        layers, cin = conv_bn(3, 32, 3, 2), 32
        for expand, cout, repeats, stride in STAGES:
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers += conv_bn(cin, 1280, 1)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                        nn.Linear(1280, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.classifier(self.features(x))


def mobilenet_v2(num_classes: int = 1000, **kwargs) -> MobileNetV2:
    return MobileNetV2(num_classes=num_classes, **kwargs)
