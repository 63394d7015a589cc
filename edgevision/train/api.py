"""Entry points: train_classify / train_gan / train_sr (what `edgevision train ...` calls)."""
from __future__ import annotations

import os

import torch

from .loop import fit, setup


def _load_classify_data(data: str, size: tuple[int, int] | None):
    """CIFAR-10 binary folder (data_batch_*.bin) or an image folder with train/ (and test/) inside."""
    from ..data import cifar10, folder

    if os.path.isfile(os.path.join(data, "data_batch_1.bin")):
        x, y, classes = cifar10.load_cifar10(data, "train")
        test = cifar10.load_cifar10(data, "test")[:2] if os.path.isfile(os.path.join(data, "test_batch.bin")) else None
        return (x, y), test, classes, cifar10.CIFAR10_MEAN, cifar10.CIFAR10_STD
    size = size or (32, 32)
    root = os.path.join(data, "train") if os.path.isdir(os.path.join(data, "train")) else data
    x, y, classes = folder.load_image_folder(root, size)
    test = None
    if os.path.isdir(os.path.join(data, "test")):
        xt, yt, test_classes = folder.load_image_folder(os.path.join(data, "test"), size)
        if test_classes != classes:
            raise ValueError(f"{data}: test/ classes {test_classes} differ from train/ classes {classes}")
        test = (xt, yt)
    mean = tuple((x.float() / 255).mean((0, 2, 3)).tolist())
    std = tuple((x.float() / 255).std((0, 2, 3)).tolist())
    return (x, y), test, classes, mean, std


def train_classify(data: str, out: str, model: str = "fastnet", epochs: float = 10, *, recipe: str | None = None,
                   holdout: int = 5000, seed: int = 0, device: str | None = None, threads: int | None = None,
                   size: tuple[int, int] | None = None, resume: bool = True, quiet: bool = False,
                   budget_minutes: float | None = None, command: str | None = None,
                   model_kwargs: dict | None = None, **hp) -> dict:
    """Train a classifier on a CIFAR-10 binary folder or an image folder; returns the run summary.

    model_kwargs go to the model factory (for example fastnet widths); hp overrides the recipe: batch_size, lr, momentum, weight_decay, label_smoothing, flip, translate,
    lookahead. A fixed `holdout` of training images selects the best epoch; the test split is only
    scored once, at the end, on the best checkpoint.
    """
    from .classify import ClassifyTask

    if threads:
        torch.set_num_threads(threads)
    ctx = setup(device)
    train, test, classes, mean, std = _load_classify_data(data, size)
    task = ClassifyTask(model, train, test, classes, device=ctx.device, holdout=holdout, recipe=recipe,
                        epochs=epochs, seed=seed, mean=mean, std=std, dataset=os.path.abspath(data),
                        model_kwargs=model_kwargs, **hp)
    return fit(task, out, epochs, seed=seed, resume=resume, ctx=ctx, command=command, quiet=quiet,
               budget_s=budget_minutes * 60 if budget_minutes else None)


def train_gan(data: str, out: str, epochs: float = 20, *, latent: int = 128, g_width: int = 256, d_width: int = 64,
              batch_size: int = 64, lr: float = 2e-4, aux_weight: float = 1.0, judge: str | None = None,
              eval_samples: int = 1000,
              final_samples: int = 10000, seed: int = 0, device: str | None = None, threads: int | None = None, resume: bool = True,
              quiet: bool = False, budget_minutes: float | None = None, command: str | None = None) -> dict:
    """Train the class-conditional DCGAN on the training split of a CIFAR-10 folder or image folder.

    With a judge (a classify checkpoint) the best epoch is the one whose samples the judge recognises
    most often, and the end scores final_samples samples (see gan.py).
    """
    from .gan import GANTask

    if threads:
        torch.set_num_threads(threads)
    ctx = setup(device)
    train, test, classes, _, _ = _load_classify_data(data, None)
    task = GANTask(train, classes, device=ctx.device, test=test, latent=latent, g_width=g_width, d_width=d_width,
                   batch_size=batch_size, lr=lr, aux_weight=aux_weight, judge=judge, eval_samples=eval_samples,
                   final_samples=final_samples, seed=seed, dataset=os.path.abspath(data))
    return fit(task, out, epochs, seed=seed, resume=resume, ctx=ctx, command=command, quiet=quiet,
               budget_s=budget_minutes * 60 if budget_minutes else None)


def train_sr(data: str, out: str, epochs: float = 20, *, scale: int = 2, channels: int = 1, width: int = 64,
             depth: int = 3, patch: int = 24, batch_size: int = 32, lr: float = 1e-3, steps_per_epoch: int = 200,
             holdout: int = 5, eval_dirs: list[str] | None = None, seed: int = 0, device: str | None = None,
             threads: int | None = None, resume: bool = True, quiet: bool = False,
             budget_minutes: float | None = None, command: str | None = None, init_from: str | None = None) -> dict:
    """Train ESPCN on a folder of HR images (or an SR root with T91/, Set5/, Set14/)."""
    from ..data import sr as srdata
    from .sr import SRTask, find_sets

    if threads:
        torch.set_num_threads(threads)
    ctx = setup(device)
    train_dir, evals = find_sets(data)
    if eval_dirs:
        evals = {os.path.basename(os.path.normpath(d)): d for d in eval_dirs}
    task = SRTask(srdata.load_images(train_dir), {k: srdata.load_images(v) for k, v in evals.items()},
                  device=ctx.device, scale=scale, channels=channels, width=width, depth=depth, patch=patch,
                  batch_size=batch_size, lr=lr, steps_per_epoch=steps_per_epoch, holdout=holdout, seed=seed,
                  dataset=os.path.abspath(train_dir), init_from=init_from)
    return fit(task, out, epochs, seed=seed, resume=resume, ctx=ctx, command=command, quiet=quiet,
               budget_s=budget_minutes * 60 if budget_minutes else None)
