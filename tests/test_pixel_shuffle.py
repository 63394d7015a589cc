"""pixel_shuffle: reference vs fast CPU vs torch.pixel_shuffle (CRD) and vs onnxruntime DepthToSpace
(DCR and CRD), CUDA vs torch, bad input."""
import numpy as np
import pytest

from conftest import TARGETS, TOL
from target_util import on_target as _on, to_numpy as _host
from edgevision import ops

torch = pytest.importorskip("torch")


def _dcr(x, b):
    """ONNX DepthToSpace DCR as the spec writes it, with numpy reshapes."""
    n, cbb, h, w = x.shape
    c = cbb // (b * b)
    return x.reshape(n, b, b, c, h, w).transpose(0, 3, 4, 1, 5, 2).reshape(n, c, h * b, w * b)


def _random_case(rng):
    b = int(rng.choice([1, 2, 2, 3, 3, 4, 5, 8]))
    n, c = int(rng.integers(1, 3)), int(rng.integers(1, 5))
    h, w = (int(v) for v in rng.integers(1, 10, 2))
    return rng.standard_normal((n, c * b * b, h, w)).astype(np.float32), b


@pytest.mark.parametrize("target", TARGETS)
def test_crd_vs_torch(target, rng):
    rtol, atol = TOL[target[1]]
    for _ in range(220):
        x, b = _random_case(rng)
        xt, x32 = _on(target, x)
        expected = torch.pixel_shuffle(torch.from_numpy(x32), b).numpy()
        np.testing.assert_allclose(_host(ops.pixel_shuffle(xt, b)), expected, rtol=rtol, atol=atol)
        if target[0] == "cpu":
            np.testing.assert_array_equal(ops.pixel_shuffle(x, b), expected)
            np.testing.assert_array_equal(ops.pixel_shuffle(x, b, reference=True), expected)


@pytest.mark.parametrize("target", TARGETS)
def test_dcr_vs_spec(target, rng):
    rtol, atol = TOL[target[1]]
    for _ in range(220):
        x, b = _random_case(rng)
        xt, x32 = _on(target, x)
        expected = _dcr(x32, b)
        got = ops.pixel_shuffle(xt, b, mode="DCR")
        np.testing.assert_allclose(_host(got), expected, rtol=rtol, atol=atol)
        if target[0] == "cpu":
            np.testing.assert_array_equal(ops.pixel_shuffle(x, b, mode="DCR", reference=True),
                                          expected)


def test_large_block_and_wide_rows(rng):
    # A block past the fast path's pointer table, and rows long enough to vectorize.
    for shape, b in [((1, 65 * 65 * 2, 1, 2), 65), ((2, 12, 3, 301), 2), ((1, 27, 17, 130), 3)]:
        x = rng.standard_normal(shape).astype(np.float32)
        expected = torch.pixel_shuffle(torch.from_numpy(x), b).numpy()
        np.testing.assert_array_equal(ops.pixel_shuffle(x, b), expected)
        np.testing.assert_array_equal(ops.pixel_shuffle(x, b, mode="DCR"), _dcr(x, b))


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_vs_onnxruntime_depth_to_space(mode, rng):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    for _ in range(12):
        x, b = _random_case(rng)
        node = helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=b, mode=mode)
        graph = helper.make_graph(
            [node], "d2s", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "h", "w"])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 9
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        expected = sess.run(None, {"x": x})[0]
        for ref in (False, True):
            np.testing.assert_array_equal(ops.pixel_shuffle(x, b, mode=mode, reference=ref),
                                          expected, err_msg=f"{mode} {x.shape} {b}")


def test_bad_inputs(rng):
    x = rng.standard_normal((1, 8, 3, 3)).astype(np.float32)
    with pytest.raises(ValueError):
        ops.pixel_shuffle(x, 3)  # 8 channels are not a multiple of 3 * 3
    with pytest.raises(ValueError):
        ops.pixel_shuffle(x[0], 2)  # rank 3
    with pytest.raises(ValueError):
        ops.pixel_shuffle(x, 0)
    with pytest.raises(ValueError):
        ops.pixel_shuffle(x, 2, mode="XYZ")
    with pytest.raises(TypeError):
        ops.pixel_shuffle(x.astype(np.float64), 2)
