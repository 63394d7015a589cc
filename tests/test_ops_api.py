"""The ops layer itself, across ops: frameworks in and out (numpy, torch via DLPack), out=, thread
control, and bad arguments that must raise instead of crashing."""
import numpy as np
import pytest

import edgevision
from edgevision import ops

torch = pytest.importorskip("torch")


def _xw(rng):
    x = rng.standard_normal((2, 3, 9, 7)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    return x, w


def test_numpy_in_numpy_out(rng):
    x, w = _xw(rng)
    y = ops.conv2d(x, w, padding=1)
    assert isinstance(y, np.ndarray) and y.shape == (2, 4, 9, 7) and y.dtype == np.float32


def test_torch_in_torch_out_without_copy(rng):
    x, w = _xw(rng)
    tx = torch.from_numpy(x)
    ty = ops.conv2d(tx, torch.from_numpy(w), padding=1)
    assert isinstance(ty, torch.Tensor) and ty.device.type == "cpu"
    ref = torch.nn.functional.conv2d(tx, torch.from_numpy(w), padding=1)
    torch.testing.assert_close(ty, ref, rtol=1e-4, atol=1e-4)
    # tensors that require grad are read in place too (inference only, nothing is recorded)
    tw = torch.from_numpy(w).requires_grad_()
    assert isinstance(ops.conv2d(tx, tw, padding=1), torch.Tensor)


def test_out_argument_is_written_in_place(rng):
    x, w = _xw(rng)
    out = np.full((2, 4, 9, 7), np.nan, np.float32)
    y = ops.conv2d(x, w, padding=1, out=out)
    assert y is out and np.isfinite(out).all()
    with pytest.raises(ValueError, match="out must have shape"):
        ops.conv2d(x, w, padding=1, out=np.empty((2, 4, 9, 6), np.float32))
    with pytest.raises(TypeError, match="out has dtype"):
        ops.conv2d(x, w, padding=1, out=np.empty((2, 4, 9, 7), np.float16))


def test_in_place_activation(rng):
    x = rng.standard_normal((3, 5)).astype(np.float32)
    expected = np.maximum(x, 0)
    ops.activation(x, "relu", out=x)
    np.testing.assert_array_equal(x, expected)


def test_read_only_numpy_input(rng):
    x, w = _xw(rng)
    x.setflags(write=False)
    ops.conv2d(x, w, padding=1)


def test_threads_round_trip():
    n = ops.get_num_threads()
    try:
        ops.set_num_threads(1)
        assert ops.get_num_threads() == 1
        assert edgevision.info()["cpu"]["threads"] == 1
    finally:
        ops.set_num_threads(n)
    with pytest.raises(ValueError):
        ops.set_num_threads(0)


@pytest.mark.parametrize("call, error, match", [
    (lambda x, w: ops.conv2d(x[:, :, ::2], w), ValueError, "not contiguous"),
    (lambda x, w: ops.conv2d(x.astype(np.float64), w), TypeError, "float64"),
    (lambda x, w: ops.conv2d(x.astype(np.float16), w.astype(np.float16)), TypeError, "CUDA"),
    (lambda x, w: ops.conv2d(x, w.astype(np.uint8)), TypeError, "uint8"),
    (lambda x, w: ops.conv2d(x[0], w), ValueError, "4 dimensions"),
    (lambda x, w: ops.conv2d(x, w[:, :2].copy()), ValueError, "weight must have shape"),
    (lambda x, w: ops.conv2d(x, w, groups=2), ValueError, "groups"),
    (lambda x, w: ops.conv2d(x, w, stride=0), ValueError, "stride"),
    (lambda x, w: ops.conv2d(x, w, padding=-1), ValueError, "padding"),
    (lambda x, w: ops.conv2d(x, w, padding=2**40), ValueError, "padding"),
    (lambda x, w: ops.conv2d(x, w, dilation=(1, 2, 3)), ValueError, "dilation"),
    (lambda x, w: ops.conv2d(x, w, groups=1.5), TypeError, "groups"),
    (lambda x, w: ops.conv2d(x, np.ones((4, 3, 30, 30), np.float32)), ValueError, "smaller than"),
    (lambda x, w: ops.conv2d(x, w, bias=np.ones(5, np.float32)), ValueError, "bias"),
    (lambda x, w: ops.conv2d(x, w, residual=np.ones((2, 4, 9, 7), np.float32)), ValueError, "residual"),
    (lambda x, w: ops.conv2d(x, w, activation="swish3"), ValueError, "activation"),
    (lambda x, w: ops.conv2d("x", w), TypeError, "str"),
    (lambda x, w: ops.conv2d(None, w), TypeError, "None"),
    (lambda x, w: ops.conv2d(np.empty((0, 3, 9, 7), np.float32), w), ValueError, "empty"),
    (lambda x, w: ops.conv2d(x, w, reference="yes please"), None, None),
    (lambda x, w: ops.softmax(x, axis=4), ValueError, "axis"),
    (lambda x, w: ops.add(x, w), ValueError, "broadcast"),
    (lambda x, w: ops.concat([x, w]), ValueError, "differ only along axis"),
    (lambda x, w: ops.concat(x), ValueError, "sequence"),
    (lambda x, w: ops.resize(x), ValueError, "exactly one"),
    (lambda x, w: ops.resize(x, scale_factor=0), ValueError, "scale_factor"),
    (lambda x, w: ops.resize(x, size=(4, 4), mode="cubic"), ValueError, "mode"),
    (lambda x, w: ops.pixel_shuffle(x, 2), ValueError, "divisible"),
    (lambda x, w: ops.max_pool2d(x, 0), ValueError, "kernel_size"),
    (lambda x, w: ops.max_pool2d(x, 3, padding=3), None, None),
    (lambda x, w: ops.avg_pool2d(x, 2, stride=1), None, None),
    (lambda x, w: ops.gemm(x[0, 0], x[0, 0]), ValueError, "inner dimensions"),
    (lambda x, w: ops.batch_norm(x, *[np.ones(4, np.float32)] * 4), ValueError, "gamma"),
    (lambda x, w: ops.preprocess(np.zeros((10, 10, 3), np.float32), (4, 4)), TypeError, "float32"),
    (lambda x, w: ops.preprocess(np.zeros((10, 10, 4), np.uint8), (4, 4)), ValueError, "height, width, 3"),
    (lambda x, w: ops.preprocess(np.zeros((10, 10, 3), np.uint8), (20, 4), resize=(10, 10)),
     ValueError, "larger than"),
    (lambda x, w: ops.postprocess_image(x), ValueError, "\\[c, h, w\\]"),
])
def test_bad_arguments_raise(rng, call, error, match):
    x, w = _xw(rng)
    if error is None:  # accepted argument forms
        call(x, w)
        return
    with pytest.raises(error, match=match):
        call(x, w)


def test_cuda_tensor_without_cuda_build():
    if edgevision._C.WITH_CUDA or not torch.cuda.is_available():
        pytest.skip("needs a CPU-only build on a machine with a GPU")
    with pytest.raises(ValueError, match="without CUDA"):
        ops.activation(torch.ones(3, device="cuda"), "relu")
