"""max_pool2d, avg_pool2d, global_avg_pool2d, global_max_pool2d: reference vs fast CPU vs torch, CUDA
vs torch, and onnxruntime for what torch cannot express (asymmetric pads)."""
import numpy as np
import pytest

from conftest import TARGETS
from target_util import check_close as _check, on_target as _on, to_numpy as _host
from edgevision import ops

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _random_pool(rng, is_max):
    """One random configuration torch accepts: pads at most half the kernel, output >= 1."""
    while True:
        k = tuple(int(v) for v in rng.integers(1, 5, 2))
        s = tuple(int(v) for v in rng.integers(1, 5, 2))
        p = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in k)
        d = tuple(int(v) for v in rng.integers(1, 4, 2)) if is_max else (1, 1)
        hw = tuple(int(v) for v in rng.integers(1, 14, 2))
        n, c = int(rng.integers(1, 3)), int(rng.integers(1, 4))
        ceil, cip = bool(rng.integers(0, 2)), bool(rng.integers(0, 2))
        span = [(kk - 1) * dd + 1 for kk, dd in zip(k, d)]
        if all(hw[i] + 2 * p[i] >= span[i] for i in range(2)):
            return dict(n=n, c=c, hw=hw, k=k, s=s, p=p, d=d, ceil=ceil, cip=cip)


@pytest.mark.parametrize("target", TARGETS)
def test_max_pool2d_random_vs_torch(target, rng):
    dt = target[1]
    for _ in range(250):
        cfg = _random_pool(rng, True)
        x = rng.standard_normal((cfg["n"], cfg["c"], *cfg["hw"])).astype(np.float32)
        xt, x32 = _on(target, x)
        expected = F.max_pool2d(torch.from_numpy(x32), cfg["k"], cfg["s"], cfg["p"], cfg["d"],
                                ceil_mode=cfg["ceil"]).numpy()
        args = (cfg["k"], cfg["s"], cfg["p"], cfg["d"], cfg["ceil"])
        _check(ops.max_pool2d(xt, *args), expected, dt, f"fast {cfg}")
        if target[0] == "cpu":
            ref = ops.max_pool2d(x, *args, reference=True)
            np.testing.assert_array_equal(ref, expected, err_msg=f"ref {cfg}")


@pytest.mark.parametrize("target", TARGETS)
def test_avg_pool2d_random_vs_torch(target, rng):
    dt = target[1]
    for _ in range(250):
        cfg = _random_pool(rng, False)
        x = rng.standard_normal((cfg["n"], cfg["c"], *cfg["hw"])).astype(np.float32)
        xt, x32 = _on(target, x)
        expected = F.avg_pool2d(torch.from_numpy(x32), cfg["k"], cfg["s"], cfg["p"],
                                ceil_mode=cfg["ceil"], count_include_pad=cfg["cip"]).numpy()
        args = (cfg["k"], cfg["s"], cfg["p"], cfg["ceil"], cfg["cip"])
        _check(ops.avg_pool2d(xt, *args), expected, dt, f"fast {cfg}")
        if target[0] == "cpu":
            _check(ops.avg_pool2d(x, *args, reference=True), expected, dt, f"ref {cfg}")


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("hw", [(1, 1), (1, 7), (3, 5), (8, 8), (13, 37), (56, 56)])
def test_global_pools_vs_torch(target, hw, rng):
    dt = target[1]
    for n, c in [(1, 1), (2, 5), (3, 17)]:
        x = rng.standard_normal((n, c, *hw)).astype(np.float32)
        xt, x32 = _on(target, x)
        avg = F.adaptive_avg_pool2d(torch.from_numpy(x32), 1).numpy()
        mx = F.adaptive_max_pool2d(torch.from_numpy(x32), 1).numpy()
        _check(ops.global_avg_pool2d(xt), avg, dt, "global avg")
        _check(ops.global_max_pool2d(xt), mx, dt, "global max")
        if target[0] == "cpu":
            _check(ops.global_avg_pool2d(x, reference=True), avg, dt, "global avg ref")
            np.testing.assert_array_equal(ops.global_max_pool2d(x, reference=True), mx)


def test_typical_network_shapes(rng):
    # ResNet stem pool, 2x2 downsampling, and a large plane where the vectorized interior dominates.
    cases = [((2, 8, 112, 112), 3, 2, 1), ((1, 16, 32, 32), 2, 2, 0), ((1, 3, 97, 203), 5, 1, 2)]
    for shape, k, s, p in cases:
        x = rng.standard_normal(shape).astype(np.float32)
        tx = torch.from_numpy(x)
        np.testing.assert_array_equal(ops.max_pool2d(x, k, s, p), F.max_pool2d(tx, k, s, p).numpy())
        for cip in (False, True):
            _check(ops.avg_pool2d(x, k, s, p, count_include_pad=cip),
                   F.avg_pool2d(tx, k, s, p, count_include_pad=cip).numpy(), "float32", "avg")


def test_max_propagates_nan(rng):
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    x[0, 0, 4, 5] = np.nan
    x[1, 2, 0, 0] = np.nan
    x[1, 1, 8, 10] = np.nan
    tx = torch.from_numpy(x)
    for ref in (False, True):
        y = ops.max_pool2d(x, 3, 2, 1, reference=ref)
        np.testing.assert_array_equal(y, F.max_pool2d(tx, 3, 2, 1).numpy())
        y = ops.max_pool2d(x, (2, 3), 1, 0, reference=ref)
        np.testing.assert_array_equal(y, F.max_pool2d(tx, (2, 3), 1, 0).numpy())
        g = ops.global_max_pool2d(x, reference=ref)
        np.testing.assert_array_equal(g, F.adaptive_max_pool2d(tx, 1).numpy())


@pytest.mark.parametrize("hw", [(30, 30), (13, 13), (2, 2), (17, 33), (16, 16), (5, 40), (9, 9), (7, 7), (9, 34),
                                (4, 63), (2, 64), (6, 67)])
def test_max_pool_2x2_stride_2_path(hw, rng):
    # The 2x2/2 unpadded fast path: with AVX-512 chunks of 16 outputs, a last one overlapping the previous one and
    # masked loads and stores for rows under 16 outputs; else chunks of 8 outputs with an overlapping last chunk,
    # two overlapping chunks of 4 for rows of 4-7 outputs, scalar under 4. Odd sizes (the last row/column
    # dropped), and NaNs in even and odd columns of either row of a window.
    x = rng.standard_normal((2, 3, *hw)).astype(np.float32)
    x[0, 0, 0, 1] = x[1, 2, hw[0] - 1, hw[1] - 1] = x[0, 1, 1, min(hw[1] - 1, 20)] = np.nan
    expected = F.max_pool2d(torch.from_numpy(x), 2, 2).numpy()
    for ref in (False, True):
        np.testing.assert_array_equal(ops.max_pool2d(x, 2, 2, 0, reference=ref), expected)


@pytest.mark.parametrize("w", [5, 15, 16, 17, 31, 32, 33, 47, 56, 57, 64, 65, 112, 113])
def test_max_pool_row_widths(w, rng):
    # The row path's passes run in 16-lane (AVX-512) or 8-lane vectors, then an 8-lane remainder, then scalar:
    # row widths around those sizes, the unrolled 3x3 window (strides 1 and 2) and general windows (taller and
    # wider ones, dilation, stride 3), with NaNs placed at the vectors' ends.
    x = rng.standard_normal((2, 3, 9, w)).astype(np.float32)
    for col in {0, min(w - 1, 7), min(w - 1, 15), min(w - 1, 16), w - 1}:
        x[int(rng.integers(0, 2)), int(rng.integers(0, 3)), int(rng.integers(0, 9)), col] = np.nan
    tx = torch.from_numpy(x)
    for k, st, p, d in [(3, 2, 1, 1), (3, 1, 1, 1), ((5, 3), 2, (2, 1), 1), (3, 2, 1, 2), ((2, 4), 3, (1, 2), 1)]:
        expected = F.max_pool2d(tx, k, st, p, d).numpy()
        np.testing.assert_array_equal(ops.max_pool2d(x, k, st, p, d), expected, err_msg=f"k{k} s{st} p{p} d{d}")


def test_max_window_without_input_is_minus_inf(rng):
    # Taps at -1 and 2 of a 2-pixel axis: torch (and edgevision) give -inf.
    x = rng.standard_normal((1, 2, 2, 2)).astype(np.float32)
    expected = F.max_pool2d(torch.from_numpy(x), 2, 1, 1, 3).numpy()
    assert np.isneginf(expected).all()
    for ref in (False, True):
        np.testing.assert_array_equal(ops.max_pool2d(x, 2, 1, 1, 3, reference=ref), expected)


# ------------------------------------------------------------------------------------------------
# onnxruntime: asymmetric pads, which torch cannot express
# ------------------------------------------------------------------------------------------------

def _ort_pool(op_type, x, opset, **attrs):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    node = helper.make_node(op_type, ["x"], ["y"], **attrs)
    graph = helper.make_graph(
        [node], "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "h", "w"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _random_onnx_pool(rng, is_max):
    while True:
        k = tuple(int(v) for v in rng.integers(1, 5, 2))
        s = tuple(int(v) for v in rng.integers(1, 4, 2))
        d = tuple(int(v) for v in rng.integers(1, 3, 2)) if is_max else (1, 1)
        span = [(kk - 1) * dd + 1 for kk, dd in zip(k, d)]
        pads = tuple(int(rng.integers(0, k[i % 2])) for i in range(4))  # t, l, b, r (ORT: < k)
        hw = tuple(int(v) for v in rng.integers(1, 12, 2))
        ceil, cip = bool(rng.integers(0, 2)), bool(rng.integers(0, 2))
        if all(hw[i] + pads[i] + pads[i + 2] >= span[i] for i in range(2)):
            return k, s, d, pads, hw, ceil, cip


def test_avg_pool2d_vs_onnxruntime_asymmetric(rng):
    for _ in range(60):
        k, s, _, pads, hw, ceil, cip = _random_onnx_pool(rng, False)
        x = rng.standard_normal((2, 3, *hw)).astype(np.float32)
        expected = _ort_pool("AveragePool", x, 19, kernel_shape=list(k), strides=list(s),
                             pads=[pads[0], pads[1], pads[2], pads[3]], ceil_mode=int(ceil),
                             count_include_pad=int(cip))
        for ref in (False, True):
            y = ops.avg_pool2d(x, k, s, pads, ceil, cip, reference=ref)
            assert y.shape == expected.shape, (k, s, pads, hw, ceil, cip)
            _check(y, expected, "float32", f"{k} {s} {pads} {hw} ceil={ceil} cip={cip}")


def test_max_pool2d_vs_onnxruntime_asymmetric(rng):
    lowest = np.finfo(np.float32).min
    for _ in range(60):
        k, s, d, pads, hw, ceil, _ = _random_onnx_pool(rng, True)
        x = rng.standard_normal((2, 3, *hw)).astype(np.float32)
        expected = _ort_pool("MaxPool", x, 12, kernel_shape=list(k), strides=list(s),
                             dilations=list(d), pads=list(pads), ceil_mode=int(ceil))
        for ref in (False, True):
            y = ops.max_pool2d(x, k, s, pads, d, ceil, reference=ref)
            # A window with no tap in the input: onnxruntime writes -FLT_MAX, torch and we -inf.
            y = np.where(np.isneginf(y), lowest, y)
            np.testing.assert_array_equal(y, expected, err_msg=f"{k} {s} {d} {pads} {hw} {ceil}")


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------

def test_bad_inputs(rng):
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    with pytest.raises(ValueError):
        ops.max_pool2d(x[0], 2)  # rank 3
    with pytest.raises(ValueError):
        ops.avg_pool2d(x[0], 2)
    with pytest.raises(ValueError):
        ops.global_avg_pool2d(x[0, 0])
    with pytest.raises(ValueError):
        ops.max_pool2d(x, 0)  # empty kernel
    with pytest.raises(ValueError):
        ops.max_pool2d(x, 2, stride=0)
    with pytest.raises(ValueError):
        ops.max_pool2d(x, 7)  # kernel larger than the input
    with pytest.raises(ValueError):
        ops.avg_pool2d(x, 2, padding=2)  # a window entirely in padding
    with pytest.raises(ValueError):
        ops.avg_pool2d(x, 2, padding=-1)
    with pytest.raises(TypeError):
        ops.max_pool2d(x.astype(np.float64), 2)
    with pytest.raises(TypeError):
        ops.global_max_pool2d(x.astype(np.int32))
