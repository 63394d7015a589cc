"""Helpers of the profiler tests: a tiny ONNX model every backend runs in milliseconds."""
import importlib.util

import numpy as np
import pytest
from onnx import helper

from graph_util import make_model

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """conv 3x3 + relu -> global average pool -> flatten -> gemm, dynamic batch: a model each backend runs in
    milliseconds."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "wg", "bg"], ["y"], transB=1)]
    model = make_model(nodes, [("x", ["N", 3, 8, 8])], [("y", ["N", 3])],
                       {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
                        "b": rng.standard_normal(4).astype(np.float32),
                        "wg": rng.standard_normal((3, 4)).astype(np.float32),
                        "bg": rng.standard_normal(3).astype(np.float32)})
    path = tmp_path_factory.mktemp("profile") / "tiny.onnx"
    path.write_bytes(model.SerializeToString())
    return str(path)
