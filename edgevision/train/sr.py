"""Super-resolution task for the shared loop: ESPCN on random HR crops (flips, 90-degree rotations)
and their bicubic LR, L1 loss, Adam with cosine decay.

Model selection uses Y-PSNR on whole training-set images held out from training (never Set5/Set14);
the evaluation sets are scored once at the end, with bicubic beside.
"""
from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F

from ..data import sr as srdata
from ..models import create_model
from .loop import load_checkpoint, per_rank


class SRTask:
    name = "sr"
    metric_name = "val_psnr"
    higher_is_better = True

    def __init__(self, train_images: list, eval_sets: dict, *, device, scale: int = 2, channels: int = 1,
                 width: int = 64, depth: int = 3, patch: int = 24, batch_size: int = 32, lr: float = 1e-3,
                 steps_per_epoch: int = 200, holdout: int = 5, seed: int = 0, dataset: str = "",
                 init_from: str | None = None):
        if not 0 <= holdout < len(train_images):
            raise ValueError(f"hold-out {holdout} must leave training images (have {len(train_images)})")
        order = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(seed)).tolist()
        val_images = [train_images[i] for i in order[:holdout]]
        train_images = [train_images[i] for i in order[holdout:]]
        self.device, self.scale, self.channels, self.batch_size = device, scale, channels, batch_size
        self.pairs = srdata.SRPairs(train_images, scale, patch, channels)
        self.val = srdata.eval_pairs(val_images, scale, channels)
        self.eval_sets = {name: srdata.eval_pairs(images, scale, channels) for name, images in eval_sets.items()}
        model_kwargs = {"scale": scale, "channels": channels, "width": width, "depth": depth}
        self.net = create_model("espcn", **model_kwargs)
        if init_from:
            self._init_from(init_from, model_kwargs)
        self.net = self.net.to(device)
        self.train_net = self.net
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.base_lr = lr
        self.optimizers = {"model": self.opt}
        self.steps_per_epoch = steps_per_epoch
        self.config = {"model": "espcn", "model_kwargs": model_kwargs, "patch": patch, "batch_size": batch_size,
                       "lr": lr, "holdout": holdout, "dataset": dataset, "init_from": init_from or ""}
        self.meta = {"task": "enhance", "sr_scale": scale, "color": "rgb", "pixel_scale": 1 / 255,
                     "channels": "Y" if channels == 1 else "RGB", "mean": [0.0] * channels, "std": [1.0] * channels,
                     "input_range": [0.0, 1.0],
                     "input": ("Y of YCbCr (BT.601, 16..235 scaled to 0..1); upscale Cb, Cr with bicubic"
                               if channels == 1 else "RGB in 0..1")}

    def _init_from(self, path: str, model_kwargs: dict) -> None:
        """Start from another SR checkpoint (e.g. x3/x4 from x2): every tensor whose shape matches is copied;
        the sub-pixel output conv, whose width is channels * scale^2, keeps its zero initialisation."""
        source = load_checkpoint(path)["modules"]["model"]
        own = self.net.state_dict()
        matched = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
        if not matched:
            raise ValueError(f"{path}: no tensor matches the shapes of this ESPCN ({model_kwargs})")
        self.net.load_state_dict(matched, strict=False)

    @property
    def modules(self):
        return {"model": self.net}

    def distribute(self, wrap) -> None:
        self.train_net = wrap(self.net)

    def train_batches(self, epoch: int, generator: torch.Generator, ctx):
        bs = self.batch_size // ctx.world
        per_rank(generator, ctx)  # different patches on each rank
        for _ in range(self.steps_per_epoch):
            lr, hr = self.pairs.sample(bs, generator)
            yield lr.to(self.device), hr.to(self.device)

    def train_step(self, batch, step: int, progress: float) -> dict:
        lr_img, hr = batch
        for g in self.opt.param_groups:
            g["lr"] = self.base_lr * 0.5 * (1 + math.cos(math.pi * progress))
        loss = F.l1_loss(self.train_net(lr_img), hr)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": loss.item(), "n": len(hr)}

    def end_training(self) -> None:
        pass

    def psnr(self, pairs, model=None) -> float:
        values = []
        for lr_img, hr in pairs:
            out = self.net(lr_img.to(self.device)).cpu() if model is None else model(lr_img)
            values.append(srdata.psnr_y(out, hr, self.scale))
        return sum(values) / max(1, len(values))

    def evaluate(self) -> dict:
        return {"val_psnr": self.psnr(self.val)} if self.val else {}

    def finish(self) -> dict:
        out = self.evaluate()
        for name, pairs in self.eval_sets.items():
            out[f"{name}_psnr"] = self.psnr(pairs)
            out[f"{name}_bicubic_psnr"] = self.psnr(pairs, lambda x: srdata.bicubic_upscale(x, self.scale))
        return out

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass


def find_sets(data: str) -> tuple[str, dict[str, str]]:
    """A folder of training images, or an SR root holding T91/ (training) and Set5/, Set14/ (evaluation)."""
    if os.path.isdir(os.path.join(data, "T91")):
        evals = {n: os.path.join(data, n) for n in ("Set5", "Set14") if os.path.isdir(os.path.join(data, n))}
        return os.path.join(data, "T91"), evals
    return data, {}
