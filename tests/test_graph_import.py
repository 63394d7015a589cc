"""ONNX loading and import: accepted sources, clean errors for malformed and unsupported models (all
raised at load), dynamic dims, metadata, and the Program API."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from graph_util import HAS_PLAN, make_model
from edgevision.graph import (InvalidModelError, TensorSpec, UnsupportedModelError, compile_onnx, compile_spec,
                              import_model)


def conv_model(opset=17, batch="n"):
    w = np.ones((2, 3, 3, 3), np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["y"], name="relu")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 2, 5, 5])],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    helper.set_model_props(model, {"task": "classify", "labels": '["a", "b"]'})
    return model


def test_sources_path_bytes_proto(tmp_path):
    model = conv_model()
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    for source in (model, model.SerializeToString(), str(path), path):
        g = import_model(source)
        assert g.inputs == ["x"] and g.outputs == ["y"]
        assert g.values["y"].shape == (1, 2, 5, 5)
    with pytest.raises(TypeError, match="path, bytes or onnx.ModelProto"):
        import_model(12)
    with pytest.raises(FileNotFoundError):
        import_model(str(tmp_path / "missing.onnx"))


def test_metadata_decoded():
    spec, g = compile_spec(conv_model())
    assert g.metadata == {"task": "classify", "labels": ["a", "b"]}


def test_truncated_and_garbage_bytes():
    data = conv_model().SerializeToString()
    with pytest.raises(InvalidModelError, match="truncated or corrupt|checker|no graph"):
        import_model(data[: len(data) // 2])
    with pytest.raises(InvalidModelError):
        import_model(b"\xff" * 64)
    with pytest.raises(InvalidModelError, match="no graph"):
        import_model(b"")


def test_missing_initializer():
    model = conv_model()
    del model.graph.initializer[:]
    with pytest.raises(InvalidModelError):
        import_model(model)


def test_unsupported_op_names_node_and_lists_supported():
    model = make_model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Sin", ["r"], ["y"], name="my_sin")],
                       [("x", [2, 3])], [("y", [2, 3])])
    with pytest.raises(UnsupportedModelError, match=r"Sin.*my_sin.*constant"):
        import_model(model)
    model = make_model([helper.make_node("Einsum", ["x"], ["y"], name="ein", equation="ij->ji")],
                       [("x", [2, 3])], [("y", [3, 2])])
    with pytest.raises(UnsupportedModelError, match=r"op Einsum \(node 'ein'\) is not supported.*Conv"):
        import_model(model)


def test_unsupported_attribute_is_named():
    model = make_model([helper.make_node("Pad", ["x", "p"], ["y"], name="padder", mode="wrap")],
                       [("x", [1, 2, 3, 4])], [("y", None)], {"p": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)}, 19)
    with pytest.raises(UnsupportedModelError, match=r"Pad node 'padder': attribute 'mode': 'wrap'"):
        import_model(model)
    model = make_model([helper.make_node("Resize", ["x", "", "s"], ["y"], name="rs", mode="cubic")],
                       [("x", [1, 2, 3, 4])], [("y", None)], {"s": np.array([1, 1, 2, 2], np.float32)}, 13)
    with pytest.raises(UnsupportedModelError, match=r"rs.*'mode'.*cubic"):
        import_model(model)


def test_training_mode_batchnorm_unsupported():
    c = {k: np.ones(3, np.float32) for k in ("g", "b", "m", "v")}
    model = make_model([helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y", "rm", "rv"], name="bn",
                                         training_mode=1)], [("x", [2, 3, 4, 4])], [("y", [2, 3, 4, 4])], c, 15)
    with pytest.raises(UnsupportedModelError, match="bn.*training_mode"):
        import_model(model)


def test_erf_outside_gelu_is_unsupported_at_load():
    model = make_model([helper.make_node("Erf", ["x"], ["y"], name="lonely_erf")], [("x", [2, 3])], [("y", [2, 3])])
    with pytest.raises(UnsupportedModelError, match="lonely_erf.*GELU"):
        compile_spec(model)


def test_opset_range():
    with pytest.raises((UnsupportedModelError, InvalidModelError), match="opset 8"):
        import_model(conv_model(opset=8))
    for opset in range(9, onnx.defs.onnx_opset_version() + 1):
        assert compile_spec(conv_model(opset=opset))[0]["steps"][0]["attrs"]["act"] == "relu"


def test_foreign_domain_unsupported():
    model = conv_model()
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    model.graph.node.append(helper.make_node("FusedGemm", ["y"], ["z"], domain="com.microsoft"))
    with pytest.raises(UnsupportedModelError, match="com.microsoft"):
        import_model(model)


def test_dynamic_dims_batch_and_input_shapes():
    assert import_model(conv_model()).values["x"].shape == (1, 3, 5, 5)
    assert import_model(conv_model(), batch=4).values["y"].shape == (4, 2, 5, 5)
    with pytest.raises(ValueError, match="fixed batch of 1"):
        import_model(conv_model(batch=1), batch=2)
    model = conv_model()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "h"
    model.graph.output[0].type.tensor_type.shape.dim[2].dim_param = "h"
    with pytest.raises(ValueError, match=r"dim 2 \('h'\) is dynamic.*input_shapes"):
        import_model(model)
    assert import_model(model, input_shapes={"x": [2, 3, 7, 5]}).values["y"].shape == (2, 2, 7, 5)
    with pytest.raises(ValueError, match="not model inputs"):
        import_model(model, input_shapes={"x": [1, 3, 7, 5], "nope": [1]})
    with pytest.raises(ValueError, match="disagrees"):
        import_model(model, input_shapes={"x": [1, 4, 7, 5]})
    with pytest.raises(ValueError, match="batch must be a positive int"):
        import_model(conv_model(), batch=0)


def test_non_float_input_unsupported():
    model = make_model([helper.make_node("Identity", ["x"], ["y"])], [("x", [2])], [("y", [2])])
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.INT64
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.INT64
    with pytest.raises(UnsupportedModelError, match="'x' has dtype INT64"):
        import_model(model)


def test_shape_mismatch_is_invalid():
    model = conv_model()
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.ones((2, 4, 3, 3), np.float32), "w"))
    with pytest.raises(InvalidModelError):
        import_model(model)


def test_bad_reshape_is_invalid():
    model = make_model([helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")], [("x", [2, 3])], [("y", None)],
                       {"s": np.array([4, -1], np.int64)})
    with pytest.raises(InvalidModelError):
        import_model(model)


def test_huge_dims_rejected_before_allocating():
    model = make_model([helper.make_node("ConstantOfShape", ["s"], ["c"]), helper.make_node("Add", ["x", "c"], ["y"])],
                       [("x", [1])], [("y", None)], {"s": np.array([1 << 20, 1 << 20, 1 << 10], np.int64)})
    with pytest.raises(InvalidModelError, match="too large"):
        import_model(model)
    with pytest.raises(InvalidModelError, match="GiB"):
        import_model(conv_model(), batch=1 << 28)


def test_precision_and_device_arguments():
    with pytest.raises(UnsupportedModelError, match="tensorrt"):
        compile_spec(conv_model(), precision="int8")
    with pytest.raises(ValueError, match="CUDA"):
        compile_spec(conv_model(), precision="fp16")
    with pytest.raises(ValueError, match="device"):
        compile_spec(conv_model(), device="tpu")
    spec, _ = compile_spec(conv_model(), device="cuda", precision="fp16", num_threads=3)
    assert spec["device"] == "cuda:0" and spec["dtype"] == "float16" and spec["num_threads"] == 3


def test_spec_is_plain_python_and_numpy():
    spec, _ = compile_spec(conv_model())
    assert set(spec) == {"device", "dtype", "num_threads", "arena_bytes", "constants", "values", "steps",
                         "inputs", "outputs"}
    for c in spec["constants"]:
        assert c.dtype == np.float32 and c.flags.c_contiguous
    for step in spec["steps"]:
        for v in step["attrs"].values():
            assert type(v) in (int, float, bool, str) or (type(v) is list and all(type(e) is int for e in v))
    assert [spec["values"][i]["kind"] for i in spec["inputs"]] == ["input"]
    assert [spec["values"][i]["kind"] for i in spec["outputs"]] == ["output"]


def test_compiles_without_torch(tmp_path):
    import os
    import subprocess
    import sys
    path = tmp_path / "m.onnx"
    onnx.save(conv_model(), str(path))
    code = ("import sys; sys.modules['torch'] = None\n"  # any torch import now fails
            "from edgevision.graph import compile_spec\n"
            f"spec, _ = compile_spec({str(path)!r})\n"
            "assert spec['steps']")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, env=env)


def test_tensor_spec():
    s = TensorSpec("x", (1, 3, 4, 4))
    assert s.dtype == "float32" and s.nbytes == 192


@pytest.mark.skipif(not HAS_PLAN, reason="edgevision._C.Plan is not built yet (helper C's executor has not landed)")
def test_program_api():
    prog = compile_onnx(conv_model())
    assert prog.input_specs == [TensorSpec("x", (1, 3, 5, 5))]
    assert prog.output_specs == [TensorSpec("y", (1, 2, 5, 5))]
    assert prog.metadata["task"] == "classify" and prog.flops > 0
    x = np.random.default_rng(0).standard_normal((1, 3, 5, 5))  # float64 is converted
    (y,) = prog.run([x])
    w = np.ones((2, 3, 3, 3))
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = np.maximum(0, np.stack([[[(xp[0, :, i:i + 3, j:j + 3] * w[k]).sum() for j in range(5)] for i in range(5)]
                                  for k in range(2)])[None])
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    out = [np.empty((1, 2, 5, 5), np.float32)]
    assert prog.run([x], out=out)[0] is out[0]
    with pytest.raises(ValueError, match="takes 1 inputs"):
        prog.run([x, x])
    with pytest.raises(ValueError, match=r"'x' must have shape \[1, 3, 5, 5\]"):
        prog.run([x[:, :2]])
    with pytest.raises(TypeError, match="float"):
        prog.run([x.astype(np.int32)])
    assert "conv2d" in prog.summary() and "arena" in prog.summary()
