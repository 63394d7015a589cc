"""lrn (ONNX LRN): reference vs fast CPU vs the ONNX formula in float64, torch's
local_response_norm and onnxruntime.

Which reference for which size: for odd sizes the ONNX window [c - (size-1)/2, c + (size-1)/2] is
torch's, and onnxruntime runs them; for even sizes torch's window leans the other way
([c - size/2, c + size/2 - 1] against ONNX's [c - size/2 + 1, c + size/2]) and onnxruntime's CPU
kernel refuses them (it requires an odd size), so even sizes are checked against the float64 formula
alone. (onnx.reference's LRN cannot serve: onnx 1.23 loops over the batch axis instead of channels.)
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import TARGETS, TOL
from edgevision import ops
from target_util import as_input, to_numpy, to_target


def _onnx_formula(x, size, alpha, beta, bias):
    x64 = x.astype(np.float64)
    sq = x64 ** 2
    c = x.shape[1]
    s = np.zeros_like(x64)
    for ch in range(c):
        lo, hi = max(0, ch - (size - 1) // 2), min(c - 1, ch + size // 2)
        s[:, ch] = sq[:, lo:hi + 1].sum(axis=1)
    return (x64 / (bias + alpha / size * s) ** beta).astype(np.float32)


def _onnxruntime(x, size, alpha, beta, bias):
    import onnxruntime as ort
    from onnx import TensorProto, helper
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(x.shape)) for n in ("x", "y")]
    node = helper.make_node("LRN", ["x"], ["y"], size=size, alpha=alpha, beta=beta, bias=bias)
    model = helper.make_model(helper.make_graph([node], "lrn", vi[:1], vi[1:]),
                              opset_imports=[helper.make_opsetid("", 13)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _random_case(rng, i):
    n = int(rng.integers(1, 4))
    c = int(rng.integers(1, 24))
    spatial = [int(v) for v in rng.integers(1, 10, int(rng.integers(0, 3)))]
    if i % 20 == 0:  # several 256-position tiles, past the threading threshold
        c, spatial = int(rng.integers(8, 40)), [int(rng.integers(20, 40)), int(rng.integers(20, 40))]
    # Every 10th case: a window reaching past the channels on both sides.
    size = int(rng.integers(1, 10)) if i % 10 else int(rng.integers(c, 3 * c + 10))
    alpha = float(rng.choice([1e-4, 1e-3, 0.05, 0.5]))
    beta = float(rng.choice([0.75, 0.75, 0.5, 1.0, 0.3]))
    bias = float(rng.choice([1.0, 2.0, 0.5]))
    x = (rng.standard_normal([n, c] + spatial) * rng.choice([1.0, 3.0])).astype(np.float32)
    return x, size, alpha, beta, bias


@pytest.mark.parametrize("target", TARGETS)
def test_random_configs(rng, target):
    rtol, atol = TOL[target[1]]
    for i in range(220):
        x, size, alpha, beta, bias = _random_case(rng, i)
        xi = as_input(x, target)
        exp = _onnx_formula(xi, size, alpha, beta, bias)
        msg = f"case {i}: shape {x.shape} size {size} alpha {alpha} beta {beta} bias {bias}"
        if size % 2:
            t3 = torch.from_numpy(xi).reshape(x.shape[0], x.shape[1], -1)  # torch wants >= 3-D
            t = F.local_response_norm(t3, size, alpha, beta, bias).reshape(x.shape).numpy()
            np.testing.assert_allclose(t, exp, rtol, atol, err_msg=msg)
            if target[0] == "cpu" and x.ndim == 4:  # onnxruntime runs 4-D LRN only
                np.testing.assert_allclose(_onnxruntime(x, size, alpha, beta, bias), exp, rtol, atol,
                                           err_msg=msg)
        if target[0] == "cpu":
            np.testing.assert_allclose(ops.lrn(x, size, alpha, beta, bias, reference=True), exp,
                                       rtol, atol, err_msg=msg)
        y = to_numpy(ops.lrn(to_target(x, target), size, alpha, beta, bias))
        assert y.shape == x.shape
        np.testing.assert_allclose(y, exp, rtol, atol, err_msg=msg)


def test_alexnet_layer(rng):
    # AlexNet / GoogLeNet LRN: size 5, alpha 1e-4, beta 0.75, bias 1 (k = 2 in AlexNet's paper).
    x = rng.standard_normal((2, 64, 27, 27)).astype(np.float32) * 10
    for bias in (1.0, 2.0):
        exp = F.local_response_norm(torch.from_numpy(x), 5, 1e-4, 0.75, bias).numpy()
        np.testing.assert_allclose(ops.lrn(x, 5, 1e-4, 0.75, bias), exp, *TOL["float32"])
        np.testing.assert_allclose(ops.lrn(x, 5, 1e-4, 0.75, bias, reference=True), exp,
                                   *TOL["float32"])


def test_nan_stays_in_its_window():
    x = np.ones((1, 6, 2), np.float32)
    x[0, 2, 0] = np.nan
    for y in (ops.lrn(x, 3), ops.lrn(x, 3, reference=True)):
        assert np.isnan(y[0, 1:4, 0]).all()
        assert np.isfinite(y[0, [0, 4, 5], 0]).all() and np.isfinite(y[0, :, 1]).all()


def test_torch_in_torch_out():
    torch.manual_seed(0)
    x = torch.randn(2, 7, 3, 3)
    y = ops.lrn(x, 3, alpha=0.1)
    assert isinstance(y, torch.Tensor)
    torch.testing.assert_close(y, F.local_response_norm(x, 3, alpha=0.1), rtol=1e-5, atol=1e-6)


def test_bad_inputs():
    x = np.zeros((2, 3, 4, 4), np.float32)
    with pytest.raises(ValueError):
        ops.lrn(x, 0)
    with pytest.raises(ValueError):
        ops.lrn(x, -3)
    with pytest.raises(ValueError):
        ops.lrn(x, 2**40)
    with pytest.raises(ValueError):
        ops.lrn(np.zeros(5, np.float32), 3)
    with pytest.raises(TypeError):
        ops.lrn(x, 2.5)
    with pytest.raises(TypeError):
        ops.lrn(x, 3, alpha="a")
    with pytest.raises(TypeError):
        ops.lrn(x.astype(np.int64), 3)
