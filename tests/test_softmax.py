"""softmax / log_softmax: reference vs fast CPU vs torch over every axis, odd sizes, extreme values."""
import numpy as np
import pytest
import torch

from conftest import TARGETS, TOL
from edgevision import ops
from target_util import as_input, to_numpy, to_target


def _expected(x, axis, log):
    t = torch.from_numpy(x)
    return (torch.log_softmax(t, axis) if log else torch.softmax(t, axis)).numpy()


def _random_case(rng, i):
    nd = int(rng.integers(1, 5))
    shape = [int(v) for v in rng.integers(1, 8, nd)]
    axis = int(rng.integers(-nd, nd))
    if i % 8 == 0:  # a long softmax axis (class scores)
        shape[axis] = int(rng.integers(100, 1200))
    if i % 8 == 1 and nd > 1:  # inner extent past one 256-wide tile of the fast path
        shape[-1] = int(rng.integers(250, 700))
        axis = int(rng.integers(0, nd - 1))
    x = (rng.standard_normal(shape) * rng.choice([0.1, 1.0, 10.0])).astype(np.float32)
    if i % 5 == 0:
        x.flat[rng.integers(0, x.size, 1 + x.size // 10)] = rng.choice([1e4, -1e4])
    return x, axis


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_random_configs(rng, target, log):
    rtol, atol = TOL[target[1]]
    fn = ops.log_softmax if log else ops.softmax
    for i in range(220):
        x, axis = _random_case(rng, i)
        exp = _expected(as_input(x, target), axis, log)
        msg = f"case {i}: shape {x.shape} axis {axis}"
        if target[0] == "cpu":
            np.testing.assert_allclose(fn(x, axis, reference=True), exp, rtol, atol, err_msg=msg)
        y = to_numpy(fn(to_target(x, target), axis))
        assert y.shape == x.shape
        np.testing.assert_allclose(y, exp, rtol, atol, err_msg=msg)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_extreme_values(target, log):
    rtol, atol = TOL[target[1]]
    fn = ops.log_softmax if log else ops.softmax
    x = np.array([[1e4, -1e4, 0.0, 1e4 - 1.0],
                  [-1e4, -1e4, -1e4, -1e4],
                  [1e4, 1e4, 1e4, 1e4],
                  [0.0, 1e-30, -1e-30, 88.0]], np.float32)
    stored = x.astype(target[1]).astype(np.float64)  # float16 stores 1e4 - 1 as 1e4
    for axis in (0, 1):
        exp = _expected(stored, axis, log).astype(np.float32)
        refs = [fn(x, axis, reference=True)] if target[0] == "cpu" else []
        for y in refs + [to_numpy(fn(to_target(x, target), axis))]:
            assert np.isfinite(y).all()
            np.testing.assert_allclose(y, exp, rtol, atol)


@pytest.mark.parametrize("target", TARGETS)
def test_dim_one(target):
    x = np.random.default_rng(1).standard_normal((3, 1, 5)).astype(np.float32) * 100
    np.testing.assert_array_equal(to_numpy(ops.softmax(to_target(x, target), 1)), np.ones_like(x))
    np.testing.assert_array_equal(to_numpy(ops.log_softmax(to_target(x, target), 1)), np.zeros_like(x))


@pytest.mark.parametrize("shape,axis", [((64, 1000), 1), ((4, 1000, 33), 1), ((1, 3, 200, 200), 1),
                                        ((50000,), 0)])
def test_threaded_sizes(rng, shape, axis):
    # Past the fast path's threading threshold, both the inner == 1 and the tiled inner > 1 layouts.
    x = rng.standard_normal(shape).astype(np.float32) * 3
    for log, fn in ((False, ops.softmax), (True, ops.log_softmax)):
        exp = _expected(x, axis, log)
        np.testing.assert_allclose(fn(x, axis), exp, *TOL["float32"])
        np.testing.assert_allclose(fn(x, axis, reference=True), exp, *TOL["float32"])


def test_torch_in_torch_out():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3)
    y = ops.softmax(x, 1)
    assert isinstance(y, torch.Tensor) and y.shape == x.shape
    torch.testing.assert_close(y, torch.softmax(x, 1), rtol=1e-5, atol=1e-6)


def test_bad_inputs():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError):
        ops.softmax(x, 2)
    with pytest.raises(ValueError):
        ops.log_softmax(x, -3)
    with pytest.raises(TypeError):
        ops.softmax(np.zeros((2, 3), np.int32))
    with pytest.raises(TypeError):
        ops.softmax(x, 1.5)
    with pytest.raises(ValueError):
        ops.softmax(np.array(1.0, np.float32))
