"""gemm / linear: reference vs fast CPU vs torch over random configurations: both transposes, alpha,
the few-row kernel (m <= 4) and the blocked SGEMM (every m, n, k remainder of its 6x16 tile and of
its 256-deep K blocks), bias, residual before/after the activation, every activation."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import edgevision as ev
from conftest import TARGETS, TOL
from target_util import check_fast_ref_torch, with_threads
from test_conv2d import ACTS, to_target, torch_act


def make_config(i):
    rng = np.random.default_rng(5000 + i)
    kind = ["small_m", "tile", "deep", "wide"][i % 4]
    if kind == "small_m":
        m, n, k = int(rng.integers(1, 5)), int(rng.integers(1, 300)), int(rng.integers(1, 300))
    elif kind == "tile":
        m, n, k = int(rng.integers(5, 40)), int(rng.integers(1, 50)), int(rng.integers(1, 40))
    elif kind == "deep":  # several K blocks: partial sums go through scratch
        m, n, k = int(rng.integers(5, 30)), int(rng.integers(1, 40)), int(rng.integers(250, 700))
    else:  # several N blocks and thread splits
        m, n, k = int(rng.integers(5, 20)), int(rng.integers(380, 800)), int(rng.integers(1, 20))
    act = ACTS[int(rng.integers(0, len(ACTS)))]
    alpha = beta = None
    if act == "leaky_relu":
        alpha = 0.2
    elif act == "clip":
        alpha, beta = -0.5, 0.7
    return dict(kind=kind, m=m, n=n, k=k, ta=bool(rng.random() < 0.5), tb=bool(rng.random() < 0.5),
                scale=float(rng.choice([1.0, 1.0, 0.5, -2.0])), act=act, alpha=alpha, beta=beta,
                bias=bool(rng.random() < 0.6), res=bool(rng.random() < 0.5),
                after=bool(rng.random() < 0.5), seed=6000 + i)


CONFIGS = [make_config(i) for i in range(240)]


def make_data(cfg):
    rng = np.random.default_rng(cfg["seed"])
    m, n, k = cfg["m"], cfg["n"], cfg["k"]
    a = rng.standard_normal((k, m) if cfg["ta"] else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if cfg["tb"] else (k, n), dtype=np.float32) / np.float32(np.sqrt(k))
    bias = rng.standard_normal(n, dtype=np.float32) if cfg["bias"] else None
    res = rng.standard_normal((m, n), dtype=np.float32) if cfg["res"] else None
    return a, b, bias, res


def torch_gemm(cfg, a, b, bias, res):
    at, bt = torch.from_numpy(a), torch.from_numpy(b)
    y = cfg["scale"] * ((at.T if cfg["ta"] else at) @ (bt.T if cfg["tb"] else bt))
    if bias is not None:
        y = y + torch.from_numpy(bias)
    r = None if res is None else torch.from_numpy(res)
    if r is not None and not cfg["after"]:
        y = y + r
    y = torch_act(y, cfg["act"], cfg["alpha"], cfg["beta"])
    if r is not None and cfg["after"]:
        y = y + r
    return y.numpy()


def ev_gemm(cfg, a, b, bias, res, **kw):
    return ev.ops.gemm(a, b, bias, trans_a=cfg["ta"], trans_b=cfg["tb"], alpha=cfg["scale"],
                       activation=cfg["act"], act_alpha=cfg["alpha"], act_beta=cfg["beta"],
                       residual=res, residual_after_act=cfg["after"], **kw)


def test_configs_cover_every_class():
    assert {c["act"] for c in CONFIGS} == set(ACTS)
    assert {(c["ta"], c["tb"]) for c in CONFIGS} == {(False, False), (False, True), (True, False), (True, True)}
    assert {c["m"] % 6 for c in CONFIGS if c["m"] > 4} == set(range(6))
    assert {c["n"] % 16 for c in CONFIGS} == set(range(16))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("i", range(len(CONFIGS)))
def test_gemm_random(i, target):
    cfg = CONFIGS[i]
    device, dtype = target
    a, b, bias, res = make_data(cfg)
    if device == "cpu":
        ref = ev_gemm(cfg, a, b, bias, res, reference=True)
        fast = ev_gemm(cfg, a, b, bias, res)
        expect = torch_gemm(cfg, a, b, bias, res)
        check_fast_ref_torch(fast, ref, expect, str(cfg))
        return
    args = [to_target(v, device, dtype) for v in (a, b, bias, res)]
    y = ev_gemm(cfg, *args)
    assert y.device.type == "cuda" and y.dtype == args[0].dtype
    expect = torch_gemm(cfg, *[None if v is None else v.float().cpu().numpy() for v in args])
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(y.float().cpu().numpy(), expect, rtol=rtol, atol=atol, err_msg=str(cfg))


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("shape", [(1, 1280, 1000), (3, 2304, 256), (32, 256, 10), (7, 33, 1),
                                   (64, 300, 70)])
def test_linear_network_shapes(shape, threads):
    m, k, n = shape
    rng = np.random.default_rng(m + k + n)
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((n, k), dtype=np.float32) / np.float32(np.sqrt(k))
    bias = rng.standard_normal(n, dtype=np.float32)
    y = with_threads(threads, lambda: ev.ops.linear(x, w, bias, activation="relu"))
    expect = F.relu(F.linear(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(bias)))
    np.testing.assert_allclose(y, expect.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ev.ops.linear(x, w, bias, activation="relu", reference=True),
                               expect.numpy(), rtol=1e-4, atol=1e-4)


def test_gemm_residual_in_place():
    rng = np.random.default_rng(9)
    a = rng.standard_normal((20, 600), dtype=np.float32)
    b = rng.standard_normal((600, 30), dtype=np.float32) / 25
    res = rng.standard_normal((20, 30), dtype=np.float32)
    expect = a @ b + res
    ev.ops.gemm(a, b, residual=res, out=res)
    np.testing.assert_allclose(res, expect, rtol=1e-4, atol=1e-4)


def test_gemm_torch_tensors():
    a, b = torch.randn(9, 17), torch.randn(17, 23)
    y = ev.ops.gemm(a, b)
    assert isinstance(y, torch.Tensor) and y.shape == (9, 23)
    np.testing.assert_allclose(y.numpy(), (a @ b).numpy(), rtol=1e-4, atol=1e-4)


def test_gemm_bad_inputs():
    a = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError):
        ev.ops.gemm(a, np.zeros((6, 3), np.float32))  # inner dimensions differ
    with pytest.raises(ValueError):
        ev.ops.gemm(a[0], np.zeros((5, 3), np.float32))  # rank 1
    with pytest.raises(ValueError):
        ev.ops.gemm(a, np.zeros((5, 3), np.float32), np.zeros(4, np.float32))  # bias length
    with pytest.raises(ValueError):
        ev.ops.gemm(a, np.zeros((5, 3), np.float32), residual=np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError):
        ev.ops.linear(a, np.zeros((3, 4), np.float32))  # weight [out, in] with in != 5
    with pytest.raises(TypeError):
        ev.ops.gemm(a.astype(np.float64), np.zeros((5, 3), np.float32))
    with pytest.raises(TypeError):
        ev.ops.gemm(a, np.zeros((5, 3), np.int32))
