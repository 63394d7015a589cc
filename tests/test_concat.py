"""concat: reference vs fast CPU vs numpy.concatenate / torch.cat, any axis, 1..8 inputs."""
import numpy as np
import pytest
import torch

from conftest import TARGETS
from edgevision import ops
from target_util import as_input, to_numpy, to_target


def _random_case(rng, i):
    nd = int(rng.integers(1, 6))
    base = [int(v) for v in rng.integers(1, 6, nd)]
    axis = int(rng.integers(-nd, nd))
    count = int(rng.integers(1, 9))
    big = i % 20 == 0  # past the threading threshold: few huge blocks or many small ones
    xs = []
    for _ in range(count):
        shape = list(base)
        shape[axis] = int(rng.integers(1, 2000 if big else 6))
        xs.append(rng.standard_normal(shape).astype(np.float32))
    return xs, axis


@pytest.mark.parametrize("target", TARGETS)
def test_random_configs(rng, target):
    for i in range(250):
        xs, axis = _random_case(rng, i)
        exp = np.concatenate([as_input(x, target) for x in xs], axis)
        msg = f"case {i}: {[x.shape for x in xs]} axis {axis}"
        if target[0] == "cpu":
            np.testing.assert_array_equal(ops.concat(xs, axis, reference=True), exp, err_msg=msg)
        y = to_numpy(ops.concat([to_target(x, target) for x in xs], axis))
        np.testing.assert_array_equal(y, exp, err_msg=msg)  # a copy: exact in any dtype


def test_channel_concat_threaded(rng):
    # The typical graph case: [n, c_i, h, w] along channels, large enough to run threaded.
    xs = [rng.standard_normal((2, c, 37, 29)).astype(np.float32) for c in (16, 3, 1, 64)]
    np.testing.assert_array_equal(ops.concat(xs, 1), np.concatenate(xs, 1))
    np.testing.assert_array_equal(ops.concat(xs, 1, reference=True), np.concatenate(xs, 1))
    np.testing.assert_array_equal(ops.concat(xs[:1], 1), xs[0])


def test_torch_in_torch_out():
    torch.manual_seed(0)
    xs = [torch.randn(2, 3, 4), torch.randn(2, 1, 4)]
    y = ops.concat(xs, axis=1)
    assert isinstance(y, torch.Tensor)
    torch.testing.assert_close(y, torch.cat(xs, 1), rtol=0, atol=0)
    torch.testing.assert_close(ops.concat(xs, axis=-2), torch.cat(xs, -2), rtol=0, atol=0)


def test_bad_inputs():
    a = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError):
        ops.concat([a, np.zeros((2, 3, 5), np.float32)], 1)  # differs off the axis
    with pytest.raises(ValueError):
        ops.concat([a, np.zeros((2, 3), np.float32)], 1)  # rank mismatch
    with pytest.raises(ValueError):
        ops.concat([a, a], 3)
    with pytest.raises(ValueError):
        ops.concat([], 0)
    with pytest.raises(TypeError):
        ops.concat([a, a.astype(np.int32)], 0)
    with pytest.raises(TypeError):
        ops.concat([a.astype(np.float64)], 0)
