"""pad (constant, reflect, edge): reference vs fast CPU vs numpy.pad and torch.nn.functional.pad,
any rank up to 8, asymmetric pads. Padding copies values (the constant is rounded to the storage
dtype), so every comparison is exact."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import TARGETS
from edgevision import ops
from target_util import as_input, to_numpy, to_target

MODES = ("constant", "reflect", "edge")
TORCH_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}


def _expected(x, begin, end, mode, value):
    kw = {"constant_values": value} if mode == "constant" else {}
    return np.pad(x, list(zip(begin, end)), mode=mode, **kw)


def _random_case(rng, i):
    mode = MODES[i % 3]
    nd = int(rng.integers(1, 6))
    shape = [int(v) for v in rng.integers(1, 7, nd)]
    if i % 15 == 0:  # spatial pads of a tensor past the threading threshold
        nd, shape = 4, [2, int(rng.integers(8, 40)), int(rng.integers(20, 60)), int(rng.integers(20, 60))]
    begin, end = [], []
    for d in range(nd):
        hi = shape[d] - 1 if mode == "reflect" else 5
        padded = rng.random() < 0.6
        begin.append(int(rng.integers(0, hi + 1)) if padded else 0)
        end.append(int(rng.integers(0, hi + 1)) if padded else 0)
    value = float(rng.choice([0.0, -1.5, 3.25, np.inf]))
    return rng.standard_normal(shape).astype(np.float32), begin, end, mode, value


@pytest.mark.parametrize("target", TARGETS)
def test_random_configs(rng, target):
    for i in range(240):
        x, begin, end, mode, value = _random_case(rng, i)
        exp = _expected(as_input(x, target), begin, end, mode, np.float32(value))
        msg = f"case {i}: shape {x.shape} pads {begin} {end} {mode} {value}"
        if target[0] == "cpu":
            np.testing.assert_array_equal(ops.pad(x, begin, end, mode, value, reference=True), exp,
                                          err_msg=msg)
        y = to_numpy(ops.pad(to_target(x, target), begin, end, mode, value))
        assert y.shape == exp.shape, msg
        np.testing.assert_array_equal(y, exp, err_msg=msg)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("mode", MODES)
def test_spatial_pads_match_torch(rng, target, mode):
    # The runtime's case: F.pad of the last two dims of NCHW (l, r, t, b), including 1-pixel images
    # for the constant and edge modes.
    for i in range(70):
        n, c = (int(v) for v in rng.integers(1, 4, 2))
        h, w = (int(v) for v in rng.integers(1 if mode != "reflect" else 2, 12, 2))
        if i % 10 == 0:
            h, w = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        lim_h, lim_w = (h - 1, w - 1) if mode == "reflect" else (4, 4)
        t, b = (int(v) for v in rng.integers(0, lim_h + 1, 2))
        left, r = (int(v) for v in rng.integers(0, lim_w + 1, 2))
        x = rng.standard_normal((n, c, h, w)).astype(np.float32)
        kw = {"value": 0.5} if mode == "constant" else {}
        exp = F.pad(torch.from_numpy(as_input(x, target)), (left, r, t, b), TORCH_MODES[mode], **kw).numpy()
        y = to_numpy(ops.pad(to_target(x, target), (0, 0, t, left), (0, 0, b, r), mode, 0.5))
        np.testing.assert_array_equal(y, exp, err_msg=f"{x.shape} ({left}, {r}, {t}, {b}) {mode}")


def test_outer_dims_and_eight_dims(rng):
    # Padding batch/channel dims (whole constant rows and planes) and a rank-8 tensor.
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    for mode in MODES:
        b, e = (1, 2, 0, 1), (1, 0, 3, 0)
        exp = _expected(x, b, e, mode, np.float32(7.0))
        np.testing.assert_array_equal(ops.pad(x, b, e, mode, 7.0), exp)
        np.testing.assert_array_equal(ops.pad(x, b, e, mode, 7.0, reference=True), exp)
    x8 = rng.standard_normal((2, 1, 2, 3, 1, 2, 2, 3)).astype(np.float32)
    b8, e8 = (1, 0, 1, 0, 2, 0, 1, 1), (0, 0, 1, 2, 0, 1, 1, 0)
    np.testing.assert_array_equal(ops.pad(x8, b8, e8, "edge"), _expected(x8, b8, e8, "edge", 0))
    np.testing.assert_array_equal(ops.pad(x8, b8, e8), _expected(x8, b8, e8, "constant", 0))


def test_torch_in_torch_out():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 5, 6)
    y = ops.pad(x, (0, 0, 1, 2), (0, 0, 3, 1), "reflect")
    assert isinstance(y, torch.Tensor)
    torch.testing.assert_close(y, F.pad(x, (2, 1, 1, 3), "reflect"), rtol=0, atol=0)


def test_bad_inputs():
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError):
        ops.pad(x, (0, 0), (0, 0))  # one entry per dim
    with pytest.raises(ValueError):
        ops.pad(x, (0, 0, 1), (0, 0, 1, 1))
    with pytest.raises(ValueError):
        ops.pad(x, (0, -1, 0), (0, 0, 0))
    with pytest.raises(ValueError):
        ops.pad(x, (0, 0, 2**40), (0, 0, 0))
    with pytest.raises(ValueError):
        ops.pad(x, (0, 0, 4), (0, 0, 0), "reflect")  # reflect pad must be < the dim
    with pytest.raises(ValueError):
        ops.pad(x, (0, 0, 0), (0, 3, 0), "reflect")
    with pytest.raises(ValueError):
        ops.pad(x, (0, 0, 0), (0, 0, 0), "wrap")
    with pytest.raises(TypeError):
        ops.pad(x, (0, 0, 0), (0, 0, 0), value="a")
    with pytest.raises(TypeError):
        ops.pad(x, (0, 0, 0.5), (0, 0, 0))
    with pytest.raises(TypeError):
        ops.pad(x.astype(np.float64), (0, 0, 0), (0, 0, 0))
    with pytest.raises(ValueError):
        ops.pad(np.zeros((1,) * 9, np.float32), (0,) * 9, (0,) * 9)
    with pytest.raises(ValueError):
        ops.pad(np.zeros((2, 0), np.float32), (0, 1), (0, 0))
