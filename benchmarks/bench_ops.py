"""Op benchmark: edgevision's fast kernels against torch's, same inputs, same process, same run.

CPU: every distinct conv of ResNet-18 and EfficientNet-Lite0 at 224x224, the CIFAR-10 networks (the
seed CNN and an airbench-style "fastnet"), gemm/linear shapes, and every other op at one
representative shape, at batch 1 and 32. Both libraries get the same thread count (--threads:
torch.set_num_threads and edgevision.ops.set_num_threads). Calls are interleaved (edgevision,
torch, edgevision, ...) so load from other processes hits both alike. Reported per case: median and
p90 time, GFLOP/s, ratio = torch time / edgevision time (>= 1 means edgevision is faster) and the
fraction of this machine's FP32 peak, measured in the same run by an FMA microbenchmark
(_C.cpu_peak_gflops; if the extension does not export it yet, a documented estimate is used).

GPU (torch.cuda available and edgevision built with CUDA): the same cases on the device against
torch/cuDNN, FP32 (TF32 off on both sides) and FP16, timed with CUDA events.

A case that fails to build or run is listed as skipped with its error. Writes JSON (--out) and prints a
Markdown table. Never part of the test suite.

    PYTHONPATH=. python benchmarks/bench_ops.py [--threads N] [--quick] [--only conv] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import socket
import sys
import time

import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads for both libraries")
    p.add_argument("--out", default=None,
                   help="JSON output (default benchmarks/results/bench_ops_<hostname>.json)")
    p.add_argument("--min-runs", type=int, default=20, help="timed runs per case at batch 1")
    p.add_argument("--min-runs-batch", type=int, default=5, help="timed runs per case at batch > 1")
    p.add_argument("--budget", type=float, default=0.6,
                   help="seconds of timed calls per case and library (more runs while under it)")
    p.add_argument("--quick", action="store_true", help="batch 1 only, fewer runs (smoke test)")
    p.add_argument("--only", default=None, help="run only cases whose name contains this text")
    p.add_argument("--no-cpu", action="store_true")
    p.add_argument("--no-cuda", action="store_true")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------------------
# Cases
# ------------------------------------------------------------------------------------------------
# (name, c_in, c_out, kernel, stride, pad, input size, groups)
RESNET18 = [
    ("resnet18.conv1", 3, 64, 7, 2, 3, 224, 1),
    ("resnet18.layer1.conv", 64, 64, 3, 1, 1, 56, 1),
    ("resnet18.layer2.0.conv1", 64, 128, 3, 2, 1, 56, 1),
    ("resnet18.layer2.0.downsample", 64, 128, 1, 2, 0, 56, 1),
    ("resnet18.layer2.conv", 128, 128, 3, 1, 1, 28, 1),
    ("resnet18.layer3.0.conv1", 128, 256, 3, 2, 1, 28, 1),
    ("resnet18.layer3.0.downsample", 128, 256, 1, 2, 0, 28, 1),
    ("resnet18.layer3.conv", 256, 256, 3, 1, 1, 14, 1),
    ("resnet18.layer4.0.conv1", 256, 512, 3, 2, 1, 14, 1),
    ("resnet18.layer4.0.downsample", 256, 512, 1, 2, 0, 14, 1),
    ("resnet18.layer4.conv", 512, 512, 3, 1, 1, 7, 1),
]

EFFICIENTNET_LITE0 = [
    ("effnet.stem", 3, 32, 3, 2, 1, 224, 1),
    ("effnet.b1.dw3x3", 32, 32, 3, 1, 1, 112, 32),
    ("effnet.b1.project", 32, 16, 1, 1, 0, 112, 1),
    ("effnet.b2.expand", 16, 96, 1, 1, 0, 112, 1),
    ("effnet.b2.dw3x3s2", 96, 96, 3, 2, 1, 112, 96),
    ("effnet.b2.project", 96, 24, 1, 1, 0, 56, 1),
    ("effnet.b2.expand2", 24, 144, 1, 1, 0, 56, 1),
    ("effnet.b2.dw3x3", 144, 144, 3, 1, 1, 56, 144),
    ("effnet.b2.project2", 144, 24, 1, 1, 0, 56, 1),
    ("effnet.b3.dw5x5s2", 144, 144, 5, 2, 2, 56, 144),
    ("effnet.b3.project", 144, 40, 1, 1, 0, 28, 1),
    ("effnet.b3.expand", 40, 240, 1, 1, 0, 28, 1),
    ("effnet.b3.dw5x5", 240, 240, 5, 1, 2, 28, 240),
    ("effnet.b3.project2", 240, 40, 1, 1, 0, 28, 1),
    ("effnet.b4.dw3x3s2", 240, 240, 3, 2, 1, 28, 240),
    ("effnet.b4.project", 240, 80, 1, 1, 0, 14, 1),
    ("effnet.b4.expand", 80, 480, 1, 1, 0, 14, 1),
    ("effnet.b4.dw3x3", 480, 480, 3, 1, 1, 14, 480),
    ("effnet.b4.project2", 480, 80, 1, 1, 0, 14, 1),
    ("effnet.b5.dw5x5", 480, 480, 5, 1, 2, 14, 480),
    ("effnet.b5.project", 480, 112, 1, 1, 0, 14, 1),
    ("effnet.b5.expand", 112, 672, 1, 1, 0, 14, 1),
    ("effnet.b5.dw5x5b", 672, 672, 5, 1, 2, 14, 672),
    ("effnet.b5.project2", 672, 112, 1, 1, 0, 14, 1),
    ("effnet.b6.dw5x5s2", 672, 672, 5, 2, 2, 14, 672),
    ("effnet.b6.project", 672, 192, 1, 1, 0, 7, 1),
    ("effnet.b6.expand", 192, 1152, 1, 1, 0, 7, 1),
    ("effnet.b6.dw5x5", 1152, 1152, 5, 1, 2, 7, 1152),
    ("effnet.b6.project2", 1152, 192, 1, 1, 0, 7, 1),
    ("effnet.b7.dw3x3", 1152, 1152, 3, 1, 1, 7, 1152),
    ("effnet.b7.project", 1152, 320, 1, 1, 0, 7, 1),
    ("effnet.head", 320, 1280, 1, 1, 0, 7, 1),
]

# CIFAR-10 (32x32). The seed CNN: unpadded 3x3 convs, each followed by 2x2 max pooling (32 -> 30 ->
# 15 -> 13 -> 6 -> 4). fastnet (airbench-style): a 2x2 "whitening" conv, then padded 3x3 convs in
# three blocks with pooling between them.
CIFAR = [
    ("cnn.conv1", 3, 32, 3, 1, 0, 32, 1),
    ("cnn.conv2", 32, 64, 3, 1, 0, 15, 1),
    ("cnn.conv3", 64, 64, 3, 1, 0, 6, 1),
    ("fastnet.whiten2x2", 3, 24, 2, 1, 0, 32, 1),
    ("fastnet.b1.conv1", 24, 64, 3, 1, 1, 32, 1),
    ("fastnet.b1.conv2", 64, 64, 3, 1, 1, 16, 1),
    ("fastnet.b2.conv1", 64, 256, 3, 1, 1, 16, 1),
    ("fastnet.b2.conv2", 256, 256, 3, 1, 1, 8, 1),
    ("fastnet.b3.conv", 256, 256, 3, 1, 1, 4, 1),
]

# (name, in_features, out_features)
LINEAR = [
    ("effnet.classifier", 1280, 1000),
    ("resnet18.fc", 512, 1000),
    ("cnn.fc1", 2304, 256),
    ("cnn.fc2", 256, 10),
    ("fastnet.head", 256, 10),
]

# DCGAN generator (64x64 output): (name, c_in, c_out, kernel, stride, pad, input size)
DCGAN = [
    ("dcgan.g1", 100, 512, 4, 1, 0, 1),
    ("dcgan.g2", 512, 256, 4, 2, 1, 4),
    ("dcgan.g3", 256, 128, 4, 2, 1, 8),
    ("dcgan.g4", 128, 64, 4, 2, 1, 16),
    ("dcgan.g5", 64, 3, 4, 2, 1, 32),
]


class Case:
    """One measurement: a name, a label for the shape, FLOPs, and a builder that returns
    (edgevision_fn, torch_fn) closed over inputs on `device` in `dtype`."""

    def __init__(self, group, name, shape, batch, flops, build):
        self.group, self.name, self.shape, self.batch = group, name, shape, batch
        self.flops, self.build = flops, build


def conv_cases(batches):
    import torch
    import torch.nn.functional as F

    import edgevision as ev

    cases = []
    for table, group in ((RESNET18, "resnet18"), (EFFICIENTNET_LITE0, "efficientnet_lite0"), (CIFAR, "cifar10")):
        for name, c, k, r, st, p, hw, g in table:
            for n in batches:
                oh = (hw + 2 * p - r) // st + 1
                flops = 2.0 * n * k * oh * oh * (c // g) * r * r

                def build(device, dtype, n=n, c=c, k=k, r=r, st=st, p=p, hw=hw, g=g):
                    gen = torch.Generator().manual_seed(0)
                    x = torch.randn(n, c, hw, hw, generator=gen)
                    w = torch.randn(k, c // g, r, r, generator=gen) / math.sqrt(c // g * r * r)
                    b = torch.randn(k, generator=gen)
                    x, w, b = (t.to(device=device, dtype=dtype) for t in (x, w, b))
                    return (lambda: ev.ops.conv2d(x, w, b, stride=st, padding=p, groups=g),
                            lambda: F.conv2d(x, w, b, stride=st, padding=p, groups=g))

                shape = f"{c}->{k} {r}x{r}/{st}{' dw' if g == c and g > 1 else ''} @{hw}"
                cases.append(Case("conv2d", name, shape, n, flops, build))
    return cases


def gemm_cases(batches):
    import torch
    import torch.nn.functional as F

    import edgevision as ev

    cases = []
    for name, fin, fout in LINEAR:
        for n in batches:
            def build(device, dtype, n=n, fin=fin, fout=fout):
                gen = torch.Generator().manual_seed(0)
                x = torch.randn(n, fin, generator=gen)
                w = torch.randn(fout, fin, generator=gen) / math.sqrt(fin)
                b = torch.randn(fout, generator=gen)
                x, w, b = (t.to(device=device, dtype=dtype) for t in (x, w, b))
                return lambda: ev.ops.linear(x, w, b), lambda: F.linear(x, w, b)

            cases.append(Case("linear", name, f"{fin}->{fout}", n, 2.0 * n * fin * fout, build))
    for m, k, nn in ((256, 256, 256), (1024, 1024, 1024)):
        def build(device, dtype, m=m, k=k, nn=nn):
            gen = torch.Generator().manual_seed(0)
            a = torch.randn(m, k, generator=gen).to(device=device, dtype=dtype)
            b = torch.randn(k, nn, generator=gen).to(device=device, dtype=dtype)
            return lambda: ev.ops.gemm(a, b), lambda: torch.mm(a, b)

        cases.append(Case("gemm", f"square{m}", f"{m}x{k}x{nn}", 1, 2.0 * m * k * nn, build))
    return cases


def other_cases(batches):
    """Every other op at one representative shape; FLOPs are not meaningful here (0)."""
    import torch
    import torch.nn.functional as F

    import edgevision as ev

    def rnd(*shape, device, dtype, seed=0):
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)

    cases = []

    def add(name, shape, batch, build, flops=0.0, group="other"):
        cases.append(Case(group, name, shape, batch, flops, build))

    for n in batches:
        def b_maxpool(device, dtype, n=n):
            x = rnd(n, 64, 112, 112, device=device, dtype=dtype)
            return (lambda: ev.ops.max_pool2d(x, 3, 2, 1), lambda: F.max_pool2d(x, 3, 2, 1))
        add("max_pool2d", "64ch 3x3/2 @112", n, b_maxpool)

        def b_avgpool(device, dtype, n=n):
            x = rnd(n, 64, 56, 56, device=device, dtype=dtype)
            return (lambda: ev.ops.avg_pool2d(x, 2), lambda: F.avg_pool2d(x, 2))
        add("avg_pool2d", "64ch 2x2/2 @56", n, b_avgpool)

        def b_gap(device, dtype, n=n):
            x = rnd(n, 1280, 7, 7, device=device, dtype=dtype)
            return (lambda: ev.ops.global_avg_pool2d(x), lambda: F.adaptive_avg_pool2d(x, 1))
        add("global_avg_pool2d", "1280ch @7", n, b_gap)

        def b_gmp(device, dtype, n=n):
            x = rnd(n, 512, 7, 7, device=device, dtype=dtype)
            return (lambda: ev.ops.global_max_pool2d(x), lambda: F.adaptive_max_pool2d(x, 1))
        add("global_max_pool2d", "512ch @7", n, b_gmp)

        def b_resize_bl(device, dtype, n=n):
            x = rnd(n, 3, 224, 224, device=device, dtype=dtype)
            return (lambda: ev.ops.resize(x, scale_factor=2, mode="bilinear"),
                    lambda: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        add("resize.bilinear", "3ch 224->448", n, b_resize_bl)

        def b_resize_nn(device, dtype, n=n):
            x = rnd(n, 64, 56, 56, device=device, dtype=dtype)
            return (lambda: ev.ops.resize(x, scale_factor=2, mode="nearest"),
                    lambda: F.interpolate(x, scale_factor=2, mode="nearest"))
        add("resize.nearest", "64ch 56->112", n, b_resize_nn)

        def b_shuffle(device, dtype, n=n):
            x = rnd(n, 27, 224, 224, device=device, dtype=dtype)  # ESPCN x3 output layer
            return (lambda: ev.ops.pixel_shuffle(x, 3), lambda: F.pixel_shuffle(x, 3))
        add("pixel_shuffle", "27ch @224, x3", n, b_shuffle)

        def b_softmax(device, dtype, n=n):
            x = rnd(n, 1000, device=device, dtype=dtype)
            return (lambda: ev.ops.softmax(x, -1), lambda: torch.softmax(x, -1))
        add("softmax", "1000 classes", n, b_softmax)

        def b_logsoftmax(device, dtype, n=n):
            x = rnd(n, 1000, device=device, dtype=dtype)
            return (lambda: ev.ops.log_softmax(x, -1), lambda: torch.log_softmax(x, -1))
        add("log_softmax", "1000 classes", n, b_logsoftmax)

        def b_add(device, dtype, n=n):
            a, b = rnd(n, 64, 56, 56, device=device, dtype=dtype), rnd(n, 64, 56, 56, device=device, dtype=dtype, seed=1)
            return (lambda: ev.ops.add(a, b, activation="relu"), lambda: F.relu(a + b))
        add("add+relu", "64ch @56", n, b_add)

        def b_mul(device, dtype, n=n):
            a, b = rnd(n, 144, 56, 56, device=device, dtype=dtype), rnd(n, 144, 1, 1, device=device, dtype=dtype, seed=1)
            return (lambda: ev.ops.mul(a, b), lambda: a * b)
        add("mul (broadcast, SE scale)", "144ch @56 * 144x1x1", n, b_mul)

        def b_act(device, dtype, n=n):
            x = rnd(n, 96, 112, 112, device=device, dtype=dtype)
            return (lambda: ev.ops.activation(x, "silu"), lambda: F.silu(x))
        add("activation.silu", "96ch @112", n, b_act)

        def b_bn(device, dtype, n=n):
            x = rnd(n, 64, 56, 56, device=device, dtype=dtype)
            g, be, m = (rnd(64, device=device, dtype=dtype, seed=s) for s in (1, 2, 3))
            v = rnd(64, device=device, dtype=dtype, seed=4).abs() + 0.5
            return (lambda: ev.ops.batch_norm(x, g, be, m, v, activation="relu"),
                    lambda: F.relu(F.batch_norm(x, m, v, g, be, training=False)))
        add("batch_norm+relu", "64ch @56", n, b_bn)

        def b_concat(device, dtype, n=n):
            a, b = rnd(n, 64, 56, 56, device=device, dtype=dtype), rnd(n, 64, 56, 56, device=device, dtype=dtype, seed=1)
            return (lambda: ev.ops.concat([a, b], axis=1), lambda: torch.cat([a, b], 1))
        add("concat", "2 x 64ch @56, axis 1", n, b_concat)

        for name, c, k, r, st, p, hw in DCGAN:
            def b_convt(device, dtype, n=n, c=c, k=k, r=r, st=st, p=p, hw=hw):
                x = rnd(n, c, hw, hw, device=device, dtype=dtype)
                w = rnd(c, k, r, r, device=device, dtype=dtype, seed=1) / math.sqrt(c)
                return (lambda: ev.ops.conv_transpose2d(x, w, stride=st, padding=p),
                        lambda: F.conv_transpose2d(x, w, stride=st, padding=p))
            flops = 2.0 * n * c * hw * hw * k * r * r
            add(name, f"{c}->{k} {r}x{r}/{st} @{hw}", n, b_convt, flops, group="conv_transpose2d")

    def b_pre(device, dtype):
        frame_np = np.random.default_rng(0).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
        frame = torch.from_numpy(frame_np).to(device)
        mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)

        def torch_pre():
            x = frame.permute(2, 0, 1).flip(0).unsqueeze(0).float()  # BGR -> RGB, NCHW
            x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
            return ((x / 255.0 - mean) / std).to(dtype)

        return (lambda: ev.ops.preprocess(frame, (224, 224), mean=(0.485, 0.456, 0.406),
                                          std=(0.229, 0.224, 0.225),
                                          dtype=None if dtype == torch.float32 else "float16"),
                torch_pre)
    add("preprocess", "uint8 1280x720 BGR -> 224x224 RGB", 1, b_pre)

    def b_post(device, dtype):
        x = rnd(1, 3, 256, 256, device=device, dtype=dtype)
        return (lambda: ev.ops.postprocess_image(x, mean=0.5, std=0.5),
                lambda: ((x[0] * 0.5 + 0.5) * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous())
    add("postprocess_image", "3x256x256 -> uint8 HWC", 1, b_post)
    return cases


# ------------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------------
def time_pair(fa, fb, min_runs, budget, sync=None):
    """Interleaved timing of two callables: warm-up, then runs until both have min_runs samples
    and `budget` seconds each (at most 10 x min_runs). Returns two lists of seconds."""
    sync = sync or (lambda: None)
    for f in (fa, fb):  # warm-up: first-call costs (allocation, caches, cuDNN autotuning)
        f(); f(); sync()
    ta, tb = [], []
    while True:
        for f, ts in ((fa, ta), (fb, tb)):
            sync()
            t0 = time.perf_counter()
            f()
            sync()
            ts.append(time.perf_counter() - t0)
        if len(ta) >= min_runs and (sum(ta) >= budget or len(ta) >= 10 * min_runs) and \
                (sum(tb) >= budget or len(tb) >= 10 * min_runs):
            return ta, tb
        if len(ta) >= min_runs and sum(ta) + sum(tb) > 20 * budget:  # very slow case
            return ta, tb


def time_pair_cuda(fa, fb, min_runs, budget):
    import torch

    def cuda_times(f, n):
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        for s, e in zip(starts, ends):
            s.record()
            f()
            e.record()
        torch.cuda.synchronize()
        return [s.elapsed_time(e) * 1e-3 for s, e in zip(starts, ends)]

    for f in (fa, fb):
        f(); f()
    torch.cuda.synchronize()
    ta, tb = [], []
    while len(ta) < min_runs or (sum(ta) < budget and len(ta) < 10 * min_runs):
        ta += cuda_times(fa, 5)
        tb += cuda_times(fb, 5)
    return ta, tb


def summarize(ts):
    # The profiler's statistics (edgevision.profile.stats), so every percentile in edgevision means the same.
    # min_ms: on a shared machine the fastest run is the best estimate of the kernel's own speed; median and the
    # percentiles include the interference.
    from edgevision.profile.stats import summarize as latency_stats

    s = latency_stats(ts)
    return {k: s[k] for k in ("median_ms", "p90_ms", "p99_ms", "min_ms", "runs")}


def max_abs_diff(a, b):
    import torch
    try:
        ta = a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))
        tb = b if isinstance(b, torch.Tensor) else torch.as_tensor(np.asarray(b))
        return float((ta.float().cpu().reshape(tb.shape) - tb.float().cpu()).abs().max())
    except Exception:  # shapes the two libraries lay out differently (e.g. [n, c] vs [n, c, 1, 1])
        return None


def run_cases(cases, device, dtype, args, peak, sync=None):
    import torch
    rows = []
    for case in cases:
        if args.only and args.only not in case.name and args.only not in case.group:
            continue
        row = {"group": case.group, "name": case.name, "shape": case.shape, "batch": case.batch,
               "device": device, "dtype": str(dtype).replace("torch.", ""), "gflop": case.flops * 1e-9}
        try:
            fa, fb = case.build(device, dtype)
            ya, yb = fa(), fb()
        except Exception as exc:  # noqa: BLE001 - reported per case, the run goes on
            row["skipped"] = f"{type(exc).__name__}: {exc}"
            rows.append(row)
            print(f"  skip {case.name} (batch {case.batch}): {row['skipped']}", file=sys.stderr)
            continue
        row["max_abs_diff"] = max_abs_diff(ya, yb)
        del ya, yb
        min_runs = args.min_runs if case.batch == 1 else args.min_runs_batch
        if args.quick:
            min_runs = max(3, min_runs // 4)
        budget = args.budget / (4 if args.quick else 1)
        if device == "cuda":
            ta, tb = time_pair_cuda(fa, fb, min_runs, budget)
        else:
            ta, tb = time_pair(fa, fb, min_runs, budget, sync)
        row["edgevision"], row["torch"] = summarize(ta), summarize(tb)
        row["ratio"] = row["torch"]["median_ms"] / row["edgevision"]["median_ms"]
        if case.flops:
            row["edgevision"]["gflops"] = case.flops * 1e-9 / (row["edgevision"]["median_ms"] * 1e-3)
            row["torch"]["gflops"] = case.flops * 1e-9 / (row["torch"]["median_ms"] * 1e-3)
            if peak:
                row["edgevision"]["peak_fraction"] = row["edgevision"]["gflops"] / peak
                row["torch"]["peak_fraction"] = row["torch"]["gflops"] / peak
        rows.append(row)
        print(f"  {case.name:32s} b{case.batch:<3d} ev {row['edgevision']['median_ms']:9.3f} ms  "
              f"torch {row['torch']['median_ms']:9.3f} ms  ratio {row['ratio']:5.2f}", file=sys.stderr)
        del fa, fb
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows


# ------------------------------------------------------------------------------------------------
# Machine, peak, report
# ------------------------------------------------------------------------------------------------
def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def estimated_peak(threads):
    """Fallback when the extension has no cpu_peak_gflops: threads x nominal clock x 32 FLOP/cycle
    (two 8-wide FMA pipes, as on AVX2 Zen/Skylake cores), clock from /proc/cpuinfo (else 2.5 GHz).
    An estimate: turbo and AVX clock offsets move the real figure by +-30%."""
    ghz = 2.5
    try:
        with open("/proc/cpuinfo") as f:
            mhz = [float(l.split(":")[1]) for l in f if l.lower().startswith("cpu mhz")]
        if mhz:
            ghz = max(mhz) / 1000
    except (OSError, ValueError):
        pass
    return threads * ghz * 32.0


def markdown(rows, peak_label):
    out = ["| op | case | shape | batch | device | edgevision ms (med / p90) | torch ms (med / p90) "
           f"| ratio torch/ev | ev GFLOP/s | ev % peak{peak_label} |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        dev = f"{r['device']} {r['dtype']}"
        if "skipped" in r:
            out.append(f"| {r['group']} | {r['name']} | {r['shape']} | {r['batch']} | {dev} | "
                       f"skipped: {r['skipped']} | | | | |")
            continue
        e, t = r["edgevision"], r["torch"]
        gf = f"{e['gflops']:.1f}" if "gflops" in e else ""
        pk = f"{100 * e['peak_fraction']:.0f}%" if "peak_fraction" in e else ""
        out.append(f"| {r['group']} | {r['name']} | {r['shape']} | {r['batch']} | {dev} | "
                   f"{e['median_ms']:.3f} / {e['p90_ms']:.3f} | {t['median_ms']:.3f} / {t['p90_ms']:.3f} | "
                   f"**{r['ratio']:.2f}** | {gf} | {pk} |")
    return "\n".join(out)


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    import edgevision as ev
    from edgevision import _C

    torch.set_num_threads(args.threads)
    ev.ops.set_num_threads(args.threads)
    batches = [1] if args.quick else [1, 32]
    t_start = time.time()
    load_before = os.getloadavg()

    if hasattr(_C, "cpu_peak_gflops"):
        peak, peak_source = float(_C.cpu_peak_gflops(args.threads)), "measured (FMA microbenchmark)"
    else:
        peak, peak_source = estimated_peak(args.threads), "estimated (threads x GHz x 32 FLOP/cycle)"
    print(f"FP32 peak with {args.threads} threads: {peak:.1f} GFLOP/s, {peak_source}", file=sys.stderr)

    cases = conv_cases(batches) + gemm_cases(batches) + other_cases(batches)
    rows = []
    if not args.no_cpu:
        print(f"CPU, {args.threads} threads:", file=sys.stderr)
        rows += run_cases(cases, "cpu", torch.float32, args, peak)

    gpu = None
    if not args.no_cuda and torch.cuda.is_available() and getattr(_C, "WITH_CUDA", False):
        # FP32 means FP32 on both sides: no TF32 tensor cores for torch. cuDNN may pick its best
        # algorithm (benchmark mode), as a deployment would.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
        gpu = torch.cuda.get_device_name(0)
        for dtype in (torch.float32, torch.float16):
            print(f"CUDA {gpu}, {dtype}:", file=sys.stderr)
            rows += run_cases(cases, "cuda", dtype, args, None)

    result = {
        "benchmark": "bench_ops",
        "host": socket.gethostname(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "threads": args.threads,
        "machine": {"cpu": cpu_model(), "logical_cores": os.cpu_count(), "platform": platform.platform(),
                    "gpu": gpu, "load_average_before": load_before, "load_average_after": os.getloadavg()},
        "peak_gflops": peak, "peak_source": peak_source,
        "torch": {"version": torch.__version__, "threads": torch.get_num_threads(),
                  "mkldnn": torch.backends.mkldnn.is_available()},
        "edgevision": dict(ev.info()),
        "settings": {"min_runs": args.min_runs, "min_runs_batch": args.min_runs_batch,
                     "budget_s": args.budget, "quick": args.quick, "only": args.only},
        "wall_s": None,
        "results": rows,
    }
    result["wall_s"] = time.time() - t_start
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   f"bench_ops_{socket.gethostname()}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1, default=str)
    print(f"\n{cpu_model()}, {args.threads} threads, FP32 peak {peak:.0f} GFLOP/s ({peak_source}); "
          f"torch {torch.__version__}; load average {load_before[0]:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after\n")
    print(markdown(rows, f" ({peak:.0f} GF/s)"))
    print(f"\nwrote {out} ({result['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
