"""Whole models from edgevision.models, exported by torch (opset 17, random init), compiled by
edgevision.graph and run against onnxruntime; plus what the passes made of them."""
import numpy as np
import pytest

from graph_util import EXECUTORS, MODEL_TOL, bundled_cases, check_model
from edgevision.graph import compile_spec

torch = pytest.importorskip("torch")

# name -> (factory kwargs, input shapes); batch 1 keeps the run short on two shared cores. The 224 x 224
# ImageNet models are marked slow: exporting each takes seconds (the compile and run do not).
MODELS = {
    "resnet18": ({}, [(1, 3, 224, 224)]),
    "mobilenet_v2": ({}, [(1, 3, 224, 224)]),
    "efficientnet_lite0": ({}, [(1, 3, 224, 224)]),
    "dcgan_generator": ({}, [(1, 128), (1, 10)]),
    "espcn": ({"scale": 3, "channels": 3}, [(1, 3, 17, 23)]),
    "fastnet": ({}, [(1, 3, 32, 32)]),
}
SLOW = {"resnet18", "mobilenet_v2", "efficientnet_lite0"}


def _export(name, tmp_path):
    from edgevision.models import create_model
    kwargs, shapes = MODELS[name]
    torch.manual_seed(0)
    model = create_model(name, **kwargs).eval()
    with torch.no_grad():  # random BN statistics, so folding BN is actually exercised
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.5, 0.5)
            if name == "espcn" and isinstance(m, torch.nn.Conv2d) and m.weight.abs().sum() == 0:
                m.weight.normal_(0, 0.05)  # the zero-initialised last conv would hide its math
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    if name == "dcgan_generator":
        inputs[1] = np.eye(10, dtype=np.float32)[[3]]
    path = tmp_path / f"{name}.onnx"
    dynamic = {"input": {0: "batch"}} if len(shapes) == 1 else None
    if name == "espcn":
        dynamic = {"input": {0: "batch", 2: "height", 3: "width"}}
    names = ["input"] if len(shapes) == 1 else ["z", "class_onehot"]
    torch.onnx.export(model, tuple(torch.from_numpy(x) for x in inputs), str(path), dynamo=False, opset_version=17,
                      input_names=names, dynamic_axes=dynamic)
    return path, inputs


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (ONNX path, inputs), each model exported once per test module."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = _export(name, tmp_path_factory.mktemp(name))
        return cache[name]
    return get


def _param(name):
    return pytest.param(name, marks=[pytest.mark.slow] if name in SLOW else [])


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("name", [_param(n) for n in MODELS])
def test_model_matches_onnxruntime(name, executor, exported):
    path, inputs = exported(name)
    shapes = {"input": list(inputs[0].shape)} if name == "espcn" else None
    check_model(path.read_bytes(), inputs, executor, tol=MODEL_TOL, input_shapes=shapes)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_bundled_models_match_onnxruntime(executor):
    rng = np.random.default_rng(0)
    for name, path, shapes in bundled_cases():
        spec, graph = compile_spec(str(path), input_shapes=shapes)
        inputs = [rng.standard_normal(s.shape).astype(np.float32) for s in graph.input_specs()]
        check_model(path.read_bytes(), inputs, executor, tol=MODEL_TOL, input_shapes=shapes)
        assert graph.metadata.get("task")


def _ops(spec):
    return [s["op"] for s in spec["steps"]]


@pytest.mark.slow
def test_resnet18_is_fully_fused(exported):
    path, _ = exported("resnet18")
    spec, graph = compile_spec(str(path))
    ops = _ops(spec)
    assert "batch_norm" not in ops and "activation" not in ops and "binary" not in ops
    assert ops.count("conv2d") == 20 and ops.count("gemm") == 1
    residual = [s for s in spec["steps"] if s["op"] == "conv2d" and s["inputs"][3] >= 0]
    assert len(residual) == 8  # every basic block's add went into its second conv
    assert all(s["attrs"]["act"] == "relu" and not s["attrs"]["residual_after_act"] for s in residual)
    unshared = sum(4 * np.prod(v["shape"]) for v in spec["values"] if v["kind"] == "arena")
    assert spec["arena_bytes"] < unshared / 2


def test_fastnet_gelu_and_head(exported):
    path, _ = exported("fastnet")
    spec, _ = compile_spec(str(path))
    ops = _ops(spec)
    assert "binary" not in ops and "batch_norm" not in ops  # 1/9 folded into the head, BN through max-pool
    assert [s["attrs"].get("act") for s in spec["steps"]].count("gelu") == 7  # every Erf pattern
    assert ops[-1] == "gemm"


@pytest.mark.slow
def test_mobilenet_clip_fused(exported):
    path, _ = exported("mobilenet_v2")
    spec, _ = compile_spec(str(path))
    convs = [s for s in spec["steps"] if s["op"] == "conv2d"]
    assert "batch_norm" not in _ops(spec) and "activation" not in _ops(spec)
    relu6 = [s for s in convs if s["attrs"]["act"] == "clip"]
    assert relu6 and all(s["attrs"]["alpha"] == 0.0 and s["attrs"]["beta"] == 6.0 for s in relu6)


def test_batch_option_and_dynamic_dims(exported):
    path, _ = exported("espcn")
    with pytest.raises(ValueError, match="height"):
        compile_spec(str(path))
    spec, _ = compile_spec(str(path), batch=2, input_shapes={"input": [2, 3, 17, 23]})
    assert spec["values"][spec["inputs"][0]]["shape"] == [2, 3, 17, 23]
    spec, _ = compile_spec(str(path), input_shapes={"input": [1, 3, 8, 9]})
    assert spec["values"][spec["outputs"][0]]["shape"] == [1, 3, 24, 27]
