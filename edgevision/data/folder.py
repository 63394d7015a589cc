"""Image-folder classification data: ROOT/<class name>/<image files>, one sub-folder per class.

Images are decoded with OpenCV, converted to RGB, resized to one size and held in memory as uint8,
which suits the small, user-collected sets this reader is for.
"""
from __future__ import annotations

import os

import cv2
import numpy as np
import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def list_images(folder: str) -> list[str]:
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))


def read_rgb(path: str) -> np.ndarray:
    """uint8 [h, w, 3] RGB; grayscale files are replicated to three channels."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def load_image_folder(root: str, size: tuple[int, int] = (32, 32)) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Return (images uint8 [n, 3, h, w] RGB, labels int64 [n], class names sorted by folder name)."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder {root!r} does not exist; expected ROOT/<class>/<images>")
    classes = tuple(sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))))
    if not classes:
        raise ValueError(f"{root}: no class sub-folders; expected ROOT/<class>/<images>")
    h, w = size
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in list_images(os.path.join(root, name)):
            image = read_rgb(path)
            if image.shape[:2] != (h, w):
                image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
            images.append(image.transpose(2, 0, 1))
            labels.append(label)
    if not images:
        raise ValueError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders")
    return torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64), classes
