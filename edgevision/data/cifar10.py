"""CIFAR-10 in the original binary layout (data_batch_1..5.bin, test_batch.bin, batches.meta.txt).

Each record is 3073 bytes: one label byte, then 1024 R, 1024 G, 1024 B bytes (row-major 32x32).
The whole set is small (150 MB as uint8), so it is held in memory as tensors and augmented batch-wise.
"""
from __future__ import annotations

import os

import numpy as np
import torch

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Channel statistics of the CIFAR-10 training set (RGB, on the 0..1 scale), the usual normalisation.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

_RECORD = 1 + 3 * 32 * 32
_WHERE = ("Get the 'CIFAR-10 binary version' (cifar-10-binary.tar.gz) from "
          "https://www.cs.toronto.edu/~kriz/cifar.html, unpack it and pass the folder holding "
          "data_batch_1.bin .. data_batch_5.bin and test_batch.bin.")


def _read_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % _RECORD:
        raise ValueError(f"{path}: {raw.size} bytes is not a whole number of {_RECORD}-byte CIFAR-10 records")
    raw = raw.reshape(-1, _RECORD)
    labels = raw[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise ValueError(f"{path}: label {labels.max()} out of range 0..9; not a CIFAR-10 binary batch")
    return raw[:, 1:].reshape(-1, 3, 32, 32), labels


def load_cifar10(root: str, split: str = "train") -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Return (images uint8 [n, 3, 32, 32] RGB, labels int64 [n], class names) for split 'train' or 'test'."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
    paths = [os.path.join(root, n) for n in names]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"CIFAR-10 {split} files missing: {', '.join(missing)}. {_WHERE}")
    parts = [_read_batch(p) for p in paths]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    classes = CIFAR10_CLASSES
    meta = os.path.join(root, "batches.meta.txt")
    if os.path.isfile(meta):
        with open(meta, encoding="utf-8") as f:
            listed = tuple(line.strip() for line in f if line.strip())
        if len(listed) == 10:
            classes = listed
    return images, labels, classes
