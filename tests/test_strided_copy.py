"""strided_copy and the ops made of it (transpose, slice, expand): reference vs fast CPU vs
torch / numpy. Every result is a copy, so all comparisons are exact in any dtype."""
import numpy as np
import pytest
import torch

from conftest import TARGETS
from edgevision import ops
from target_util import as_input, to_numpy, to_target

BIG = 2**63 - 1  # ONNX exporters write "to the end" as INT64_MAX


def _check(fn, x, target, expected, msg):
    """fn(x_on_target, **kw) on the fast path (and the reference on the CPU) equals `expected`."""
    if target[0] == "cpu":
        np.testing.assert_array_equal(fn(x, reference=True), expected, err_msg=msg)
    y = to_numpy(fn(to_target(x, target)))
    assert y.shape == expected.shape, msg
    np.testing.assert_array_equal(y, expected, err_msg=msg)


def _shape(rng, nd, hi=7):
    return [int(v) for v in rng.integers(1, hi, nd)]


@pytest.mark.parametrize("target", TARGETS)
def test_transpose_random(rng, target):
    for i in range(220):
        nd = int(rng.integers(1, 7))
        shape = _shape(rng, nd)
        if i % 10 == 0:  # past the threading threshold and through full 32 x 32 tiles
            shape = [int(v) for v in rng.integers(33, 50, min(nd, 3))] + [2] * max(0, nd - 3)
        if i % 10 == 1 and nd >= 2:  # a long innermost axis: the transpose tiles' column loop
            shape[-1] = int(rng.integers(40, 300))
        perm = [int(p) for p in rng.permutation(nd)]
        x = rng.standard_normal(shape).astype(np.float32)
        exp = torch.from_numpy(as_input(x, target)).permute(perm).contiguous().numpy()
        _check(lambda t, **kw: ops.transpose(t, perm, **kw), x, target, exp,
               f"case {i}: shape {shape} perm {perm}")


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("shape,perm", [
    ((2, 4, 16, 9, 11), (0, 2, 1, 3, 4)),   # channel shuffle [n, g, c/g, h, w] -> [n, c/g, g, h, w]
    ((2, 33, 20, 37), (0, 2, 3, 1)),         # NCHW -> NHWC
    ((2, 20, 37, 33), (0, 3, 1, 2)),         # NHWC -> NCHW
    ((3, 70, 65), (0, 2, 1)),                # batched matrix transpose, partial tiles
    ((5, 4, 3), None),                       # default: reversed axes
])
def test_transpose_layouts(rng, target, shape, perm):
    x = rng.standard_normal(shape).astype(np.float32)
    exp = np.ascontiguousarray(np.transpose(as_input(x, target), perm))
    _check(lambda t, **kw: ops.transpose(t, perm, **kw), x, target, exp, f"{shape} {perm}")


def _random_slice(rng, shape):
    nd = len(shape)
    k = int(rng.integers(1, nd + 1))
    axes = [int(a) for a in rng.permutation(nd)[:k]]
    starts, ends, steps, index = [], [], [], [slice(None)] * nd
    for a in axes:
        d = shape[a]
        while True:
            step = int(rng.choice([1, 1, 2, 3, -1, -2, 5, -7, BIG, -BIG]))
            s = int(rng.choice([rng.integers(-d - 3, d + 3), 0, -1, BIG, -BIG]))
            e = int(rng.choice([rng.integers(-d - 3, d + 3), d, -d - 1, BIG, -BIG]))
            if len(range(d)[slice(s, e, step)]) > 0:
                break
        starts.append(s), ends.append(e), steps.append(step)
        index[a] = slice(s, e, step)
    # Negative axes half the time, as ONNX allows.
    axes = [a - nd if rng.random() < 0.5 else a for a in axes]
    return starts, ends, axes, steps, tuple(index)


@pytest.mark.parametrize("target", TARGETS)
def test_slice_random(rng, target):
    for i in range(220):
        nd = int(rng.integers(1, 6))
        shape = _shape(rng, nd, 9)
        if i % 10 == 0:
            shape[-1] = int(rng.integers(2000, 9000))
        x = rng.standard_normal(shape).astype(np.float32)
        starts, ends, axes, steps, index = _random_slice(rng, shape)
        exp = np.ascontiguousarray(as_input(x, target)[index])  # numpy basic slicing == ONNX Slice
        msg = f"case {i}: shape {shape} starts {starts} ends {ends} axes {axes} steps {steps}"
        _check(lambda t, **kw: ops.slice(t, starts, ends, axes, steps, **kw), x, target, exp, msg)
        if all(s > 0 for s in steps):  # torch slicing takes positive steps only
            tidx = tuple(slice(*(max(-2**31, min(2**31, v)) if v is not None else None
                                 for v in (sl.start, sl.stop, sl.step)))
                         if isinstance(sl, slice) else sl for sl in index)
            np.testing.assert_array_equal(torch.from_numpy(as_input(x, target))[tidx].numpy(), exp)


def test_slice_defaults_and_channel_split(rng):
    x = rng.standard_normal((2, 12, 9, 9)).astype(np.float32)
    np.testing.assert_array_equal(ops.slice(x, [1], [5]), x[1:5])
    for lo, hi in ((0, 4), (4, 10), (10, 12)):  # Split along channels
        np.testing.assert_array_equal(ops.slice(x, [lo], [hi], [1]), x[:, lo:hi])
    np.testing.assert_array_equal(ops.slice(x, [-1], [-BIG - 1], [-1], [-1]), x[..., ::-1])


def _broadcastable(rng, nd_out):
    out = _shape(rng, nd_out)
    nd_x = int(rng.integers(0, nd_out + 1))
    xs = [1 if rng.random() < 0.4 else d for d in out[nd_out - nd_x:]]
    # ONNX Expand broadcasts both ways: the target shape may hold 1 where x does not.
    target_shape = [1 if (rng.random() < 0.2 and j >= nd_out - nd_x and xs[j - (nd_out - nd_x)] > 1)
                    else d for j, d in enumerate(out)]
    return xs or [1], target_shape


@pytest.mark.parametrize("target", TARGETS)
def test_expand_random(rng, target):
    for i in range(220):
        xshape, shape = _broadcastable(rng, int(rng.integers(1, 7)))
        if i % 10 == 0:
            shape = shape[:-1] + [int(rng.integers(5000, 20000))]
            xshape = xshape[:-1] + [1]
        x = rng.standard_normal(xshape).astype(np.float32)
        out_shape = torch.broadcast_shapes(tuple(xshape), tuple(shape))
        exp = torch.from_numpy(as_input(x, target)).broadcast_to(out_shape).contiguous().numpy()
        np.testing.assert_array_equal(exp, as_input(x, target) * np.ones(shape, np.float32))
        _check(lambda t, **kw: ops.expand(t, shape, **kw), x, target, exp,
               f"case {i}: x {xshape} shape {shape}")


def _random_view(rng, numel):
    """A random strided view (shape, element strides, offset) that stays inside `numel` elements,
    with strides that may be 0 or negative."""
    nd = int(rng.integers(1, 6))
    shape = _shape(rng, nd, 6)
    strides = [int(rng.integers(-numel // 4, numel // 4 + 1)) if rng.random() < 0.7
               else int(rng.choice([0, 1, -1])) for _ in range(nd)]
    lo = sum(min(0, (n - 1) * s) for n, s in zip(shape, strides))
    hi = sum(max(0, (n - 1) * s) for n, s in zip(shape, strides))
    if hi - lo >= numel:
        return None
    return shape, strides, int(rng.integers(-lo, numel - hi))


@pytest.mark.parametrize("target", TARGETS)
def test_strided_copy_random(rng, target):
    done = 0
    while done < 220:
        x = rng.standard_normal(int(rng.integers(1, 400))).astype(np.float32)
        view = _random_view(rng, x.size)
        if view is None:
            continue
        shape, strides, offset = view
        xi = as_input(x, target)
        exp = np.lib.stride_tricks.as_strided(xi[offset:], shape, [s * 4 for s in strides]).copy()
        if all(s >= 0 for s in strides):
            torch.testing.assert_close(
                torch.from_numpy(exp), torch.as_strided(torch.from_numpy(xi), shape, strides, offset),
                rtol=0, atol=0)
        _check(lambda t, **kw: ops.strided_copy(t, shape, strides, offset, **kw), x, target, exp,
               f"shape {shape} strides {strides} offset {offset}")
        done += 1


def test_strided_inputs_are_read_in_place(rng):
    # transpose, slice and expand compose the input's own strides: numpy views and torch views work.
    base = rng.standard_normal((4, 10, 8, 6)).astype(np.float32)
    for x in (base[:, ::-3, 1:], base.transpose(0, 2, 3, 1), base[..., 2:5], base[::2, :, ::-1]):
        np.testing.assert_array_equal(ops.transpose(x, (3, 1, 0, 2)), np.transpose(x, (3, 1, 0, 2)))
        np.testing.assert_array_equal(ops.transpose(x, (3, 1, 0, 2), reference=True),
                                      np.transpose(x, (3, 1, 0, 2)))
        np.testing.assert_array_equal(ops.slice(x, [1, -1], [BIG, 0], [1, 3], [2, -1]),
                                      x[:, 1::2, :, :0:-1])
        np.testing.assert_array_equal(ops.expand(x[:, :1], [2, 1, 1, 1, 1]),
                                      np.broadcast_to(x[:, :1], (2,) + x[:, :1].shape))
    t = torch.from_numpy(base).permute(0, 2, 3, 1)[:, 1:]
    y = ops.transpose(t, (0, 3, 1, 2))
    assert isinstance(y, torch.Tensor)
    torch.testing.assert_close(y, t.permute(0, 3, 1, 2).contiguous(), rtol=0, atol=0)


def test_threaded_sizes(rng):
    x = rng.standard_normal((4, 64, 48, 40)).astype(np.float32)
    for perm in ((0, 2, 3, 1), (1, 0, 2, 3), (3, 2, 1, 0)):
        exp = np.ascontiguousarray(x.transpose(perm))
        np.testing.assert_array_equal(ops.transpose(x, perm), exp)
    np.testing.assert_array_equal(ops.slice(x, [5, -3], [40, 1], [1, 3], [3, -2]), x[:, 5:40:3, :, -3:1:-2])
    np.testing.assert_array_equal(ops.expand(x[:1, :, :1], [4, 64, 48, 40]),
                                  np.broadcast_to(x[:1, :, :1], (4, 64, 48, 40)))


def test_torch_in_torch_out():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 5)
    y = ops.transpose(x, (0, 2, 1, 3))
    assert isinstance(y, torch.Tensor)
    torch.testing.assert_close(y, x.transpose(1, 2).contiguous(), rtol=0, atol=0)
    torch.testing.assert_close(ops.slice(x, [1], [3], [-1]), x[..., 1:3].contiguous(), rtol=0, atol=0)
    torch.testing.assert_close(ops.expand(x[:, :1], (3, 1, 1, 1, 1)),
                               x[:, :1].expand(3, 2, 1, 4, 5).contiguous(), rtol=0, atol=0)


def test_out_argument(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    out = np.empty((4, 3), np.float32)
    assert ops.transpose(x, out=out) is out
    np.testing.assert_array_equal(out, x.T)
    with pytest.raises(ValueError):
        ops.transpose(x, out=np.empty((3, 4), np.float32))


def test_bad_inputs():
    x = np.zeros((2, 3, 4), np.float32)
    for perm in ([0, 1], [0, 1, 1], [0, 1, 3], [0, 1, 2, 3]):
        with pytest.raises(ValueError):
            ops.transpose(x, perm)
    with pytest.raises(TypeError):
        ops.transpose(x, [0, 1.5, 2])
    with pytest.raises(TypeError):
        ops.transpose(x.astype(np.int32))
    with pytest.raises(TypeError):
        ops.transpose(x.astype(np.float64))
    with pytest.raises(ValueError):
        ops.transpose(np.zeros((2, 0), np.float32))
    with pytest.raises(ValueError):
        ops.transpose(np.zeros((1,) * 9 + (2,) * 9, np.float32))  # more than 8 dims of extent > 1
    bad_slices = [
        ([0], [1], None, [0]),          # zero step
        ([2], [2], None, None),         # empty
        ([0], [5], [1], [-1]),          # empty with a negative step
        ([0, 0], [1], None, None),      # length mismatch
        ([0, 0], [1, 1], [1, 1], None),  # repeated axis
        ([0, 0], [1, 1], [1, -2], None),  # the same axis twice, once negative
        ([0], [1], [3], None),          # axis out of range
        ([0] * 4, [1] * 4, None, None),  # more axes than x has
    ]
    for starts, ends, axes, steps in bad_slices:
        with pytest.raises(ValueError):
            ops.slice(x, starts, ends, axes, steps)
    with pytest.raises(TypeError):
        ops.slice(x, ["a"], [1])
    with pytest.raises((TypeError, OverflowError)):
        ops.slice(x, [0], [2**64])
    for shape in ([2, 3, 5], [3, 3, 4], [2, 0, 4], [-1, 3, 4]):
        with pytest.raises(ValueError):
            ops.expand(x, shape)
    flat = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(ops.strided_copy(flat, [3], [4], 1), [1, 5, 9])  # the last fits
    bad_views = [
        ([4], [3], 1),                # one past the end
        ([2], [1], 9),
        ([2], [-1], 0),               # one before the start
        ([2], [1], -1),
        ([2], [1], 10),
        ([2, 2], [2**62, 1], 0),      # a span that would overflow int64
        ([2], [-2**63], 5),
        ([3, 2], [1], 0),             # shape and strides of different lengths
        ([0], [1], 0),                # empty
        ([2**40], [0], 0),            # too large an output
    ]
    for shape, strides, offset in bad_views:
        with pytest.raises(ValueError):
            ops.strided_copy(flat, shape, strides, offset)
    with pytest.raises(ValueError):  # strided_copy indexes x's flat memory: x must be contiguous
        ops.strided_copy(np.zeros((4, 4), np.float32)[:, ::2], [2], [1], 0)
