"""The torch backend's plan executor (edgevision.backends.torch.TorchPlan) on hand-written plan specs, one step
each, against ONNX Runtime running the ONNX node the step stands for (or numpy where no single node does).

Tolerance: conftest.TOL["float32"] (1e-4 relative and absolute): torch and ONNX Runtime sum in different
orders; resize compares coordinates computed in float64 here against ORT's float32, well inside it.
"""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from conftest import TOL
from edgevision import _C

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from edgevision.backends.torch import TorchPlan  # noqa: E402


def _ort(op, inputs, attrs=None, consts=None, opset=17):
    """Run one ONNX node; inputs: list of arrays (graph inputs); consts: {name: array} initializers that follow."""
    consts = consts or {}
    names = [f"x{i}" for i in range(len(inputs))] + list(consts)
    node = helper.make_node(op, names, ["y"], **(attrs or {}))
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, a.shape) for i, a in enumerate(inputs)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {f"x{i}": a for i, a in enumerate(inputs)})[0]


def _spec(op, inputs, out_shapes, attrs, constants=()):
    """A one-step plan: graph inputs, then constants, feed the step in that order (-1 for None in constants)."""
    values, step_inputs, consts = [], [], []
    for i, a in enumerate(inputs):
        values.append({"name": f"x{i}", "shape": list(a.shape), "kind": "input", "offset": 0, "index": i})
        step_inputs.append(len(values) - 1)
    for c in constants:
        if c is None:
            step_inputs.append(-1)
            continue
        values.append({"name": f"c{len(consts)}", "shape": list(np.shape(c)), "kind": "constant", "offset": 0,
                       "index": len(consts)})
        consts.append(np.ascontiguousarray(c, dtype=np.float32))
        step_inputs.append(len(values) - 1)
    outs = []
    for j, shape in enumerate(out_shapes):
        values.append({"name": f"y{j}", "shape": list(shape), "kind": "output", "offset": 0, "index": j})
        outs.append(len(values) - 1)
    return {"device": "cpu", "dtype": "float32", "num_threads": 0, "arena_bytes": 0, "constants": consts,
            "values": values, "steps": [{"op": op, "name": f"{op}_0", "inputs": step_inputs, "outputs": outs,
                                         "attrs": attrs}],
            "inputs": list(range(len(inputs))), "outputs": outs}


def _run(spec, inputs):
    """TorchPlan's outputs; where edgevision._C.Plan exists, the same spec through it must agree (two independent
    readings of the plan contract)."""
    ys = [y.numpy() for y in TorchPlan(spec).run(inputs)]
    if hasattr(_C, "Plan"):
        outs = [np.empty(spec["values"][v]["shape"], np.float32) for v in spec["outputs"]]
        _C.Plan(spec).run([np.ascontiguousarray(x) for x in inputs], outs)
        for y, o in zip(ys, outs):
            _close(o, y, f"_C.Plan vs TorchPlan, step {spec['steps'][0]['op']}")
    return ys


def _close(y, expect, what=""):
    rtol, atol = TOL["float32"]
    np.testing.assert_allclose(y, expect, rtol=rtol, atol=atol, err_msg=what)


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


ACTS = {"relu": lambda v: np.maximum(v, 0), "leaky_relu": lambda v: np.where(v >= 0, v, 0.1 * v),
        "clip": lambda v: np.clip(v, -0.5, 0.5), "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "tanh": np.tanh,
        "silu": lambda v: v / (1 + np.exp(-v)), "hardswish": lambda v: v * np.clip(v + 3, 0, 6) / 6,
        "hardsigmoid": lambda v: np.clip(0.2 * v + 0.5, 0, 1), "none": lambda v: v}
ACT_ATTRS = {"leaky_relu": {"alpha": 0.1}, "clip": {"alpha": -0.5, "beta": 0.5}, "hardsigmoid": {"alpha": 0.2, "beta": 0.5}}


@pytest.mark.parametrize("act", sorted(ACTS))
@pytest.mark.parametrize("residual_after_act", [False, True])
def test_conv2d_asymmetric_pads_epilogue(act, residual_after_act):
    x, w, b = _x(2, 4, 9, 7), _x(6, 2, 3, 2, seed=1), _x(6, seed=2)
    attrs = {"strides": [2, 1], "pads": [1, 0, 2, 1], "dilations": [1, 2], "group": 2}
    conv = _ort("Conv", [x], attrs, {"w": w, "b": b})
    res = _x(*conv.shape, seed=3)
    expect = ACTS[act](conv) + res if residual_after_act else ACTS[act](conv + res)
    spec = _spec("conv2d", [x], [conv.shape], {"stride": [2, 1], "pads": [1, 0, 2, 1], "dilation": [1, 2], "groups": 2,
                                               "act": act, "residual_after_act": residual_after_act,
                                               **ACT_ATTRS.get(act, {})}, [w, b, res])
    _close(_run(spec, [x])[0], expect, act)


@pytest.mark.parametrize("pads,out_pad,stride,dil,groups", [
    ([0, 0, 0, 0], [0, 0], [1, 1], [1, 1], 1), ([1, 1, 1, 1], [1, 0], [2, 2], [1, 1], 1),
    ([0, 2, 1, 0], [1, 1], [3, 2], [1, 2], 2), ([2, 1, 0, 1], [0, 0], [2, 3], [2, 1], 3)])
def test_conv_transpose2d(pads, out_pad, stride, dil, groups):
    x, w, b = _x(1, 6, 5, 4), _x(6, 2, 3, 3, seed=1), _x(2 * groups, seed=2)
    expect = _ort("ConvTranspose", [x], {"pads": pads, "output_padding": out_pad, "strides": stride,
                                         "dilations": dil, "group": groups}, {"w": w, "b": b})
    spec = _spec("conv_transpose2d", [x], [expect.shape], {"stride": stride, "pads": pads, "output_padding": out_pad,
                                                          "dilation": dil, "groups": groups, "act": "none"}, [w, b])
    _close(_run(spec, [x])[0], expect)


@pytest.mark.parametrize("kernel,stride,pads,dil,ceil", [
    ([3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 0), ([2, 3], [2, 2], [0, 1, 1, 0], [1, 1], 1),
    ([3, 2], [3, 2], [1, 0, 1, 1], [2, 1], 1), ([2, 2], [1, 1], [0, 0, 0, 0], [1, 1], 0)])
def test_max_pool2d(kernel, stride, pads, dil, ceil):
    x = _x(2, 3, 10, 9)
    expect = _ort("MaxPool", [x], {"kernel_shape": kernel, "strides": stride, "pads": pads, "dilations": dil,
                                   "ceil_mode": ceil})
    spec = _spec("max_pool2d", [x], [expect.shape], {"kernel": kernel, "stride": stride, "pads": pads, "dilation": dil,
                                                    "ceil_mode": bool(ceil)})
    _close(_run(spec, [x])[0], expect)


@pytest.mark.parametrize("include", [0, 1])
@pytest.mark.parametrize("kernel,stride,pads,ceil", [
    ([3, 3], [2, 2], [1, 1, 1, 1], 0), ([3, 2], [2, 2], [1, 0, 1, 1], 1), ([2, 2], [2, 2], [0, 0, 0, 0], 1)])
def test_avg_pool2d(include, kernel, stride, pads, ceil):
    x = _x(1, 3, 9, 8)
    expect = _ort("AveragePool", [x], {"kernel_shape": kernel, "strides": stride, "pads": pads, "ceil_mode": ceil,
                                       "count_include_pad": include}, opset=19)
    spec = _spec("avg_pool2d", [x], [expect.shape], {"kernel": kernel, "stride": stride, "pads": pads,
                                                    "ceil_mode": bool(ceil), "count_include_pad": bool(include)})
    _close(_run(spec, [x])[0], expect)


@pytest.mark.parametrize("coord", ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"])
@pytest.mark.parametrize("mode,nearest", [("linear", "round_prefer_floor"), ("nearest", "round_prefer_floor"),
                                          ("nearest", "round_prefer_ceil"), ("nearest", "floor"), ("nearest", "ceil")])
# Non-integer scales without exact half-way source coordinates: at those (e.g. scale 1.7: 8.5 / 1.7 - 0.5 = 4.5)
# the nearest pixel depends on float rounding of the division, and implementations legitimately differ.
@pytest.mark.parametrize("scales", [(2.0, 3.0), (0.5, 1.5), (1.73, 0.61)])
def test_resize(coord, mode, nearest, scales):
    x = _x(1, 2, 6, 5)
    consts = {"roi": np.zeros(0, np.float32), "scales": np.array([1, 1, *scales], np.float32)}
    expect = _ort("Resize", [x], {"mode": mode, "coordinate_transformation_mode": coord, "nearest_mode": nearest}, consts)
    spec = _spec("resize", [x], [expect.shape], {"mode": "bilinear" if mode == "linear" else "nearest", "coord": coord,
                                                "nearest": nearest, "scale_h": scales[0], "scale_w": scales[1]})
    _close(_run(spec, [x])[0], expect, f"{mode} {coord} {nearest} {scales}")


@pytest.mark.parametrize("mode", ["CRD", "DCR"])
def test_pixel_shuffle(mode):
    x = _x(2, 18, 3, 4)
    expect = _ort("DepthToSpace", [x], {"blocksize": 3, "mode": mode})
    _close(_run(_spec("pixel_shuffle", [x], [expect.shape], {"block": 3, "mode": mode}), [x])[0], expect)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad(mode):
    x = _x(2, 3, 5, 4)
    begin, end = [0, 1, 2, 3], [1, 0, 4, 2]
    expect = _ort("Pad", [x], {"mode": mode}, {"pads": np.array(begin + end, np.int64),
                                               "value": np.array(0.5, np.float32)})
    spec = _spec("pad", [x], [expect.shape], {"pad_begin": begin, "pad_end": end, "mode": mode, "value": 0.5})
    _close(_run(spec, [x])[0], expect)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_lrn(size):
    x = _x(2, 7, 4, 3)
    # The ONNX definition in numpy (ONNX Runtime implements odd sizes only; it is checked there too).
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    sq = np.pad(x * x, ((0, 0), (lo, hi), (0, 0), (0, 0)))
    window = sum(sq[:, i:i + 7] for i in range(size))
    expect = x / (1.5 + 1e-2 / size * window) ** 0.6
    if size % 2:
        _close(_ort("LRN", [x], {"size": size, "alpha": 1e-2, "beta": 0.6, "bias": 1.5}), expect)
    spec = _spec("lrn", [x], [x.shape], {"size": size, "alpha": 1e-2, "beta": 0.6, "bias": 1.5})
    _close(_run(spec, [x])[0], expect)


def test_strided_copy_transpose_slice_expand():
    x = _x(2, 3, 4)
    cases = [  # (output shape, strides, offset, numpy expectation)
        ((4, 2, 3), [1, 12, 4], 0, x.transpose(2, 0, 1)),
        ((2, 2, 2), [12, -4, 2], 8, x[:, 2:0:-1, 0:4:2]),
        ((3, 2, 3, 4), [0, 12, 4, 1], 0, np.broadcast_to(x, (3, 2, 3, 4))),
        ((1, 3, 4), [12, 4, -1], 15, x[1:2, :, ::-1]),
    ]
    for shape, strides, offset, expect in cases:
        spec = _spec("strided_copy", [x], [shape], {"x_strides": strides, "x_offset": offset})
        np.testing.assert_array_equal(_run(spec, [x])[0], expect)
    with pytest.raises(ValueError, match="outside"):
        _run(_spec("strided_copy", [x], [(3, 4)], {"x_strides": [4, 1], "x_offset": 20}), [x])


def test_elementwise_and_reductions():
    a, b = _x(2, 3, 4, 5), _x(3, 1, 5, seed=1)
    for op, f in (("add", np.add), ("sub", np.subtract), ("mul", np.multiply), ("div", np.divide)):
        spec = _spec("binary", [a, b], [a.shape], {"op": op, "act": "relu"})
        _close(_run(spec, [a, b])[0], np.maximum(f(a, b), 0), op)
    spec = _spec("softmax", [a], [a.shape], {"outer": 6, "dim": 4, "inner": 5, "log": False})
    _close(_run(spec, [a])[0], _ort("Softmax", [a], {"axis": 2}, opset=13))
    spec = _spec("softmax", [a], [a.shape], {"outer": 6, "dim": 20, "inner": 1, "log": True})
    _close(_run(spec, [a])[0], _ort("LogSoftmax", [a.reshape(6, 20)], {"axis": 1}).reshape(a.shape))
    for op, f in (("mean", np.mean), ("sum", np.sum), ("max", np.max), ("min", np.min)):
        spec = _spec("reduce", [a], [(2, 1, 4, 5)], {"op": op, "outer": 2, "dim": 3, "inner": 20})
        _close(_run(spec, [a])[0], f(a, axis=1, keepdims=True), op)
    spec = _spec("global_avg_pool", [a], [(2, 3, 1, 1)], {})
    _close(_run(spec, [a])[0], a.mean((2, 3), keepdims=True))
    spec = _spec("global_max_pool", [a], [(2, 3, 1, 1)], {})
    _close(_run(spec, [a])[0], a.max((2, 3), keepdims=True))
    for act, f in ACTS.items():
        spec = _spec("activation", [a], [a.shape], {"act": act, **ACT_ATTRS.get(act, {})})
        _close(_run(spec, [a])[0], f(a), act)
    gelu = _run(_spec("activation", [a], [a.shape], {"act": "gelu"}), [a])[0]
    _close(gelu, torch.nn.functional.gelu(torch.from_numpy(a)).numpy())


def test_gemm_matmul_concat_batchnorm_copy():
    a, w, bias, res = _x(3, 5), _x(4, 5, seed=1), _x(4, seed=2), _x(3, 4, seed=3)
    spec = _spec("gemm", [a], [(3, 4)], {"trans_a": False, "trans_b": True, "alpha": 0.5, "act": "tanh"},
                 [w, bias, res])
    _close(_run(spec, [a])[0], np.tanh(0.5 * a @ w.T + bias + res))
    # gemm's activation parameters are act_alpha / act_beta: its "alpha" is the product's scale
    spec = _spec("gemm", [a], [(3, 4)], {"trans_a": False, "trans_b": True, "alpha": 2.0, "act": "clip",
                                         "act_alpha": -0.5, "act_beta": 0.25}, [w, bias])
    _close(_run(spec, [a])[0], np.clip(2.0 * a @ w.T + bias, -0.5, 0.25))
    spec = _spec("gemm", [a], [(5, 5)], {"trans_a": True, "trans_b": False, "alpha": 1.0}, [_x(3, 5, seed=4)])
    _close(_run(spec, [a])[0], a.T @ _x(3, 5, seed=4))
    p, q = _x(2, 1, 3, 5), _x(4, 5, 2, seed=1)
    _close(_run(_spec("matmul", [p, q], [(2, 4, 3, 2)], {}), [p, q])[0], np.matmul(p, q))
    x0, x1 = _x(2, 3, 4), _x(2, 1, 4, seed=1)
    _close(_run(_spec("concat", [x0, x1], [(2, 4, 4)], {"axis": 1}), [x0, x1])[0], np.concatenate([x0, x1], 1))
    x = _x(2, 3, 4, 4)
    g, be, m, v = _x(3, seed=1), _x(3, seed=2), _x(3, seed=3), np.abs(_x(3, seed=4)) + 0.5
    expect = _ort("BatchNormalization", [x], {"epsilon": 1e-3}, {"g": g, "b": be, "m": m, "v": v})
    spec = _spec("batch_norm", [x], [x.shape], {"eps": 1e-3, "act": "relu"}, [g, be, m, v])
    _close(_run(spec, [x])[0], np.maximum(expect, 0))
    np.testing.assert_array_equal(_run(_spec("copy", [x], [(2, 48)], {}), [x])[0], x.reshape(2, 48))


def test_aliases_and_multi_step_plan():
    """input -> relu (arena) -> alias [2, 12] read by gemm; a step writing into an alias writes its base."""
    x, w = _x(2, 3, 4), _x(5, 12, seed=1)
    spec = {
        "device": "cpu", "dtype": "float32", "num_threads": 0, "arena_bytes": 256, "constants": [w],
        "values": [
            {"name": "x", "shape": [2, 3, 4], "kind": "input", "offset": 0, "index": 0},
            {"name": "r", "shape": [2, 3, 4], "kind": "arena", "offset": 0, "index": 0},
            {"name": "flat", "shape": [2, 12], "kind": "alias", "offset": 0, "index": 1},
            {"name": "w", "shape": [5, 12], "kind": "constant", "offset": 0, "index": 0},
            {"name": "y", "shape": [2, 5], "kind": "output", "offset": 0, "index": 0},
            {"name": "half", "shape": [1, 3, 4], "kind": "alias", "offset": 48, "index": 1},
            {"name": "z", "shape": [1, 3, 4], "kind": "output", "offset": 0, "index": 1},
        ],
        "steps": [
            {"op": "activation", "name": "relu", "inputs": [0], "outputs": [1], "attrs": {"act": "relu"}},
            {"op": "gemm", "name": "fc", "inputs": [2, 3, -1, -1], "outputs": [4],
             "attrs": {"trans_a": False, "trans_b": True, "alpha": 1.0, "act": "none"}},
            {"op": "copy", "name": "second", "inputs": [5], "outputs": [6], "attrs": {}},
        ],
        "inputs": [0], "outputs": [4, 6],
    }
    y, z = _run(spec, [x])
    r = np.maximum(x, 0)
    _close(y, r.reshape(2, 12) @ w.T)
    np.testing.assert_array_equal(z, r[1:2])


def test_bad_specs_raise_value_errors():
    x = _x(1, 2, 3, 3)
    with pytest.raises(ValueError, match="unknown op 'einsum'"):
        TorchPlan(_spec("einsum", [x], [x.shape], {}))
    with pytest.raises(ValueError, match=r"conv2d 'conv2d_0'"):  # weight channels do not match the input
        _run(_spec("conv2d", [x], [(1, 4, 3, 3)], {"pads": [1, 1, 1, 1]}, [_x(4, 3, 3, 3)]), [x])
    with pytest.raises(ValueError, match="the plan says"):
        _run(_spec("activation", [x], [(1, 2, 3, 4)], {"act": "relu"}), [x])
    with pytest.raises(ValueError, match="dtype"):
        TorchPlan(dict(_spec("copy", [x], [x.shape], {}), dtype="int8"))
