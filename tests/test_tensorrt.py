"""Everything around the TensorRT backend that runs without TensorRT or a GPU: the missing-TensorRT error,
"auto" skipping it, engine-cache keys and files (atomic, corrupt or stale entries rebuilt), the builder's
calls against a recording stand-in of the TensorRT 10 API, and the int8 QDQ model TensorRT would build,
run in ONNX Runtime against fp32.

Tests that need real TensorRT and a GPU are marked `tensorrt` and skip here with the reason.
"""
import importlib.util
import os
import sys
import types

import numpy as np
import pytest

import edgevision
from edgevision.backends import BackendUnavailableError, ModelSource, cache, choose
from edgevision.backends import tensorrt as trt_backend

from test_engine import cache_dir, small_models  # noqa: F401 - fixtures

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _no_tensorrt(monkeypatch):
    """Make `import tensorrt` fail even where it is installed."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


def test_missing_tensorrt_names_the_extra(monkeypatch, small_models):
    _no_tensorrt(monkeypatch)
    with pytest.raises(BackendUnavailableError, match=r"pip install edgevision\[tensorrt\]") as info:
        edgevision.load(small_models["cnn"], backend="tensorrt")
    assert isinstance(info.value, ImportError)
    with pytest.raises(BackendUnavailableError, match=r"edgevision\[tensorrt\]"):
        trt_backend.build(small_models["cnn"], precision="fp16")


def test_auto_skips_missing_tensorrt(monkeypatch):
    _no_tensorrt(monkeypatch)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "tensorrt" else real(n, *a))
    backend, _ = choose("auto", "auto")
    assert backend == "native"


# ------------------------------------------------------------------------------------------------
# Cache keys and files
# ------------------------------------------------------------------------------------------------
BASE_KEY = dict(gpu="NVIDIA Jetson Orin", compute_capability="8.7", trt_version="10.3.0", precision="fp16",
                profile={"input": ((1, 3, 224, 224), (1, 3, 224, 224), (8, 3, 224, 224))}, workspace=None)


@pytest.mark.parametrize("field,value", [
    ("gpu", "NVIDIA GeForce RTX 4090"), ("compute_capability", "8.9"), ("trt_version", "10.4.0"),
    ("precision", "int8"), ("profile", {"input": ((1, 3, 224, 224), (4, 3, 224, 224), (8, 3, 224, 224))}),
    ("profile", {"input": ((1, 3, 224, 224), (1, 3, 224, 224), (16, 3, 224, 224))}),
    ("profile", {"image": ((1, 3, 224, 224), (1, 3, 224, 224), (8, 3, 224, 224))}), ("workspace", 1 << 30)])
def test_engine_key_changes_with_every_field(field, value):
    base = trt_backend.engine_key("a" * 64, **BASE_KEY)
    assert trt_backend.engine_key("a" * 64, **BASE_KEY) == base  # deterministic
    assert trt_backend.engine_key("b" * 64, **BASE_KEY) != base  # the ONNX bytes
    assert trt_backend.engine_key("a" * 64, **dict(BASE_KEY, **{field: value})) != base


def test_profile_shapes():
    from edgevision.graph.ir import TensorSpec

    specs = [TensorSpec("x", (2, 3, 8, 8), "float32"), TensorSpec("k", (1, 4), "float32")]
    prof = trt_backend.profile_shapes(specs, [(0,), ()], max_batch=16)
    assert prof == {"x": ((1, 3, 8, 8), (2, 3, 8, 8), (16, 3, 8, 8)), "k": ((1, 4), (1, 4), (1, 4))}
    assert trt_backend.profile_shapes(specs[:1], [(0,)], None)["x"][2] == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="max_batch=1 is smaller than batch=2"):
        trt_backend.profile_shapes(specs[:1], [(0,)], 1)


def test_cache_dir_from_environment(cache_dir):
    assert cache.cache_dir() == cache_dir
    assert cache.entry_path("trt", "f" * 64, "engine").parent == cache_dir


def test_cache_roundtrip_corrupt_and_stale_entries_rebuilt(cache_dir):
    path = cache.entry_path("trt", cache.cache_key(x=1), "engine")
    builds = []

    def build():
        builds.append(1)
        return b"engine-bytes-%d" % len(builds)

    data, hit = cache.cached(path, build)
    assert (data, hit, len(builds)) == (b"engine-bytes-1", False, 1)
    assert cache.cached(path, build) == (b"engine-bytes-1", True)
    # no temporary files left behind
    assert sorted(os.listdir(cache_dir)) == [path.name]

    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF  # flip a payload bit
    path.write_bytes(bytes(blob))
    assert cache.read_entry(path) is None
    assert cache.cached(path, build) == (b"engine-bytes-2", False)

    path.write_bytes(path.read_bytes()[:20])  # truncated
    assert cache.cached(path, build) == (b"engine-bytes-3", False)

    path.write_bytes(b"")  # empty
    assert cache.cached(path, build) == (b"engine-bytes-4", False)

    # intact but rejected by the loader (a TensorRT engine that no longer deserialises): rebuilt
    assert cache.cached(path, build, validate=lambda payload: False) == (b"engine-bytes-5", False)
    assert cache.cached(path, build, validate=lambda payload: payload == b"engine-bytes-5") == (b"engine-bytes-5", True)


def test_cache_write_is_atomic_on_failure(cache_dir, monkeypatch):
    path = cache.entry_path("trt", cache.cache_key(x=2), "engine")
    cache.write_entry(path, b"good")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        cache.write_entry(path, b"bad")
    assert cache.read_entry(path) == b"good"
    assert sorted(os.listdir(cache_dir)) == [path.name]


# ------------------------------------------------------------------------------------------------
# The builder against a recording stand-in of the TensorRT 10 Python API
# ------------------------------------------------------------------------------------------------
def _fake_trt(calls, parse_ok=True, build_ok=True):
    """The names build_serialized uses, each recording its call; shapes of the documented API."""
    trt = types.SimpleNamespace(__version__="10.0.0-fake")

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            pass

    class TimingCache:
        def __init__(self, data):
            self.data = data

        def serialize(self):
            return b"timing:" + self.data

    class Config:
        def __init__(self):
            self.flags, self.progress_monitor = [], None

        def set_flag(self, flag):
            self.flags.append(flag)

        def set_memory_pool_limit(self, pool, size):
            calls.append(("workspace", pool, size))

        def add_optimization_profile(self, profile):
            calls.append(("profile", dict(profile.shapes)))

        def create_timing_cache(self, data):
            calls.append(("timing_in", bytes(data)))
            return TimingCache(bytes(data))

        def set_timing_cache(self, timing, ignore_mismatch):
            self.timing = timing

        def get_timing_cache(self):
            return self.timing

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls.append(("network_flags", flags))
            return object()

        def create_builder_config(self):
            self.config = Config()
            return self.config

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            calls.append(("flags", sorted(config.flags)))
            calls.append(("monitor", config.progress_monitor is not None))
            return b"serialized-engine" if build_ok else None

    class OnnxParser:
        def __init__(self, network, logger):
            self.num_errors = 0 if parse_ok else 1

        def parse(self, data):
            calls.append(("parse", len(data)))
            return parse_ok

        def get_error(self, i):
            return "In node 3 (Einsum): unsupported"

    class IProgressMonitor:
        def __init__(self):
            pass

    trt.Logger, trt.Builder, trt.OnnxParser, trt.IProgressMonitor = Logger, Builder, OnnxParser, IProgressMonitor
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8")
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    return trt


@pytest.mark.parametrize("precision,flags", [("fp32", []), ("fp16", ["FP16"]), ("int8", ["FP16", "INT8"])])
def test_build_serialized_calls(monkeypatch, cache_dir, precision, flags):
    calls = []
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_trt(calls))
    timing = cache.entry_path("timing", "t" * 64)
    profile = {"input": ((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))}
    out = trt_backend.build_serialized(b"onnx", precision=precision, profile=profile, timing_cache_path=timing,
                                       workspace=1 << 20)
    assert out == b"serialized-engine"
    assert ("network_flags", 0) in calls and ("parse", 4) in calls
    assert ("profile", profile) in calls and ("workspace", "WORKSPACE", 1 << 20) in calls
    assert ("flags", flags) in calls and ("monitor", True) in calls
    assert ("timing_in", b"") in calls and cache.read_entry(timing) == b"timing:"
    # the second build starts from the timing cache the first one wrote
    calls.clear()
    trt_backend.build_serialized(b"onnx", precision=precision, profile=profile, timing_cache_path=timing)
    assert ("timing_in", b"timing:") in calls


def test_build_serialized_errors(monkeypatch, cache_dir):
    timing = cache.entry_path("timing", "t" * 64)
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_trt([], parse_ok=False))
    with pytest.raises(ValueError, match="TensorRT cannot parse m.*Einsum"):
        trt_backend.build_serialized(b"x", precision="fp16", profile={}, timing_cache_path=timing, name="m")
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_trt([], build_ok=False))
    with pytest.raises(RuntimeError, match="failed to build"):
        trt_backend.build_serialized(b"x", precision="fp16", profile={}, timing_cache_path=timing, name="m")


# ------------------------------------------------------------------------------------------------
# The int8 QDQ model TensorRT would build, checked in ONNX Runtime
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    """Smooth random colour images (sums of a few sinusoids), the statistics a camera gives better than noise."""
    import cv2

    d = tmp_path_factory.mktemp("calib")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:48] / 40.0
    for i in range(24):
        img = np.zeros((40, 48, 3))
        for c in range(3):
            for _ in range(3):
                img[..., c] += rng.uniform(0.2, 1) * np.sin(rng.uniform(1, 8) * xx + rng.uniform(1, 8) * yy + rng.uniform(0, 6))
        img = ((img - img.min()) / (np.ptp(img) + 1e-6) * 255).astype(np.uint8)
        cv2.imwrite(str(d / f"img{i:02d}.png"), img)
    (d / "notes.txt").write_text("not an image: skipped")
    return d


def test_qdq_model_structure_and_cache(small_models, calib_dir, cache_dir):
    import onnx

    from edgevision.backends.quantize import quantized_model

    source = ModelSource.open(small_models["cnn"])
    data = quantized_model(source, calib_dir, num_images=16)
    model = onnx.load_from_string(data)
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops and "QLinearConv" not in ops  # QDQ, not QOperator
    # symmetric int8 everywhere (TensorRT's explicit quantisation takes zero points of 0 only)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                   and len(n.input) > 2]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    assert quantized_model(source, calib_dir, num_images=16) == data  # from the cache
    assert len(list(cache_dir.glob("qdq-*"))) == 1


@pytest.mark.parametrize("key,shapes", [("cnn", None), ("espcn", {"input": [1, 1, 16, 16]})])
def test_int8_qdq_agrees_with_fp32_in_onnxruntime(small_models, calib_dir, cache_dir, key, shapes):
    """Stated accuracy, on 8 held-out images: the int8 outputs correlate with the fp32 ones at >= 0.99 and their
    RMS error is <= 15% of the fp32 outputs' standard deviation (signal-to-noise >= 16 dB); the classifier
    keeps its top-1 on >= 75% of the images. (Measured here: RMS 8% for the random-weight CNN, whose logits
    are nearly flat, 1.6% for ESPCN; top-1 8/8.) 8-bit activations and weights cost ~1/256 of each tensor's
    range per quantised layer, compounding over 3-5 layers."""
    import cv2

    opts = {"input_shapes": shapes} if shapes else {}
    fp32 = edgevision.load(small_models[key], backend="onnxruntime", device="cpu", **opts)
    int8 = edgevision.load(small_models[key], backend="onnxruntime", device="cpu", precision="int8",
                           calib=str(calib_dir), calib_images=16, **opts)
    assert int8.precision == "int8"
    a, b = [], []
    for path in sorted(calib_dir.glob("*.png"))[16:]:  # not used for calibration
        image = cv2.imread(str(path))
        if key == "espcn":
            image = cv2.resize(image, (16, 16), interpolation=cv2.INTER_AREA)
        x = fp32.preprocess(image)
        a.append(fp32.run(x)[0])
        b.append(int8.run(x)[0])
    a, b = np.stack(a), np.stack(b)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] >= 0.99
    assert np.sqrt(np.mean((a - b) ** 2)) <= 0.15 * a.std()
    if key == "cnn":
        assert np.mean(a.argmax(-1) == b.argmax(-1)) >= 0.75


def test_int8_generator_calibrates_without_images(small_models, cache_dir):
    fp32 = edgevision.load(small_models["dcgan"], backend="onnxruntime", device="cpu")
    int8 = edgevision.load(small_models["dcgan"], backend="onnxruntime", device="cpu", precision="int8", calib_images=8)
    z, c = np.random.default_rng(5).standard_normal((1, 16)).astype(np.float32), np.eye(4, dtype=np.float32)[:1]
    (a,), (b,) = fp32.run([z, c]), int8.run([z, c])
    assert np.abs(a - b).max() < 0.2  # tanh output in [-1, 1]: within 10% of its range


def test_calibration_folder_errors(small_models, tmp_path, cache_dir):
    with pytest.raises(FileNotFoundError, match="calibration folder"):
        edgevision.load(small_models["cnn"], backend="onnxruntime", precision="int8", calib=str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="no image OpenCV can read"):
        edgevision.load(small_models["cnn"], backend="onnxruntime", precision="int8", calib=str(tmp_path / "empty"))


# ------------------------------------------------------------------------------------------------
# Real TensorRT (skipped here)
# ------------------------------------------------------------------------------------------------
def _gpu_reason():
    if not HAS_TENSORRT:
        return "TensorRT is not installed (pip install edgevision[tensorrt])"
    try:
        import torch
    except ImportError:
        return "torch is not installed (the tensorrt backend moves data with torch CUDA tensors)"
    return None if torch.cuda.is_available() else "no CUDA GPU is visible"


_REASON = _gpu_reason()


@pytest.mark.parametrize("precision,tol", [("fp32", 1e-3), ("fp16", 3e-2)])
@pytest.mark.tensorrt
@pytest.mark.skipif(_REASON is not None, reason=f"TensorRT tests: {_REASON}")
def test_tensorrt_engine_matches_onnxruntime(small_models, cache_dir, precision, tol):
    import torch

    ref = edgevision.load(small_models["cnn"], backend="onnxruntime", device="cpu")
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    (expect,) = ref.run(x)
    with edgevision.load(small_models["cnn"], backend="tensorrt", precision=precision, batch=2, max_batch=4) as e:
        assert not e.cache_hit
        (y,) = e.run(x)  # batch 3 inside the profile 1..4
        np.testing.assert_allclose(y, expect, rtol=tol, atol=tol)
        (yt,) = e.run(torch.from_numpy(x).cuda())
        assert yt.is_cuda
        np.testing.assert_allclose(yt.cpu().numpy(), expect, rtol=tol, atol=tol)
        with pytest.raises(ValueError, match="max_batch"):
            e.run(np.concatenate([x, x]))
    with edgevision.load(small_models["cnn"], backend="tensorrt", precision=precision, batch=2, max_batch=4) as e:
        assert e.cache_hit
