"""reduce (mean, sum, max, min over a contiguous run of axes) and reduce_mean: reference vs fast
CPU vs torch (mean, sum, amax, amin), every layout of [outer, dim, inner], NaN propagation."""
import numpy as np
import pytest
import torch

from conftest import TARGETS, TOL
from edgevision import ops
from target_util import as_input, to_numpy, to_target

OPS = ("mean", "sum", "max", "min")


def _torch(x, axes, op, keepdims):
    t = torch.from_numpy(x)
    dims = tuple(range(x.ndim)) if axes is None else tuple(axes)
    fn = {"mean": torch.mean, "sum": torch.sum, "max": torch.amax, "min": torch.amin}[op]
    return fn(t, dim=dims, keepdim=keepdims).numpy()


def _random_case(rng, i):
    nd = int(rng.integers(1, 6))
    shape = [int(v) for v in rng.integers(1, 8, nd)]
    first = int(rng.integers(0, nd))
    last = int(rng.integers(first, nd))
    axes = list(range(first, last + 1))
    if i % 10 == 0:  # a long reduced run: the vector row path (inner == 1) or long columns
        shape[last] = int(rng.integers(300, 3000))
    if i % 10 == 1 and last < nd - 1:  # inner positions spanning several 512-wide tiles
        shape[-1] = int(rng.integers(500, 1500))
    if i % 7 == 0:
        axes = None  # all axes
    elif rng.random() < 0.3:  # negative and unordered axes name the same run
        axes = [a - nd if rng.random() < 0.5 else a for a in rng.permutation(axes)]
    if axes is not None and rng.random() < 0.3 and len(axes) == 1:
        axes = axes[0]  # a plain int
    x = (rng.standard_normal(shape) * rng.choice([0.1, 1.0, 10.0])).astype(np.float32)
    return x, axes, OPS[i % 4], bool(rng.random() < 0.5)


@pytest.mark.parametrize("target", TARGETS)
def test_random_configs(rng, target):
    rtol, atol = TOL[target[1]]
    for i in range(240):
        x, axes, op, keepdims = _random_case(rng, i)
        norm = None if axes is None else [a % x.ndim for a in np.atleast_1d(axes)]
        exp = _torch(as_input(x, target), norm, op, keepdims)
        # Sums grow with the reduced count; compare them relative to the sum of magnitudes.
        scale = 1.0 if op != "sum" else max(1.0, float(np.abs(x).sum() / max(1, exp.size)) * 1e-2)
        msg = f"case {i}: shape {x.shape} axes {axes} {op} keepdims {keepdims}"
        outs = [to_numpy(ops.reduce(to_target(x, target), axes, op, keepdims=keepdims))]
        if target[0] == "cpu":
            outs.append(ops.reduce(x, axes, op, keepdims=keepdims, reference=True))
        for y in outs:
            assert y.shape == exp.shape, msg
            np.testing.assert_allclose(y, exp, rtol, atol * scale, err_msg=msg)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("shape,axes", [((2, 64, 28, 28), (2, 3)),    # global average pool
                                        ((2, 96, 17, 19), 1),          # over channels
                                        ((4, 3000), 1),                # a long last axis
                                        ((1, 5000, 3), 1),             # long columns, few of them
                                        ((3, 4, 5), None)])            # everything
def test_layouts(rng, target, shape, axes):
    rtol, atol = TOL[target[1]]
    x = rng.standard_normal(shape).astype(np.float32)
    norm = None if axes is None else list(np.atleast_1d(axes))
    for op in OPS:
        exp = _torch(as_input(x, target), norm, op, True)
        y = to_numpy(ops.reduce(to_target(x, target), axes, op, keepdims=True))
        np.testing.assert_allclose(y, exp, rtol, atol * (100 if op == "sum" else 1),
                                   err_msg=f"{shape} {axes} {op}")


@pytest.mark.parametrize("target", TARGETS)
def test_nan_and_inf(target):
    x = np.array([[1.0, np.nan, -3.0, 2.0] * 5, [np.inf, 1.0, -np.inf, 0.5] * 5,
                  [-1.0, -2.0, 7.0, 0.25] * 5], np.float32)
    x3 = np.ascontiguousarray(x.T)  # the same data as [dim, inner] columns
    for op in OPS:
        exp = _torch(x, [1], op, False)
        for y in (ops.reduce(to_target(x, target), 1, op), ops.reduce(to_target(x3, target), 0, op)):
            np.testing.assert_array_equal(to_numpy(y), exp, err_msg=op)  # exact: ties to torch's NaN


def test_reduce_mean_onnx_defaults(rng):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    y = ops.reduce_mean(x, [-2, -1])
    assert y.shape == (2, 3, 1, 1)
    np.testing.assert_allclose(y, x.mean(axis=(2, 3), keepdims=True), *TOL["float32"])
    assert ops.reduce_mean(x).shape == (1, 1, 1, 1)
    assert ops.reduce_mean(x, 1, keepdims=False).shape == (2, 4, 5)
    assert ops.reduce(x).shape == ()  # numpy's full reduction: a 0-d result


def test_threaded_sizes(rng):
    x = rng.standard_normal((8, 256, 30, 30)).astype(np.float32)
    for op in OPS:
        for axes in ((2, 3), 1, (1, 2, 3)):
            exp = _torch(x, list(np.atleast_1d(axes)), op, False)
            atol = TOL["float32"][1] * (1000 if op == "sum" else 1)
            np.testing.assert_allclose(ops.reduce(x, axes, op), exp, TOL["float32"][0], atol)
            np.testing.assert_allclose(ops.reduce(x, axes, op, reference=True), exp,
                                       TOL["float32"][0], atol)


def test_torch_in_torch_out():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4)
    y = ops.reduce(x, (1, 2), "max")
    assert isinstance(y, torch.Tensor)
    torch.testing.assert_close(y, x.amax(dim=(1, 2)), rtol=0, atol=0)


def test_bad_inputs():
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError):
        ops.reduce(x, (0, 2))  # not a contiguous run
    with pytest.raises(ValueError):
        ops.reduce(x, (1, 1))
    with pytest.raises(ValueError):
        ops.reduce(x, (1, -2))  # the same axis twice
    with pytest.raises(ValueError):
        ops.reduce(x, 3)
    with pytest.raises(ValueError):
        ops.reduce(x, 1, "prod")
    with pytest.raises(TypeError):
        ops.reduce(x, 1.0)
    with pytest.raises(TypeError):
        ops.reduce(x, "1")
    with pytest.raises(TypeError):
        ops.reduce(x.astype(np.int32), 1)
    with pytest.raises(ValueError):
        ops.reduce(np.array(1.0, np.float32))
    with pytest.raises(ValueError):
        ops.reduce(x, 1, out=np.empty((2, 3), np.float32))
