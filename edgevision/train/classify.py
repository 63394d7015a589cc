"""Image classification task for the shared loop: in-memory uint8 data, batch-wise flip + translate
augmentation, and three optimisation recipes.

Recipes
- airbench: the airbench94 recipe for fastnet: label smoothing 0.2 on a summed loss, Nesterov SGD
  with hyper-parameters given per 1024 images, BN shifts at a 64x learning rate, a triangular
  schedule (0.2 -> 1 over 23% of the steps, then -> 0.07), lookahead averaging, the whitening bias
  trained for the first 3 epochs only, whitening filters from the training patches.
- adam: Adam at a constant learning rate and mean cross-entropy (the seed article's recipe).
- sgd: Nesterov SGD with a linear warm-up and cosine decay.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..models import create_model
from .loop import shard

RECIPES = {
    "airbench": dict(batch_size=1024, lr=11.5, momentum=0.85, weight_decay=0.0153, label_smoothing=0.2,
                     bias_scaler=64.0, whiten_bias_epochs=3, lookahead=True, translate=2, flip=True),
    "adam": dict(batch_size=64, lr=1e-3, momentum=0.0, weight_decay=0.0, label_smoothing=0.0,
                 lookahead=False, translate=0, flip=False),
    "sgd": dict(batch_size=128, lr=0.05, momentum=0.9, weight_decay=5e-4, label_smoothing=0.1,
                lookahead=False, translate=4, flip=True),
}
DEFAULT_RECIPE = {"fastnet": "airbench", "seed_cnn": "adam"}


def split_holdout(n: int, holdout: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, validation): a fixed random `holdout` of the training set, for model selection."""
    if not 0 <= holdout < n:
        raise ValueError(f"validation hold-out {holdout} must be in [0, {n})")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[holdout:].sort().values, perm[:holdout].sort().values


def augment(x: torch.Tensor, generator: torch.Generator, flip: bool, translate: int) -> torch.Tensor:
    """Random horizontal flips and translations by up to `translate` px (reflect padding), per image."""
    n = x.shape[0]
    if flip:
        mask = torch.rand(n, generator=generator) < 0.5
        x = torch.where(mask.view(-1, 1, 1, 1).to(x.device), x.flip(3), x)
    if translate:
        t = translate
        h, w = x.shape[2:]
        padded = F.pad(x, (t, t, t, t), mode="reflect")
        shifts = torch.randint(0, 2 * t + 1, (n, 2), generator=generator).to(x.device)
        out = torch.empty_like(x)
        for dy in range(2 * t + 1):
            for dx in range(2 * t + 1):
                sel = ((shifts[:, 0] == dy) & (shifts[:, 1] == dx)).nonzero().flatten()
                if len(sel):
                    out[sel] = padded[sel, :, dy:dy + h, dx:dx + w]
        x = out
    return x


class Lookahead:
    """Every 5 steps the weights move to an average of their slow copy and themselves (airbench94)."""

    def __init__(self, net: torch.nn.Module):
        self.slow = {k: v.detach().clone() for k, v in net.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, net: torch.nn.Module, decay: float) -> None:
        state = net.state_dict()
        for k, slow in self.slow.items():
            slow.lerp_(state[k], 1 - decay)
            state[k].copy_(slow)


class ClassifyTask:
    name = "classify"
    metric_name = "val_acc"
    higher_is_better = True

    def __init__(self, model: str, train: tuple, test: tuple | None, classes, *, device, holdout: int = 5000,
                 recipe: str | None = None, epochs: float = 10, seed: int = 0, model_kwargs: dict | None = None,
                 mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), dataset: str = "", **overrides):
        recipe = recipe or DEFAULT_RECIPE.get(model, "sgd")
        if recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {sorted(RECIPES)}, got {recipe!r}")
        hp = {**RECIPES[recipe], **{k: v for k, v in overrides.items() if v is not None}}
        images, labels = train
        tr, va = split_holdout(len(images), holdout, seed)
        self.device = device
        self.x_train, self.y_train = images[tr], labels[tr]
        self.x_val, self.y_val = images[va], labels[va]
        self.test = test
        self.hp, self.recipe, self.epochs = hp, recipe, epochs
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)
        model_kwargs = {"num_classes": len(classes), **(model_kwargs or {})}
        # Channels-last activations: oneDNN's convolutions train fastnet about 25% faster on a CPU
        # (135 -> 170 img/s on 2 EPYC cores), and cuDNN prefers NHWC too.
        self.memory_format = torch.channels_last
        self.net = create_model(model, **model_kwargs).to(device, memory_format=self.memory_format)
        self.train_net = self.net
        h, w = images.shape[2:]
        self.config = {"model": model, "model_kwargs": model_kwargs, "recipe": recipe, "hp": hp, "epochs": epochs,
                       "holdout": holdout, "dataset": dataset, "train_images": len(tr)}
        self.meta = {"task": "classify", "labels": list(classes), "input_size": [int(h), int(w)], "color": "rgb",
                     "mean": list(mean), "std": list(std), "pixel_scale": 1 / 255}
        self.steps_per_epoch = max(1, len(tr) // hp["batch_size"])
        if hasattr(self.net, "init_from_data"):
            n = min(5000, len(tr))
            self.net.init_from_data(self.normalize(self.x_train[:n].to(device)))
        self._build_optimizer()
        self.lookahead = Lookahead(self.net) if hp["lookahead"] else None

    def normalize(self, x_uint8: torch.Tensor) -> torch.Tensor:
        x = (x_uint8.float() / 255 - self.mean) / self.std
        return x.contiguous(memory_format=self.memory_format)

    def _build_optimizer(self) -> None:
        hp = self.hp
        params = [(k, p) for k, p in self.net.named_parameters() if p.requires_grad]
        if self.recipe == "airbench":
            # Hyper-parameters are per 1024 images of a summed loss, so they do not move with batch size.
            kilostep = 1024 * (1 + 1 / (1 - hp["momentum"]))
            lr = hp["lr"] / kilostep
            wd = hp["weight_decay"] * hp["batch_size"] / kilostep
            lr_bias = lr * hp["bias_scaler"]
            bn_bias = [p for k, p in params if p.ndim == 1 and self._is_bn(k)]
            other = [p for k, p in params if not (p.ndim == 1 and self._is_bn(k))]
            groups = [dict(params=bn_bias, lr=lr_bias, weight_decay=wd / lr_bias),
                      dict(params=other, lr=lr, weight_decay=wd / lr)]
            self.opt = torch.optim.SGD(groups, momentum=hp["momentum"], nesterov=True)
        elif self.recipe == "adam":
            self.opt = torch.optim.Adam([p for _, p in params], lr=hp["lr"], weight_decay=hp["weight_decay"])
        else:
            self.opt = torch.optim.SGD([p for _, p in params], lr=hp["lr"], momentum=hp["momentum"],
                                       nesterov=True, weight_decay=hp["weight_decay"])
        for g in self.opt.param_groups:
            g["base_lr"] = g["lr"]
        self.optimizers = {"model": self.opt}

    def _is_bn(self, param_name: str) -> bool:
        module = self.net.get_submodule(param_name.rsplit(".", 1)[0])
        return isinstance(module, torch.nn.modules.batchnorm._BatchNorm)

    @property
    def modules(self):
        return {"model": self.net}

    def distribute(self, wrap) -> None:
        self.train_net = wrap(self.net)

    def lr_factor(self, frac: float) -> float:
        """Learning-rate multiplier at training progress frac in [0, 1)."""
        if self.recipe == "airbench":
            warm = 0.23
            if frac < warm:
                return 0.2 + 0.8 * frac / warm
            return 1.0 + (0.07 - 1.0) * (frac - warm) / (1 - warm)
        if self.recipe == "adam":
            return 1.0
        warm = 0.05
        return frac / warm if frac < warm else 0.5 * (1 + math.cos(math.pi * (frac - warm) / (1 - warm)))

    def train_batches(self, epoch: int, generator: torch.Generator, ctx):
        hp = self.hp
        if self.recipe == "airbench" and epoch >= hp["whiten_bias_epochs"] and hasattr(self.net, "whiten"):
            self.net.whiten.bias.requires_grad = False
        perm = shard(len(self.x_train), generator, ctx)
        bs = hp["batch_size"] // ctx.world
        for i in range(len(perm) // bs):
            idx = perm[i * bs:(i + 1) * bs]
            x = self.x_train[idx].to(self.device, non_blocking=True)
            x = augment(self.normalize(x), generator, hp["flip"], hp["translate"])
            x = x.contiguous(memory_format=self.memory_format)
            yield x, self.y_train[idx].to(self.device, non_blocking=True)

    def train_step(self, batch, step: int, progress: float) -> dict:
        x, y = batch
        factor = self.lr_factor(progress)
        for g in self.opt.param_groups:
            g["lr"] = g["base_lr"] * factor
        logits = self.train_net(x)
        if self.recipe == "airbench":
            loss = F.cross_entropy(logits, y, label_smoothing=self.hp["label_smoothing"], reduction="sum")
            shown = loss.detach() / len(y)
        else:
            loss = shown = F.cross_entropy(logits, y, label_smoothing=self.hp["label_smoothing"])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.lookahead is not None and step % 5 == 0:
            self.lookahead.update(self.net, 0.95 ** 5 * progress ** 3)
        acc = (logits.detach().argmax(1) == y).float().mean()
        return {"loss": shown.item(), "acc": acc.item(), "n": len(y)}

    def end_training(self) -> None:
        if self.lookahead is not None:
            self.lookahead.update(self.net, 1.0)

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor, batch: int = 500) -> float:
        correct = 0
        for i in range(0, len(images), batch):
            x = self.normalize(images[i:i + batch].to(self.device))
            correct += (self.net(x).argmax(1).cpu() == labels[i:i + batch]).sum().item()
        return correct / max(1, len(images))

    def evaluate(self) -> dict:
        return {"val_acc": self.accuracy(self.x_val, self.y_val)} if len(self.x_val) else {}

    def finish(self) -> dict:
        out = self.evaluate()
        if self.test is not None:
            # Single view: no flipped or shifted copies are averaged into the reported figure.
            out["test_acc"] = self.accuracy(*self.test)
            out["test_images"] = len(self.test[0])
        return out

    def extra_state(self) -> dict:
        return {"lookahead": self.lookahead.slow} if self.lookahead is not None else {}

    def load_extra_state(self, state: dict) -> None:
        if self.lookahead is not None and "lookahead" in state:
            self.lookahead.slow = state["lookahead"]
