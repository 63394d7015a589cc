"""Native CUDA engines through edgevision.load against ONNX Runtime on the CPU: every bundled model and the
standard architectures in fp32 and fp16; torch tensors in and out, run_async on a side stream, dynamic batch,
and several threads sharing one engine. Skipped without a GPU (CI has none); run on a GPU machine with
`pytest tests/test_engine_cuda.py`."""
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import cuda
from graph_util import bundled_cases, run_ort

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.cuda, cuda]

import edgevision  # noqa: E402
from test_graph_models import MODELS, _export  # noqa: E402 - the same exported architectures as the CPU tests

# fp32: the CUDA kernels sum in another order than ONNX Runtime (tiles, warps), as on the CPU. fp16: every
# activation is stored with 11 significant bits through ~20-50 layers while sums stay fp32, so the error is
# measured against the output's scale: max |got - expected| <= FP16_REL * max |expected|.
FP32_TOL = dict(rtol=1e-3, atol=1e-3)
FP16_REL = 3e-2


def _compare(got, expected, precision, what):
    got = np.asarray(got, dtype=np.float32)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} vs onnxruntime {expected.shape}"
    assert np.isfinite(got).all(), f"{what}: non-finite outputs"
    if precision == "fp32":
        np.testing.assert_allclose(got, expected, **FP32_TOL, err_msg=what)
    else:
        scale = max(float(np.abs(expected).max()), 1e-3)
        err = float(np.abs(got - expected).max())
        assert err <= FP16_REL * scale, f"{what}: fp16 max abs error {err:.4g} vs output scale {scale:.4g}"


def _check_engine(path, inputs, precision, what, **load_kw):
    """Load natively on CUDA, run numpy inputs (rounded to the engine's dtype first, so the reference sees
    the same inputs) and compare every output with ONNX Runtime's fp32 CPU run."""
    with edgevision.load(str(path), backend="native", device="cuda", precision=precision, **load_kw) as engine:
        assert engine.device.startswith("cuda")
        xs = [x.astype(s.dtype) for x, s in zip(inputs, engine.input_spec)]
        got = engine.run(xs)
    expected = run_ort(Path(path).read_bytes(), [x.astype(np.float32) for x in xs])
    for i, (g, e) in enumerate(zip(got, expected)):
        _compare(g, e, precision, f"{what} output {i} ({precision})")


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_bundled_models_on_cuda(precision):
    rng = np.random.default_rng(0)
    for name, path, shapes in bundled_cases(batch=2, frame=(36, 52)):
        with edgevision.load(str(path), backend="onnxruntime", device="cpu", batch=2, input_shapes=shapes) as ref:
            inputs = [rng.standard_normal(s.shape).astype(np.float32) for s in ref.input_spec]
        _check_engine(path, inputs, precision, name, batch=2, input_shapes=shapes)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", list(MODELS))
def test_architectures_on_cuda(name, precision, tmp_path):
    path, inputs = _export(name, tmp_path)
    shapes = {"input": list(inputs[0].shape)} if name == "espcn" else None
    _check_engine(path, inputs, precision, name, input_shapes=shapes)


def test_torch_tensors_async_and_dynamic_batch(tmp_path):
    path, _ = _export("resnet18", tmp_path)
    rng = np.random.default_rng(1)
    x8 = rng.standard_normal((8, 3, 224, 224)).astype(np.float32)
    expected = run_ort(Path(path).read_bytes(), [x8])[0]
    with edgevision.load(str(path), backend="native", device="cuda") as engine:
        xt = torch.from_numpy(x8).cuda()
        (y,) = engine.run(xt)  # a CUDA tensor in: a CUDA tensor out, bound directly
        assert y.is_cuda and tuple(y.shape) == (8, 1000)
        _compare(y.cpu().numpy(), expected, "fp32", "batch 8 (compiled on first use)")
        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream):
            x1 = xt[:1].clone()
        (y1,) = engine.run_async(x1, stream=stream)
        stream.synchronize()
        _compare(y1.cpu().numpy(), expected[:1], "fp32", "run_async batch 1")
        for _ in range(3):  # replays of the captured CUDA graph give the same bits
            (again,) = engine.run(xt)
            assert torch.equal(again, y)


def test_threads_share_one_engine(tmp_path):
    path, inputs = _export("dcgan_generator", tmp_path)
    rng = np.random.default_rng(2)
    cases = [[rng.standard_normal((1, 128)).astype(np.float32), np.eye(10, dtype=np.float32)[[k]]]
             for k in range(4)]
    with edgevision.load(str(path), backend="native", device="cuda") as engine:
        single = [engine.run(c)[0] for c in cases]
        failures = []

        def worker(k):
            for _ in range(200):
                out = engine.run(cases[k])[0]
                if not np.array_equal(out, single[k]):
                    failures.append(k)
                    return

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not failures, f"threads {sorted(set(failures))} got results that differ from a single thread"
