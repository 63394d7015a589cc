"""ESPCN-style super-resolution (Shi et al., 2016): all feature convolutions run at low resolution,
then one conv makes scale^2 sub-pixel channels and a pixel shuffle (ONNX DepthToSpace) lays them out.

Input: LR image in [0, 1], 1 channel (Y of YCbCr) or 3 (RGB). Output: HR image, same channels.
A global residual adds the nearest-upsampled input (a fixed 1x1 conv copies each input channel to its
scale^2 sub-pixel channels before the shuffle, so the graph stays Conv + Add + DepthToSpace), which
lets the convs learn the detail only.
Default: 5x5 conv to 64 channels, 3x3 64 -> 64, 3x3 64 -> 32, 3x3 32 -> channels*scale^2 (59.7 k
parameters on Y). Per 1280x720 output frame (`gflop_per_frame`, 2 x multiply-adds) on Y: 26.7 GFLOP
at x2, 12.2 at x3, 7.1 at x4 (RGB: 29.3 / 13.9 / 8.5), i.e. under 1 TFLOP/s at 30 frame/s.
"""
from __future__ import annotations

import torch
from torch import nn


class ESPCN(nn.Module):
    def __init__(self, scale: int = 2, channels: int = 1, width: int = 64, depth: int = 3):
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {scale}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (Y) or 3 (RGB), got {channels}")
        self.scale, self.channels = scale, channels
        layers = [nn.Conv2d(channels, width, 5, 1, 2), nn.ReLU(inplace=True)]
        cin = width
        for i in range(depth - 1):
            cout = width if i < depth - 2 else width // 2
            layers += [nn.Conv2d(cin, cout, 3, 1, 1), nn.ReLU(inplace=True)]
            cin = cout
        layers += [nn.Conv2d(cin, channels * scale * scale, 3, 1, 1)]
        self.body = nn.Sequential(*layers)
        self.shuffle = nn.PixelShuffle(scale)
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)
        copy = torch.zeros(channels * scale * scale, channels, 1, 1)
        for c in range(channels):
            copy[c * scale * scale:(c + 1) * scale * scale, c] = 1
        self.register_buffer("copy", copy, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.body(x) + nn.functional.conv2d(x, self.copy))


def gflop_per_frame(model: ESPCN, out_hw: tuple[int, int] = (720, 1280)) -> float:
    """Multiply-adds x 2 of the convolutions for one output frame of out_hw (LR input is out_hw/scale)."""
    h, w = out_hw[0] / model.scale, out_hw[1] / model.scale
    macs = sum(m.weight.numel() * h * w for m in model.body if isinstance(m, nn.Conv2d))
    return 2 * macs / 1e9


def espcn(scale: int = 2, channels: int = 1, width: int = 64, depth: int = 3) -> ESPCN:
    return ESPCN(scale, channels, width, depth)
