"""Helpers for the graph tests: building small ONNX models, running them in onnxruntime, through the
native Plan, and through `run_spec_reference` — an independent executor of the plan spec that calls
the edgevision.ops kernels (numpy for the ops they lack) on values laid out in ONE arena exactly as
the memory planner placed them, so a wrong offset, alias or in-place decision corrupts the result.
"""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgevision import _C, ops
from edgevision.graph import compile_spec

HAS_PLAN = hasattr(_C, "Plan")
# Executors of a compiled spec: the native Plan (skipped while the extension lacks it) and the
# reference executor over the op kernels.
EXECUTORS = [
    pytest.param("plan", id="plan", marks=pytest.mark.skipif(
        not HAS_PLAN, reason="edgevision._C.Plan is not built yet (helper C's executor has not landed)")),
    pytest.param("reference", id="reference"),
]
# fp32 against onnxruntime: both sum in different orders (blocked GEMM, im2col, SIMD), so a dot
# product of length K differs by ~K * eps * |x|; whole models chain ~20 such layers.
OP_TOL = dict(rtol=1e-4, atol=1e-4)
MODEL_TOL = dict(rtol=1e-3, atol=1e-3)


def bundled_cases(batch=1, frame=(24, 32)):
    """(name, path, input_shapes) of every bundled model (skips the test when none is installed); the
    super-resolution models take any frame size, so they get a small fixed `frame`."""
    from edgevision.model_files import bundled_models, read_metadata
    models = bundled_models()
    if not models:
        pytest.skip("no bundled models installed")
    for name, path in models.items():
        meta = read_metadata(name)
        shapes = ({"input": [batch, 1 if meta.get("channels") == "Y" else 3, *frame]}
                  if meta["task"] == "enhance" else None)
        yield name, path, shapes


def make_model(nodes, inputs, outputs, initializers=(), opset=17, name="test"):
    """inputs/outputs: list of (name, shape) float32 tensors (shape None: unknown); initializers:
    dict or list of (name, numpy array)."""
    if isinstance(initializers, dict):
        initializers = list(initializers.items())
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
        [numpy_helper.from_array(np.asarray(a), n) for n, a in initializers])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset <= 17 else 9 if opset <= 20 else 10
    if any(s is None for _, s in outputs):  # let ONNX fill in the output shapes the checker requires
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    return model


def run_ort(model, inputs):
    import onnxruntime as ort
    data = model if isinstance(model, bytes) else model.SerializeToString()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, dict(zip(names, inputs)))


def run_native(model, inputs, executor, **compile_kw):
    spec, _ = compile_spec(model, **compile_kw)
    if executor == "plan":
        plan = _C.Plan(spec)
        outs = [np.empty(spec["values"][o]["shape"], np.float32) for o in spec["outputs"]]
        plan.run([np.ascontiguousarray(x, dtype=np.float32) for x in inputs], outs)
        return outs
    return run_spec_reference(spec, inputs)


def check_model(model, inputs, executor, tol=OP_TOL, **compile_kw):
    expected = run_ort(model, inputs)
    got = run_native(model, inputs, executor, **compile_kw)
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g.shape == e.shape, f"output {i}: shape {g.shape} vs onnxruntime {e.shape}"
        np.testing.assert_allclose(g, e, **tol, err_msg=f"output {i}")


# ------------------------------------------------------------------------------------------------
# The reference executor
# ------------------------------------------------------------------------------------------------

def _lrn(x, size, alpha, beta, bias):
    n, c = x.shape[:2]
    flat = x.reshape(n, c, -1).astype(np.float64)
    sq = flat ** 2
    out = np.empty_like(flat)
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    for ch in range(c):
        s = sq[:, max(0, ch - lo):min(c, ch + hi + 1)].sum(axis=1)
        out[:, ch] = flat[:, ch] / (bias + alpha / size * s) ** beta
    return out.reshape(x.shape).astype(np.float32)


def run_spec_reference(spec, inputs):
    assert spec["dtype"] == "float32"
    arena = np.full(spec["arena_bytes"] // 4 + 1, np.nan, np.float32)
    values = spec["values"]
    outs = [None] * len(spec["outputs"])
    for k, o in enumerate(spec["outputs"]):
        outs[k] = np.full(values[o]["shape"], np.nan, np.float32)
    arrays = {}

    def get(i):
        if i < 0:
            return None
        if i in arrays:
            return arrays[i]
        v = values[i]
        n = int(np.prod(v["shape"], dtype=np.int64))
        if v["kind"] == "arena":
            assert v["offset"] % 64 == 0
            a = arena[v["offset"] // 4:v["offset"] // 4 + n]
        elif v["kind"] == "input":
            a = np.ascontiguousarray(inputs[v["index"]], dtype=np.float32)
        elif v["kind"] == "output":
            a = outs[v["index"]]
        elif v["kind"] == "constant":
            a = spec["constants"][v["index"]]
        else:
            base = get(v["index"]).reshape(-1)
            assert v["offset"] % 4 == 0 and v["offset"] // 4 + n <= base.size
            a = base[v["offset"] // 4:v["offset"] // 4 + n]
        a = a.reshape(v["shape"])
        arrays[i] = a
        return a

    for step in spec["steps"]:
        op, at = step["op"], step["attrs"]
        xs = [get(i) for i in step["inputs"]]
        y = get(step["outputs"][0])
        act = dict(activation=at.get("act"), alpha=at.get("alpha"), beta=at.get("beta"))
        if op == "conv2d":
            pooled = "max_pool" in at  # a CPU plan's fused pool: conv, then the pool
            c = ops.conv2d(xs[0], xs[1], xs[2], stride=at["stride"], padding=at["pads"], dilation=at["dilation"],
                           groups=at["groups"], residual=xs[3], residual_after_act=at["residual_after_act"],
                           out=None if pooled else y, **act)
            if pooled:
                ops.max_pool2d(c, at["max_pool"], at.get("max_pool_stride", at["max_pool"]),
                               at.get("max_pool_pads", [0] * 4), [1, 1], False, out=y)
        elif op == "conv2d_dw_pw":
            xs += [None] * (8 - len(xs))
            if xs[6] is not None:  # the expand conv
                xs[0] = ops.conv2d(xs[0], xs[6], xs[7], activation=at["ex_act"], alpha=at["ex_alpha"], beta=at["ex_beta"])
            mid = ops.conv2d(xs[0], xs[1], xs[2], stride=at["stride"], padding=at["pads"], dilation=at["dilation"],
                             groups=xs[0].shape[1], activation=at["dw_act"], alpha=at["dw_alpha"], beta=at["dw_beta"])
            ops.conv2d(mid, xs[3], xs[4], residual=xs[5], residual_after_act=at["residual_after_act"], out=y, **act)
        elif op == "conv_transpose2d":
            ops.conv_transpose2d(xs[0], xs[1], xs[2], stride=at["stride"], padding=at["pads"],
                                 output_padding=at["output_padding"], dilation=at["dilation"],
                                 groups=at["groups"], out=y, **act)
        elif op == "max_pool2d":
            ops.max_pool2d(xs[0], at["kernel"], at["stride"], at["pads"], at["dilation"], at["ceil_mode"], out=y)
        elif op == "avg_pool2d":
            ops.avg_pool2d(xs[0], at["kernel"], at["stride"], at["pads"], at["ceil_mode"], at["count_include_pad"], out=y)
        elif op == "global_avg_pool":
            ops.global_avg_pool2d(xs[0], out=y)
        elif op == "global_max_pool":
            ops.global_max_pool2d(xs[0], out=y)
        elif op == "gemm":
            ops.gemm(xs[0], xs[1], xs[2], trans_a=at["trans_a"], trans_b=at["trans_b"], alpha=at["alpha"],
                     activation=at["act"], act_alpha=at["act_alpha"], act_beta=at["act_beta"], residual=xs[3],
                     residual_after_act=at["residual_after_act"], out=y)
        elif op == "matmul":
            y[...] = np.matmul(xs[0], xs[1])
        elif op == "pixel_shuffle":
            top, left = at.get("crop", (0, 0))
            full = ops.pixel_shuffle(xs[0], at["block"], at["mode"])
            y[...] = full[:, :, top:top + y.shape[2], left:left + y.shape[3]]
        elif op == "resize":
            scale = (at["scale_h"], at["scale_w"]) if at["scale_h"] > 0 else None
            ops.resize(xs[0], size=None if scale else y.shape[2:], scale_factor=scale, mode=at["mode"],
                       coordinate_mode=at["coord"], nearest_mode=at["nearest"], out=y)
        elif op == "softmax":
            shape3 = (at["outer"], at["dim"], at["inner"])
            (ops.log_softmax if at["log"] else ops.softmax)(xs[0].reshape(shape3), axis=1, out=y.reshape(shape3))
        elif op == "binary":
            getattr(ops, at["op"])(xs[0], xs[1], out=y, **act)
        elif op == "activation":
            ops.activation(xs[0], at["act"], at["alpha"], at["beta"], out=y)
        elif op == "batch_norm":
            ops.batch_norm(*xs, eps=at["eps"], activation=at["act"], act_alpha=at["alpha"], act_beta=at["beta"], out=y)
        elif op == "concat":
            ops.concat(xs, axis=at["axis"], out=y)
        elif op == "strided_copy":
            flat = xs[0].reshape(-1)
            view = np.lib.stride_tricks.as_strided(flat[at["x_offset"]:], shape=y.shape,
                                                   strides=[s * 4 for s in at["x_strides"]])
            y[...] = view.copy()
        elif op == "pad":
            width = list(zip(at["pad_begin"], at["pad_end"]))
            kw = {"constant_values": at["value"]} if at["mode"] == "constant" else {}
            y[...] = np.pad(xs[0], width, at["mode"], **kw)
        elif op == "lrn":
            y[...] = _lrn(xs[0], at["size"], at["alpha"], at["beta"], at["bias"])
        elif op == "reduce":
            x3 = xs[0].reshape(at["outer"], at["dim"], at["inner"]).astype(np.float64)
            y[...] = getattr(np, at["op"])(x3, axis=1).reshape(y.shape)
        elif op == "copy":
            y[...] = xs[0].reshape(y.shape)
        else:
            raise AssertionError(f"unknown op {op}")
    return outs
