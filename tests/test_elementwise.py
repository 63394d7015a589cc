"""add/sub/mul/div with numpy broadcasting and fused activations, and the standalone activation:
reference vs fast CPU vs torch/numpy."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import TARGETS, TOL
from edgevision import ops
from target_util import as_input, to_numpy, to_target

OPS = {"add": (ops.add, torch.add), "sub": (ops.sub, torch.sub), "mul": (ops.mul, torch.mul),
       "div": (ops.div, torch.div)}

# name -> (alpha, beta) to pass (None: the op's default), torch formula
ACTS = {
    None: (None, None, lambda t: t),
    "relu": (None, None, F.relu),
    "leaky_relu": (None, None, lambda t: F.leaky_relu(t, 0.01)),
    "leaky_relu(0.2)": (0.2, None, lambda t: F.leaky_relu(t, 0.2)),
    "clip(-0.5, 0.7)": (-0.5, 0.7, lambda t: torch.clamp(t, -0.5, 0.7)),
    "relu6": (None, None, F.relu6),
    "sigmoid": (None, None, torch.sigmoid),
    "tanh": (None, None, torch.tanh),
    "silu": (None, None, F.silu),
    "hardswish": (None, None, F.hardswish),
    "gelu": (None, None, F.gelu),  # exact (erf) form
    # ONNX HardSigmoid defaults alpha 0.2, beta 0.5; PyTorch's F.hardsigmoid uses 1/6 instead.
    "hardsigmoid": (None, None, lambda t: torch.clamp(0.2 * t + 0.5, 0, 1)),
    "hardsigmoid(1/6)": (1 / 6, 0.5, F.hardsigmoid),
}


def _act_args(key):
    alpha, beta, fn = ACTS[key]
    name = key.split("(")[0] if key else None
    return name, alpha, beta, fn


def _random_shapes(rng, i):
    """Two numpy-broadcastable shapes of up to 6 dims (either side may be the broadcast one)."""
    nd = int(rng.integers(1, 7))
    full = [int(v) for v in rng.integers(1, 6, nd)]
    if i % 6 == 0:
        full[-1] = int(rng.integers(20, 300))

    def sub():
        s = [v if rng.random() < 0.6 else 1 for v in full]
        return tuple(s[int(rng.integers(0, nd + 1)):])  # may drop leading dims, even to a 0-d

    sa, sb = sub(), sub()
    if i % 3 == 0:
        sa = tuple(full)
    if i % 7 == 0:
        sa, sb = sb, sa
    return sa, sb


@pytest.mark.parametrize("target", TARGETS)
def test_binary_random_configs(rng, target):
    rtol, atol = TOL[target[1]]
    keys = list(ACTS)
    for i in range(400):
        sa, sb = _random_shapes(rng, i)
        a = np.asarray(rng.standard_normal(sa), np.float32)
        b = np.asarray(rng.standard_normal(sb), np.float32)
        opname = list(OPS)[i % 4]
        if opname == "div":
            b = np.where(np.abs(b) < 0.25, 0.25, b).astype(np.float32)
        ours, theirs = OPS[opname]
        name, alpha, beta, act = _act_args(keys[int(rng.integers(0, len(keys)))])
        ta, tb = torch.from_numpy(as_input(a, target)), torch.from_numpy(as_input(b, target))
        exp = act(theirs(ta, tb)).numpy()
        if exp.ndim == 0:
            exp = exp.reshape(1)  # a 0-d result comes back as [1]
        msg = f"case {i}: {opname} {sa} {sb} {name}"
        kw = dict(activation=name, alpha=alpha, beta=beta)
        if target[0] == "cpu":
            y = ours(a, b, reference=True, **kw)
            np.testing.assert_allclose(y, exp, rtol, atol, err_msg=msg)
        y = to_numpy(ours(to_target(a, target), to_target(b, target), **kw))
        assert y.shape == exp.shape, msg
        np.testing.assert_allclose(y, exp, rtol, atol, err_msg=msg)


# The patterns the fast path special-cases, at sizes that run threaded (>= 32K elements) and odd
# sizes that do not.
PATTERNS = [
    ((2, 16, 40, 40), (2, 16, 40, 40)),  # same shape
    ((2, 16, 40, 40), (1, 16, 1, 1)),  # per-channel vector
    ((2, 16, 40, 40), (16, 1, 1)),
    ((2, 16, 40, 40), ()),  # scalar
    ((), (2, 16, 40, 40)),  # scalar on the left (1 - x, 1 / x)
    ((2, 16, 40, 40), (2, 16, 1, 1)),  # squeeze-excite
    ((2, 16, 40, 40), (1, 1, 40, 40)),
    ((2, 16, 40, 40), (40,)),
    ((3, 5, 7), (3, 1, 7)),
    ((1, 1, 1, 1), (1, 1, 1, 1)),
    ((5, 1, 3), (1, 4, 1)),  # both broadcast
    ((200, 3), (3,)),  # channels-last
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("sa,sb", PATTERNS, ids=[f"{a}x{b}" for a, b in PATTERNS])
def test_binary_patterns(rng, target, sa, sb):
    rtol, atol = TOL[target[1]]
    a = np.asarray(rng.standard_normal(sa), np.float32)
    b = np.asarray(rng.random(sb) + 0.5, np.float32)
    for opname, (ours, theirs) in OPS.items():
        for key in (None, "relu", "silu"):
            name, alpha, beta, act = _act_args(key)
            exp = act(theirs(torch.from_numpy(as_input(a, target)),
                             torch.from_numpy(as_input(b, target)))).numpy().reshape(
                                 np.broadcast_shapes(sa, sb) or (1,))
            if target[0] == "cpu":
                np.testing.assert_allclose(ours(a, b, activation=name, reference=True), exp,
                                           rtol, atol)
            y = ours(to_target(a, target), to_target(b, target), activation=name)
            np.testing.assert_allclose(to_numpy(y), exp, rtol, atol, err_msg=f"{opname} {key}")


def test_div_by_zero_matches_numpy():
    a = np.array([1.0, -1.0, 0.0, 2.0], np.float32)
    b = np.array([0.0, 0.0, 0.0, 4.0], np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        exp = a / b
    np.testing.assert_array_equal(ops.div(a, b), exp)
    np.testing.assert_array_equal(ops.div(a, b, reference=True), exp)


def _activation_inputs(rng, n):
    special = np.array([0.0, -0.0, 1e-7, -1e-7, 3.0, -3.0, 6.0, -2.5, 2.5, 30.0, -30.0, 88.0, -88.0,
                        100.0, -100.0, 1e4, -1e4], np.float32)
    return np.concatenate([special, (rng.standard_normal(n) * 4).astype(np.float32)])


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("key", list(ACTS), ids=[str(k) for k in ACTS])
def test_activation_vs_torch(rng, target, key):
    rtol, atol = TOL[target[1]]
    name, alpha, beta, act = _act_args(key)
    name = name or "none"
    for i in range(10):  # sizes below and above the threading threshold, odd lengths
        n = int(rng.choice([1, 7, 100, 1023, 40001]))
        x = _activation_inputs(rng, n).reshape(-1, 1) if i % 2 else _activation_inputs(rng, n)
        exp = act(torch.from_numpy(as_input(x, target))).numpy()
        if target[0] == "cpu":
            np.testing.assert_allclose(ops.activation(x, name, alpha, beta, reference=True), exp,
                                       rtol, atol)
        y = to_numpy(ops.activation(to_target(x, target), name, alpha, beta))
        np.testing.assert_allclose(y, exp, rtol, atol, err_msg=f"{key} n={n}")


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("key", ["relu", "leaky_relu(0.2)", "sigmoid", "gelu", "hardswish"])
def test_activation_in_place(rng, target, key):
    rtol, atol = TOL[target[1]]
    name, alpha, beta, act = _act_args(key)
    for n in (5, 50000):
        x = _activation_inputs(rng, n)
        exp = act(torch.from_numpy(as_input(x, target))).numpy()
        xt = to_target(x.copy(), target)
        y = ops.activation(xt, name, alpha, beta, out=xt)
        np.testing.assert_allclose(to_numpy(xt), exp, rtol, atol)
        np.testing.assert_allclose(to_numpy(y), exp, rtol, atol)
        if target[0] == "cpu":
            xr = x.copy()
            ops.activation(xr, name, alpha, beta, out=xr, reference=True)
            np.testing.assert_allclose(xr, exp, rtol, atol)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "silu"])
def test_vector_exp_activations_match_libm(name):
    """The CPU fast path computes these on 8 lanes with its own exp (csrc/cpu/vec_act.h): within a few ulp
    of the float64 result over the whole float range that matters (ties to libm's accuracy), and the
    special values exactly as the scalar reference (infinities, NaN, signed zero)."""
    x = np.concatenate([np.linspace(-100, 100, 400_001), np.linspace(-1, 1, 100_003),
                        np.logspace(-30, 2, 5_000), -np.logspace(-30, 2, 5_000)]).astype(np.float32)
    x64 = x.astype(np.float64)
    exact = {"sigmoid": lambda v: 1 / (1 + np.exp(-v)), "tanh": np.tanh,
             "silu": lambda v: v / (1 + np.exp(-v))}[name]
    with np.errstate(over="ignore"):
        expect = exact(x64)
    y = np.asarray(ops.activation(x, name), np.float64)
    err = np.abs(y - expect)
    assert np.all(err <= 4e-7 * np.abs(expect) + 1e-35), (name, x[np.argmax(err / (np.abs(expect) + 1e-35))])
    special = np.array([np.inf, -np.inf, np.nan, 88.8, -88.8, 0.0, -0.0, 1e-20, -1e-20], np.float32)
    fast = np.asarray(ops.activation(special, name))
    ref = np.asarray(ops.activation(special, name, reference=True))
    np.testing.assert_allclose(fast, ref, rtol=1e-6, atol=0)
    assert np.array_equal(np.signbit(fast[~np.isnan(ref)]), np.signbit(ref[~np.isnan(ref)]))


def test_binary_in_place():
    a = np.arange(60000, dtype=np.float32)
    b = np.full((1,), 2.0, np.float32)
    ops.mul(a, b, out=a)
    np.testing.assert_array_equal(a, np.arange(60000, dtype=np.float32) * 2)


def test_torch_in_torch_out():
    torch.manual_seed(0)
    a, b = torch.randn(2, 3, 4), torch.randn(3, 1)
    y = ops.add(a, b, activation="relu")
    assert isinstance(y, torch.Tensor)
    torch.testing.assert_close(y, F.relu(a + b))


def test_bad_inputs():
    a = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError):
        ops.add(a, np.zeros((2, 4), np.float32))  # not broadcastable
    with pytest.raises(ValueError):
        ops.mul(np.zeros((2, 3, 4), np.float32), np.zeros((3, 3, 1), np.float32))
    with pytest.raises(TypeError):
        ops.add(a, np.zeros((2, 3), np.int32))
    with pytest.raises(TypeError):
        ops.activation(np.zeros(4, np.float64), "relu")
    with pytest.raises(ValueError):
        ops.activation(a, "swish2")
    with pytest.raises(ValueError):
        ops.add(a, a, activation="nope")
    with pytest.raises(ValueError):
        ops.add(a, a, out=np.zeros((3, 2), np.float32))
