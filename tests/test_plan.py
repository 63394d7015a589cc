"""edgevision._C.Plan, the C++ plan executor (RUNTIME_SPEC section 2), on hand-written specs.

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

from conftest import TOL, cuda
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

    def spec(self):
        return dict(device=self.device, dtype=self.dtype, num_threads=self.num_threads,
                    arena_bytes=self.arena_bytes, constants=list(self.constants),
                    values=copy.deepcopy(self.values), steps=copy.deepcopy(self.steps),
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


@pytest.mark.parametrize("case", [
    # n, c, h, w, k, r, s, stride, pads, output_padding, dilation, groups, bias
    (1, 4, 5, 6, 3, 4, 4, (2, 2), (1, 1, 1, 1), (0, 0), (1, 1), 1, True),
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


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad(rng, mode):
    x = rand(rng, 2, 3, 4, 5)
    begin, end = [0, 1, 2, 0], [1, 0, 3, 4]
    kw = dict(constant_values=-1.5) if mode == "constant" else {}
    ref = np.pad(x, list(zip(begin, end)), mode=mode, **kw)
    y = run_op("pad", [x], ref.shape, pad_begin=begin, pad_end=end, mode=mode, value=-1.5)
    np.testing.assert_array_equal(y, ref)


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
    close(run_op("lrn", [x], x.shape, size=size, alpha=1e-2, beta=0.75, bias=2.0), ref)


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
