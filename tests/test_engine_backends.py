"""The backends against each other on whole models: native and torch (both running edgevision.graph's plan)
against onnxruntime; batch handling; precision errors; threads; the torch backend without torch.

Tolerance: conftest.TOL["float32"] scaled by the output's magnitude (1e-4 relative, 1e-4 x max|y| absolute):
the three runtimes sum convolutions in different orders, and folded BatchNorm changes rounding.
"""
import sys
import threading

import numpy as np
import pytest

import edgevision
from edgevision.backends import BackendUnavailableError

from conftest import TOL
from test_engine import small_models  # noqa: F401 - fixture

torch = pytest.importorskip("torch")
graph = pytest.importorskip("edgevision.graph")

from edgevision import _C  # noqa: E402

needs_plan = pytest.mark.skipif(not hasattr(_C, "Plan"), reason="this edgevision._C has no Plan (native runtime)")
NATIVE_AND_TORCH = [pytest.param("native", marks=needs_plan), "torch"]


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _inputs(engine, batch, seed=0):
    xs = []
    for i, s in enumerate(engine.input_spec):
        shape = (batch,) + tuple(s.shape[1:])
        xs.append(np.eye(shape[1], dtype=np.float32)[np.arange(batch) % shape[1]] if s.name == "class_onehot"
                  else _x(shape, seed + i))
    return xs


def _close(y, expect, what):
    rtol, atol = TOL["float32"]
    np.testing.assert_allclose(y, expect, rtol=rtol, atol=atol * max(1.0, float(np.abs(expect).max())), err_msg=what)


def _load(path, backend, key, **kw):
    if key == "espcn":
        kw.setdefault("input_shapes", {"input": [kw.get("batch") or 1, 1, 12, 10]})
    return edgevision.load(path, backend=backend, device="cpu", **kw)


@pytest.mark.parametrize("backend", NATIVE_AND_TORCH)
@pytest.mark.parametrize("key", ["cnn", "espcn", "dcgan"])
def test_backend_matches_onnxruntime(small_models, backend, key):
    ref = _load(small_models[key], "onnxruntime", key, batch=2)
    engine = _load(small_models[key], backend, key, batch=2)
    assert engine.backend == backend and engine.device == "cpu" and engine.precision == "fp32"
    assert [(s.name, tuple(s.shape), s.dtype) for s in engine.input_spec] == \
        [(s.name, tuple(s.shape), s.dtype) for s in ref.input_spec]
    assert [tuple(s.shape) for s in engine.output_spec] == [tuple(s.shape) for s in ref.output_spec]
    xs = _inputs(engine, 2)
    for y, expect in zip(engine.run(xs), ref.run(xs)):
        assert isinstance(y, np.ndarray) and y.dtype == np.float32
        _close(y, expect, f"{backend} {key}")
    summary = engine.summary()
    assert backend in summary and "input" in summary
    # other batch sizes: compiled on first use, the earlier one kept
    xs3 = _inputs(engine, 3, seed=7)
    for y, expect in zip(engine.run(xs3), ref.run(xs3)):
        _close(y, expect, f"{backend} {key} batch 3")
    for y, expect in zip(engine.run(xs), ref.run(xs)):
        _close(y, expect, f"{backend} {key} batch 2 again")


@needs_plan
def test_torch_tensors_through_native(small_models):
    engine = _load(small_models["cnn"], "native", "cnn")
    x = _x((1, 3, 32, 32))
    (expect,) = engine.run(x)
    (y,) = engine.run(torch.from_numpy(x))
    assert isinstance(y, torch.Tensor)
    np.testing.assert_array_equal(y.numpy(), expect)


@needs_plan
def test_native_precision_and_device_errors(small_models):
    with pytest.raises(ValueError, match="int8.*tensorrt"):
        _load(small_models["cnn"], "native", "cnn", precision="int8")
    with pytest.raises(ValueError, match="fp16 only on CUDA"):
        _load(small_models["cnn"], "native", "cnn", precision="fp16")
    with pytest.raises(ValueError, match="fp16 only on CUDA"):
        _load(small_models["cnn"], "torch", "cnn", precision="fp16")
    with pytest.raises(ValueError, match="int8"):
        _load(small_models["cnn"], "torch", "cnn", precision="int8")
    from edgevision.backends.native import cuda_available

    if not cuda_available():
        with pytest.raises(BackendUnavailableError, match="cannot run on cuda"):
            edgevision.load(small_models["cnn"], backend="native", device="cuda")


@needs_plan
def test_native_engine_errors_name_the_input(small_models):
    engine = _load(small_models["cnn"], "native", "cnn")
    with pytest.raises(ValueError, match=r"'input'.*\[1, 3, 31, 32\]"):
        engine.run(_x((1, 3, 31, 32)))
    with pytest.raises(TypeError, match="float32"):
        engine.run(_x((1, 3, 32, 32)).astype(np.float16))
    engine.close()
    with pytest.raises(edgevision.backends.EngineClosedError):
        engine.run(_x((1, 3, 32, 32)))


@needs_plan
def test_native_fast_path_behaves_as_the_general_path(small_models):
    """After one call, numpy inputs of the same shapes skip the general checks (NativeEngine.run): results,
    fresh outputs and every error stay what the general path gives."""
    from edgevision.backends.base import Engine

    engine = _load(small_models["cnn"], "native", "cnn")
    x = _x((1, 3, 32, 32))
    (general,) = Engine.run(engine, [x])
    (a,) = engine.run(x)
    (b,) = engine.run([x])
    (c,) = engine.run((x,))
    (d,) = engine.run({"input": x})
    for y in (a, b, c, d):
        np.testing.assert_array_equal(y, general)
    assert a is not b and not np.shares_memory(a, b)  # a new output array every call
    (f,) = engine.run(np.asfortranarray(x))  # not C-contiguous: the general path copies it
    np.testing.assert_array_equal(f, general)
    with pytest.raises(ValueError, match=r"'input'.*\[1, 3, 31, 32\]"):
        engine.run(_x((1, 3, 31, 32)))
    with pytest.raises(TypeError, match="float32.*float64"):
        engine.run(x.astype(np.float64))
    with pytest.raises(ValueError, match="got 2 inputs"):
        engine.run([x, x])
    x2 = _x((2, 3, 32, 32), seed=1)  # another batch: its own program, then the fast path for it
    (y2,) = engine.run(x2)
    np.testing.assert_array_equal(engine.run(x2)[0], y2)
    np.testing.assert_array_equal(engine.run(x)[0], general)
    engine.close()
    with pytest.raises(edgevision.backends.EngineClosedError):
        engine.run(x)


@needs_plan
def test_threads_separate_and_shared_engines_match_one_thread(small_models):
    """4 threads x 25 runs, each thread with its own engine and all sharing one: every result equals the
    single-threaded one bit for bit (same plan, same thread count, same summation order)."""
    path = small_models["cnn"]
    xs = [_x((1, 3, 32, 32), seed=i) for i in range(4)]
    single = _load(path, "native", "cnn", threads=1)
    expect = [single.run(x)[0] for x in xs]
    shared = _load(path, "native", "cnn", threads=1)
    errors = []

    def worker(i, engine):
        try:
            for _ in range(25):
                (y,) = engine.run(xs[i])
                if not np.array_equal(y, expect[i]):
                    errors.append(f"thread {i}: result differs")
                    return
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"thread {i}: {e!r}")

    for engines in ([_load(path, "native", "cnn", threads=1) for _ in range(4)], [shared] * 4):
        threads = [threading.Thread(target=worker, args=(i, e)) for i, e in enumerate(engines)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors


def test_torch_backend_without_torch(small_models, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(BackendUnavailableError, match=r"pip install edgevision\[train\]"):
        edgevision.load(small_models["cnn"], backend="torch", device="cpu")


@pytest.mark.parametrize("backend", NATIVE_AND_TORCH)
def test_other_image_sizes_compile_on_first_use(small_models, backend):
    """An SR model's height and width are dynamic: each new size gets its own plan; results match ORT."""
    ref = _load(small_models["espcn"], "onnxruntime", "espcn")
    engine = _load(small_models["espcn"], backend, "espcn")
    for shape in ((1, 1, 7, 9), (2, 1, 5, 16), (1, 1, 7, 9)):
        x = _x(shape, seed=shape[3])
        (y,), (expect,) = engine.run(x), ref.run(x)
        assert y.shape == (shape[0], 1, 2 * shape[2], 2 * shape[3])
        _close(y, expect, f"{backend} {shape}")
