"""Class-conditional GAN task for the shared loop: hinge loss plus the discriminator's class head (AC-GAN,
weighted by aux_weight: cross-entropy on real images for the discriminator, on generated ones for the
generator), Adam (lr 2e-4, betas 0.5 / 0.999: setting C of the SNGAN paper, which holds up with one
discriminator step per generator step), horizontal flips of the real images.

Model selection: when a judge classifier checkpoint is given (for example the trained fastnet), the
validation metric is the share of generated samples that the judge assigns to the class they were
conditioned on; otherwise the last epoch is kept. At the end the best generator is scored on
`final_samples` samples: that share again and, when the judge exposes `features_of` (fastnet does), the
Fréchet distance between the judge's penultimate features of the samples and of the test images
(the FID formula on a CIFAR-10 classifier's features, not Inception FID).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models import create_model
from .classify import augment
from .loop import load_checkpoint, shard


class Judge:
    """A trained classifier from an edgevision checkpoint, fed generator outputs in [-1, 1]."""

    def __init__(self, path: str, device):
        ckpt = load_checkpoint(path)
        if ckpt["task"] != "classify":
            raise ValueError(f"{path}: the judge must be a classify checkpoint, not {ckpt['task']}")
        self.net = create_model(ckpt["config"]["model"], **ckpt["config"]["model_kwargs"]).to(device).eval()
        self.net.load_state_dict(ckpt["modules"]["model"])
        self.mean = torch.tensor(ckpt["meta"]["mean"], device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(ckpt["meta"]["std"], device=device).view(1, 3, 1, 1)

    def normalize(self, images_pm1: torch.Tensor) -> torch.Tensor:
        return ((images_pm1 + 1) / 2 - self.mean) / self.std

    def __call__(self, images_pm1: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(images_pm1))


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2)) for feature rows a [n, d] and b [m, d]."""
    a, b = a.double(), b.double()
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    values, vectors = torch.linalg.eigh(ca)
    root_a = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    # tr((C_a C_b)^(1/2)) = tr((C_a^(1/2) C_b C_a^(1/2))^(1/2)), a symmetric PSD matrix
    cross = torch.linalg.eigvalsh(root_a @ cb @ root_a).clamp_min(0).sqrt().sum()
    return float((a.mean(0) - b.mean(0)).pow(2).sum() + ca.trace() + cb.trace() - 2 * cross)


class GANTask:
    name = "gan"
    higher_is_better = True

    def __init__(self, train: tuple, classes, *, device, test: tuple | None = None, latent: int = 128,
                 g_width: int = 256, d_width: int = 64, batch_size: int = 64, lr: float = 2e-4,
                 aux_weight: float = 1.0, judge: str | None = None, eval_samples: int = 1000, final_samples: int = 10000, seed: int = 0,
                 dataset: str = ""):
        images, labels = train
        self.device, self.batch_size, self.seed, self.eval_samples = device, batch_size, seed, eval_samples
        self.aux_weight = aux_weight
        self.final_samples, self.test = final_samples, test
        self.x, self.y = images, labels
        n_classes = len(classes)
        g_kwargs = {"latent": latent, "num_classes": n_classes, "width": g_width}
        d_kwargs = {"num_classes": n_classes, "width": d_width}
        self.g = create_model("dcgan_generator", **g_kwargs).to(device)
        self.d = create_model("dcgan_discriminator", **d_kwargs).to(device)
        self.train_g, self.train_d = self.g, self.d
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=lr, betas=(0.5, 0.999))
        self.optimizers = {"generator": self.opt_g, "discriminator": self.opt_d}
        self.judge = Judge(judge, device) if judge else None
        self.metric_name = "val_cond_acc" if judge else None
        self.steps_per_epoch = max(1, len(images) // batch_size)
        h, w = images.shape[2:]
        self.config = {"model": "dcgan_generator", "model_kwargs": g_kwargs, "discriminator_kwargs": d_kwargs,
                       "batch_size": batch_size, "lr": lr, "aux_weight": aux_weight, "judge": judge or "",
                       "dataset": dataset}
        self.meta = {"task": "generate", "labels": list(classes), "latent_size": latent, "num_classes": n_classes,
                     "output_size": [int(h), int(w)], "color": "rgb", "output_range": [-1.0, 1.0],
                     "inputs": "z: float [n, latent_size] standard normal; class_onehot: float [n, num_classes]"}

    @property
    def modules(self):
        return {"generator": self.g, "discriminator": self.d}

    def distribute(self, wrap) -> None:
        self.train_g, self.train_d = wrap(self.g), wrap(self.d)

    def train_batches(self, epoch: int, generator: torch.Generator, ctx):
        perm = shard(len(self.x), generator, ctx)
        bs = self.batch_size // ctx.world
        for i in range(len(perm) // bs):
            idx = perm[i * bs:(i + 1) * bs]
            x = self.x[idx].to(self.device).float() / 127.5 - 1
            z = torch.randn(bs, self.g.latent, generator=generator).to(self.device)
            yield augment(x, generator, flip=True, translate=0), self.y[idx].to(self.device), z

    def train_step(self, batch, step: int, progress: float) -> dict:
        real, labels, z = batch
        onehot = F.one_hot(labels, self.g.num_classes).float()
        fake = self.train_g(z, onehot)
        # One discriminator call on real and fake together: DistributedDataParallel wants one forward
        # per backward.
        scores, logits = self.train_d(torch.cat([real, fake.detach()]), torch.cat([labels, labels]), class_logits=True)
        d_real, d_fake = scores.chunk(2)
        # The class head learns from real images only, so it never learns the generator's mistakes.
        d_loss = (F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
                  + self.aux_weight * F.cross_entropy(logits[:len(labels)], labels))
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        g_score, g_logits = self.train_d(fake, labels, class_logits=True)
        g_loss = -g_score.mean() + self.aux_weight * F.cross_entropy(g_logits, labels)
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item(), "n": len(labels)}

    def end_training(self) -> None:
        pass

    def _samples(self, n: int):
        """Batches of (labels, samples in [-1, 1]): classes in turn, noise fixed by the seed."""
        gen = torch.Generator().manual_seed(self.seed + 12345)
        for i in range(0, n, 500):
            labels = torch.arange(i, min(n, i + 500)) % self.g.num_classes
            yield labels, self.g.sample(labels, gen)

    def conditional_accuracy(self, n: int) -> float:
        """Share of n generated samples the judge assigns to the class they were conditioned on."""
        correct = sum((self.judge(fake).argmax(1).cpu() == labels).sum().item() for labels, fake in self._samples(n))
        return correct / n

    def evaluate(self) -> dict:
        return {"val_cond_acc": self.conditional_accuracy(self.eval_samples)} if self.judge else {}

    def finish(self) -> dict:
        if not self.judge:
            return {}
        out = {"cond_acc": self.conditional_accuracy(self.final_samples), "samples": self.final_samples}
        features = getattr(self.judge.net, "features_of", None)
        if features is not None and self.test is not None:
            fake = torch.cat([features(self.judge.normalize(x)).cpu() for _, x in self._samples(self.final_samples)])
            images = self.test[0]
            real = torch.cat([features(self.judge.normalize(images[i:i + 500].to(self.device).float() / 127.5 - 1)).cpu()
                              for i in range(0, len(images), 500)])
            out["frechet_distance_judge_features"] = frechet_distance(fake, real)
            out["test_images"] = len(images)
        return out

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass
