"""Datasets for training: CIFAR-10 binary batches, image folders, super-resolution pairs.

Needs PyTorch (the `train` extra). Nothing here downloads: a missing dataset raises an error that says
where to get it.
"""
try:
    import torch  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised only without torch
    raise ImportError("edgevision.data needs PyTorch: pip install edgevision[train]") from e

from .cifar10 import CIFAR10_CLASSES, load_cifar10
from .folder import load_image_folder
from .sr import SRPairs, bicubic_downscale, psnr_y, rgb_to_y


__all__ = ["CIFAR10_CLASSES", "load_cifar10", "load_image_folder", "SRPairs", "bicubic_downscale",
           "psnr_y", "rgb_to_y"]
