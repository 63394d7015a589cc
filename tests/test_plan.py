"""edgevision._C.Plan, the C++ plan executor (csrc/runtime/plan.h), on hand-written specs.

Every op against the per-op wrappers (edgevision.ops) or numpy; aliases, in-place steps and arena
reuse; every class of malformed spec -> ValueError naming the value or step (plus a random-mutation
loop where the only allowed outcomes are success or a clean exception); run() argument checks;
thread safety (4 threads x 500 runs, separate Plans and one shared Plan, bit-identical to one
thread); profiling. CUDA variants are parametrized and skip without a GPU.
"""
import copy
import math
import re
import threading

import numpy as np
import pytest

from conftest import HAS_CUDA, TOL, cuda
from edgevision import _C, ops

RTOL, ATOL = TOL["float32"]


class Const:
    """An operand that the spec holds as a constant rather than a run() input."""

    def __init__(self, a):
        self.a = np.ascontiguousarray(a, dtype=np.float32)


class SpecBuilder:
    """Builds a plan spec value by value. Arena values get the next free 64-byte aligned offset
    unless one is given; arena_bytes grows to cover every arena value."""

    def __init__(self, device="cpu", dtype="float32", num_threads=1):
        self.device, self.dtype, self.num_threads = device, dtype, num_threads
        self.esize = 2 if dtype == "float16" else 4
        self.values, self.steps, self.constants, self.inputs, self.outputs = [], [], [], [], []
        self.arena_bytes = 0
        self.top = 0  # bump pointer for automatic arena offsets

    def _add(self, **v):
        self.values.append(v)
        return len(self.values) - 1

    def input(self, shape, name=None):
        vid = self._add(name=name or f"in{len(self.inputs)}", shape=list(shape), kind="input",
                        index=len(self.inputs))
        self.inputs.append(vid)
        return vid

    def output(self, shape, name=None):
        vid = self._add(name=name or f"out{len(self.outputs)}", shape=list(shape), kind="output",
                        index=len(self.outputs))
        self.outputs.append(vid)
        return vid

    def const(self, a, name=None):
        a = np.ascontiguousarray(a, dtype=np.float32)
        self.constants.append(a)
        return self._add(name=name or f"c{len(self.constants) - 1}", shape=list(a.shape),
                         kind="constant", index=len(self.constants) - 1)

    def arena(self, shape, offset=None, name=None):
        nbytes = math.prod(shape) * self.esize
        if offset is None:
            offset = self.top
            self.top = -(-(offset + nbytes) // 64) * 64
        self.arena_bytes = max(self.arena_bytes, -(-(offset + nbytes) // 64) * 64)
        return self._add(name=name or f"t{len(self.values)}", shape=list(shape), kind="arena",
                         offset=offset)

    def alias(self, base, shape, offset=0, name=None):
        return self._add(name=name or f"a{len(self.values)}", shape=list(shape), kind="alias",
                         offset=offset, index=base)

    def step(self, op, inputs, output, name=None, /, **attrs):
        self.steps.append(dict(op=op, name=name or f"{op}{len(self.steps)}", inputs=list(inputs),
                               outputs=[output], attrs=attrs))
        return output

    def operand(self, x):
        if x is None:
            return -1
        if isinstance(x, Const):
            return self.const(x.a)
        return self.input(x.shape)

    def spec(self, fresh=True):
        """The spec dict; fresh: its values and steps are copies the caller may mutate."""
        cp = copy.deepcopy if fresh else (lambda v: v)
        return dict(device=self.device, dtype=self.dtype, num_threads=self.num_threads,
                    arena_bytes=self.arena_bytes, constants=list(self.constants),
                    values=cp(self.values), steps=cp(self.steps),
                    inputs=list(self.inputs), outputs=list(self.outputs))


def run_op(op, operands, out_shape, /, via_arena=True, **attrs):
    """One op in a plan: numpy operands are run() inputs, Const operands constants, None absent.
    via_arena: the op writes an arena value that a copy step moves to the output."""
    b = SpecBuilder()
    ids = [b.operand(x) for x in operands]
    if via_arena:
        t = b.arena(out_shape)
        b.step(op, ids, t, **attrs)
        b.step("copy", [t], b.output(out_shape))
    else:
        b.step(op, ids, b.output(out_shape), **attrs)
    plan = _C.Plan(b.spec())
    out = np.full(out_shape, np.nan, np.float32)
    plan.run([x for x in operands if isinstance(x, np.ndarray)], [out])
    return out


def close(y, ref, what=""):
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL, err_msg=what)


def rand(rng, *shape, scale=1.0):
    return np.asarray(rng.standard_normal(shape) * scale, dtype=np.float32)


ACT_CASES = [("none", 0.0, 0.0), ("relu", 0.0, 0.0), ("leaky_relu", 0.1, 0.0), ("clip", -0.5, 0.7),
             ("sigmoid", 0.0, 0.0), ("tanh", 0.0, 0.0), ("silu", 0.0, 0.0), ("hardswish", 0.0, 0.0),
             ("gelu", 0.0, 0.0), ("hardsigmoid", 0.2, 0.5)]


# ----------------------------------------------------------------------------------------------
# Every op against edgevision.ops / numpy
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", [
    # n, c, h, w, k, r, s, stride, pads (t, l, b, r), dilation, groups, bias, residual, act
    (1, 3, 9, 11, 8, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1, True, False, ACT_CASES[1]),
    (2, 4, 8, 7, 6, 3, 2, (2, 1), (0, 1, 2, 0), (1, 2), 2, False, True, ACT_CASES[3]),
    (1, 6, 7, 7, 12, 3, 3, (1, 1), (2, 2, 2, 2), (2, 2), 6, True, True, ACT_CASES[7]),
    (1, 16, 5, 5, 8, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1, True, True, ACT_CASES[8]),
])
@pytest.mark.parametrize("res_after_act", [False, True])
def test_conv2d(rng, case, res_after_act):
    n, c, h, w, k, r, s, st, pads, dil, g, has_bias, has_res, (act, al, be) = case
    x, wt = rand(rng, n, c, h, w), rand(rng, k, c // g, r, s, scale=0.3)
    bias = rand(rng, k) if has_bias else None
    ref0 = ops.conv2d(x, wt, bias, stride=st, padding=pads, dilation=dil, groups=g)
    res = rand(rng, *ref0.shape) if has_res else None
    ref = ops.conv2d(x, wt, bias, stride=st, padding=pads, dilation=dil, groups=g, activation=act,
                     alpha=al, beta=be, residual=res, residual_after_act=res_after_act)
    y = run_op("conv2d", [x, Const(wt), None if bias is None else Const(bias), res], ref.shape,
               stride=list(st), pads=list(pads), dilation=list(dil), groups=g, act=act, alpha=al,
               beta=be, residual_after_act=res_after_act)
    close(y, ref)


def check_dw_pw(rng, x, c, mult, ks, st, pads, dil, k, threads, dw_act, act, has_res, after, expand_act=None):
    """conv2d_dw_pw on random weights (with the 1x1 expand conv when expand_act = (act, alpha, beta)) against the
    convs it fuses (edgevision.ops' reference loops), run twice: the second run reuses the workspace."""
    n = x.shape[0]
    we, be = rand(rng, c, x.shape[1], 1, 1, scale=0.5), rand(rng, c)
    wd, bd = rand(rng, c * mult, 1, ks, ks, scale=0.3), rand(rng, c * mult)
    wp, bp = rand(rng, k, c * mult, 1, 1, scale=0.3), rand(rng, k)
    dw_in = x
    if expand_act:
        dw_in = ops.conv2d(x, we, be, activation=expand_act[0], alpha=expand_act[1], beta=expand_act[2],
                           reference=True)
    mid = ops.conv2d(dw_in, wd, bd, stride=st, padding=pads, dilation=dil, groups=c, activation=dw_act,
                     alpha=-0.5, beta=1.5, reference=True)
    res = rand(rng, n, k, *mid.shape[2:]) if has_res else None
    ref = ops.conv2d(mid, wp, bp, activation=act, alpha=0.0, beta=6.0, residual=res, residual_after_act=after,
                     reference=True)
    b = SpecBuilder(num_threads=threads)
    ids = [b.input(x.shape), b.const(wd), b.const(bd), b.const(wp), b.const(bp)]
    ids.append(-1 if res is None else b.input(res.shape))
    extra = {}
    if expand_act:
        ids += [b.const(we), b.const(be)]
        extra = dict(ex_act=expand_act[0], ex_alpha=expand_act[1], ex_beta=expand_act[2])
    b.step("conv2d_dw_pw", ids, b.output(ref.shape), stride=[st, st], pads=list(pads), dilation=[dil, dil],
           dw_act=dw_act, dw_alpha=-0.5, dw_beta=1.5, act=act, alpha=0.0, beta=6.0, residual_after_act=after, **extra)
    plan = _C.Plan(b.spec())
    assert plan.packed_bytes > 0  # the weights, packed at build
    y = np.full(ref.shape, np.nan, np.float32)
    for _ in range(2):
        plan.run([x] if res is None else [x, res], [y])
        close(y, ref)


@pytest.mark.parametrize("case", [
    # n, c, h, w, dw kernel, multiplier, stride, pads (t, l, b, r), dilation, pw out channels, threads
    # The band path (3x3, stride 1 or 2, multiplier 1, 32+ output columns): several bands per thread, rows
    # split between threads inside an image and across images, widths off the vector size, asymmetric pads,
    # a 1x1 over more channels than one depth block.
    (1, 64, 61, 40, 3, 1, 1, (1, 1, 1, 1), 1, 24, 2),
    (3, 48, 97, 81, 3, 1, 2, (1, 1, 1, 1), 1, 20, 2),
    (2, 16, 9, 70, 3, 1, 1, (0, 1, 2, 0), 1, 7, 3),
    (1, 12, 14, 66, 3, 1, 2, (0, 0, 1, 1), 1, 9, 1),
    (1, 600, 6, 40, 3, 1, 1, (1, 1, 1, 1), 1, 30, 2),
    # Everything else runs the two convs in turn: 5x5, a channel multiplier, dilation, narrow outputs.
    (1, 24, 20, 40, 5, 1, 1, (2, 2, 2, 2), 1, 16, 2),
    (2, 8, 10, 36, 3, 2, 1, (1, 1, 1, 1), 1, 5, 2),
    (1, 16, 12, 44, 3, 1, 1, (2, 2, 2, 2), 2, 8, 2),
    (1, 32, 14, 14, 3, 1, 1, (1, 1, 1, 1), 1, 16, 2),
])
@pytest.mark.parametrize("epilogue", ["clip-res", "relu6-res-after", "none"])
@pytest.mark.parametrize("expand", [0, 6])
def test_conv2d_dw_pw(rng, case, epilogue, expand):
    """conv2d_dw_pw against the convs it fuses; expand: the channels of the block input that a 1x1 expand conv
    turns into the depthwise's input (0: no expand conv)."""
    n, c, h, w, ks, mult, st, pads, dil, k, threads = case
    dw_act, act = {"clip-res": ("clip", "hardswish"), "relu6-res-after": ("relu", "clip"), "none": ("none", "none")}[epilogue]
    check_dw_pw(rng, rand(rng, n, expand or c, h, w), c, mult, ks, st, pads, dil, k, threads, dw_act, act,
                epilogue != "none", epilogue == "relu6-res-after", ("leaky_relu", 0.1, 0.0) if expand else None)


@pytest.mark.parametrize("case", [
    # n, block input channels, expanded channels, h, w, kernel, stride, pads (t, l, b, r), out channels, threads
    # The blocked path (AVX-512 builds; others run the convs in turn): expanded channels in blocks of 16 split
    # over the threads, outputs under 28 wide. MobileNetV2's 14x14 and 7x7 blocks; odd block counts (a
    # 16-channel tile after 32-channel ones, 3 blocks over 2 threads), more threads than blocks, output channels
    # off 16 (a 16-wide last tile, lanes past K dropped), input channels off 16, 5x5 and stride 2, asymmetric
    # pads, several images, pixel counts that leave a short last tile, and a 27-wide map (the widest it takes).
    (1, 64, 384, 14, 14, 3, 1, (1, 1, 1, 1), 64, 2),
    (1, 160, 960, 7, 7, 3, 1, (1, 1, 1, 1), 160, 2),
    (2, 40, 48, 7, 7, 3, 1, (1, 1, 1, 1), 40, 2),
    (1, 24, 64, 15, 13, 3, 2, (1, 1, 1, 1), 24, 3),
    (1, 6, 32, 11, 9, 5, 1, (2, 2, 2, 2), 17, 1),
    (1, 21, 16, 28, 20, 5, 2, (1, 2, 2, 1), 33, 4),
    (3, 96, 96, 6, 5, 3, 1, (0, 1, 1, 0), 70, 2),
    (1, 32, 192, 28, 28, 3, 2, (0, 0, 1, 1), 64, 2),
    (1, 8, 48, 9, 27, 3, 1, (1, 1, 1, 1), 8, 2),
])
@pytest.mark.parametrize("epilogue", ["relu6-res", "hardswish-res-after", "none"])
def test_conv2d_dw_pw_blocked(rng, case, epilogue):
    """conv2d_dw_pw with an expand conv on small maps against the convs it fuses."""
    n, cin, c, h, w, ks, st, pads, k, threads = case
    ex_act, dw_act, act = {"relu6-res": ("clip", "clip", "none"), "hardswish-res-after": ("hardswish", "relu", "clip"),
                           "none": ("none", "none", "none")}[epilogue]
    check_dw_pw(rng, rand(rng, n, cin, h, w), c, 1, ks, st, pads, 1, k, threads, dw_act, act, epilogue != "none",
                epilogue == "hardswish-res-after", (ex_act, 0.0, 6.0))


def test_conv2d_dw_pw_errors(rng):
    x, wd, wp = rand(rng, 1, 8, 6, 6), rand(rng, 8, 1, 3, 3), rand(rng, 4, 8, 1, 1)
    attrs = dict(stride=[1, 1], pads=[1, 1, 1, 1], dilation=[1, 1])

    def build(wp_shape=(4, 8, 1, 1), out=(1, 4, 6, 6), device="cpu", wd_shape=(8, 1, 3, 3)):
        b = SpecBuilder(device=device)
        b.step("conv2d_dw_pw", [b.input(x.shape), b.const(np.zeros(wd_shape)), -1, b.const(np.zeros(wp_shape)), -1, -1],
               b.output(out), **attrs)
        return _C.Plan(b.spec())

    build()
    with pytest.raises(ValueError, match=r"pointwise weight .* must have shape \[4, 8, 1, 1\]"):
        build(wp_shape=(4, 8, 3, 3))
    with pytest.raises(ValueError, match=r"output .* must have shape \[1, 4, 6, 6\]"):
        build(out=(1, 4, 5, 5))
    with pytest.raises(ValueError, match=r"weight .* must have shape \[8, 1, 3, 3\]"):
        build(wd_shape=(8, 2, 3, 3))
    b = SpecBuilder()
    b.step("conv2d_dw_pw", [b.input(x.shape), b.const(wd), -1, b.const(wp), -1, -1, -1, b.const(np.zeros(8))],
           b.output((1, 4, 6, 6)), **attrs)
    with pytest.raises(ValueError, match="expand bias .* but no expand weight"):
        _C.Plan(b.spec())
    b = SpecBuilder()
    b.step("conv2d_dw_pw", [b.input(x.shape), b.const(wd), -1, b.const(wp), -1, -1, b.const(np.zeros((8, 5, 1, 1)))],
           b.output((1, 4, 6, 6)), **attrs)
    with pytest.raises(ValueError, match=r"expand weight .* must have shape \[8, 8, 1, 1\]"):
        _C.Plan(b.spec())
    if HAS_CUDA:
        with pytest.raises(ValueError, match="runs on the CPU only"):
            build(device="cuda")


@pytest.mark.parametrize("case", [
    # n, c, h, w, k, r, pad, stride, groups, pool (kh, kw[, stride, pads t l b r]), threads
    (1, 3, 32, 32, 32, 3, 0, 1, 1, (2, 2), 2),     # the seed CNN's first conv: K = 27, one band per thread
    # its rows from the planar conv (AVX-512: at most 4 channels, K <= 75, 16+ columns)
    (8, 3, 32, 32, 32, 3, 0, 1, 1, (2, 2), 2),     # images spread over the threads, each its own padded copy
    (1, 1, 40, 70, 16, 5, 2, 1, 1, (3, 3, 2, (1, 1, 1, 1)), 3),  # 5x5, 70 columns, overlapping windows
    (1, 32, 15, 15, 64, 3, 0, 1, 1, (2, 2), 2),    # 13x13 -> 6x6: conv row and column 12 under no window
    (1, 32, 15, 15, 64, 3, 0, 1, 1, (2, 2), 4),    # 4 threads over 6 pooled rows
    (1, 16, 9, 9, 20, 3, 0, 1, 1, (2, 2), 8),      # more threads than pooled rows (3)
    (1, 8, 17, 17, 12, 5, 1, 1, 4, (3, 3), 2),     # grouped 5x5, 3x3 windows (a general pool row)
    (1, 6, 20, 21, 10, 3, 1, 2, 1, (2, 3), 3),     # stride 2, windows 2 x 3
    (3, 16, 12, 12, 24, 3, 1, 1, 1, (2, 2), 2),    # 3 images, each split over the threads (a barrier between)
    (8, 16, 12, 12, 24, 3, 1, 1, 1, (2, 2), 2),    # images spread over the threads
    (1, 70, 7, 7, 40, 3, 1, 1, 1, (2, 2), 2),      # K = 630: several depth blocks
    (1, 16, 32, 32, 16, 3, 1, 1, 1, (2, 2), 2),    # Winograd's shape (64 tiles): the conv, then the pool
    (2, 16, 10, 10, 16, 3, 1, 1, 16, (2, 2), 2),   # depthwise: the conv, then the pool
    (1, 16, 10, 10, 32, 1, 0, 1, 1, (2, 2), 2),    # pointwise: the conv, then the pool
    # the direct conv (AVX-512): its rows per band (32-channel tiles), or the conv, then the pool (64-channel tiles)
    (1, 80, 32, 32, 32, 3, 1, 2, 1, (2, 2), 2),    # stride 2, 16 columns: tiles of 14 and 2
    (3, 16, 12, 12, 32, 3, 1, 2, 1, (2, 2), 2),    # 3 images, each split over the threads
    (4, 32, 15, 15, 64, 3, 0, 1, 1, (2, 2), 2),    # the seed CNN's second conv at batch 4: whole images per thread
    (1, 64, 8, 8, 64, 3, 1, 1, 1, (2, 2), 3),      # 8 columns (not Winograd: 4 tiles), 3 threads over 4 rows
    (1, 32, 30, 30, 64, 5, 2, 1, 1, (3, 3, 2, (1, 1, 1, 1)), 3),  # 5x5, overlapping windows
    (1, 16, 120, 120, 96, 5, 2, 1, 1, (3, 3, 2, (1, 1, 1, 1)), 2),  # chunks of 2 pooled rows, 1 shared
    (1, 64, 7, 7, 128, 3, 1, 1, 1, (2, 2), 2),     # 7 columns, 128 channels (64-channel rows): conv, then pool
    (1, 64, 7, 7, 64, 3, 1, 1, 1, (2, 2), 2),      # 7 columns, one block of 64: 32-channel tiles, pool-fused
    (1, 16, 9, 9, 8, 3, 1, 1, 1, (9, 9), 2),       # one window over the whole map
    # overlapping windows: neighbouring bands share conv rows
    (1, 3, 40, 40, 16, 7, 3, 2, 1, (3, 3, 2, (1, 1, 1, 1)), 2),  # ResNet's stem: 7x7/2 conv, 3x3/2 pad 1 pool
    (1, 3, 41, 39, 16, 7, 3, 2, 1, (3, 3, 2, (1, 1, 1, 1)), 3),  # odd maps, 3 threads
    (1, 8, 13, 13, 12, 3, 1, 1, 1, (3, 3, 2, (0, 0, 0, 0)), 2),  # AlexNet-style 3x3/2 without padding
    (1, 8, 12, 12, 12, 3, 1, 1, 1, (3, 3, 1, (1, 1, 1, 1)), 4),  # stride 1: each band recomputes 2 conv rows
    (1, 8, 12, 12, 12, 3, 1, 1, 1, (3, 2, 2, (2, 0, 1, 1)), 2),  # asymmetric pads, 3x2 windows
    (1, 8, 11, 11, 12, 3, 1, 1, 1, (2, 2, 2, (1, 1, 0, 0)), 8),  # padded at the top only, 8 threads, 6 rows
    (2, 8, 14, 14, 12, 3, 1, 1, 1, (3, 3, 2, (1, 1, 1, 1)), 2),  # 2 images, each split over the threads
    (4, 8, 14, 14, 12, 3, 1, 1, 1, (3, 3, 2, (1, 1, 1, 1)), 2),  # images spread over the threads
    # bands of several chunks (256 KB of conv output each): the shared conv rows carried from chunk to chunk
    (1, 3, 224, 224, 64, 7, 3, 2, 1, (3, 3, 2, (1, 1, 1, 1)), 2),  # ResNet-18's stem: 4 pooled rows a chunk
    (1, 8, 100, 100, 96, 3, 1, 1, 1, (3, 3, 1, (1, 1, 1, 1)), 2),  # 6 rows a chunk, 2 shared
    (1, 16, 130, 130, 128, 3, 1, 1, 1, (2, 2), 3),                 # 1 pooled row a chunk, nothing shared
])
@pytest.mark.parametrize("residual", [False, True])
def test_conv2d_max_pool(rng, case, residual):
    """conv2d with max_pool (and max_pool_stride / max_pool_pads) against the conv, its epilogue and the pool
    from edgevision.ops' reference loops; a residual (of the conv's shape) takes the conv-then-pool path."""
    n, c, h, w, k, r, p, st, g, pool, threads = case
    pool_stride, pool_pads = (pool[2], pool[3]) if len(pool) > 2 else (pool[:2], (0, 0, 0, 0))
    pool = pool[:2]
    x, wt, bias = rand(rng, n, c, h, w), rand(rng, k, c // g, r, r, scale=0.3), rand(rng, k)
    conv = ops.conv2d(x, wt, bias, stride=st, padding=p, groups=g, reference=True)
    res = rand(rng, *conv.shape) if residual else None
    conv = ops.conv2d(x, wt, bias, stride=st, padding=p, groups=g, activation="leaky_relu", alpha=0.1,
                      residual=res, reference=True)
    ref = ops.max_pool2d(conv, pool, pool_stride, list(pool_pads), reference=True)
    b = SpecBuilder(num_threads=threads)
    ids = [b.input(x.shape), b.const(wt), b.const(bias), -1 if res is None else b.input(res.shape)]
    windows = dict(max_pool=list(pool)) if len(case[9]) == 2 else dict(
        max_pool=list(pool), max_pool_stride=[pool_stride] * 2, max_pool_pads=list(pool_pads))
    b.step("conv2d", ids, b.output(ref.shape), stride=[st, st], pads=[p] * 4, dilation=[1, 1], groups=g,
           act="leaky_relu", alpha=0.1, **windows)
    plan = _C.Plan(b.spec())
    for _ in range(2):  # the second run reuses the workspace the first one left
        y = np.full(ref.shape, np.nan, np.float32)
        plan.run([x] if res is None else [x, res], [y])
        close(y, ref)


def test_conv2d_max_pool_errors(rng):
    def build(out=(1, 4, 3, 3), pool=(2, 2), device="cpu", **windows):
        b = SpecBuilder(device=device)
        b.step("conv2d", [b.input((1, 2, 8, 8)), b.const(np.zeros((4, 2, 3, 3))), -1, -1], b.output(out),
               stride=[1, 1], pads=[0] * 4, dilation=[1, 1], groups=1, max_pool=list(pool), **windows)
        return _C.Plan(b.spec())

    build()
    build(out=(1, 4, 3, 3), pool=(3, 3), max_pool_stride=[2, 2], max_pool_pads=[1, 1, 1, 1])
    with pytest.raises(ValueError, match=r"output .* must have shape \[1, 4, 3, 3\]"):
        build(out=(1, 4, 6, 6))
    with pytest.raises(ValueError, match=r"max_pool \[7, 2\] is larger than the padded conv output \[1, 4, 6, 6\]"):
        build(pool=(7, 2))
    with pytest.raises(ValueError, match=r"max_pool_pads \[0, 2, 0, 0\] must be smaller than the max_pool kernel"):
        build(pool=(2, 2), max_pool_pads=[0, 2, 0, 0])
    with pytest.raises(ValueError, match="attribute 'max_pool_stride'"):
        build(max_pool_stride=[0, 1])
    with pytest.raises(ValueError, match="attribute 'max_pool_pads'"):
        build(max_pool_pads=[1, 1])
    with pytest.raises(ValueError, match="attribute 'max_pool'"):
        build(pool=(0, 2))
    with pytest.raises(ValueError, match="attribute 'max_pool'"):
        build(pool=(2,))
    if HAS_CUDA:
        with pytest.raises(ValueError, match="max_pool runs on the CPU only"):
            build(device="cuda")


@pytest.mark.parametrize("case", [
    # n, c, h, w, k, r, s, pad, groups
    (1, 70, 7, 7, 13, 3, 3, 1, 1),     # K = 630: three depth blocks, a ragged row panel, a one-column panel
    (1, 16, 32, 32, 16, 3, 3, 1, 1),   # Winograd: the transformed filters are packed
    (2, 24, 6, 6, 20, 1, 1, 0, 2),     # pointwise, grouped, columns across the batch
    (1, 8, 9, 9, 8, 3, 3, 1, 8),       # depthwise: weights read as given, nothing packed
])
@pytest.mark.parametrize("weights", ["constant", "input", "shared"])
def test_conv2d_packed_weights(rng, case, weights):
    """CPU convs with constant weights get them packed once at build (Plan.packed_bytes), and such a
    constant is not copied unless another step reads it ("shared": a copy step outputs it too); weights
    given at run time are packed by each call."""
    n, c, h, w, k, r, s, p, g = case
    x, wt, bias = rand(rng, n, c, h, w), rand(rng, k, c // g, r, s, scale=0.3), rand(rng, k)
    ref = ops.conv2d(x, wt, bias, padding=p, groups=g, activation="relu", reference=True)
    b = SpecBuilder()
    xi = b.input(x.shape)
    wi = b.input(wt.shape) if weights == "input" else b.const(wt)
    b.step("conv2d", [xi, wi, b.const(bias), -1], b.output(ref.shape), stride=[1, 1], pads=[p] * 4,
           dilation=[1, 1], groups=g, act="relu", alpha=0.0, beta=0.0, residual_after_act=False)
    check_packed_weights(b, wi, x, wt, ref, weights, packs=weights != "input" and g != c)


@pytest.mark.parametrize("threads", [1, 2, 3, 4])
def test_split_k_weights_packed_for_the_plan_threads(rng, threads):
    """A 1x1 conv whose weights are packed per thread (split-K: 384 -> 64 at 14x14) gets them packed under the
    plan's thread count, not the process's: both the packing and the run follow num_threads."""
    x, wt, bias = rand(rng, 1, 384, 14, 14), rand(rng, 64, 384, 1, 1, scale=0.1), rand(rng, 64)
    ref = ops.conv2d(x, wt, bias, activation="relu", reference=True)
    b = SpecBuilder(num_threads=threads)
    b.step("conv2d", [b.input(x.shape), b.const(wt), b.const(bias), -1], b.output(ref.shape), stride=[1, 1],
           pads=[0] * 4, dilation=[1, 1], groups=1, act="relu")
    y = np.full(ref.shape, np.nan, np.float32)
    _C.Plan(b.spec()).run([x], [y])
    close(y, ref)


def check_packed_weights(b, wi, x, wt, ref, weights, packs):
    """Builds the plan of `b` (one step reading input x and weights wi; "shared": a copy step outputs the
    weights too), checks whether it packed weights, and runs it twice (the second run reads the same packed
    weights) against ref."""
    if weights == "shared":
        b.step("copy", [wi], b.output(wt.shape))
    plan = _C.Plan(b.spec())
    assert (plan.packed_bytes > 0) == packs
    outs = [np.full(ref.shape, np.nan, np.float32)] + ([np.zeros_like(wt)] if weights == "shared" else [])
    for _ in range(2):
        plan.run([x, wt] if weights == "input" else [x], outs)
        close(outs[0], ref)
    if weights == "shared":
        np.testing.assert_array_equal(outs[1], wt)


@pytest.mark.parametrize("case", [
    # n, c, h, w, k, r, s, stride, pads, output_padding, dilation, groups, bias
    # One group, no dilation: the GEMM on weights packed at build, then col2im (the DCGAN layer, batch 3,
    # uneven stride / kernel / pads with output_padding, a kernel larger than the map); else the 8-lane GEMM.
    (1, 4, 5, 6, 3, 4, 4, (2, 2), (1, 1, 1, 1), (0, 0), (1, 1), 1, True),
    (1, 64, 4, 4, 32, 4, 4, (2, 2), (1, 1, 1, 1), (0, 0), (1, 1), 1, True),
    (3, 8, 3, 5, 5, 3, 5, (3, 2), (0, 2, 1, 1), (1, 1), (1, 1), 1, True),
    (1, 5, 2, 2, 7, 5, 5, (1, 1), (1, 2, 1, 0), (0, 0), (1, 1), 1, False),
    (2, 6, 4, 3, 4, 3, 2, (3, 2), (0, 1, 1, 0), (2, 1), (1, 2), 2, False),
])
def test_conv_transpose2d(rng, case):
    n, c, h, w, k, r, s, st, pads, op_, dil, g, has_bias = case
    x, wt = rand(rng, n, c, h, w), rand(rng, c, k // g, r, s, scale=0.3)
    bias = rand(rng, k) if has_bias else None
    ref = ops.conv_transpose2d(x, wt, bias, stride=st, padding=pads, output_padding=op_,
                               dilation=dil, groups=g, activation="tanh")
    y = run_op("conv_transpose2d", [x, Const(wt), None if bias is None else Const(bias)], ref.shape,
               stride=list(st), pads=list(pads), output_padding=list(op_), dilation=list(dil),
               groups=g, act="tanh")
    close(y, ref)
    # The weights as a run() input: packed by every call (the 8-lane GEMM).
    y2 = run_op("conv_transpose2d", [x, wt, None if bias is None else Const(bias)], ref.shape,
                stride=list(st), pads=list(pads), output_padding=list(op_), dilation=list(dil),
                groups=g, act="tanh")
    close(y2, ref)


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_pools(rng, ceil_mode):
    x = rand(rng, 2, 3, 11, 8)
    ref = ops.max_pool2d(x, (3, 2), (2, 2), (1, 0, 1, 1), (2, 1), ceil_mode)
    y = run_op("max_pool2d", [x], ref.shape, kernel=[3, 2], stride=[2, 2], pads=[1, 0, 1, 1],
               dilation=[2, 1], ceil_mode=ceil_mode)
    close(y, ref)
    for cip in (False, True):
        ref = ops.avg_pool2d(x, (3, 3), (2, 3), (1, 1, 2, 0), ceil_mode, cip)
        y = run_op("avg_pool2d", [x], ref.shape, kernel=[3, 3], stride=[2, 3], pads=[1, 1, 2, 0],
                   ceil_mode=ceil_mode, count_include_pad=cip)
        close(y, ref)
    close(run_op("global_avg_pool", [x], [2, 3, 1, 1]), ops.global_avg_pool2d(x))
    close(run_op("global_max_pool", [x], [2, 3, 1, 1]), ops.global_max_pool2d(x))


@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm(rng, trans_a, trans_b):
    m, k, n = 5, 7, 9
    a = rand(rng, *((k, m) if trans_a else (m, k)))
    b = rand(rng, *((n, k) if trans_b else (k, n)))
    bias, res = rand(rng, n), rand(rng, m, n)
    # gemm's "alpha" is its scale; its activation takes act_alpha / act_beta.
    ref = ops.gemm(a, b, bias, trans_a=trans_a, trans_b=trans_b, alpha=0.5, activation="clip",
                   act_alpha=-0.3, act_beta=0.4, residual=res, residual_after_act=True)
    y = run_op("gemm", [a, Const(b), Const(bias), res], [m, n], trans_a=trans_a, trans_b=trans_b,
               alpha=0.5, act="clip", act_alpha=-0.3, act_beta=0.4, residual_after_act=True)
    close(y, ref)
    ref = ops.gemm(a, b, None, trans_a=trans_a, trans_b=trans_b, alpha=-1.5)
    close(run_op("gemm", [a, Const(b)], [m, n], trans_a=trans_a, trans_b=trans_b, alpha=-1.5), ref)


@pytest.mark.parametrize("m,k,n", [
    (5, 7, 9),       # one depth block, a ragged panel
    (12, 600, 37),   # three depth blocks (256 + 256 + 88), two row panels, a 5-column last panel
    (8, 256, 64),    # the seed CNN's first linear layer at batch 8
    (3, 20, 10),     # 3 rows: the row kernels read b as given, nothing packed
])
@pytest.mark.parametrize("weights", ["constant", "input", "shared"])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_packed_weights(rng, m, k, n, weights, trans_b):
    """A constant gemm B is packed once at build when the SGEMM path takes it (over 4 rows), and not copied
    unless another step reads it; B given at run time is packed by each call."""
    a, bm = rand(rng, m, k), rand(rng, *((n, k) if trans_b else (k, n)), scale=0.3)
    bias = rand(rng, n)
    ref = ops.gemm(a, bm, bias, trans_b=trans_b, activation="relu", reference=True)
    sb = SpecBuilder()
    ai = sb.input(a.shape)
    bi = sb.input(bm.shape) if weights == "input" else sb.const(bm)
    sb.step("gemm", [ai, bi, sb.const(bias), -1], sb.output(ref.shape), trans_a=False, trans_b=trans_b,
            alpha=1.0, act="relu", act_alpha=0.0, act_beta=0.0, residual_after_act=False)
    check_packed_weights(sb, bi, a, bm, ref, weights, packs=weights != "input" and m > 4)


@pytest.mark.parametrize("sa,sb", [
    ((2, 3, 4, 5), (5, 6)),        # b shared by every batch: one gemm of 24 rows
    ((3, 4, 5), (3, 5, 2)),
    ((1, 4, 5), (3, 5, 2)),        # a broadcast
    ((2, 1, 4, 5), (3, 5, 6)),     # both broadcast
    ((4, 5), (2, 5, 3)),
    ((6, 1), (1, 7)),
])
def test_matmul(rng, sa, sb):
    a, b = rand(rng, *sa), rand(rng, *sb)
    ref = np.matmul(a, b)
    close(run_op("matmul", [a, b], ref.shape), ref)
    close(run_op("matmul", [a, Const(b)], ref.shape, via_arena=False), ref)


@pytest.mark.parametrize("mode", ["CRD", "DCR"])
def test_pixel_shuffle(rng, mode):
    x = rand(rng, 2, 12, 3, 5)
    ref = ops.pixel_shuffle(x, 2, mode)
    close(run_op("pixel_shuffle", [x], ref.shape, block=2, mode=mode), ref)


@pytest.mark.parametrize("mode", ["CRD", "DCR"])
@pytest.mark.parametrize("shape, block, crop, out_hw", [
    ((1, 256, 5, 5), 2, (1, 1), (8, 8)),        # the DCGAN layer (CRD: the table path)
    ((2, 18, 4, 3), 3, (2, 0), (7, 9)),         # uneven crop, a whole row kept
    ((1, 8, 45, 61), 2, (3, 2), (80, 117)),     # a plane past the table: the per-output loop
    ((1, 4, 6, 6), 2, (0, 0), (12, 12)),        # a crop of the whole map
])
def test_pixel_shuffle_crop(rng, mode, shape, block, crop, out_hw):
    """pixel_shuffle with crop = [top, left]: a window of the shuffled map (fold_crop_into_pixel_shuffle)."""
    x = rand(rng, *shape)
    full = ops.pixel_shuffle(x, block, mode)
    (t, l), (h, w) = crop, out_hw
    ref = full[:, :, t:t + h, l:l + w]
    close(run_op("pixel_shuffle", [x], ref.shape, block=block, mode=mode, crop=list(crop)), ref)


def test_pixel_shuffle_crop_errors(rng):
    x = rand(rng, 1, 8, 3, 3)
    for crop, out in [((1, 0), (1, 2, 6, 6)), ((0, 5), (1, 2, 6, 2)), ((0, 0), (1, 3, 6, 6))]:
        with pytest.raises(ValueError, match=r"must be a window \[1, 2, h, w\] of the shuffled map"):
            run_op("pixel_shuffle", [x], out, block=2, mode="CRD", crop=list(crop))
    with pytest.raises(ValueError, match="crop"):
        run_op("pixel_shuffle", [x], (1, 2, 6, 6), block=2, mode="CRD", crop=[-1, 0])


@pytest.mark.parametrize("mode,coord,nearest", [
    ("nearest", "asymmetric", "floor"), ("nearest", "half_pixel", "round_prefer_ceil"),
    ("bilinear", "half_pixel", "round_prefer_floor"), ("bilinear", "align_corners", "floor"),
    ("bilinear", "pytorch_half_pixel", "floor")])
def test_resize(rng, mode, coord, nearest):
    x = rand(rng, 1, 2, 5, 7)
    ref = ops.resize(x, size=(9, 4), mode=mode, coordinate_mode=coord, nearest_mode=nearest)
    close(run_op("resize", [x], ref.shape, mode=mode, coord=coord, nearest=nearest, scale_h=0.0,
                 scale_w=0.0), ref)
    ref = ops.resize(x, scale_factor=(2.0, 1.5), mode=mode, coordinate_mode=coord, nearest_mode=nearest)
    close(run_op("resize", [x], ref.shape, mode=mode, coord=coord, nearest=nearest, scale_h=2.0,
                 scale_w=1.5), ref)


@pytest.mark.parametrize("log", [False, True])
def test_softmax(rng, log):
    x = rand(rng, 2, 3, 4, 5, scale=3.0)
    for axis in range(4):
        ref = (ops.log_softmax if log else ops.softmax)(x, axis)
        outer, inner = math.prod(x.shape[:axis]), math.prod(x.shape[axis + 1:])
        close(run_op("softmax", [x], x.shape, outer=outer, dim=x.shape[axis], inner=inner, log=log),
              ref, f"axis {axis}")


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_binary(rng, op):
    fn = getattr(ops, op)
    for sa, sb in [((2, 3, 4), (2, 3, 4)), ((2, 3, 4, 5), (1, 3, 1, 1)), ((4, 1), (3,)), ((5,), ()),
                   ((), (2, 2)), ((2, 1, 3), (1, 4, 1))]:
        a = rand(rng, *sa)
        b = np.asarray(rand(rng, *sb) + (3.0 if op == "div" else 0.0), np.float32)
        ref = fn(a, b, activation="relu")
        ref = np.asarray(ref).reshape(np.broadcast_shapes(sa, sb))
        close(run_op("binary", [a, b], ref.shape, op=op, act="relu"), ref, f"{sa} {op} {sb}")
        close(run_op("binary", [a, Const(b)], ref.shape, op=op, act="relu"), ref, f"{sa} {op} const {sb}")


@pytest.mark.parametrize("act,alpha,beta", ACT_CASES)
def test_activation(rng, act, alpha, beta):
    x = rand(rng, 3, 4, 5, scale=3.0)
    ref = ops.activation(x, act, alpha, beta)
    close(run_op("activation", [x], x.shape, act=act, alpha=alpha, beta=beta), ref)


def test_batch_norm(rng):
    for shape in [(2, 3, 4, 5), (4, 3), (1, 3, 7)]:
        x = rand(rng, *shape)
        g, b, m = rand(rng, 3), rand(rng, 3), rand(rng, 3)
        v = np.abs(rand(rng, 3)) + 0.1
        ref = ops.batch_norm(x, g, b, m, v, 1e-3, activation="silu")
        y = run_op("batch_norm", [x, Const(g), Const(b), Const(m), Const(v)], shape, eps=1e-3,
                   act="silu")
        close(y, ref, str(shape))


def test_concat(rng):
    xs = [rand(rng, 2, 3, 4), rand(rng, 2, 1, 4), rand(rng, 2, 5, 4)]
    ref = np.concatenate(xs, axis=1)
    close(run_op("concat", xs, ref.shape, axis=1), ref)
    ys = [rand(rng, 3, 2), rand(rng, 3, 2)]
    close(run_op("concat", [ys[0], Const(ys[1])], [6, 2], axis=0), np.concatenate(ys, 0))
    close(run_op("concat", [ys[0]], [3, 2], axis=1), ys[0])


def _strided_params(x, view):
    """x_strides and x_offset (elements) of a numpy view of x."""
    item = x.itemsize
    offset = view.__array_interface__["data"][0] - x.__array_interface__["data"][0]
    return [s // item for s in view.strides], offset // item


@pytest.mark.parametrize("make", [
    lambda x: x.transpose(2, 0, 1),
    lambda x: x[:, ::-2, 1:3],
    lambda x: x[1:, 2::3, ::-1],
    lambda x: np.broadcast_to(x[:, 1:2, None, :], (2, 3, 5, 4)),
    lambda x: x.reshape(2, 5, 2, 2).transpose(0, 2, 1, 3),   # channel shuffle
    lambda x: x[1, 2, 3, ...],                                # a 0-d view
], ids=["transpose", "slice_neg", "slice_mixed", "expand", "shuffle", "scalar"])
def test_strided_copy(rng, make):
    x = rand(rng, 2, 5, 4)
    view = make(x)
    strides, offset = _strided_params(x, view)
    y = run_op("strided_copy", [x], list(view.shape), x_strides=strides, x_offset=offset)
    np.testing.assert_array_equal(y, view)
    if view.ndim:  # ops.strided_copy takes at least one dimension; the plan also 0-d outputs
        np.testing.assert_array_equal(y, ops.strided_copy(x, view.shape, strides, offset))


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad(rng, mode):
    x = rand(rng, 2, 3, 4, 5)
    begin, end = [0, 1, 2, 0], [1, 0, 3, 4]
    kw = dict(constant_values=-1.5) if mode == "constant" else {}
    ref = np.pad(x, list(zip(begin, end)), mode=mode, **kw)
    y = run_op("pad", [x], ref.shape, pad_begin=begin, pad_end=end, mode=mode, value=-1.5)
    np.testing.assert_array_equal(y, ref)
    np.testing.assert_array_equal(y, ops.pad(x, begin, end, mode, -1.5))


def _lrn_ref(x, size, alpha, beta, bias):
    c = x.shape[1]
    sq = x.astype(np.float64) ** 2
    s = np.zeros_like(sq)
    for ch in range(c):
        lo, hi = max(0, ch - (size - 1) // 2), min(c - 1, ch + math.ceil((size - 1) / 2))
        s[:, ch] = sq[:, lo:hi + 1].sum(axis=1)
    return (x / (bias + alpha / size * s) ** beta).astype(np.float32)


@pytest.mark.parametrize("size", [1, 3, 4, 5])
def test_lrn(rng, size):
    x = rand(rng, 2, 6, 3, 4, scale=2.0)
    ref = _lrn_ref(x, size, 1e-2, 0.75, 2.0)
    y = run_op("lrn", [x], x.shape, size=size, alpha=1e-2, beta=0.75, bias=2.0)
    close(y, ref)
    close(y, ops.lrn(x, size, 1e-2, 0.75, 2.0))


@pytest.mark.parametrize("op", ["mean", "sum", "max", "min"])
def test_reduce(rng, op):
    x = rand(rng, 2, 3, 4, 5)
    fn = getattr(np, op)
    for axes in [(1,), (2, 3), (0,), (0, 1, 2, 3)]:
        lo, hi = axes[0], axes[-1] + 1
        outer, dim, inner = math.prod(x.shape[:lo]), math.prod(x.shape[lo:hi]), math.prod(x.shape[hi:])
        ref = fn(x, axis=axes, keepdims=True)
        y = run_op("reduce", [x], ref.shape, op=op, outer=outer, dim=dim, inner=inner)
        close(y, ref, f"{op} over {axes}")
        close(y, ops.reduce(x, axes, op, keepdims=True), f"{op} over {axes} (ops.reduce)")


def test_copy_and_scalars(rng):
    x = rand(rng, 2, 3)
    close(run_op("copy", [x], [3, 2]), x.reshape(3, 2))
    close(run_op("copy", [Const(x)], [6], via_arena=False), x.reshape(6))
    s = np.array(2.5, np.float32)
    close(run_op("activation", [s], [], act="relu"), s)


# ----------------------------------------------------------------------------------------------
# Aliases, in-place steps, arena reuse: a small network
# ----------------------------------------------------------------------------------------------

def small_net(rng, n=2, device="cpu", dtype="float32", num_threads=1):
    """conv+relu -> maxpool -> conv + residual (in place relu) -> global pool -> alias [n, c] ->
    gemm -> softmax, with the arena laid out by hand so slots are reused. Returns (spec, reference
    function of x)."""
    w1, b1 = rand(rng, 8, 3, 3, 3, scale=0.3), rand(rng, 8)
    w2, b2 = rand(rng, 8, 8, 3, 3, scale=0.2), rand(rng, 8)
    wf, bf = rand(rng, 10, 8, scale=0.5), rand(rng, 10)
    b = SpecBuilder(device, dtype, num_threads)
    x = b.input([n, 3, 12, 12], "image")
    c1 = b.const(w1), b.const(b1)
    c2 = b.const(w2), b.const(b2)
    cf = b.const(wf), b.const(bf)
    big = n * 8 * 12 * 12 * b.esize
    a0 = b.arena([n, 8, 12, 12], 0, "conv1")
    a1 = b.arena([n, 8, 6, 6], big, "pool")               # conv1 dies at the pool: slot 0 is free
    a2 = b.arena([n, 8, 6, 6], 0, "conv2")                # reuses conv1's bytes
    a2r = b.arena([n, 8, 6, 6], 0, "relu2")               # in place over conv2
    a3 = b.arena([n, 8, 1, 1], big, "gap")                # reuses the pool's bytes
    flat = b.alias(a3, [n, 8], 0, "flatten")
    a4 = b.arena([n, 10], 0, "fc")
    y = b.output([n, 10], "probs")
    b.step("conv2d", [x, *c1], a0, "conv1", stride=[1, 1], pads=[1, 1, 1, 1], dilation=[1, 1],
           groups=1, act="relu")
    b.step("max_pool2d", [a0], a1, "pool", kernel=[2, 2], stride=[2, 2], pads=[0, 0, 0, 0],
           dilation=[1, 1], ceil_mode=False)
    b.step("conv2d", [a1, *c2, a1], a2, "conv2", stride=[1, 1], pads=[1, 1, 1, 1], dilation=[1, 1],
           groups=1)
    b.step("activation", [a2], a2r, "relu2", act="relu")
    b.step("global_avg_pool", [a2r], a3, "gap")
    b.step("gemm", [flat, cf[0], cf[1]], a4, "fc", trans_a=False, trans_b=True, alpha=1.0)
    b.step("softmax", [a4], y, "softmax", outer=n, dim=10, inner=1, log=False)

    def reference(xv):
        t = ops.conv2d(xv, w1, b1, padding=1, activation="relu")
        t = ops.max_pool2d(t, 2)
        t = ops.conv2d(t, w2, b2, padding=1, residual=t)
        t = ops.activation(t, "relu")
        t = ops.global_avg_pool2d(t).reshape(n, 8)
        return ops.softmax(ops.linear(t, wf, bf), -1)

    return b.spec(), reference


def test_small_net_aliases_in_place_arena_reuse(rng):
    spec, reference = small_net(rng)
    plan = _C.Plan(spec)
    assert plan.num_steps == 7 and plan.device == "cpu" and plan.dtype == "float32"
    assert plan.arena_bytes == spec["arena_bytes"] == 2 * 8 * 12 * 12 * 4 + 2 * 8 * 6 * 6 * 4
    assert plan.workspace_bytes > 0
    assert plan.inputs == [("image", (2, 3, 12, 12))] and plan.outputs == [("probs", (2, 10))]
    for _ in range(3):  # arena reuse across runs: nothing stale leaks into the next run
        x = rand(rng, 2, 3, 12, 12)
        y = np.empty((2, 10), np.float32)
        plan.run([x], [y])
        close(y, reference(x))


def test_in_place_binary_and_batch_norm(rng):
    a, c = rand(rng, 2, 3, 4), rand(rng, 3, 1)
    g, be, m, v = rand(rng, 3), rand(rng, 3), rand(rng, 3), np.abs(rand(rng, 3)) + 0.5
    b = SpecBuilder()
    x = b.input(a.shape)
    t0 = b.arena(a.shape, 0)
    t1 = b.arena(a.shape, 0)        # x + c in place over t0
    t2 = b.arena([2, 3, 4], 0)      # batch_norm in place over t1 (viewed as [n=2, c=3, 4])
    b.step("copy", [x], t0)
    b.step("binary", [t0, b.const(c)], t1, op="add")
    b.step("batch_norm", [t1, b.const(g), b.const(be), b.const(m), b.const(v)], t2, eps=1e-5)
    b.step("binary", [b.const(c), t2], b.output(a.shape), op="mul")
    y = np.empty(a.shape, np.float32)
    _C.Plan(b.spec()).run([a], [y])
    close(y, c * ops.batch_norm(a + c, g, be, m, v, 1e-5))


def test_split_along_axis0_aliases(rng):
    x = rand(rng, 4, 3, 5)
    b = SpecBuilder()
    xi = b.input(x.shape)
    t = b.arena(x.shape)
    b.step("activation", [xi], t, act="tanh")
    part_bytes = 3 * 5 * 4
    parts = [b.alias(t, [1, 3, 5], part_bytes * i) for i in range(4)]
    halves = b.alias(xi, [2, 15], 2 * part_bytes)  # alias of an input
    b.step("binary", [parts[3], parts[0]], b.output([1, 3, 5]), op="sub")
    b.step("copy", [halves], b.output([30]))
    b.step("concat", [parts[2], parts[1]], b.output([2, 3, 5]), axis=0)
    outs = [np.empty(s, np.float32) for s in ([1, 3, 5], [30], [2, 3, 5])]
    _C.Plan(b.spec()).run([x], outs)
    tx = np.tanh(x)
    close(outs[0], tx[3:4] - tx[0:1])
    close(outs[1], x[2:].reshape(30))
    close(outs[2], np.concatenate([tx[2:3], tx[1:2]]))


def test_output_read_by_later_step(rng):
    x = rand(rng, 3, 4)
    b = SpecBuilder()
    xi = b.input(x.shape)
    y0 = b.output(x.shape)
    b.step("activation", [xi], y0, act="sigmoid")
    b.step("binary", [y0, xi], b.output(x.shape), op="mul")
    outs = [np.empty(x.shape, np.float32) for _ in range(2)]
    _C.Plan(b.spec()).run([x], outs)
    s = ops.activation(x, "sigmoid")
    close(outs[0], s)
    close(outs[1], s * x)


def test_num_threads(rng):
    before = ops.get_num_threads()
    spec, reference = small_net(rng, num_threads=2)
    plan = _C.Plan(spec)
    assert plan.num_threads == 2
    x = rand(rng, 2, 3, 12, 12)
    y = np.empty((2, 10), np.float32)
    plan.run([x], [y])
    close(y, reference(x))
    assert ops.get_num_threads() == before  # the plan restores the caller's thread count
    spec["num_threads"] = 0
    assert _C.Plan(spec).num_threads == before


# ----------------------------------------------------------------------------------------------
# Malformed specs: a ValueError naming the value or step, never a crash
# ----------------------------------------------------------------------------------------------

def flow_spec():
    """x -> tanh -> t0 -> relu -> t1; t0 * t1 -> y: the base of the data-flow cases."""
    b = SpecBuilder()
    x = b.input([4, 16], "x")
    t0 = b.arena([4, 16], 0, "t0")
    t1 = b.arena([4, 16], 256, "t1")
    b.step("activation", [x], t0, "tanh", act="tanh")
    b.step("activation", [t0], t1, "relu", act="relu")
    b.step("binary", [t0, t1], b.output([4, 16], "y"), "mul", op="mul")
    b.const(np.zeros((4, 16), np.float32), "zeros")        # value 4
    b.alias(t0, [64], 0, "t0_flat")                          # value 5
    return b.spec()


def _set(path, value):
    def mutate(spec):
        node = spec
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return mutate


def _delete(path):
    def mutate(spec):
        node = spec
        for k in path[:-1]:
            node = node[k]
        del node[path[-1]]
    return mutate


def _const(index, array):
    def mutate(spec):
        spec["constants"][index] = array
        spec["values"][[v.get("kind") == "constant" and v.get("index") == index
                        for v in spec["values"]].index(True)]["shape"] = list(array.shape)
    return mutate


def _swap_steps(i, j):
    def mutate(spec):
        spec["steps"][i], spec["steps"][j] = spec["steps"][j], spec["steps"][i]
    return mutate


# (id, base, mutation, regex the ValueError must match). small_net value ids: 0 image, 1-6
# constants (w1 b1 w2 b2 wf bf), 7 conv1, 8 pool, 9 conv2, 10 relu2, 11 gap, 12 flatten (alias of
# gap), 13 fc, 14 probs; steps 0 conv1, 1 pool, 2 conv2, 3 relu2, 4 gap, 5 fc, 6 softmax.
# flow_spec value ids: 0 x, 1 t0, 2 t1, 3 y, 4 zeros (constant), 5 t0_flat (alias); steps 0 tanh,
# 1 relu, 2 mul.
MALFORMED = [
    # structure of the dict
    ("missing_key", "net", _delete(["steps"]), r"spec misses the key 'steps'"),
    ("unknown_key", "net", _set(["extra"], 1), r"unknown key 'extra'"),
    ("value_not_dict", "net", _set(["values", 3], [1, 2]), r"spec\['values'\]\[3\] must be a dict"),
    ("shape_not_list", "net", _set(["values", 7, "shape"], 5), r"\['shape'\] must be a list of ints"),
    ("shape_float", "net", _set(["values", 7, "shape"], [2, 8.0, 12, 12]), r"must be an int, got float"),
    ("kind_unknown", "net", _set(["values", 7, "kind"], "heap"), r"is 'heap'; expected 'arena'"),
    ("name_not_str", "net", _set(["values", 7, "name"], 7), r"\['name'\] must be a str"),
    ("offset_bool", "net", _set(["values", 7, "offset"], True), r"must be an int, got bool"),
    ("int_overflow", "net", _set(["values", 7, "offset"], 2 ** 70), r"out of the int64 range"),
    ("value_unknown_key", "net", _set(["values", 7, "dtype"], "float32"), r"unknown key 'dtype'"),
    ("step_unknown_key", "net", _set(["steps", 0, "kind"], "x"), r"unknown key 'kind'"),
    ("attrs_not_dict", "net", _set(["steps", 0, "attrs"], []), r"step 0 \(conv2d 'conv1'\) 'attrs' must be a dict"),
    ("attr_bad_type", "net", _set(["steps", 0, "attrs", "groups"], {"a": 1}),
     r"step 0 \(conv2d 'conv1'\) attribute 'groups' must be an int, float, bool, str or list of ints"),
    ("constant_float64", "net", _set(["constants", 0], np.zeros((8, 3, 3, 3))), r"must be float32"),
    ("constant_not_array", "net", _set(["constants", 0], [1.0]), r"must be a numpy array"),
    ("inputs_not_list", "net", _set(["inputs"], 0), r"spec\['inputs'\] must be a list of ints"),
    # device, dtype, sizes
    ("dtype_float64", "net", _set(["dtype"], "float64"), r"dtype 'float64'"),
    ("dtype_fp16_cpu", "net", _set(["dtype"], "float16"), r"float16 runs on CUDA only"),
    ("device_unknown", "net", _set(["device"], "tpu"), r"device 'tpu' is not 'cpu' or 'cuda:N'"),
    ("device_bad_index", "net", _set(["device"], "cuda:x"), r"is not 'cpu' or 'cuda:N'"),
    ("num_threads_negative", "net", _set(["num_threads"], -1), r"num_threads must be in"),
    ("arena_negative", "net", _set(["arena_bytes"], -64), r"arena_bytes must be in"),
    # values
    ("offset_unaligned", "net", _set(["values", 8, "offset"], 100), r"value 8 \('pool'\) .*multiple of 64"),
    ("offset_negative", "net", _set(["values", 8, "offset"], -64), r"value 8 \('pool'\) .*multiple of 64"),
    ("outside_arena", "net", _set(["arena_bytes"], 4096), r"value 7 \('conv1'\) occupies bytes \[0, 9216\) of an arena of 4096"),
    ("offset_missing", "net", _delete(["values", 7, "offset"]), r"value 7 \('conv1'\) has no 'offset'"),
    ("dim_zero", "net", _set(["values", 13, "shape"], [2, 0]), r"value 13 \('fc'\) has shape \[2, 0\]"),
    ("dim_huge", "net", _set(["values", 13, "shape"], [2, 2 ** 31]), r"dims must be in \[1, 2\^31\)"),
    ("rank_9", "net", _set(["values", 13, "shape"], [1] * 9), r"at most 8 dimensions"),
    ("constant_index", "net", _set(["values", 1, "index"], 99), r"value 1 \('c0'\) refers to constant 99"),
    ("constant_shape", "net", _set(["values", 1, "shape"], [8, 3, 9]), r"but constant 0 has shape \[8, 3, 3, 3\]"),
    ("alias_outside", "net", _set(["values", 12, "offset"], 4), r"value 12 \('flatten'\) occupies bytes \[4, 68\) of its base"),
    ("alias_unaligned", "net", _set(["values", 12, "offset"], 2), r"multiple of the element size 4"),
    ("alias_self", "net", _set(["values", 12, "index"], 12), r"is an alias of value 12"),
    ("alias_range", "net", _set(["values", 12, "index"], 99), r"is an alias of value 99"),
    ("alias_cycle", "flow", lambda s: (s["values"].append(dict(name="loop", shape=[64], kind="alias",
                                                              offset=0, index=5)),
                                       s["values"][5].update(index=6)), r"cycle of aliases"),
    ("input_index", "net", _set(["values", 0, "index"], 1),
     r"spec\['inputs'\]\[0\] is value 0 \('image'\), which is not of kind 'input' with index 0"),
    ("inputs_wrong_kind", "net", _set(["inputs"], [7]), r"spec\['inputs'\]\[0\] is value 7 \('conv1'\)"),
    ("inputs_out_of_range", "net", _set(["inputs"], [99]), r"spec\['inputs'\]\[0\] = 99 is not a value id"),
    ("outputs_missing", "net", _set(["outputs"], []), r"value 14 \('probs'\) is output 0"),
    # steps
    ("unknown_op", "net", _set(["steps", 1, "op"], "maxpool"), r"plan step 1 \(maxpool 'pool'\): unknown op"),
    ("too_few_inputs", "net", _set(["steps", 0, "inputs"], [0]), r"\(conv2d 'conv1'\): takes 2 to 4 inputs, got 1"),
    ("too_many_inputs", "net", _set(["steps", 3, "inputs"], [9, 9]), r"\(activation 'relu2'\): takes 1 inputs, got 2"),
    ("required_absent", "net", _set(["steps", 1, "inputs"], [-1]), r"\(max_pool2d 'pool'\): input 0 is value -1"),
    ("input_id_range", "net", _set(["steps", 1, "inputs"], [99]), r"\(max_pool2d 'pool'\): input 0 is value 99"),
    ("output_id_range", "net", _set(["steps", 1, "outputs"], [-1]), r"\(max_pool2d 'pool'\): output is value -1"),
    ("two_outputs", "net", _set(["steps", 1, "outputs"], [8, 9]), r"\(max_pool2d 'pool'\): has 2 outputs"),
    ("output_shape", "net", _set(["values", 8, "shape"], [2, 8, 5, 5]),
     r"\(max_pool2d 'pool'\): output 'pool' must have shape \[2, 8, 6, 6\], got \[2, 8, 5, 5\]"),
    ("weight_shape", "net", _const(0, np.zeros((8, 4, 3, 3), np.float32)),
     r"\(conv2d 'conv1'\): weight 'c0' must have shape \[8, 3, 3, 3\]"),
    ("bias_shape", "net", _const(1, np.zeros(7, np.float32)), r"\(conv2d 'conv1'\): bias 'c1' must have shape \[8\]"),
    ("groups", "net", _set(["steps", 0, "attrs", "groups"], 3), r"\(conv2d 'conv1'\): groups=3 must divide"),
    ("missing_attr", "net", _delete(["steps", 0, "attrs", "stride"]), r"\(conv2d 'conv1'\): missing attribute 'stride'"),
    ("attr_not_list", "net", _set(["steps", 0, "attrs", "stride"], 1), r"attribute 'stride' must be a list of 2 ints, got the int 1"),
    ("attr_range", "net", _set(["steps", 0, "attrs", "stride"], [0, 1]), r"'stride' = \[0, 1\]: every entry must be in \[1, "),
    ("unknown_attr", "net", _set(["steps", 1, "attrs", "strides"], [2, 2]),
     r"\(max_pool2d 'pool'\): unknown attribute 'strides'; max_pool2d takes kernel, stride, pads, dilation, ceil_mode"),
    ("bad_choice", "net", _set(["steps", 0, "attrs", "act"], "swish"), r"attribute 'act' must be one of 'none', 'relu'"),
    ("bool_attr", "net", _set(["steps", 1, "attrs", "ceil_mode"], 2), r"attribute 'ceil_mode' must be a bool"),
    ("act_needs_alpha", "net", _set(["steps", 3, "attrs", "act"], "leaky_relu"), r"\(activation 'relu2'\): missing attribute 'alpha'"),
    ("gemm_beta", "net", _set(["steps", 5, "attrs", "beta"], 1.0), r"\(gemm 'fc'\): unknown attribute 'beta'"),
    ("gemm_inner", "net", _set(["steps", 5, "attrs", "trans_b"], False), r"\(gemm 'fc'\): inner dimensions differ"),
    ("softmax_view", "net", _set(["steps", 6, "attrs", "dim"], 5), r"\(softmax 'softmax'\): the view \[outer, dim, inner\]"),
    ("pool_too_small", "net", _set(["steps", 1, "attrs", "kernel"], [20, 20]), r"\(max_pool2d 'pool'\): the padded input"),
    # data flow
    ("read_before_write", "net", _swap_steps(0, 1), r"plan step 0 \(max_pool2d 'pool'\): reads value 'conv1' before any step writes it"),
    ("write_input", "flow", _set(["steps", 0, "outputs"], [0]), r"\(activation 'tanh'\): writes value 'x' of kind 'input'"),
    ("write_constant", "flow", _set(["steps", 0, "outputs"], [4]), r"writes value 'zeros' of kind 'constant'"),
    ("write_alias", "flow", lambda s: (_set(["steps", 0, "outputs"], [5])(s), s["values"][5].update(shape=[4, 16])),
     r"writes value 't0_flat' of kind 'alias'"),
    ("write_twice", "flow", _set(["steps", 1, "outputs"], [1]), r"\(activation 'relu'\): writes value 't0', which step 0 already writes"),
    ("clobbered", "flow", _set(["values", 2, "offset"], 0),
     r"plan step 2 \(binary 'mul'\): reads value 't0' \(written by step 0\), but step 1 overwrites its bytes"),
    ("partial_overlap", "flow", _set(["values", 2, "offset"], 64), r"\(activation 'relu'\): output 't1' overlaps input 0 't0'"),
    ("conv_in_place", "net", _set(["values", 9, "offset"], 9216),
     r"\(conv2d 'conv2'\): output 'conv2' overlaps input 0 'pool'; only activation, binary"),
    ("output_unwritten", "net", lambda s: s["steps"].pop(), r"output 0 \('probs'\) is written by no step"),
]


@pytest.mark.parametrize("case", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_spec(rng, case):
    _, base, mutate, pattern = case
    spec = small_net(rng)[0] if base == "net" else flow_spec()
    _C.Plan(copy.deepcopy(spec))  # the base itself is valid
    mutate(spec)
    with pytest.raises(ValueError, match=pattern):
        _C.Plan(spec)


def test_spec_not_a_dict():
    with pytest.raises(TypeError, match="spec must be a dict"):
        _C.Plan([1, 2])


@pytest.mark.skipif(_C.WITH_CUDA, reason="a CUDA build accepts cuda devices")
def test_cuda_device_in_cpu_build(rng):
    spec = small_net(rng)[0]
    spec["device"] = "cuda:0"
    with pytest.raises(ValueError, match="built without CUDA"):
        _C.Plan(spec)


def all_ops_spec(rng):
    """A chain through most ops (strided_copy, pad, resize, pixel_shuffle, conv_transpose2d,
    batch_norm, lrn, concat, reduce, binary, alias, matmul, avg_pool2d, global_max_pool, copy,
    conv2d_dw_pw, conv2d with max_pool) on a small input: the second base of the mutation loop."""
    b = SpecBuilder()
    x = b.input([1, 4, 6, 6], "x")
    s0 = b.step("strided_copy", [x], b.arena([1, 4, 6, 6]), x_strides=[144, 36, 1, 6], x_offset=0)
    s1 = b.step("pad", [s0], b.arena([1, 4, 8, 8]), pad_begin=[0, 0, 1, 1], pad_end=[0, 0, 1, 1],
                mode="reflect", value=0.0)
    s2 = b.step("resize", [s1], b.arena([1, 4, 4, 4]), mode="bilinear", coord="half_pixel",
                nearest="floor", scale_h=0.0, scale_w=0.0)
    s3 = b.step("pixel_shuffle", [s2], b.arena([1, 1, 8, 8]), block=2, mode="DCR")
    s4 = b.step("conv_transpose2d", [s3, b.const(rand(rng, 1, 2, 3, 3))], b.arena([1, 2, 10, 10]),
                stride=[1, 1], pads=[0, 0, 0, 0], output_padding=[0, 0], dilation=[1, 1], groups=1,
                act="relu")
    s5 = b.step("batch_norm", [s4] + [b.const(np.ones(2) * v) for v in (1.0, 0.1, 0.2, 2.0)],
                b.arena([1, 2, 10, 10]), eps=1e-5)
    s6 = b.step("lrn", [s5], b.arena([1, 2, 10, 10]), size=3, alpha=1e-3, beta=0.75, bias=1.0)
    s7 = b.step("concat", [s6, s5], b.arena([1, 4, 10, 10]), axis=1)
    s8 = b.step("reduce", [s7], b.arena([1, 4, 1, 1]), op="max", outer=4, dim=100, inner=1)
    s9 = b.step("binary", [s7, s8], b.arena([1, 4, 10, 10]), op="sub", act="clip", alpha=-1.0, beta=1.0)
    s10 = b.step("matmul", [b.alias(s9, [4, 100]), b.const(rand(rng, 100, 3))], b.arena([4, 3]))
    s11 = b.step("avg_pool2d", [s9], b.arena([1, 4, 5, 5]), kernel=[2, 2], stride=[2, 2],
                 pads=[0, 0, 0, 0], ceil_mode=False, count_include_pad=True)
    b.step("global_max_pool", [s11], b.output([1, 4, 1, 1], "pooled"))
    b.step("copy", [s10], b.output([12], "mm"))
    b.step("conv2d_dw_pw", [s9, b.const(rand(rng, 6, 1, 3, 3)), -1, b.const(rand(rng, 3, 6, 1, 1)),
                            b.const(rand(rng, 3)), -1, b.const(rand(rng, 6, 4, 1, 1)), -1],
           b.output([1, 3, 5, 5], "dwpw"), stride=[2, 2], pads=[1, 1, 1, 1], dilation=[1, 1], dw_act="relu", act="none",
           ex_act="clip", ex_alpha=0.0, ex_beta=6.0)
    b.step("conv2d", [s9, b.const(rand(rng, 5, 4, 3, 3)), b.const(rand(rng, 5)), -1], b.output([1, 5, 4, 4], "convpool"),
           stride=[1, 1], pads=[0, 0, 0, 0], dilation=[1, 1], groups=1, act="relu", max_pool=[2, 2])
    return b.spec()


def test_all_ops_chain_runs(rng):
    plan = _C.Plan(all_ops_spec(rng))
    outs = [np.full((1, 4, 1, 1), np.nan, np.float32), np.full(12, np.nan, np.float32),
            np.full((1, 3, 5, 5), np.nan, np.float32), np.full((1, 5, 4, 4), np.nan, np.float32)]
    plan.run([rand(rng, 1, 4, 6, 6)], outs)
    assert all(np.isfinite(o).all() for o in outs)


JUNK = [0, 1, -1, 2, 3, 7, 64, 100, -64, 2 ** 31, 2 ** 40, -2 ** 40, 2 ** 62, 2 ** 63 - 1, 1.5,
        float("nan"), float("inf"), "x", "relu", "none", None, True, False, [], [1], [0, 0],
        [1, 1, 1, 1], [-1, 2], [2 ** 31, 1], {}, np.int64(3), np.float32(0.5)]


def _leaves(node, path=()):
    """Every (path, value) of a spec, lists and dicts included, so whole entries get replaced too."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield path + (k,), v
            yield from _leaves(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield path + (i,), v
            if not isinstance(v, np.ndarray):
                yield from _leaves(v, path + (i,))


def test_random_mutations_never_crash(rng):
    """2000 random mutations of two valid specs (junk values, near-valid ints, dropped, duplicated
    and deleted entries): each is rejected with ValueError / TypeError (MemoryError for an arena the
    machine cannot hold) or builds a plan that runs."""
    bases = [small_net(rng)[0], all_ops_spec(rng)]
    outcomes = {"built": 0, "rejected": 0}
    for i in range(2000):
        spec = copy.deepcopy(bases[i % 2])
        for _ in range(1 + int(rng.integers(0, 3))):
            leaves = list(_leaves(spec))
            path, _ = leaves[int(rng.integers(0, len(leaves)))]
            node = spec
            for k in path[:-1]:
                node = node[k]
            r = rng.random()
            value = node[path[-1]]
            if r < 0.5 and isinstance(value, int) and not isinstance(value, bool):
                # near-valid: an off-by-one or off-by-a-slot size, offset or id
                node[path[-1]] = value + int(rng.choice([-64, -4, -1, 1, 4, 64, value]))
            elif r < 0.55 and isinstance(node, dict):
                del node[path[-1]]
            elif r < 0.6 and isinstance(node, list):
                node.insert(int(rng.integers(0, len(node) + 1)), value)
            elif r < 0.65 and isinstance(node, list):
                del node[path[-1]]
            else:
                # A copy: a shared JUNK list could otherwise end up inside itself.
                node[path[-1]] = copy.deepcopy(JUNK[int(rng.integers(0, len(JUNK)))])
        try:
            plan = _C.Plan(spec)
        except (ValueError, TypeError, MemoryError):
            outcomes["rejected"] += 1
            continue
        outcomes["built"] += 1
        shapes = [s for _, s in plan.inputs] + [s for _, s in plan.outputs]
        if sum(math.prod(s) for s in shapes) > 1 << 20:
            continue
        ins = [rand(rng, *s) for _, s in plan.inputs]
        outs = [np.empty(s, np.float32) for _, s in plan.outputs]
        plan.run(ins, outs)
    print(outcomes)
    assert outcomes["rejected"] > 1000 and outcomes["built"] > 10, outcomes


# ----------------------------------------------------------------------------------------------
# run() arguments
# ----------------------------------------------------------------------------------------------

def identity_plan(shape=(2, 3)):
    b = SpecBuilder()
    b.step("activation", [b.input(shape, "x")], b.output(shape, "y"), act="relu")
    return _C.Plan(b.spec())


def test_run_argument_errors(rng):
    plan = identity_plan()
    x, y = rand(rng, 2, 3), np.empty((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"expected 1 inputs, got 0"):
        plan.run([], [y])
    with pytest.raises(ValueError, match=r"expected 1 outputs, got 2"):
        plan.run([x], [y, y])
    with pytest.raises(TypeError, match=r"inputs must be a list of 1 tensors, got ndarray"):
        plan.run(x, [y])
    with pytest.raises(ValueError, match=r"inputs\[0\] \('x'\) has shape \[3, 2\]; the plan expects \[2, 3\]"):
        plan.run([x.reshape(3, 2)], [y])
    with pytest.raises(TypeError, match=r"inputs\[0\] \('x'\) has dtype float64"):
        plan.run([x.astype(np.float64)], [y])
    with pytest.raises(TypeError, match=r"outputs\[0\] \('y'\) has dtype float16; the plan expects float32"):
        plan.run([x], [y.astype(np.float16)])
    with pytest.raises(ValueError, match=r"not contiguous"):
        plan.run([rand(rng, 3, 2).T], [y])
    with pytest.raises(TypeError, match=r"is None"):
        plan.run([None], [y])
    readonly = np.empty((2, 3), np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match=r"outputs\[0\] \('y'\) is a read-only array"):
        plan.run([x], [readonly])
    with pytest.raises(ValueError, match=r"outputs\[0\] shares memory with inputs\[0\]"):
        plan.run([x], [x])
    unaligned = np.frombuffer(bytearray(4 * 6 + 1), np.float32, 6, offset=1).reshape(2, 3)
    with pytest.raises(ValueError, match=r"inputs\[0\] \('x'\) is not aligned"):
        plan.run([unaligned], [y])
    with pytest.raises(ValueError, match=r"stream is for CUDA plans"):
        plan.run([x], [y], stream=1234)
    two = SpecBuilder()
    xi = two.input([4])
    two.step("copy", [xi], two.output([4]))
    two.step("copy", [xi], two.output([4]))
    buf = np.empty(8, np.float32)
    with pytest.raises(ValueError, match=r"outputs\[1\] and outputs\[0\] share memory"):
        _C.Plan(two.spec()).run([rand(rng, 4)], [buf[:4], buf[2:6]])
    plan.run([x], [y])  # still usable after every rejected call
    close(y, np.maximum(x, 0))


def test_run_accepts_torch_cpu_tensors(rng):
    torch = pytest.importorskip("torch")
    plan = identity_plan()
    x = torch.randn(2, 3)
    y = torch.empty(2, 3)
    plan.run([x], [y])
    close(y.numpy(), np.maximum(x.numpy(), 0))


# ----------------------------------------------------------------------------------------------
# Threads and profiling
# ----------------------------------------------------------------------------------------------

def _hammer(plans, xs, expected, runs, to_out, stream=0):
    """len(xs) threads, thread i running plans[i] on xs[i] `runs` times; returns the mismatches."""
    errors = []

    def work(i):
        y = to_out(expected[i])
        for r in range(runs):
            plans[i].run([xs[i]], [y], stream)
            if not np.array_equal(as_numpy(y), expected[i]):
                errors.append(f"thread {i} run {r}")
                return

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def as_numpy(y):
    return y if isinstance(y, np.ndarray) else y.float().cpu().numpy()


def test_threads_separate_and_shared_plans(rng):
    """4 threads x 500 runs, each thread its own input: with a Plan per thread and with one shared
    Plan, every result is bit-identical to the single-threaded one."""
    spec, reference = small_net(rng)
    xs = [rand(rng, 2, 3, 12, 12) for _ in range(4)]
    single = _C.Plan(spec)
    expected = []
    for x in xs:
        y = np.empty((2, 10), np.float32)
        single.run([x], [y])
        close(y, reference(x))
        expected.append(y)
    separate = [_C.Plan(spec) for _ in range(4)]
    assert _hammer(separate, xs, expected, 500, np.empty_like) == []
    assert _hammer([single] * 4, xs, expected, 500, np.empty_like) == []


def test_profiling(rng):
    spec, reference = small_net(rng)
    plan = _C.Plan(spec)
    x = rand(rng, 2, 3, 12, 12)
    y0, y1 = np.empty((2, 10), np.float32), np.empty((2, 10), np.float32)
    plan.run([x], [y0])
    assert not plan.profiling and plan.step_times() == []
    plan.set_profiling(True)
    assert plan.profiling
    plan.run([x], [y1])
    times = plan.step_times()
    assert len(times) == plan.num_steps == 7 and all(t >= 0 for t in times) and sum(times) > 0
    np.testing.assert_array_equal(y0, y1)
    plan.set_profiling(False)
    plan.run([x], [y1])
    np.testing.assert_array_equal(y0, y1)
    assert plan.step_times() == times  # the last profiled run's


# ----------------------------------------------------------------------------------------------
# CUDA (skipped without a GPU): fp32 and fp16 plans against the CPU plan, the CUDA graph, streams
# ----------------------------------------------------------------------------------------------

CUDA_DTYPES = [pytest.param("float32", marks=[pytest.mark.cuda, cuda]),
               pytest.param("float16", marks=[pytest.mark.cuda, cuda])]


@pytest.mark.parametrize("dtype", CUDA_DTYPES)
def test_cuda_plan_graph_and_streams(rng, dtype):
    import torch
    spec, reference = small_net(rng, device="cuda:0", dtype=dtype)
    tdt = getattr(torch, dtype)
    plan = _C.Plan(spec)
    assert plan.device == "cuda:0" and plan.dtype == dtype
    x = rand(rng, 2, 3, 12, 12)
    xq = x.astype(np.float16).astype(np.float32) if dtype == "float16" else x
    expect = reference(xq)
    xt = torch.from_numpy(x).to("cuda", tdt)
    rtol, atol = TOL[dtype]
    first = None
    for i in range(5):  # runs 1-2 eager, 3 captures the CUDA graph, 4-5 replay it
        y = torch.full((2, 10), float("nan"), device="cuda", dtype=tdt)
        plan.run([xt], [y])
        np.testing.assert_allclose(as_numpy(y), expect, rtol=rtol, atol=atol, err_msg=f"run {i}")
        first = as_numpy(y) if first is None else first
        np.testing.assert_array_equal(as_numpy(y), first)
    s = torch.cuda.Stream()
    y = torch.empty((2, 10), device="cuda", dtype=tdt)
    with torch.cuda.stream(s):
        x2 = torch.from_numpy(rand(rng, 2, 3, 12, 12)).to("cuda", tdt)
        plan.run([x2], [y], s.cuda_stream)
    s.synchronize()
    np.testing.assert_allclose(as_numpy(y), reference(x2.float().cpu().numpy()), rtol=rtol, atol=atol)
    plan.set_profiling(True)
    plan.run([xt], [y])
    assert len(plan.step_times()) == 7 and all(t >= 0 for t in plan.step_times())
    np.testing.assert_array_equal(as_numpy(y), first)
    with pytest.raises(ValueError, match=r"inputs\[0\] \('image'\) is on cpu but the plan runs on cuda:0"):
        plan.run([x], [y])


@pytest.mark.parametrize("dtype", CUDA_DTYPES)
def test_cuda_threads(rng, dtype):
    import torch
    spec, _ = small_net(rng, device="cuda:0", dtype=dtype)
    tdt = getattr(torch, dtype)
    xs = [torch.from_numpy(rand(rng, 2, 3, 12, 12)).to("cuda", tdt) for _ in range(4)]
    single = _C.Plan(spec)
    expected = []
    for x in xs:
        y = torch.empty((2, 10), device="cuda", dtype=tdt)
        single.run([x], [y])
        expected.append(as_numpy(y))
    to_out = lambda e: torch.empty(e.shape, device="cuda", dtype=tdt)  # noqa: E731
    assert _hammer([_C.Plan(spec) for _ in range(4)], xs, expected, 200, to_out) == []
    assert _hammer([single] * 4, xs, expected, 200, to_out) == []


def test_spec_accepts_numpy_and_tuples(rng):
    """edgevision.graph builds specs with numpy: numpy ints, floats and bools, tuples and 1-D int
    arrays are read like their Python counterparts."""
    x, w = rand(rng, 1, 2, 5, 5), rand(rng, 4, 2, 3, 3)
    b = SpecBuilder()
    xi = b.input(x.shape)
    y = b.output((1, 4, 3, 3))
    b.step("conv2d", [xi, b.const(w)], y, stride=np.array([1, 1]), pads=(np.int64(0),) * 4,
           dilation=[np.int32(1), 1], groups=np.int64(1), act="leaky_relu", alpha=np.float32(0.25),
           residual_after_act=np.bool_(False))
    spec = b.spec()
    spec["values"][2]["shape"] = tuple(np.int64(d) for d in w.shape)  # the constant w
    spec["arena_bytes"] = np.int64(0)
    out = np.empty((1, 4, 3, 3), np.float32)
    _C.Plan(spec).run((x,), (out,))
    close(out, ops.conv2d(x, w, activation="leaky_relu", alpha=0.25))


def test_alias_chains_and_constant_aliases(rng):
    c = rand(rng, 2, 3, 4)
    b = SpecBuilder()
    xi = b.input([3, 4])
    whole = b.const(c)
    second = b.alias(whole, [3, 4], 3 * 4 * 4)        # c[1]
    flat = b.alias(second, [12], 0)                   # alias of an alias
    row = b.alias(flat, [4], 8 * 4)                   # c[1, 2]
    t = b.arena([3, 4])
    b.step("binary", [xi, second], t, op="add")
    b.step("binary", [t, row], b.output([3, 4]), op="mul")
    b.step("copy", [flat], b.output([12]))
    x = rand(rng, 3, 4)
    outs = [np.empty((3, 4), np.float32), np.empty(12, np.float32)]
    _C.Plan(b.spec()).run([x], outs)
    close(outs[0], (x + c[1]) * c[1, 2])
    close(outs[1], c[1].reshape(12))


def test_long_alias_chain(rng):
    """100k chained aliases (Reshape after Reshape) resolve without deep recursion."""
    b = SpecBuilder()
    x = b.input([4, 4])
    cur = x
    for i in range(100_000):
        cur = b.alias(cur, [16] if i % 2 == 0 else [4, 4])
    b.step("activation", [cur], b.output([4, 4]), act="relu")
    xv = rand(rng, 4, 4)
    y = np.empty((4, 4), np.float32)
    _C.Plan(b.spec(fresh=False)).run([xv], [y])
    close(y, np.maximum(xv, 0))


@pytest.mark.skipif(not _C.WITH_CUDA or HAS_CUDA, reason="needs a CUDA build on a machine without a GPU")
def test_cuda_plan_without_gpu(rng):
    spec = small_net(rng, device="cuda:0")[0]
    with pytest.raises((RuntimeError, ValueError), match="CUDA"):
        _C.Plan(spec)


def test_attrs_a_mode_does_not_read_are_optional(rng):
    x = rand(rng, 1, 2, 4, 4)
    ref = ops.resize(x, size=(6, 6), mode="bilinear", coordinate_mode="half_pixel")
    close(run_op("resize", [x], ref.shape, mode="bilinear", coord="half_pixel", scale_h=0.0,
                 scale_w=0.0), ref)
    ref = np.pad(x, [(0, 0), (0, 0), (1, 2), (2, 1)], mode="edge")
    np.testing.assert_array_equal(run_op("pad", [x], ref.shape, pad_begin=[0, 0, 1, 2],
                                         pad_end=[0, 0, 2, 1], mode="edge"), ref)
    with pytest.raises(ValueError, match=r"\(resize 'resize0'\): missing attribute 'nearest'"):
        run_op("resize", [x], [1, 2, 6, 6], mode="nearest", coord="asymmetric", scale_h=0.0, scale_w=0.0)
    with pytest.raises(ValueError, match=r"\(pad 'pad0'\): missing attribute 'value'"):
        run_op("pad", [x], [1, 2, 5, 5], pad_begin=[0, 0, 1, 1], pad_end=[0, 0, 0, 0], mode="constant")
