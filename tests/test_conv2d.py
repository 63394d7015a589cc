"""conv2d: reference vs fast CPU vs torch over random configurations covering every path of the fast
kernel (pointwise GEMM across the batch, padded implicit GEMM at every stride/dilation, grouped,
depthwise with multipliers, register-tile edges, K split over several blocks) and every epilogue."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import edgevision as ev
from conftest import TARGETS, TOL, cuda
from target_util import check_fast_ref_torch, with_threads

ACTS = [None, "relu", "leaky_relu", "clip", "relu6", "sigmoid", "tanh", "silu", "hardswish",
        "gelu", "hardsigmoid"]


def torch_act(y, act, alpha, beta):
    if act is None:
        return y
    if act == "relu":
        return F.relu(y)
    if act == "leaky_relu":
        return F.leaky_relu(y, 0.01 if alpha is None else alpha)
    if act == "clip":
        return torch.clamp(y, alpha, beta)
    if act == "relu6":
        return torch.clamp(y, 0.0, 6.0)
    if act == "sigmoid":
        return torch.sigmoid(y)
    if act == "tanh":
        return torch.tanh(y)
    if act == "silu":
        return F.silu(y)
    if act == "hardswish":
        return F.hardswish(y)
    if act == "gelu":
        return F.gelu(y)
    if act == "hardsigmoid":  # ONNX form, alpha/beta defaults 0.2/0.5
        a = 0.2 if alpha is None else alpha
        b = 0.5 if beta is None else beta
        return torch.clamp(a * y + b, 0.0, 1.0)
    raise AssertionError(act)


def torch_conv(cfg, x, w, b, res):
    t, l, bo, r = cfg["pad"]
    xt = F.pad(torch.from_numpy(x), (l, r, t, bo))
    y = F.conv2d(xt, torch.from_numpy(w), None if b is None else torch.from_numpy(b),
                 stride=cfg["stride"], dilation=cfg["dil"], groups=cfg["groups"])
    res_t = None if res is None else torch.from_numpy(res)
    if res_t is not None and not cfg["after"]:
        y = y + res_t
    y = torch_act(y, cfg["act"], cfg["alpha"], cfg["beta"])
    if res_t is not None and cfg["after"]:
        y = y + res_t
    return y.numpy()


def out_size(n, k, st, p0, p1, d):
    return (n + p0 + p1 - d * (k - 1) - 1) // st + 1


def make_config(i):
    """Configuration i, drawn from its own seed; the class cycles so every path is hit often."""
    rng = np.random.default_rng(1000 + i)
    kind = ["general", "pointwise", "grouped", "depthwise", "stride_dil", "tiny", "big_kernel",
            "wide", "3x3"][i % 9]
    n = int(rng.integers(1, 4))
    groups, mult = 1, 1
    r = s = 3
    stride, dil = (1, 1), (1, 1)
    pad = (1, 1, 1, 1)
    h, w = int(rng.integers(1, 14)), int(rng.integers(1, 14))
    c, k = int(rng.integers(1, 10)), int(rng.integers(1, 20))
    if kind == "general":
        r, s = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        dil = tuple(int(v) for v in rng.integers(1, 3, 2))
        pad = tuple(int(v) for v in rng.integers(0, 4, 4))
    elif kind == "pointwise":
        r = s = 1
        pad = (0, 0, 0, 0)
        n = int(rng.integers(1, 6))
        c, k = int(rng.integers(1, 40)), int(rng.integers(1, 40))
    elif kind == "grouped":
        groups = int(rng.integers(2, 5))
        c, k = groups * int(rng.integers(1, 5)), groups * int(rng.integers(1, 7))
        r, s = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        stride = tuple(int(v) for v in rng.integers(1, 3, 2))
        pad = tuple(int(v) for v in rng.integers(0, 3, 4))
    elif kind == "depthwise":
        c = int(rng.integers(2, 12))
        groups, mult = c, int(rng.integers(1, 4))
        k = c * mult
        r = s = int(rng.choice([3, 5, 3, 2, 7]))
        stride = (int(rng.integers(1, 3)),) * 2 if rng.random() < 0.8 else tuple(int(v) for v in rng.integers(1, 4, 2))
        dil = (1, 1) if rng.random() < 0.7 else tuple(int(v) for v in rng.integers(1, 3, 2))
        pad = tuple(int(v) for v in rng.integers(0, r, 4))
        h, w = int(rng.integers(1, 30)), int(rng.integers(1, 30))
    elif kind == "stride_dil":
        r, s = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        stride = tuple(int(v) for v in rng.integers(2, 5, 2))  # stride can exceed the kernel
        dil = tuple(int(v) for v in rng.integers(1, 4, 2))
        pad = tuple(int(v) for v in rng.integers(0, 3, 4))
        h, w = int(rng.integers(3, 20)), int(rng.integers(3, 20))
    elif kind == "tiny":  # 1x1 inputs, padding all around
        h = w = 1
        r, s = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        pad = (r // 2, s // 2, r - 1 - r // 2, s - 1 - s // 2)
    elif kind == "big_kernel":  # kernel larger than the input, padding makes it fit
        h, w = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        r, s = int(rng.integers(3, 7)), int(rng.integers(3, 7))
        pad = (int(rng.integers(r - h, r)), int(rng.integers(s - w, s)), int(rng.integers(0, 3)),
               int(rng.integers(0, 3)))
        pad = tuple(max(0, p) for p in pad)
    elif kind == "wide":  # K = c r s over several KC blocks; M, N off the 6x16 tile
        c = int(rng.integers(100, 300))
        k = int(rng.integers(5, 40))
        h, w = int(rng.integers(2, 9)), int(rng.integers(2, 9))
        r = s = int(rng.choice([1, 3]))
        pad = (r // 2,) * 4
        n = int(rng.integers(1, 3))
    elif kind == "3x3":  # stride-1 3x3 with many channels: Winograd from 64 tiles (16 with 64+ channels)
        c, k = int(rng.integers(16, 48)), int(rng.integers(16, 48))
        h, w = int(rng.integers(5, 26)), int(rng.integers(5, 26))
        n = int(rng.integers(1, 6))
        pad = tuple(int(v) for v in rng.integers(0, 3, 4))
    # Make sure the padded input holds the dilated kernel.
    t, l, b, rr = pad
    t += max(0, dil[0] * (r - 1) + 1 - (h + t + b))
    l += max(0, dil[1] * (s - 1) + 1 - (w + l + rr))
    pad = (t, l, b, rr)
    act = ACTS[int(rng.integers(0, len(ACTS)))]
    alpha = beta = None
    if act == "leaky_relu":
        alpha = float(rng.choice([0.01, 0.2]))
    elif act == "clip":
        alpha, beta = -0.5, 0.7
    elif act == "hardsigmoid" and rng.random() < 0.5:
        alpha, beta = 1 / 6, 0.5
    return dict(kind=kind, n=n, c=c, k=k, h=h, w=w, r=r, s=s, stride=stride, dil=dil, pad=pad,
                groups=groups, act=act, alpha=alpha, beta=beta, bias=bool(rng.random() < 0.7),
                res=bool(rng.random() < 0.5), after=bool(rng.random() < 0.5), seed=2000 + i)


CONFIGS = [make_config(i) for i in range(252)]


def make_data(cfg):
    rng = np.random.default_rng(cfg["seed"])
    oh = out_size(cfg["h"], cfg["r"], cfg["stride"][0], cfg["pad"][0], cfg["pad"][2], cfg["dil"][0])
    ow = out_size(cfg["w"], cfg["s"], cfg["stride"][1], cfg["pad"][1], cfg["pad"][3], cfg["dil"][1])
    cg = cfg["c"] // cfg["groups"]
    x = rng.standard_normal((cfg["n"], cfg["c"], cfg["h"], cfg["w"]), dtype=np.float32)
    # Scaled like a trained layer, so outputs are O(1) whatever the fan-in.
    w = (rng.standard_normal((cfg["k"], cg, cfg["r"], cfg["s"]), dtype=np.float32)
         / np.float32(np.sqrt(cg * cfg["r"] * cfg["s"])))
    b = rng.standard_normal(cfg["k"], dtype=np.float32) if cfg["bias"] else None
    res = rng.standard_normal((cfg["n"], cfg["k"], oh, ow), dtype=np.float32) if cfg["res"] else None
    return x, w, b, res


def ev_conv(cfg, x, w, b, res, **kw):
    return ev.ops.conv2d(x, w, b, stride=cfg["stride"], padding=cfg["pad"], dilation=cfg["dil"],
                         groups=cfg["groups"], activation=cfg["act"], alpha=cfg["alpha"],
                         beta=cfg["beta"], residual=res, residual_after_act=cfg["after"], **kw)


def to_target(a, device, dtype):
    if a is None:
        return None
    t = torch.from_numpy(a).to(device)
    return t.half() if dtype == "float16" else t


def test_configs_cover_every_class():
    kinds = {c["kind"] for c in CONFIGS}
    assert len(kinds) == 9
    assert {c["act"] for c in CONFIGS} == set(ACTS)
    assert any(c["groups"] == c["c"] and c["k"] > c["c"] for c in CONFIGS)  # depthwise multiplier
    assert any(len(set(c["pad"])) > 1 for c in CONFIGS)  # asymmetric padding


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("i", range(len(CONFIGS)))
def test_conv2d_random(i, target):
    cfg = CONFIGS[i]
    device, dtype = target
    x, w, b, res = make_data(cfg)
    if device == "cpu":
        ref = ev_conv(cfg, x, w, b, res, reference=True)
        fast = ev_conv(cfg, x, w, b, res)
        expect = torch_conv(cfg, x, w, b, res)
        check_fast_ref_torch(fast, ref, expect, str(cfg))
        return
    args = [to_target(a, device, dtype) for a in (x, w, b, res)]
    y = ev_conv(cfg, *args)
    assert y.device.type == "cuda" and y.dtype == args[0].dtype
    # The reference sees the same (possibly FP16-rounded) inputs, computed in FP32.
    rounded = [None if a is None else a.float().cpu().numpy() for a in args]
    expect = torch_conv(cfg, *rounded)
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(y.float().cpu().numpy(), expect, rtol=rtol, atol=atol, err_msg=str(cfg))


# Deep convs on small maps, which the CUDA kernel splits over K (partial sums in the workspace, summed by a
# second kernel that applies the epilogue): n, c, k, h, r, stride, pad, act, residual, residual after act.
SPLIT_K_CASES = [
    (1, 512, 512, 7, 3, 1, 1, "relu", True, False),     # ResNet-18 layer4: 8 output tiles, 32 slices
    (1, 256, 256, 14, 3, 1, 1, "relu", False, False),   # layer3: 16 tiles
    (1, 256, 512, 14, 3, 2, 1, None, False, False),     # layer4 downsampling, stride 2
    (2, 256, 8, 8, 3, 1, 1, "silu", True, True),         # narrow tiles (<= 16 output channels)
    (1, 1152, 320, 7, 1, 1, 0, None, True, False),      # EfficientNet 1x1 projection with residual
    (1, 200, 70, 5, 3, 1, 0, "gelu", False, False),     # K = 1800: the last slice shorter than the rest
]


@pytest.mark.parametrize("dtype", [pytest.param(d, marks=[pytest.mark.cuda, cuda]) for d in ("float32", "float16")])
@pytest.mark.parametrize("case", SPLIT_K_CASES, ids=lambda c: f"{c[1]}-{c[2]}@{c[3]}k{c[4]}")
def test_conv2d_cuda_split_k(case, dtype):
    n, c, k, h, r, st, p, act, with_res, after = case
    cfg = dict(n=n, c=c, k=k, h=h, w=h, r=r, s=r, stride=(st, st), pad=(p,) * 4, dil=(1, 1), groups=1, act=act,
               alpha=None, beta=None, bias=True, res=with_res, after=after, seed=7)
    x, w, b, res = make_data(cfg)
    args = [to_target(a, "cuda", dtype) for a in (x, w, b, res)]
    y = ev_conv(cfg, *args)
    rounded = [None if a is None else a.float().cpu().numpy() for a in args]
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(y.float().cpu().numpy(), torch_conv(cfg, *rounded), rtol=rtol, atol=atol)
    again = ev_conv(cfg, *args)  # the slices are summed in a fixed order: same bits every run
    assert torch.equal(again, y)


# FP16 convs with more than 16 output channels per group run on tensor cores (sm_80+): tiles of 64 pixels x
# 64 or 128 channels x 32 K of mma.sync. Each case hits an edge of that kernel:
# n, c, k, h, w, r, stride, pad, dil, groups, act, residual.
TENSOR_CORE_CASES = [
    (3, 3, 24, 19, 17, 7, 2, 3, 1, 1, "relu", False),      # stem: K = 147 (odd: scalar weight loads), 24 of 64 channels
    (2, 64, 64, 9, 9, 3, 1, 1, 1, 1, "relu", True),        # K = 576 (16-byte weight loads); M = 162, a partial pixel tile
    (1, 48, 80, 7, 7, 1, 1, 1, 1, 1, "hardswish", False),  # 1x1 with padding: border pixels read zeros
    (2, 32, 40, 11, 13, 3, 2, 2, 2, 1, "silu", True),      # stride 2, dilation 2
    (2, 64, 96, 8, 8, 3, 1, 1, 1, 2, "leaky_relu", False),  # groups: 48 output channels each
    (1, 40, 130, 6, 5, 1, 1, 0, 1, 1, None, True),         # K = 40: the last 16-run is partial; 130 channels
    (5, 16, 33, 4, 4, 3, 1, 1, 1, 1, "sigmoid", False),    # K = 144: 4.5 K tiles
    (1, 512, 512, 7, 7, 3, 1, 1, 1, 1, "relu", True),      # split over K (see SPLIT_K_CASES): 64-channel tiles
    (4, 16, 160, 64, 64, 3, 1, 1, 1, 1, "relu", True),     # 128-channel tiles (512 blocks), the second one partial
    (2, 64, 288, 48, 48, 3, 1, 1, 1, 2, "relu6", False),   # 128-channel tiles per group of 144
]


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("aligned_weights", [True, False])
@pytest.mark.parametrize("case", TENSOR_CORE_CASES, ids=lambda c: f"{c[1]}-{c[2]}@{c[3]}x{c[4]}k{c[5]}g{c[9]}")
def test_conv2d_cuda_fp16_tensor_cores(case, aligned_weights):
    n, c, k, h, w_, r, st, p, d, g, act, with_res = case
    cfg = dict(n=n, c=c, k=k, h=h, w=w_, r=r, s=r, stride=(st, st), pad=(p,) * 4, dil=(d, d), groups=g, act=act,
               alpha=None, beta=None, bias=True, res=with_res, after=False, seed=11)
    x, w, b, res = make_data(cfg)
    args = [to_target(a, "cuda", "float16") for a in (x, w, b, res)]
    if not aligned_weights:  # weights one element into their buffer: not 16-byte aligned
        buf = torch.empty(args[1].numel() + 1, dtype=torch.float16, device="cuda")
        args[1] = buf[1:].view_as(args[1]).copy_(args[1])
    y = ev_conv(cfg, *args)
    rounded = [None if a is None else a.float().cpu().numpy() for a in args]
    rtol, atol = TOL["float16"]
    np.testing.assert_allclose(y.float().cpu().numpy(), torch_conv(cfg, *rounded), rtol=rtol, atol=atol)


# Shapes of real networks, smaller spatially so the scalar reference stays quick.
NET_SHAPES = [
    # n, c, k, h, r, stride, pad, groups
    (2, 3, 16, 23, 7, 2, 3, 1),     # ResNet stem
    (1, 32, 32, 15, 3, 1, 1, 1),    # ResNet basic block
    (2, 32, 64, 15, 3, 2, 1, 1),    # ResNet downsampling
    (2, 32, 64, 15, 1, 2, 0, 1),    # ResNet 1x1 shortcut, stride 2
    (1, 24, 24, 17, 3, 1, 1, 24),   # EfficientNet depthwise 3x3
    (1, 24, 24, 17, 5, 2, 2, 24),   # EfficientNet depthwise 5x5 stride 2
    (3, 24, 40, 7, 1, 1, 0, 1),     # EfficientNet pointwise, columns across images
    (4, 3, 24, 16, 2, 1, 0, 1),     # fastnet whitening 2x2
    (8, 3, 32, 9, 3, 1, 0, 1),      # seed CNN first conv, per-image threading
]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("shape", NET_SHAPES)
def test_conv2d_network_shapes(shape, threads):
    n, c, k, h, r, st, p, g = shape
    cfg = dict(n=n, c=c, k=k, h=h, w=h, r=r, s=r, stride=(st, st), dil=(1, 1), pad=(p,) * 4,
               groups=g, act="relu", alpha=None, beta=None, bias=True, res=True, after=False,
               seed=7)
    x, w, b, res = make_data(cfg)
    fast = with_threads(threads, lambda: ev_conv(cfg, x, w, b, res))
    ref = ev_conv(cfg, x, w, b, res, reference=True)
    rtol, atol = TOL["float32"]
    np.testing.assert_allclose(fast, ref, rtol=rtol, atol=atol)
    np.testing.assert_allclose(fast, torch_conv(cfg, x, w, b, res), rtol=rtol, atol=atol)


# 1x1 at stride > 1 without padding: gathered into a compact copy, then pointwise. Widths at and around the
# 16-input shuffle's edges (16, 17, 31, 33), odd heights, unequal strides, groups, several images.
STRIDED_1X1_CASES = [
    # n, c, k, h, w, stride, groups
    (1, 64, 128, 56, 56, (2, 2), 1),  # ResNet-18's first shortcut
    (2, 20, 30, 17, 16, (2, 2), 1),
    (1, 24, 40, 9, 31, (2, 2), 2),
    (3, 8, 13, 7, 33, (2, 2), 1),
    (1, 12, 20, 11, 19, (3, 2), 1),
    (2, 10, 6, 8, 12, (2, 1), 1),
    (1, 9, 9, 5, 14, (1, 3), 3),
]


# 1x1 at batch 1 on 10x10 to 14x14 maps with at least twice as many input channels as outputs and 192 to one
# depth block of them per thread: the input channels are split over the threads (partial sums, then each thread
# adds up its rows and applies the epilogue). Otherwise (1 thread, fewer channels per thread) the plain path.
SPLIT_K_CASES = [
    # c, k, h, w
    (384, 64, 14, 14),    # MobileNetV2's projection: split at 2 threads
    (576, 96, 14, 14),    # split at 2 and 3 threads
    (1152, 192, 10, 10),  # 576 channels per thread at 2 threads: one depth block with AVX-512 (plain with AVX2)
    (401, 13, 10, 11),    # a ragged row panel, a 14-column last panel, channels not a multiple of the threads
    (769, 30, 12, 9),     # split at 2, 3 and 4 threads, the last thread's channels fewer
    (960, 320, 7, 7),     # 7x7: plain
]


@pytest.mark.parametrize("threads", [1, 2, 3, 4])
@pytest.mark.parametrize("case", SPLIT_K_CASES, ids=lambda c: f"{c[0]}-{c[1]}@{c[2]}x{c[3]}")
@pytest.mark.parametrize("act, res, after", [("clip", True, False), ("hardswish", True, True), (None, False, False)])
def test_conv2d_pointwise_split_k(case, threads, act, res, after):
    c, k, h, w = case
    cfg = dict(n=1, c=c, k=k, h=h, w=w, r=1, s=1, stride=(1, 1), dil=(1, 1), pad=(0,) * 4, groups=1,
               act=act, alpha=0.0 if act == "clip" else None, beta=6.0 if act == "clip" else None, bias=True,
               res=res, after=after, seed=5)
    x, wt, b, r = make_data(cfg)
    fast = with_threads(threads, lambda: ev_conv(cfg, x, wt, b, r))
    check_fast_ref_torch(fast, ev_conv(cfg, x, wt, b, r, reference=True), torch_conv(cfg, x, wt, b, r), str(cfg))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", STRIDED_1X1_CASES, ids=lambda c: f"n{c[0]}-{c[1]}-{c[2]}@{c[3]}x{c[4]}s{c[5]}g{c[6]}")
def test_conv2d_strided_pointwise(case, threads):
    n, c, k, h, w, stride, g = case
    cfg = dict(n=n, c=c, k=k, h=h, w=w, r=1, s=1, stride=stride, dil=(1, 1), pad=(0,) * 4, groups=g,
               act="relu", alpha=None, beta=None, bias=True, res=True, after=False, seed=11)
    x, wt, b, res = make_data(cfg)
    fast = with_threads(threads, lambda: ev_conv(cfg, x, wt, b, res))
    check_fast_ref_torch(fast, ev_conv(cfg, x, wt, b, res, reference=True), torch_conv(cfg, x, wt, b, res), str(cfg))


# The direct conv (AVX-512 builds; others take the GEMM path, which the same cases check): groups 1, input channels
# of 16, output channels of 32, not 1x1, not Winograd. Tiles of up to 14 pixels x 32 channels over the whole K, or on
# maps at most 7 wide with 128+ output channels, whole rows x 64 channels, one input channel block at a time over all
# rows.
DIRECT_CASES = [
    # n, c, k, h, w, r, stride, pad (t, l, b, r), dilation
    (1, 128, 256, 28, 28, 3, 2, (1, 1, 1, 1), 1),   # ResNet-18's 128 -> 256: tiles of 14
    (1, 64, 128, 56, 56, 3, 2, (1, 1, 1, 1), 1),    # ResNet-18's 64 -> 128: K = 576
    (1, 80, 96, 31, 29, 3, 2, (1, 0, 2, 1), 1),     # 3 blocks of 32 over 2-4 threads, 14 columns
    (1, 256, 64, 28, 29, 3, 2, (1, 1, 1, 1), 1),    # 15 columns: tiles of 14 and 1
    (1, 64, 32, 30, 45, 5, 3, (2, 2, 2, 2), 1),     # 5x5 stride 3: 3 stride phases, 15 columns
    (1, 80, 64, 21, 31, 3, 2, (2, 2, 2, 2), 2),     # dilation 2, 16 columns
    (3, 96, 64, 12, 30, 3, 2, (1, 1, 1, 1), 1),     # 3 images, one copy each
    (1, 80, 32, 9, 40, 3, (3, 2), (0, 1, 0, 1), 1),  # stride 3 x 2, 20 columns
    (1, 32, 64, 17, 20, 5, 1, (2, 2, 2, 2), 1),     # 5x5 stride 1 (not Winograd), 20 columns
    (1, 16, 32, 12, 11, 3, 1, (0, 0, 0, 0), 1),     # 16 channels, 9 columns: one tile of 9 per row
    (1, 256, 128, 14, 14, 3, 2, (1, 1, 1, 1), 1),   # 7 columns: whole rows x 64 channels, 2 blocks
    (1, 256, 64, 14, 14, 3, 2, (1, 1, 1, 1), 1),    # 7 columns but one block of 64: 32-channel tiles
    (1, 512, 512, 7, 7, 3, 1, (1, 1, 1, 1), 1),     # ResNet-18's 7x7 convs: 8 blocks of 64
    (1, 80, 192, 9, 5, 3, 1, (0, 1, 1, 0), 1),      # 3 blocks over 2-4 threads, 4 columns, uneven pads
    (2, 48, 128, 11, 13, 5, 2, (2, 1, 2, 1), 1),    # 5x5 stride 2, 2 images, 6 columns
    (1, 80, 64, 10, 9, 3, 1, (2, 2, 2, 2), 2),      # dilation 2, 9 columns
    (1, 80, 64, 5, 1, 3, 1, (1, 1, 1, 1), 1),       # one column
    (1, 96, 96, 7, 7, 3, 1, (1, 1, 1, 1), 1),       # 7 columns, 96 output channels: tiles of 7 x 32
    (1, 96, 80, 7, 7, 3, 1, (1, 1, 1, 1), 1),       # 80 output channels: not direct (GEMM)
    (4, 128, 128, 13, 13, 3, 2, (1, 1, 1, 1), 1),   # 4 images of 7 x 64-channel rows: whole images per thread
]


@pytest.mark.parametrize("threads", [1, 2, 3, 4])
@pytest.mark.parametrize("case", DIRECT_CASES, ids=lambda c: f"n{c[0]}-{c[1]}-{c[2]}@{c[3]}x{c[4]}k{c[5]}")
@pytest.mark.parametrize("act, res, after", [("relu", True, False), ("leaky_relu", True, True), (None, False, False)])
def test_conv2d_direct(case, threads, act, res, after):
    n, c, k, h, w, r, st, pad, d = case
    st = st if isinstance(st, tuple) else (st, st)
    cfg = dict(n=n, c=c, k=k, h=h, w=w, r=r, s=r, stride=st, dil=(d, d), pad=pad, groups=1, act=act,
               alpha=0.1 if act == "leaky_relu" else None, beta=None, bias=act is not None, res=res, after=after,
               seed=7)
    x, wt, b, rr = make_data(cfg)
    fast = with_threads(threads, lambda: ev_conv(cfg, x, wt, b, rr))
    check_fast_ref_torch(fast, ev_conv(cfg, x, wt, b, rr, reference=True), torch_conv(cfg, x, wt, b, rr), str(cfg))


# The planar direct conv (AVX-512 builds; others take the GEMM path, which the same cases check): at most 4 input
# channels, K = c r s up to 75, output channels of 4, outputs at least 16 wide. Tiles of 4 channels x up to 6 vectors
# of 16 pixels of a row, read from the zero-padded stride-phase copy.
PLANAR_CASES = [
    # n, c, k, h, w, r, stride, pad (t, l, b, r), dilation
    (1, 1, 64, 24, 100, 5, 1, (2, 2, 2, 2), 1),     # ESPCN's 1 -> 64 5x5: tiles of 96 and 4 pixels
    (2, 3, 32, 32, 32, 3, 1, (1, 1, 1, 1), 1),      # the CIFAR-10 stems, 2 images
    (1, 3, 16, 41, 40, 3, 2, (0, 0, 1, 1), 1),      # EfficientNet-Lite0's stem: stride 2, padding after
    (1, 4, 12, 20, 53, 3, 1, (0, 1, 2, 0), 2),      # 4 channels, dilation 2, uneven pads, 49 columns
    (1, 2, 8, 18, 70, 5, (2, 3), (1, 2, 1, 2), 1),  # stride 2 x 3
    (1, 3, 64, 30, 30, 7, 2, (3, 3, 3, 3), 1),      # K = 147: not planar (the GEMM)
]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("case", PLANAR_CASES, ids=lambda c: f"n{c[0]}-{c[1]}-{c[2]}@{c[3]}x{c[4]}k{c[5]}")
@pytest.mark.parametrize("act, res, after", [("relu", True, False), ("hardswish", True, True), (None, False, False)])
def test_conv2d_planar(case, threads, act, res, after):
    n, c, k, h, w, r, st, pad, d = case
    st = st if isinstance(st, tuple) else (st, st)
    cfg = dict(n=n, c=c, k=k, h=h, w=w, r=r, s=r, stride=st, dil=(d, d), pad=pad, groups=1, act=act, alpha=None,
               beta=None, bias=act is not None, res=res, after=after, seed=8)
    x, wt, b, rr = make_data(cfg)
    fast = with_threads(threads, lambda: ev_conv(cfg, x, wt, b, rr))
    check_fast_ref_torch(fast, ev_conv(cfg, x, wt, b, rr, reference=True), torch_conv(cfg, x, wt, b, rr), str(cfg))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("act,after", [("relu", False), ("silu", True), (None, False)])
def test_conv2d_winograd_chunks(act, after, threads):
    """3x3 stride 1 with 64 channels over 2 images of 30x30: 128 tiles in two chunks, ragged tile
    edges (30 = 7 * 4 + 2) and asymmetric padding."""
    cfg = dict(n=2, c=64, k=64, h=30, w=29, r=3, s=3, stride=(1, 1), dil=(1, 1), pad=(1, 2, 1, 0),
               groups=1, act=act, alpha=None, beta=None, bias=True, res=True, after=after, seed=11)
    x, w, b, res = make_data(cfg)
    fast = with_threads(threads, lambda: ev_conv(cfg, x, w, b, res))
    expect = torch_conv(cfg, x, w, b, res)
    rtol, atol = TOL["float32"]
    np.testing.assert_allclose(fast, expect, rtol=rtol, atol=atol)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_conv2d_winograd_batch(threads):
    """Many chunks (12 images of 24x24, 64 channels: 432 tiles in chunks of 112): with several
    threads each runs whole chunks; compared with torch only (the scalar reference is slow here)."""
    cfg = dict(n=12, c=64, k=64, h=24, w=23, r=3, s=3, stride=(1, 1), dil=(1, 1), pad=(1, 1, 1, 1),
               groups=1, act="relu", alpha=None, beta=None, bias=True, res=True, after=False, seed=12)
    x, w, b, res = make_data(cfg)
    fast = with_threads(threads, lambda: ev_conv(cfg, x, w, b, res))
    rtol, atol = TOL["float32"]
    np.testing.assert_allclose(fast, torch_conv(cfg, x, w, b, res), rtol=rtol, atol=atol)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("h,w,pad", [(9, 70, (1, 2, 1, 0)), (6, 64, (1, 1, 1, 1)), (11, 131, (0, 1, 2, 2))])
def test_conv2d_winograd_wide_rows(h, w, pad, threads):
    """Rows of 16+ tiles (ESPCN's maps are 80 tiles wide): the AVX-512 transforms read and write 16 tiles of a row
    with vector loads and masked stores, zero-filling at the padded edges; groups of 16 also straddle tile rows and
    images here. Against the scalar reference and torch."""
    cfg = dict(n=2, c=16, k=24, h=h, w=w, r=3, s=3, stride=(1, 1), dil=(1, 1), pad=pad, groups=1, act="leaky_relu",
               alpha=0.1, beta=None, bias=True, res=True, after=False, seed=15)
    x, wt, b, res = make_data(cfg)
    fast = with_threads(threads, lambda: ev_conv(cfg, x, wt, b, res))
    rtol, atol = TOL["float32"]
    np.testing.assert_allclose(fast, ev_conv(cfg, x, wt, b, res, reference=True), rtol=rtol, atol=atol)
    np.testing.assert_allclose(fast, torch_conv(cfg, x, wt, b, res), rtol=rtol, atol=atol)


@pytest.mark.parametrize("c,k,hw", [(128, 128, 28), (256, 256, 14), (64, 96, 13), (256, 64, 16)])
def test_conv2d_winograd_few_tiles_many_channels(c, k, hw):
    """64+ channels take Winograd from 16 tiles (ResNet-18's 28x28 and 14x14 stages at batch 1), with
    ragged tile edges at 13x13; against the scalar reference and torch."""
    cfg = dict(n=1, c=c, k=k, h=hw, w=hw, r=3, s=3, stride=(1, 1), dil=(1, 1), pad=(1, 1, 1, 1),
               groups=1, act="relu", alpha=None, beta=None, bias=True, res=True, after=False, seed=14)
    x, w, b, res = make_data(cfg)
    fast = ev_conv(cfg, x, w, b, res)
    rtol, atol = TOL["float32"]
    np.testing.assert_allclose(fast, ev_conv(cfg, x, w, b, res, reference=True), rtol=rtol, atol=atol)
    np.testing.assert_allclose(fast, torch_conv(cfg, x, w, b, res), rtol=rtol, atol=atol)


def test_conv2d_torch_tensors_and_out():
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.standard_normal((2, 8, 10, 10), dtype=np.float32))
    w = torch.from_numpy(rng.standard_normal((12, 8, 3, 3), dtype=np.float32) / 8)
    out = torch.empty(2, 12, 10, 10)
    y = ev.ops.conv2d(x, w, padding=1, out=out)
    assert isinstance(y, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), F.conv2d(x, w, padding=1).numpy(), rtol=1e-4, atol=1e-4)


def test_conv2d_residual_in_place():
    """out may be the residual itself: a plan adds skip connections in place."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 300, 6, 6), dtype=np.float32)  # K = 2700: several K blocks
    w = rng.standard_normal((20, 300, 3, 3), dtype=np.float32) / 50
    res = rng.standard_normal((1, 20, 6, 6), dtype=np.float32)
    expect = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy() + res
    ev.ops.conv2d(x, w, padding=1, residual=res, out=res)
    np.testing.assert_allclose(res, expect, rtol=1e-4, atol=1e-4)


def test_conv2d_bad_inputs():
    x = np.zeros((1, 4, 8, 8), np.float32)
    w = np.zeros((6, 4, 3, 3), np.float32)
    with pytest.raises(ValueError):
        ev.ops.conv2d(x[0], w)  # rank 3 input
    with pytest.raises(ValueError):
        ev.ops.conv2d(x, np.zeros((6, 3, 3, 3), np.float32))  # channel mismatch
    with pytest.raises(ValueError):
        ev.ops.conv2d(x, np.zeros((6, 2, 3, 3), np.float32), groups=3)  # groups do not divide c
    with pytest.raises(ValueError):
        ev.ops.conv2d(x, w, np.zeros(5, np.float32))  # bias length
    with pytest.raises(ValueError):
        ev.ops.conv2d(x, w, stride=0)
    with pytest.raises(ValueError):
        ev.ops.conv2d(x, np.zeros((6, 4, 11, 11), np.float32))  # kernel larger than the input
    with pytest.raises(ValueError):
        ev.ops.conv2d(x, w, residual=np.zeros((1, 6, 7, 7), np.float32))  # residual shape
    with pytest.raises(ValueError):
        ev.ops.conv2d(x, w, activation="swish-ish")
    with pytest.raises(TypeError):
        ev.ops.conv2d(x.astype(np.float64), w)
    with pytest.raises(TypeError):
        ev.ops.conv2d(x, w, stride=1.5)


# Depthwise 3x3 at stride 1 and 2 has its own kernel over buffered padded rows: odd and tiny widths
# (the 8-wide vector tail, the stride-2 even/odd split with and without its vector body), odd and
# even output heights (rows are computed in pairs), pads from 0 to past the kernel on each side
# separately, and a channel multiplier. Without a multiplier, outputs under 32 columns go to
# conv_dw_cblock (cases below), so those cases here are 32 or more columns wide.
DW3_CASES = [
    # n, c, mult, h, w, stride, (top, left, bottom, right)
    (1, 3, 1, 1, 1, 1, (1, 1, 1, 1)),
    (1, 3, 1, 2, 2, 2, (1, 1, 1, 1)),
    (2, 5, 1, 7, 7, 1, (1, 1, 1, 1)),
    (1, 4, 2, 9, 17, 1, (0, 2, 1, 0)),
    (1, 4, 1, 9, 67, 2, (1, 1, 1, 1)),
    (1, 4, 1, 6, 72, 2, (0, 0, 1, 1)),
    (1, 2, 3, 17, 39, 2, (2, 3, 0, 4)),
    (2, 6, 1, 5, 69, 2, (1, 0, 2, 1)),
    (1, 3, 1, 3, 1, 2, (0, 4, 3, 0)),
    (1, 3, 1, 8, 24, 1, (4, 5, 4, 5)),
    (1, 3, 2, 6, 19, 2, (3, 2, 3, 5)),
    (1, 8, 1, 14, 14, 2, (0, 0, 0, 0)),
    # Stride 2 on wide rows: the 16-column even/odd split (AVX-512) from its first width on, with the
    # 8-column split and the scalar columns after it.
    (1, 3, 1, 5, 65, 2, (0, 0, 1, 1)),
    (1, 3, 1, 4, 64, 2, (1, 1, 1, 1)),
    (1, 2, 1, 6, 97, 2, (1, 2, 0, 1)),
    (1, 2, 1, 3, 112, 2, (1, 1, 1, 1)),
    # Planes too large to buffer whole: the three-row ring.
    (1, 2, 1, 130, 131, 1, (1, 1, 1, 1)),
    (1, 2, 2, 201, 198, 2, (0, 1, 2, 1)),
    (1, 1, 1, 140, 129, 1, (2, 0, 3, 2)),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", DW3_CASES)
def test_conv2d_depthwise3x3_edges(case, threads):
    n, c, mult, h, w_, st, pad = case
    cfg = dict(n=n, c=c, k=c * mult, h=h, w=w_, r=3, s=3, stride=(st, st), dil=(1, 1), pad=pad,
               groups=c, act="hardswish", alpha=None, beta=None, bias=True, res=True, after=False,
               seed=13)
    x, w, b, res = make_data(cfg)
    fast = with_threads(threads, lambda: ev_conv(cfg, x, w, b, res))
    rtol, atol = TOL["float32"]
    np.testing.assert_allclose(fast, torch_conv(cfg, x, w, b, res), rtol=rtol, atol=atol)


# Depthwise with more than 9 taps on outputs under 32 columns wide runs across 8-channel blocks
# (conv_dw_cblock): channel counts around the block size (the idle lanes of a last partial block),
# output widths below and at the 4-output step, strides and dilations per axis, non-square kernels.
DW_CBLOCK_CASES = [
    # n, c, h, w, (r, s), stride, dilation, (top, left, bottom, right)
    (1, 1, 7, 7, (5, 5), (1, 1), (1, 1), (2, 2, 2, 2)),
    (2, 7, 14, 14, (5, 5), (2, 2), (1, 1), (2, 2, 2, 2)),
    (1, 8, 7, 9, (5, 5), (1, 1), (1, 1), (2, 2, 2, 2)),
    (1, 9, 5, 3, (7, 7), (1, 1), (1, 1), (3, 3, 3, 3)),
    (2, 17, 11, 13, (3, 5), (1, 2), (2, 1), (2, 0, 1, 3)),
    (1, 24, 15, 15, (4, 4), (1, 1), (1, 1), (1, 2, 2, 1)),
    (1, 12, 30, 29, (5, 5), (3, 2), (1, 1), (0, 1, 2, 0)),
    (1, 16, 1, 1, (5, 5), (1, 1), (1, 1), (2, 2, 2, 2)),
    (1, 10, 40, 44, (5, 5), (2, 2), (1, 1), (2, 2, 2, 2)),  # 22 output columns
    # 3x3 at stride 2 (MobileNet's downsampling layers), full and ragged channel blocks
    (1, 16, 14, 14, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),
    (2, 20, 13, 11, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),
    (1, 24, 9, 9, (3, 3), (2, 2), (1, 1), (0, 0, 1, 1)),
    # rows under 8 wide: the row's one vector load runs on into the next row, except at the end of x
    (1, 16, 7, 7, (5, 5), (1, 1), (1, 1), (2, 2, 2, 2)),
    (2, 16, 6, 6, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),
]


# act, alpha, beta, bias, residual. Without a residual the epilogue is applied in the transposes that write
# the output (cb_write); with one, by the per-plane store.
DW_CBLOCK_EPILOGUES = [("clip", 0.0, 6.0, True, True), ("clip", 0.0, 6.0, True, False),
                       ("hardswish", None, None, False, False), ("silu", None, None, True, False)]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("epi", DW_CBLOCK_EPILOGUES, ids=lambda e: f"{e[0]}-bias{int(e[3])}-res{int(e[4])}")
@pytest.mark.parametrize("case", DW_CBLOCK_CASES)
def test_conv2d_depthwise_channel_blocks(case, epi, threads):
    n, c, h, w_, (r, s), st, dil, pad = case
    act, alpha, beta, bias, with_res = epi
    cfg = dict(n=n, c=c, k=c, h=h, w=w_, r=r, s=s, stride=st, dil=dil, pad=pad, groups=c, act=act,
               alpha=alpha, beta=beta, bias=bias, res=with_res, after=False, seed=17)
    x, w, b, res = make_data(cfg)
    fast = with_threads(threads, lambda: ev_conv(cfg, x, w, b, res))
    rtol, atol = TOL["float32"]
    np.testing.assert_allclose(fast, ev_conv(cfg, x, w, b, res, reference=True), rtol=rtol, atol=atol)
    np.testing.assert_allclose(fast, torch_conv(cfg, x, w, b, res), rtol=rtol, atol=atol)


# The SGEMM's whole-tile store with the epilogue applied in registers (kernel_store: one depth block,
# K <= 320, 576 with AVX-512; 6 output channels x 16 columns of one image row or pixel run), for every activation that has
# a vector form, each with no residual, a residual before and one after the activation. 1x1: 18 output
# channels (3 whole row tiles) over 8x8 = 4 whole panels; 3x3 padded: output rows of 20 (a whole panel
# and a ragged one per row), 13 channels (a ragged row tile too).
REGISTER_EPILOGUE_ACTS = [(None, None, None), ("relu", None, None), ("leaky_relu", 0.2, None),
                          ("clip", -0.5, 0.7), ("hardswish", None, None), ("hardsigmoid", 1 / 6, 0.5)]


@pytest.mark.parametrize("res,after", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("act,alpha,beta", REGISTER_EPILOGUE_ACTS)
@pytest.mark.parametrize("shape", [(20, 18, 8, 8, 1, 0), (24, 13, 6, 20, 3, 1)], ids=["1x1", "3x3"])
def test_conv2d_register_epilogue(shape, act, alpha, beta, res, after):
    c, k, h, w_, r, p = shape
    cfg = dict(n=1, c=c, k=k, h=h, w=w_, r=r, s=r, stride=(1, 1), dil=(1, 1), pad=(p,) * 4, groups=1,
               act=act, alpha=alpha, beta=beta, bias=True, res=res, after=after, seed=19)
    x, w, b, rr = make_data(cfg)
    fast = ev_conv(cfg, x, w, b, rr)
    rtol, atol = TOL["float32"]
    np.testing.assert_allclose(fast, ev_conv(cfg, x, w, b, rr, reference=True), rtol=rtol, atol=atol)
    np.testing.assert_allclose(fast, torch_conv(cfg, x, w, b, rr), rtol=rtol, atol=atol)


# N % 16 == 1 leaves a one-column last panel, which the SGEMM runs as dot products along K
# (narrow_kernel): a 7x7 pointwise map (N = 49) in one depth block and over three (K = 700, with the
# partial sums), ragged row tiles (13 channels), and a padded 3x3 whose pitch layout has 33 columns.
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(64, 18, 7, 7, 1, 0), (700, 13, 7, 7, 1, 0), (40, 12, 5, 5, 3, 1)],
                         ids=["1x1-k64", "1x1-k700", "3x3-pitch"])
def test_conv2d_one_column_panel(shape, threads):
    c, k, h, w_, r, p = shape
    cfg = dict(n=1, c=c, k=k, h=h, w=w_, r=r, s=r, stride=(1, 1), dil=(1, 1), pad=(p,) * 4, groups=1,
               act="relu", alpha=None, beta=None, bias=True, res=True, after=False, seed=23)
    x, w, b, rr = make_data(cfg)
    fast = with_threads(threads, lambda: ev_conv(cfg, x, w, b, rr))
    rtol, atol = TOL["float32"]
    np.testing.assert_allclose(fast, ev_conv(cfg, x, w, b, rr, reference=True), rtol=rtol, atol=atol)
    np.testing.assert_allclose(fast, torch_conv(cfg, x, w, b, rr), rtol=rtol, atol=atol)
