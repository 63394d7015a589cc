"""edgevision.load / Engine: input handling and its errors, the onnxruntime backend, backend/device choice,
metadata preprocessing. Backends are compared with each other in test_engine_backends.py.

Test models are exported here (small, random weights) with edgevision.export.export_module; other engine
test files import `small_models` from this module.
"""
import logging
import os
import sys

import numpy as np
import pytest

import edgevision
from edgevision.backends import BackendUnavailableError, EngineClosedError, ModelSource, choose

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

# Generator sizes are cut down from the defaults so each export and run stays well under a second.
MODELS = {
    "cnn": ("seed_cnn", {"num_classes": 10}, {"task": "classify", "labels": [str(i) for i in range(10)],
                                             "input_size": [32, 32], "color": "rgb", "mean": [0.49, 0.48, 0.45],
                                             "std": [0.25, 0.24, 0.26], "pixel_scale": 1 / 255}),
    "espcn": ("espcn", {"scale": 2, "channels": 1, "width": 8, "depth": 3},
              {"task": "enhance", "sr_scale": 2, "color": "rgb", "pixel_scale": 1 / 255, "channels": "Y",
               "mean": [0.0], "std": [1.0]}),
    "dcgan": ("dcgan_generator", {"latent": 16, "num_classes": 4, "width": 32},
              {"task": "generate", "labels": ["a", "b", "c", "d"], "latent_size": 16, "num_classes": 4,
               "output_size": [32, 32], "color": "rgb"}),
}


@pytest.fixture(scope="session")
def small_models(tmp_path_factory):
    """{"cnn" | "espcn" | "dcgan": path of the exported ONNX file}."""
    from edgevision.export import export_module
    from edgevision.models import create_model

    out = tmp_path_factory.mktemp("engine_models")
    paths = {}
    for key, (name, kwargs, meta) in MODELS.items():
        torch.manual_seed(0)
        model = create_model(name, **kwargs).eval()
        # Random BatchNorm statistics so folded BN is not the identity.
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
        path = str(out / f"{key}.onnx")
        export_module(model, meta, path, name=key)
        paths[key] = path
    return paths


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("EDGEVISION_CACHE", str(d))
    return d


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# The API
# ------------------------------------------------------------------------------------------------
def test_import_edgevision_stays_torch_free(tmp_path):
    import subprocess

    code = ("import sys, edgevision; edgevision.load; from edgevision.backends import base, cache, native; "
            "print(sorted(m for m in ('torch', 'onnxruntime', 'tensorrt') if m in sys.modules))")
    # The subprocess imports the edgevision this test imported (the installed package in CI, the source tree
    # in a dev build) from a neutral working directory, so a source checkout cannot shadow the install.
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(edgevision.__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                         cwd=tmp_path)
    assert out.stdout.strip() == "[]"


def test_onnxruntime_engine_matches_session(small_models):
    import onnxruntime as ort

    engine = edgevision.load(small_models["cnn"], backend="onnxruntime", device="cpu")
    assert (engine.backend, engine.device, engine.precision) == ("onnxruntime", "cpu", "fp32")
    assert [(s.name, tuple(s.shape), s.dtype) for s in engine.input_spec] == [("input", (1, 3, 32, 32), "float32")]
    assert [(s.name, tuple(s.shape)) for s in engine.output_spec] == [("logits", (1, 10))]
    assert engine.metadata["task"] == "classify" and engine.metadata["input_size"] == [32, 32]
    x = _x((1, 3, 32, 32))
    expect = ort.InferenceSession(small_models["cnn"], providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    for inputs in (x, [x], (x,), {"input": x}):
        (y,) = engine.run(inputs)
        np.testing.assert_array_equal(y, expect)
    (y,) = engine(x)
    np.testing.assert_array_equal(y, expect)
    # dynamic backend: other batch sizes run
    (y4,) = engine.run(np.concatenate([x] * 4))
    np.testing.assert_allclose(y4, np.concatenate([expect] * 4), rtol=1e-5, atol=1e-6)
    assert "onnxruntime" in engine.summary() and "CPUExecutionProvider" in engine.summary()
    assert "onnxruntime" in repr(engine)


def test_torch_tensors_in_give_torch_tensors_out(small_models):
    engine = edgevision.load(small_models["cnn"], backend="onnxruntime", device="cpu")
    x = _x((1, 3, 32, 32))
    (expect,) = engine.run(x)
    (y,) = engine.run(torch.from_numpy(x).requires_grad_())
    assert isinstance(y, torch.Tensor) and y.device.type == "cpu"
    np.testing.assert_array_equal(y.numpy(), expect)


def test_multi_input_model_by_list_and_dict(small_models):
    engine = edgevision.load(small_models["dcgan"], backend="onnxruntime", device="cpu", batch=2)
    assert [s.name for s in engine.input_spec] == ["z", "class_onehot"]
    z, c = _x((2, 16)), np.eye(4, dtype=np.float32)[[1, 3]]
    (a,) = engine.run([z, c])
    (b,) = engine.run({"class_onehot": c, "z": z})
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 3, 32, 32) and np.abs(a).max() <= 1.0
    with pytest.raises(ValueError, match="takes 2 inputs"):
        engine.run(z)


def test_input_errors_name_the_input(small_models):
    engine = edgevision.load(small_models["cnn"], backend="onnxruntime", device="cpu")
    x = _x((1, 3, 32, 32))
    with pytest.raises(TypeError, match=r"'input'.*float32.*float64"):
        engine.run(x.astype(np.float64))
    with pytest.raises(ValueError, match=r"'input'.*shape \['\*', 3, 32, 32\].*\[1, 3, 30, 32\]"):
        engine.run(x[:, :, :30])
    with pytest.raises(ValueError, match="shape"):
        engine.run(x[0])
    with pytest.raises(ValueError, match="got 2 inputs"):
        engine.run([x, x])
    with pytest.raises(ValueError, match=r"missing \['input'\], unexpected \['x'\]"):
        engine.run({"x": x})
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        engine.run(x.tolist())
    with pytest.raises(ValueError, match="run_async needs a CUDA engine"):
        engine.run_async(x)


def test_closed_engine_and_context_manager(small_models):
    x = _x((1, 3, 32, 32))
    with edgevision.load(small_models["cnn"], backend="onnxruntime", device="cpu") as engine:
        engine.run(x)
    assert engine.closed and "closed" in repr(engine)
    with pytest.raises(EngineClosedError, match="closed"):
        engine.run(x)
    engine.close()  # twice is fine


def test_load_argument_errors(small_models, tmp_path):
    path = small_models["cnn"]
    with pytest.raises(ValueError, match="backend must be"):
        edgevision.load(path, backend="tflite")
    with pytest.raises(ValueError, match="precision must be"):
        edgevision.load(path, backend="onnxruntime", precision="bf16")
    with pytest.raises(ValueError, match="device must be"):
        edgevision.load(path, backend="onnxruntime", device="tpu")
    with pytest.raises(TypeError, match="takes no option.*max_batch"):
        edgevision.load(path, backend="onnxruntime", max_batch=4)
    with pytest.raises(ValueError, match="batch must be a positive int"):
        edgevision.load(path, backend="onnxruntime", batch=0)
    with pytest.raises(ValueError, match="int8.*calib"):
        edgevision.load(path, backend="onnxruntime", precision="int8")
    with pytest.raises(FileNotFoundError, match="neither an ONNX file nor a bundled model"):
        edgevision.load(str(tmp_path / "missing.onnx"), backend="onnxruntime")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(ValueError):
        edgevision.load(str(bad), backend="onnxruntime")


def test_dynamic_dims_need_input_shapes(small_models):
    with pytest.raises(ValueError, match=r"input 'input' has dynamic dims \[\?, 1, \?, \?\].*input_shapes"):
        edgevision.load(small_models["espcn"], backend="onnxruntime", device="cpu")
    with pytest.raises(ValueError, match="does not fit"):
        edgevision.load(small_models["espcn"], backend="onnxruntime", input_shapes={"input": [1, 3, 8, 8]})
    with pytest.raises(ValueError, match=r"batch=2 contradicts input_shapes\['input'\]"):
        edgevision.load(small_models["espcn"], backend="onnxruntime", batch=2, input_shapes={"input": [1, 1, 8, 8]})
    with pytest.raises(ValueError, match="does not have"):
        edgevision.load(small_models["espcn"], backend="onnxruntime", input_shapes={"x": [1, 1, 8, 8]})
    engine = edgevision.load(small_models["espcn"], backend="onnxruntime", device="cpu",
                             input_shapes={"input": [1, 1, 12, 16]})
    assert engine.output_spec[0].shape == (1, 1, 24, 32)
    (y,) = engine.run(_x((2, 1, 7, 9)))  # every dynamic dim may vary on onnxruntime
    assert y.shape == (2, 1, 14, 18)


def test_model_source_from_bytes_and_proto(small_models):
    import onnx

    data = open(small_models["cnn"], "rb").read()
    a, b = ModelSource.open(data), ModelSource.open(onnx.load_from_string(data))
    assert a.sha256() == b.sha256() and a.metadata == b.metadata
    assert [tuple(s.shape) for s in a.inputs] == [(None, 3, 32, 32)]
    assert a.dynamic_dims() == [(0,)]
    assert [tuple(s.shape) for s in a.resolve_shapes(batch=8)] == [(8, 3, 32, 32)]


# ------------------------------------------------------------------------------------------------
# auto choice
# ------------------------------------------------------------------------------------------------
def test_auto_falls_back_to_native_cpu_and_logs(caplog, monkeypatch):
    from edgevision.backends import native

    monkeypatch.setattr(native, "cuda_available", lambda: False)
    with caplog.at_level(logging.INFO, logger="edgevision"):
        assert choose("auto", "auto") == ("native", "cpu")
    assert "backend 'auto' -> native" in caplog.text
    assert choose("auto", "cpu") == ("native", "cpu")
    with pytest.raises(BackendUnavailableError, match="no backend can run"):
        choose("auto", "cuda")


def test_auto_prefers_tensorrt_only_with_it_and_a_gpu(monkeypatch):
    import importlib.util

    import edgevision.backends as backends
    from edgevision.backends import native

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: object() if n == "tensorrt" else real(n, *a))
    monkeypatch.setattr(native, "cuda_available", lambda: False)
    monkeypatch.setattr(backends, "_gpu_visible", lambda: False)
    assert choose("auto", "auto") == ("native", "cpu")  # TensorRT importable, no GPU: skipped
    monkeypatch.setattr(backends, "_gpu_visible", lambda: True)
    assert choose("auto", "auto") == ("tensorrt", "cuda")
    assert choose("auto", "cpu") == ("native", "cpu")
    monkeypatch.setattr(native, "cuda_available", lambda: True)
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "tensorrt" else real(n, *a))
    assert choose("auto", "auto") == ("native", "cuda")


# ------------------------------------------------------------------------------------------------
# Preprocessing from metadata
# ------------------------------------------------------------------------------------------------
def test_preprocess_follows_metadata(small_models):
    engine = edgevision.load(small_models["cnn"], backend="onnxruntime", device="cpu")
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)  # BGR
    x = engine.preprocess(image)
    meta = engine.metadata
    rgb = image[..., ::-1].astype(np.float32) / 255
    expect = ((rgb - np.array(meta["mean"], np.float32)) / np.array(meta["std"], np.float32)).transpose(2, 0, 1)[None]
    np.testing.assert_allclose(x, expect, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        engine.preprocess(image.astype(np.float32))

    sr = edgevision.load(small_models["espcn"], backend="onnxruntime", device="cpu", input_shapes={"input": [1, 1, 8, 8]})
    y = sr.preprocess(image)
    assert y.shape == (1, 1, 32, 32) and 16 / 255 - 1e-6 <= y.min() and y.max() <= 235 / 255 + 1e-6


def test_fixed_batch_model():
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    source = ModelSource.open(model)
    assert source.dynamic_dims() == [()] and source.resolve_shapes()[0].shape == (1, 3)
    with pytest.raises(ValueError, match="batch=2 but input 'x' has a fixed batch of 1"):
        source.resolve_shapes(batch=2)
    engine = edgevision.load(model, backend="onnxruntime", device="cpu")
    with pytest.raises(ValueError, match=r"expected shape \[1, 3\]"):  # not dynamic in the model: fixed everywhere
        engine.run(np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(engine.run(np.array([[-1, 0, 2]], np.float32))[0], [[0, 0, 2]])
