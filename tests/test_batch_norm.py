"""batch_norm (inference): reference vs fast CPU vs torch F.batch_norm(training=False)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import TARGETS, TOL
from edgevision import ops
from target_util import as_input, to_numpy, to_target

ACTS = {None: lambda t: t, "relu": F.relu, "relu6": F.relu6, "silu": F.silu,
        "leaky_relu": lambda t: F.leaky_relu(t, 0.01), "sigmoid": torch.sigmoid,
        "hardswish": F.hardswish, "tanh": torch.tanh, "gelu": F.gelu,
        "hardsigmoid": lambda t: torch.clamp(0.2 * t + 0.5, 0, 1)}


def _random_case(rng, i):
    rank = [2, 3, 4, 4, 5][i % 5]
    n, c = int(rng.integers(1, 5)), int(rng.integers(1, 20))
    spatial = [int(v) for v in rng.integers(1, 12, rank - 2)]
    if i % 25 == 0:  # large enough to run threaded
        n, c, spatial = 2, 24, [33, 41][:rank - 2] or []
        if rank == 2:
            n, c = 300, 130
    x = (rng.standard_normal([n, c] + spatial) * 2 + 1).astype(np.float32)
    gamma = rng.standard_normal(c).astype(np.float32)
    beta = rng.standard_normal(c).astype(np.float32)
    mean = rng.standard_normal(c).astype(np.float32)
    var = (rng.random(c) * 3 + (0.0 if i % 7 == 0 else 0.05)).astype(np.float32)
    eps = float(rng.choice([1e-5, 1e-3, 0.1]))
    return x, gamma, beta, mean, var, eps


@pytest.mark.parametrize("target", TARGETS)
def test_random_configs(rng, target):
    rtol, atol = TOL[target[1]]
    for i in range(250):
        x, gamma, beta, mean, var, eps = _random_case(rng, i)
        act = list(ACTS)[i % len(ACTS)]
        t = [torch.from_numpy(as_input(v, target)) for v in (x, gamma, beta, mean, var)]
        exp = ACTS[act](F.batch_norm(t[0], t[3], t[4], t[1], t[2], training=False, eps=eps)).numpy()
        msg = f"case {i}: x {x.shape} eps {eps} act {act}"
        args = (x, gamma, beta, mean, var, eps)
        if target[0] == "cpu":
            np.testing.assert_allclose(ops.batch_norm(*args, activation=act, reference=True), exp,
                                       rtol, atol, err_msg=msg)
        y = ops.batch_norm(*[to_target(v, target) if isinstance(v, np.ndarray) else v for v in args],
                           activation=act)
        np.testing.assert_allclose(to_numpy(y), exp, rtol, atol, err_msg=msg)


def test_activation_parameters():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32) * 4
    g, b, m = (rng.standard_normal(3).astype(np.float32) for _ in range(3))
    v = rng.random(3).astype(np.float32) + 0.5
    bn = F.batch_norm(*(torch.from_numpy(a) for a in (x, m, v, g, b)), training=False)
    for kw, fn in (({"activation": "clip", "act_alpha": -1.0, "act_beta": 2.0}, lambda t: t.clamp(-1, 2)),
                   ({"activation": "leaky_relu", "act_alpha": 0.3}, lambda t: F.leaky_relu(t, 0.3))):
        for ref in (True, False):
            np.testing.assert_allclose(ops.batch_norm(x, g, b, m, v, **kw, reference=ref),
                                       fn(bn).numpy(), *TOL["float32"])


def test_torch_in_torch_out():
    torch.manual_seed(0)
    x, g, b, m = torch.randn(2, 3, 4, 4), torch.randn(3), torch.randn(3), torch.randn(3)
    v = torch.rand(3) + 0.1
    y = ops.batch_norm(x, g, b, m, v, 1e-5)
    assert isinstance(y, torch.Tensor)
    torch.testing.assert_close(y, F.batch_norm(x, m, v, g, b, training=False, eps=1e-5))


def test_bad_inputs():
    x = np.zeros((2, 3, 4, 4), np.float32)
    p = np.ones(3, np.float32)
    with pytest.raises(ValueError):
        ops.batch_norm(np.zeros(3, np.float32), p, p, p, p)  # rank 1
    with pytest.raises(ValueError):
        ops.batch_norm(x, np.ones(4, np.float32), p, p, p)  # channel mismatch
    with pytest.raises(ValueError):
        ops.batch_norm(x, p, p, p, np.ones((3, 1), np.float32))  # var not 1-D
    with pytest.raises(ValueError):
        ops.batch_norm(x, p, p, p, p, eps=-1.0)
    with pytest.raises(TypeError):
        ops.batch_norm(x.astype(np.float64), p, p, p, p)
    with pytest.raises(TypeError):
        ops.batch_norm(x, p, p, p.astype(np.int64), p)
