"""The one training loop shared by every task (classify, gan, sr).

A task owns its modules, optimisers, data and step; this loop owns everything around it: seeds,
device, DistributedDataParallel under torchrun, the progress display, a checkpoint every epoch with
resume, the best checkpoint by the task's validation metric, and metrics to CSV and JSON.

Checkpoints are plain state dicts (tensors, numbers, strings, lists, dicts) so that
torch.load(path, weights_only=True) reads them.
"""
from __future__ import annotations

import csv
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

CHECKPOINT_FORMAT = "edgevision-checkpoint-1"


@dataclass
class Dist:
    """Where this process sits in a torchrun launch (rank 0 of 1 when launched plainly)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: str | None = None) -> Dist:
    """Pick the device and join the process group when launched under torchrun (WORLD_SIZE set)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank if world > 1 else (dev.index or 0))
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank, world, local_rank, dev)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """Data order and augmentation of one epoch depend only on (seed, epoch): resume is exact."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 1009)


def shard(n: int, generator: torch.Generator, ctx: Dist) -> torch.Tensor:
    """This rank's part of a random order of n items.

    The order is the same on every rank (the epoch generator does not depend on the rank), the parts
    are disjoint and equally long so that ranks step together. The generator is then re-seeded per
    rank, so that augmentation and noise differ between ranks.
    """
    perm = torch.randperm(n, generator=generator)
    perm = perm[: n // ctx.world * ctx.world][ctx.rank::ctx.world]
    per_rank(generator, ctx)
    return perm


def per_rank(generator: torch.Generator, ctx: Dist) -> torch.Generator:
    """Re-seed an epoch generator so that each rank draws different random numbers from here on."""
    return generator.manual_seed(generator.initial_seed() + 7919 * (ctx.rank + 1))


def load_checkpoint(path: str) -> dict:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not an edgevision checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    return ckpt


def _plain(x):
    """Numbers from tensors, so metrics serialise to JSON and load under weights_only."""
    if isinstance(x, (torch.Tensor, np.generic)):
        return x.item()
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


class _Progress:
    """rich progress bar on a terminal; a plain line every ~30 s otherwise (log files)."""

    def __init__(self, enabled: bool, total: int, description: str):
        self.enabled, self.total, self.description = enabled, total, description
        self.bar = None
        self.last_print = 0.0
        if enabled and sys.stdout.isatty():
            try:
                from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                           TimeElapsedColumn, TimeRemainingColumn)
            except ImportError:
                return
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[stats]}"))
            self.bar.start()
            self.task = self.bar.add_task(description, total=total, stats="")

    def update(self, done: int, stats: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(self.task, completed=done, stats=stats)
        elif time.time() - self.last_print > 30 or done == self.total:
            self.last_print = time.time()
            print(f"{self.description} {done}/{self.total} {stats}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def fit(task, out_dir: str, epochs: float, *, seed: int = 0, resume: bool = True, ctx: Dist | None = None,
        command: str | None = None, quiet: bool = False, budget_s: float | None = None) -> dict:
    """Train `task` for `epochs` (fractional allowed: the last epoch is cut short) and return the summary.

    budget_s bounds the training wall time (resumed runs count their earlier time): the schedule then
    advances by max(step fraction, time fraction), so a slow or busy machine still ends with a fully
    annealed model. The checkpoint records the steps really done (`--epochs steps/steps_per_epoch`
    replays them).

    The task provides: name, config (plain dict), meta (plain dict for export), modules (dict of
    nn.Module), optimizers (dict), steps_per_epoch, metric_name, higher_is_better,
    distribute(wrap), train_batches(epoch, generator, ctx), train_step(batch, step, progress) -> dict of
    floats with key 'n' (images), end_training(), evaluate() -> dict, extra_state() /
    load_extra_state(d), finish() -> dict of final metrics (for example test accuracy).
    """
    ctx = ctx or setup()
    seed_everything(seed + ctx.rank)
    if ctx.main:
        os.makedirs(out_dir, exist_ok=True)
    last_path, best_path = os.path.join(out_dir, "last.pt"), os.path.join(out_dir, "best.pt")
    total_steps = max(1, math.ceil(epochs * task.steps_per_epoch))
    n_epochs = math.ceil(total_steps / task.steps_per_epoch)

    history: list[dict] = []
    best: dict | None = None
    start_epoch, step, wall_before, done = 0, 0, 0.0, False
    if resume and os.path.isfile(last_path):
        ckpt = load_checkpoint(last_path)
        if ckpt["task"] != task.name or ckpt["config"].get("model") != task.config.get("model"):
            raise ValueError(f"{last_path} holds a {ckpt['task']}/{ckpt['config'].get('model')} run; "
                             f"use another output folder or resume=False")
        for name, module in task.modules.items():
            module.load_state_dict(ckpt["modules"][name])
        for name, opt in task.optimizers.items():
            opt.load_state_dict(ckpt["optimizers"][name])
        task.load_extra_state(ckpt.get("extra", {}))
        history, best = ckpt["history"], ckpt.get("best")
        start_epoch, step, wall_before = ckpt["epoch"], ckpt["step"], ckpt["wall_s"]
        # Asking for more epochs continues a finished run; a spent time budget stays spent.
        done = step >= total_steps or bool(budget_s and wall_before >= budget_s)
        if ctx.main and not quiet:
            print(f"resumed from {last_path} after epoch {start_epoch} (step {step})", flush=True)

    if ctx.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        task.distribute(lambda m: DDP(m, device_ids=ids))

    t_start = time.time()

    def progress() -> float:
        p = step / total_steps
        if budget_s:
            elapsed = torch.tensor(wall_before + time.time() - t_start)
            if ctx.world > 1:  # every rank must follow the same schedule and stop at the same step
                dist.broadcast(elapsed, 0)
            p = max(p, elapsed.item() / budget_s)
        return p

    for epoch in range(start_epoch, n_epochs):
        if done:
            break
        steps = min(task.steps_per_epoch, total_steps - epoch * task.steps_per_epoch)
        for m in task.modules.values():
            m.train()
        progress_bar = _Progress(ctx.main and not quiet, steps, f"epoch {epoch + 1}/{n_epochs}")
        sums: dict[str, float] = {}
        t0 = time.time()
        for i, batch in enumerate(task.train_batches(epoch, epoch_generator(seed, epoch), ctx)):
            p = progress()
            if i >= steps or step >= total_steps or p >= 1:
                break
            out = task.train_step(batch, step, p)
            step += 1
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v) * (1 if k == "n" else out["n"])
            n = sums["n"]
            stats = " ".join(f"{k} {sums[k] / n:.4g}" for k in sums if k != "n")
            progress_bar.update(i + 1, f"{stats} {n * ctx.world / (time.time() - t0):.0f} img/s")
        progress_bar.close()
        train_time = time.time() - t0
        done = step >= total_steps or progress() >= 1
        if done:
            task.end_training()
        for m in task.modules.values():
            m.eval()
        with torch.no_grad():
            val = task.evaluate() if ctx.main else {}
        n = sums.get("n", 0)
        row = {"epoch": epoch + 1, "steps": step, **{f"train_{k}": sums[k] / n for k in sums if k != "n"},
               **_plain(val), "images_per_s": n * ctx.world / max(train_time, 1e-9),
               "wall_s": wall_before + time.time() - t_start}
        history.append(row)
        if ctx.main:
            metric = row.get(task.metric_name)
            improved = best is None or metric is None or (
                metric > best["metric"] if task.higher_is_better else metric < best["metric"])
            if improved:
                best = {"epoch": epoch + 1, "metric": metric, "name": task.metric_name}
            ckpt = _checkpoint(task, epoch + 1, step, row["wall_s"], done, history, best, seed, command)
            torch.save(ckpt, last_path + ".tmp")
            os.replace(last_path + ".tmp", last_path)
            if improved:
                torch.save(ckpt, best_path + ".tmp")
                os.replace(best_path + ".tmp", best_path)
            _write_metrics(out_dir, history)
            if not quiet:
                print(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
                      flush=True)
        if ctx.world > 1:
            dist.barrier()

    summary = {"task": task.name, "model": task.config.get("model"), "epochs_requested": epochs,
               "steps": step, "steps_per_epoch": task.steps_per_epoch, "epochs_done": step / task.steps_per_epoch,
               "seed": seed, "budget_s": budget_s, "command": command, "best": best, "history": history}
    if ctx.main:
        # Final figures (for example test accuracy) come from the best checkpoint, once, at the end.
        ckpt = load_checkpoint(best_path)
        for name, module in task.modules.items():
            module.load_state_dict(ckpt["modules"][name])
        for m in task.modules.values():
            m.eval()
        with torch.no_grad():
            final = _plain(task.finish())
        ckpt["final"] = final
        torch.save(ckpt, best_path)
        summary["final"] = final
        summary["wall_s"] = history[-1]["wall_s"] if history else 0.0
        with open(os.path.join(out_dir, "metrics.json"), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
        if not quiet:
            print("final " + json.dumps(final), flush=True)
    return summary


def _checkpoint(task, epoch, step, wall_s, done, history, best, seed, command) -> dict:
    return {
        "format": CHECKPOINT_FORMAT, "task": task.name, "epoch": epoch, "step": step, "done": done,
        "steps_per_epoch": task.steps_per_epoch, "wall_s": wall_s, "seed": seed,
        "command": command or "", "config": task.config, "meta": task.meta,
        "modules": {k: {n: t.detach().cpu() for n, t in m.state_dict().items()} for k, m in task.modules.items()},
        "optimizers": {k: o.state_dict() for k, o in task.optimizers.items()},
        "extra": task.extra_state(), "history": history, "best": best,
    }


def _write_metrics(out_dir: str, history: list[dict]) -> None:
    with open(os.path.join(out_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump({"history": history}, f, indent=2)
    keys = list(dict.fromkeys(k for row in history for k in row))
    with open(os.path.join(out_dir, "metrics.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
