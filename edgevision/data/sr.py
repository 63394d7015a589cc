"""Super-resolution data: HR crops and their bicubic LR from Set5/Set14/T91-style folders of images,
and the standard evaluation protocol.

Protocol (as in SRCNN/FSRCNN/ESPCN papers): the HR image is cropped to a multiple of the scale, LR is
its bicubic downscale (antialiased, like MATLAB imresize) rounded to uint8, PSNR is computed on the
Y channel of YCbCr (ITU-R BT.601, 16..235) with `scale` pixels of border removed.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from .folder import list_images, read_rgb

_WHERE = ("Super-resolution sets: Set5 and Set14 (evaluation) and T91 (training) as image folders; "
          "a copy with provenance is in the project's shared/data/sr.")


def load_images(folder: str) -> list[np.ndarray]:
    """All images of a folder as uint8 [h, w, 3] RGB, in file-name order."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"super-resolution image folder {folder!r} does not exist. {_WHERE}")
    paths = list_images(folder)
    if not paths:
        raise ValueError(f"{folder}: no images. {_WHERE}")
    return [read_rgb(p) for p in paths]


def mod_crop(image: np.ndarray, scale: int) -> np.ndarray:
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale]


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 [h, w, 3] -> float [1, 3, h, w] in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """[n, 3, h, w] RGB in [0, 1] -> [n, 1, h, w] BT.601 luma in [16/255, 235/255] (MATLAB rgb2ycbcr)."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return (16 + 65.481 * r + 128.553 * g + 24.966 * b) / 255


def bicubic_downscale(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Antialiased bicubic downscale of [n, c, h, w] in [0, 1] (h, w multiples of scale), rounded to 8 bits."""
    h, w = x.shape[2:]
    y = F.interpolate(x, size=(h // scale, w // scale), mode="bicubic", align_corners=False, antialias=True)
    return (y.clamp(0, 1) * 255).round() / 255


def bicubic_upscale(x: torch.Tensor, scale: int) -> torch.Tensor:
    """The bicubic baseline. antialias=True selects the a=-0.5 cubic of MATLAB imresize (plain torch
    bicubic uses a=-0.75); when upscaling it changes nothing else."""
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)


def psnr_y(sr: torch.Tensor, hr: torch.Tensor, scale: int) -> float:
    """PSNR in dB on Y with `scale` border pixels removed; inputs [1, 1 or 3, h, w] in [0, 1].

    One-channel inputs are taken as Y already. Both are rounded to 8 bits first, as saved images are.
    """
    if sr.shape != hr.shape:
        raise ValueError(f"shapes differ: {tuple(sr.shape)} vs {tuple(hr.shape)}")
    sr, hr = (rgb_to_y(t) if t.shape[1] == 3 else t for t in (sr.clamp(0, 1), hr))
    sr, hr = ((t * 255).round() for t in (sr, hr))
    b = scale
    diff = (sr - hr)[..., b:-b, b:-b].double()
    mse = diff.pow(2).mean().item()
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


class SRPairs:
    """Training pairs: random HR crops (patch*scale square), flips and 90-degree rotations, and their LR.

    channels=1 trains on Y, channels=3 on RGB. Images smaller than a crop are skipped.
    """

    def __init__(self, images: list[np.ndarray], scale: int, patch: int = 24, channels: int = 1):
        self.scale, self.patch, self.channels = scale, patch, channels
        size = patch * scale
        self.images = [to_tensor(im)[0] for im in images if min(im.shape[:2]) >= size]
        if not self.images:
            raise ValueError(f"no image is at least {size}x{size} pixels for patch {patch} at x{scale}")
        if channels == 1:
            self.images = [rgb_to_y(im[None])[0] for im in self.images]
        # Sample images in proportion to their area, so every HR pixel is about equally likely.
        self.weights = torch.tensor([im.shape[1] * im.shape[2] for im in self.images], dtype=torch.float)

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.patch * self.scale
        which = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        crops = []
        for i in which.tolist():
            im = self.images[i]
            top = torch.randint(0, im.shape[1] - size + 1, (1,), generator=generator).item()
            left = torch.randint(0, im.shape[2] - size + 1, (1,), generator=generator).item()
            crop = im[:, top:top + size, left:left + size]
            k, flip = torch.randint(0, 4, (2,), generator=generator).tolist()
            crop = torch.rot90(crop, k, (1, 2))
            crops.append(crop.flip(2) if flip % 2 else crop)
        hr = torch.stack(crops)
        return bicubic_downscale(hr, self.scale), hr


def eval_pairs(images: list[np.ndarray], scale: int, channels: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(LR, HR) pairs of whole images by the standard protocol, on Y (channels=1) or RGB.

    LR comes from the RGB image (as in MATLAB), then Y is taken of both when channels=1.
    """
    pairs = []
    for im in images:
        hr = to_tensor(mod_crop(im, scale))
        lr = bicubic_downscale(hr, scale)
        if channels == 1:
            hr, lr = rgb_to_y(hr), rgb_to_y(lr)
        pairs.append((lr, hr))
    return pairs
