"""Fuzzing the importer: a few thousand mutations of small valid models (bytes flipped or cut, nodes
dropped, reordered or retyped, attributes, initializers and shapes corrupted). The only allowed
outcomes are a compiled spec or a ValueError/TypeError subclass; when the native Plan exists, a
compiled spec must also build and run."""
import numpy as np
import onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from graph_util import HAS_PLAN, make_model
from edgevision import _C
from edgevision.graph import compile_spec

rng = np.random.default_rng(0)


def _r(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def _seeds():
    n = helper.make_node
    bn = {"g": _r(4), "b": _r(4), "m": _r(4), "v": np.abs(_r(4)) + 0.5}
    cnn = make_model(
        [n("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]), n("BatchNormalization", ["c", "g", "b", "m", "v"], ["n"]),
         n("Relu", ["n"], ["r"]), n("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
         n("GlobalAveragePool", ["p"], ["gp"]), n("Flatten", ["gp"], ["f"]), n("Gemm", ["f", "fw", "fb"], ["y"], transB=1)],
        [("x", [1, 3, 8, 8])], [("y", [1, 5])], {"w": _r(4, 3, 3, 3), "fw": _r(5, 4), "fb": _r(5), **bn}, 13)
    gen = make_model(
        [n("ConvTranspose", ["x", "w"], ["c"], strides=[2, 2], pads=[1, 1, 1, 1]), n("Sigmoid", ["c"], ["s"]),
         n("Mul", ["c", "s"], ["m"]), n("Resize", ["m", "", "sc"], ["u"], mode="nearest"),
         n("DepthToSpace", ["u"], ["d"], blocksize=2, mode="CRD"), n("Tanh", ["d"], ["y"])],
        [("x", [1, 4, 3, 3])], [("y", None)], {"w": _r(4, 8, 4, 4), "sc": np.array([1, 1, 2, 2], np.float32)}, 17)
    shapes = make_model(
        [n("Shape", ["x"], ["sh"]), n("Gather", ["sh", "i"], ["b"], axis=0), n("Unsqueeze", ["b", "ax"], ["bu"]),
         n("Concat", ["bu", "m1"], ["s"], axis=0), n("Reshape", ["x", "s"], ["f"]),
         n("Split", ["f", "sp"], ["f1", "f2"], axis=1), n("Softmax", ["f1"], ["sm"], axis=-1),
         n("Pad", ["f2", "pads"], ["pd"], mode="reflect"), n("Slice", ["pd", "st", "en"], ["sl"]),
         n("Concat", ["sm", "sl"], ["cc"], axis=1), n("ReduceMean", ["cc"], ["y"], axes=[1], keepdims=1)],
        [("x", [2, 3, 2, 2])], [("y", [2, 1])],
        {"i": np.array(0, np.int64), "ax": np.array([0], np.int64), "m1": np.array([-1], np.int64),
         "sp": np.array([5, 7], np.int64), "pads": np.array([0, 1, 0, 1], np.int64),
         "st": np.array([0, 1], np.int64), "en": np.array([2, 8], np.int64)}, 17)
    return [cnn, gen, shapes]


SEEDS = [m.SerializeToString() for m in _seeds()]
OPS = ["Conv", "Relu", "Add", "Mul", "Reshape", "Transpose", "Concat", "Gemm", "MaxPool", "Resize", "Pad",
       "Slice", "Split", "Softmax", "Erf", "Gather", "Expand", "BatchNormalization", "LRN", "ReduceMean", "Where"]
SMALL = st.integers(-3, 9)
# Replacement attribute values of the attribute's own type, so that most mutants pass the ONNX
# checker and reach the importer's own validation.
TYPED = {
    onnx.AttributeProto.INT: SMALL,
    onnx.AttributeProto.INTS: st.lists(SMALL, min_size=0, max_size=9),
    onnx.AttributeProto.FLOAT: st.floats(allow_nan=True, allow_infinity=True, width=32),
    onnx.AttributeProto.FLOATS: st.lists(st.floats(width=32), max_size=5),
    onnx.AttributeProto.STRING: st.sampled_from(["", "nearest", "linear", "cubic", "CRD", "DCR", "SAME_UPPER", "VALID",
                                                 "reflect", "edge", "wrap", "align_corners", "tf_crop_and_resize"]),
}


def _mutate(data, model: onnx.ModelProto) -> bytes:
    g = model.graph
    kind = data.draw(st.sampled_from(["drop", "swap", "retype", "attr", "attr", "attr", "init", "init", "dims",
                                      "rename", "opset", "input", "dup_output"]))
    if kind == "drop" and g.node:
        del g.node[data.draw(st.integers(0, len(g.node) - 1))]
    elif kind == "swap" and len(g.node) > 1:
        i, j = data.draw(st.integers(0, len(g.node) - 1)), data.draw(st.integers(0, len(g.node) - 1))
        a, b = onnx.NodeProto(), onnx.NodeProto()
        a.CopyFrom(g.node[i])
        b.CopyFrom(g.node[j])
        g.node[i].CopyFrom(b)
        g.node[j].CopyFrom(a)
    elif kind == "retype" and g.node:
        g.node[data.draw(st.integers(0, len(g.node) - 1))].op_type = data.draw(st.sampled_from(OPS))
    elif kind == "attr" and g.node:
        node = g.node[data.draw(st.integers(0, len(g.node) - 1))]
        if node.attribute and data.draw(st.integers(0, 3)):
            a = node.attribute[data.draw(st.integers(0, len(node.attribute) - 1))]
            if a.type in TYPED:
                a.CopyFrom(helper.make_attribute(a.name, data.draw(TYPED[a.type]), attr_type=a.type))
        else:
            name = data.draw(st.sampled_from(["axis", "pads", "strides", "group", "mode", "perm", "kernel_shape",
                                              "blocksize", "keepdims", "alpha", "dilations", "ceil_mode"]))
            node.attribute.append(helper.make_attribute(name, 1) if name != "mode" else helper.make_attribute(name, "edge"))
    elif kind == "init" and g.initializer:
        t = g.initializer[data.draw(st.integers(0, len(g.initializer) - 1))]
        choice = data.draw(st.integers(0, 3))
        if choice == 0:
            t.dims[:] = data.draw(st.lists(st.integers(-2, 2**33), max_size=5))
        elif choice == 1:
            if t.data_type == TensorProto.INT64 and t.raw_data:  # shape-like constants: new small values
                vals = data.draw(st.lists(st.integers(-4, 12), min_size=1, max_size=6))
                t.CopyFrom(numpy_helper.from_array(np.array(vals, np.int64).reshape(-1 if t.dims else ()) if len(vals) == 1 or t.dims else np.array(vals, np.int64), t.name))
            else:
                t.raw_data = t.raw_data[: data.draw(st.integers(0, max(len(t.raw_data) - 1, 0)))]
        elif choice == 2:
            t.data_type = data.draw(st.sampled_from([TensorProto.INT64, TensorProto.DOUBLE, TensorProto.STRING,
                                                     TensorProto.FLOAT16, TensorProto.BOOL, 0, 99]))
        else:
            try:
                arr = numpy_helper.to_array(t).astype(np.float64) if t.data_type == TensorProto.FLOAT else None
            except (ValueError, TypeError):  # an earlier mutation broke it already
                arr = None
            if arr is not None and arr.size:
                arr.reshape(-1)[data.draw(st.integers(0, arr.size - 1))] = data.draw(st.floats())
                t.CopyFrom(numpy_helper.from_array(arr.astype(np.float32), t.name))
    elif kind == "dims" and g.input:
        dims = g.input[0].type.tensor_type.shape.dim
        if dims:
            d = dims[data.draw(st.integers(0, len(dims) - 1))]
            if data.draw(st.booleans()):
                d.dim_value = data.draw(st.sampled_from([0, 1, 2, 7, 2**20, 2**40]))
            else:
                d.dim_param = "dyn"
    elif kind == "rename" and g.node:
        node = g.node[data.draw(st.integers(0, len(g.node) - 1))]
        if node.input:
            existing = [i for n in g.node for i in n.input if i] + ["", "nope"]
            node.input[data.draw(st.integers(0, len(node.input) - 1))] = data.draw(st.sampled_from(existing))
    elif kind == "opset":
        model.opset_import[0].version = data.draw(st.sampled_from([1, 7, 8, 9, 10, 11, 13, 18, 21, 99]))
    elif kind == "input":
        g.input[0].type.tensor_type.elem_type = data.draw(st.sampled_from([TensorProto.INT64, TensorProto.FLOAT16, 0]))
    elif kind == "dup_output" and g.output:
        g.output.append(g.output[0])
    return model.SerializeToString()


def _compile_and_run(blob: bytes):
    try:
        spec, _ = compile_spec(blob)
    except (ValueError, TypeError):
        return
    if HAS_PLAN:
        plan = _C.Plan(spec)
        values = spec["values"]
        plan.run([np.zeros(values[i]["shape"], np.float32) for i in spec["inputs"]],
                 [np.empty(values[o]["shape"], np.float32) for o in spec["outputs"]])


FUZZ = settings(max_examples=1200, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@FUZZ
@given(st.data())
def test_structural_mutations(data):
    model = onnx.ModelProto()
    model.ParseFromString(SEEDS[data.draw(st.integers(0, len(SEEDS) - 1))])
    for _ in range(data.draw(st.integers(1, 3))):
        blob = _mutate(data, model)
    _compile_and_run(blob)


@FUZZ
@given(st.data())
def test_byte_mutations(data):
    blob = bytearray(SEEDS[data.draw(st.integers(0, len(SEEDS) - 1))])
    for _ in range(data.draw(st.integers(1, 8))):
        kind = data.draw(st.integers(0, 2))
        pos = data.draw(st.integers(0, len(blob) - 1))
        if kind == 0:
            blob[pos] = data.draw(st.integers(0, 255))
        elif kind == 1:
            del blob[pos:pos + data.draw(st.integers(1, 64))]
        else:
            blob[pos:pos] = bytes(data.draw(st.lists(st.integers(0, 255), min_size=1, max_size=8)))
        if not blob:
            blob = bytearray(b"\x00")
    _compile_and_run(bytes(blob))


def test_seeds_compile():
    for blob in SEEDS:
        spec, _ = compile_spec(blob)
        assert spec["steps"]
