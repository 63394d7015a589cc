"""Graph passes over the IR: constant folding with numpy (also used by the importer as it goes),
Identity/Dropout removal, Erf-GELU / SiLU / HardSwish pattern fusion, MatMul -> gemm, BatchNorm and
constant bias/scale folding into conv/gemm weights, activation and residual-Add fusion into
epilogues, strided transposed convs rewritten as convs + pixel shuffle, dead-node removal. `optimize` runs
them in the order the fusions need.
"""
from __future__ import annotations

import math

import numpy as np

from .ir import EPILOGUE_OPS, NO_ACT, Graph, InvalidModelError, Node, UnsupportedModelError, act_attrs

# A folded constant larger than this is treated as a malformed model (a legit model never folds one).
MAX_FOLD_BYTES = 1 << 30

_erf = np.frompyfunc(math.erf, 1, 1)


def _check_fold_size(shape, itemsize: int = 8):
    n = 1
    for d in shape:
        n *= int(d)
    if n * itemsize > MAX_FOLD_BYTES:
        raise InvalidModelError(f"a constant of shape {list(shape)} would be too large to fold")


# ------------------------------------------------------------------------------------------------
# numpy semantics of ONNX ops that only ever fold (shape chains, weight arithmetic)
# ------------------------------------------------------------------------------------------------

def _int_div(a, b):
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        if np.any(b == 0):
            raise InvalidModelError("integer division by zero in a constant expression")
        q = np.floor_divide(a, b)
        fix = (np.remainder(a, b) != 0) & ((a < 0) != (b < 0))
        return q + fix  # ONNX integer Div truncates toward zero
    return np.divide(a, b)


def _unary(fn):
    return lambda version, attrs, xs: [np.asarray(fn(xs[0])).astype(xs[0].dtype)]


def _binary(fn):
    def f(version, attrs, xs):
        _check_fold_size(np.broadcast_shapes(xs[0].shape, xs[1].shape))
        return [np.asarray(fn(xs[0], xs[1]))]
    return f


def _cast(version, attrs, xs):
    import onnx
    to = attrs.get("to")
    try:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(to)
    except Exception:
        raise UnsupportedModelError(f"cast to type {to!r} is not supported") from None
    if dtype.kind not in "fiub":
        raise UnsupportedModelError(f"cast to {dtype} is not supported")
    return [xs[0].astype(dtype)]


def _constant_of_shape(version, attrs, xs):
    shape = [int(d) for d in xs[0].reshape(-1)]
    if any(d < 0 for d in shape):
        raise InvalidModelError(f"negative shape {shape}")
    value = attrs.get("value")
    if value is None:
        fill = np.zeros(1, np.float32)
    else:
        from onnx import numpy_helper
        fill = numpy_helper.to_array(value).reshape(-1)
        if fill.size != 1:
            raise InvalidModelError("value must hold one element")
    _check_fold_size(shape, fill.dtype.itemsize)
    return [np.full(shape, fill[0], fill.dtype)]


def _range(version, attrs, xs):
    start, limit, delta = (x.reshape(-1)[0] for x in xs)
    if delta == 0:
        raise InvalidModelError("Range with delta 0")
    n = max(int(math.ceil((float(limit) - float(start)) / float(delta))), 0)
    _check_fold_size([n])
    return [np.arange(n, dtype=xs[0].dtype) * delta + start]


def _where(version, attrs, xs):
    _check_fold_size(np.broadcast_shapes(*(x.shape for x in xs)))
    return [np.where(xs[0].astype(bool), xs[1], xs[2])]


def _tile(version, attrs, xs):
    reps = [int(r) for r in xs[1].reshape(-1)]
    if len(reps) != xs[0].ndim or any(r < 0 for r in reps):
        raise InvalidModelError(f"repeats {reps} do not fit rank {xs[0].ndim}")
    _check_fold_size([d * r for d, r in zip(xs[0].shape, reps)])
    return [np.tile(xs[0], reps)]


def _minmax(fn):
    def f(version, attrs, xs):
        xs = [x for x in xs if x is not None]
        _check_fold_size(np.broadcast_shapes(*(x.shape for x in xs)))
        out = xs[0]
        for x in xs[1:]:
            out = fn(out, x)
        return [out]
    return f


def _clip(version, attrs, xs):
    x = xs[0]
    lo = xs[1] if len(xs) > 1 and xs[1] is not None else None
    hi = xs[2] if len(xs) > 2 and xs[2] is not None else None
    if version < 11:
        lo, hi = attrs.get("min", -np.inf), attrs.get("max", np.inf)
    if lo is not None:
        x = np.maximum(x, np.asarray(lo, x.dtype))
    if hi is not None:
        x = np.minimum(x, np.asarray(hi, x.dtype))
    return [x]


def _reduce_fold(fn):
    def f(version, attrs, xs):
        x = xs[0]
        if len(xs) > 1 and xs[1] is not None:
            axes = tuple(int(a) for a in xs[1].reshape(-1))
        else:
            axes = tuple(attrs.get("axes", ())) or None
        if not axes and attrs.get("noop_with_empty_axes", 0):
            return [x]
        return [np.asarray(fn(x, axis=axes, keepdims=bool(attrs.get("keepdims", 1)))).astype(x.dtype)]
    return f


ONNX_FOLDERS = {
    "Erf": _unary(lambda x: _erf(x).astype(np.float64)), "Sqrt": _unary(np.sqrt), "Exp": _unary(np.exp),
    "Log": _unary(np.log), "Neg": _unary(np.negative), "Abs": _unary(np.abs),
    "Reciprocal": _unary(lambda x: 1 / x), "Floor": _unary(np.floor), "Ceil": _unary(np.ceil),
    "Round": _unary(np.rint), "Sign": _unary(np.sign), "Sin": _unary(np.sin), "Cos": _unary(np.cos),
    "Not": _unary(np.logical_not),
    "Pow": _binary(lambda a, b: np.power(a, b.astype(a.dtype)).astype(a.dtype)),
    "Equal": _binary(np.equal), "Less": _binary(np.less), "LessOrEqual": _binary(np.less_equal),
    "Greater": _binary(np.greater), "GreaterOrEqual": _binary(np.greater_equal),
    "And": _binary(np.logical_and), "Or": _binary(np.logical_or), "Xor": _binary(np.logical_xor),
    "Mod": _binary(lambda a, b: np.fmod(a, b) if a.dtype.kind == "f" else np.remainder(a, b)),
    "Min": _minmax(np.minimum), "Max": _minmax(np.maximum), "Where": _where, "Range": _range,
    "Tile": _tile, "Cast": _cast, "ConstantOfShape": _constant_of_shape, "Clip": _clip,
    "ReduceProd": _reduce_fold(np.prod), "ReduceMean": _reduce_fold(np.mean),
    "ReduceSum": _reduce_fold(np.sum), "ReduceMax": _reduce_fold(np.max), "ReduceMin": _reduce_fold(np.min),
}
# Ops above that also have a run-time lowering in onnx_import (the others are fold-only).
_ALSO_LOWERED = {"Erf", "Clip", "Cast", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin"}
ONNX_FOLDERS_ONLY = sorted(set(ONNX_FOLDERS) - _ALSO_LOWERED)


def evaluate_onnx(op_type: str, version: int, attrs: dict, arrays: list, nout: int) -> list[np.ndarray]:
    """numpy result(s) of an ONNX node whose inputs are all constant."""
    with np.errstate(all="ignore"):
        return ONNX_FOLDERS[op_type](version, attrs, arrays)


# ------------------------------------------------------------------------------------------------
# numpy semantics of IR ops, for folding
# ------------------------------------------------------------------------------------------------

def activation_numpy(x: np.ndarray, act: str, alpha: float, beta: float) -> np.ndarray:
    x = x.astype(np.float32)
    if act == "none":
        return x
    if act == "relu":
        return np.maximum(x, 0)
    if act == "leaky_relu":
        return np.where(x >= 0, x, alpha * x)
    if act == "clip":
        return np.minimum(np.maximum(x, alpha), beta)
    if act == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if act == "tanh":
        return np.tanh(x)
    if act == "silu":
        return x / (1 + np.exp(-x))
    if act == "hardswish":
        return x * np.clip(x + 3, 0, 6) / 6
    if act == "gelu":
        return (0.5 * x * (1 + _erf(x / math.sqrt(2)).astype(np.float64))).astype(np.float32)
    if act == "hardsigmoid":
        return np.clip(alpha * x + beta, 0, 1)
    raise ValueError(f"unknown activation {act!r}")


def _eval_binary(n, xs):
    a, b = xs
    op = n.attrs["op"]
    y = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": _int_div}[op](a, b)
    if n.attrs["act"] != "none":
        y = activation_numpy(y, n.attrs["act"], n.attrs["alpha"], n.attrs["beta"])
    return [np.asarray(y)]


def _eval_strided(n, xs, shapes):
    x = np.asarray(xs[0], order="C").reshape(-1)
    item = x.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(x[n.attrs["x_offset"]:] if n.attrs["x_offset"] >= 0 else x,
                                           shape=shapes[0], strides=[s * item for s in n.attrs["x_strides"]])
    return [view.copy()]


def _eval_pad(n, xs):
    mode = {"constant": "constant", "reflect": "reflect", "edge": "edge"}[n.attrs["mode"]]
    width = list(zip(n.attrs["pad_begin"], n.attrs["pad_end"]))
    if mode == "constant":
        return [np.pad(xs[0], width, mode, constant_values=n.attrs["value"])]
    return [np.pad(xs[0], width, mode)]


def _eval_reduce(n, xs, shapes):
    a = n.attrs
    x = xs[0].reshape(a["outer"], a["dim"], a["inner"])
    fn = {"mean": np.mean, "sum": np.sum, "max": np.max, "min": np.min}[a["op"]]
    return [fn(x, axis=1).astype(xs[0].dtype).reshape(shapes[0])]


def _eval_gemm(n, xs):
    a, b, bias, res = xs
    a = a.T if n.attrs["trans_a"] else a
    b = b.T if n.attrs["trans_b"] else b
    y = a.astype(np.float32) @ b.astype(np.float32)
    if bias is not None:
        y = y + bias
    if res is not None and not n.attrs["residual_after_act"]:
        y = y + res
    y = activation_numpy(y, n.attrs["act"], n.attrs["alpha"], n.attrs["beta"]) if n.attrs["act"] != "none" else y
    if res is not None and n.attrs["residual_after_act"]:
        y = y + res
    return [y.astype(np.float32)]


_IR_EVAL = {
    "binary": lambda n, xs, shapes: _eval_binary(n, xs),
    "activation": lambda n, xs, shapes: [activation_numpy(xs[0], n.attrs["act"], n.attrs["alpha"], n.attrs["beta"])],
    "strided_copy": _eval_strided,
    "concat": lambda n, xs, shapes: [np.concatenate(xs, axis=n.attrs["axis"])],
    "identity": lambda n, xs, shapes: [xs[0]],
    "copy": lambda n, xs, shapes: [xs[0].reshape(shapes[0])],
    "pad": lambda n, xs, shapes: _eval_pad(n, xs),
    "reduce": _eval_reduce,
    "matmul": lambda n, xs, shapes: [np.matmul(xs[0], xs[1])],
    "gemm": lambda n, xs, shapes: _eval_gemm(n, xs),
    "onnx": lambda n, xs, shapes: evaluate_onnx(n.attrs["op_type"], 0, n.attrs, xs, len(n.outputs)),
}


def fold_node(g: Graph, node: Node, shapes=None) -> list[str] | None:
    """Evaluate `node` with numpy when every present input is constant; its outputs become constants
    in `g`. Returns the output names, or None when the node does not fold."""
    if node.op not in _IR_EVAL:
        return None
    if not any(node.inputs) or any(i and g.const(i) is None for i in node.inputs):
        return None
    if shapes is None:
        shapes = [g.values[o].shape for o in node.outputs]
    for s in shapes:
        _check_fold_size(s)
    xs = [g.const(i) if i else None for i in node.inputs]
    with np.errstate(all="ignore"):
        results = _IR_EVAL[node.op](node, xs, shapes)
    for name, data, shape in zip(node.outputs, results, shapes):
        data = np.asarray(data, order="C")
        if tuple(data.shape) != tuple(shape):
            data = data.reshape(shape)
        g.add_value(name, shape, str(data.dtype), data)
    return node.outputs


def fold_constants(g: Graph) -> bool:
    """Replace every node whose inputs are all constant by its folded outputs."""
    changed = False
    for node in list(g.nodes):
        if fold_node(g, node) is not None:
            g.nodes.remove(node)
            changed = True
    return changed


# ------------------------------------------------------------------------------------------------
# Structural helpers
# ------------------------------------------------------------------------------------------------

def _sole_consumer(g: Graph, name: str, consumers) -> Node | None:
    """The one node reading `name` when nothing else (another node, a graph output) reads it."""
    readers = consumers.get(name, [])
    if len(readers) != 1 or name in g.outputs:
        return None
    node = readers[0]
    return node if node.inputs.count(name) == 1 else None


def _scalar(g: Graph, name: str) -> float | None:
    data = g.const(name)
    if data is None or data.size != 1 or data.dtype.kind != "f":
        return None
    return float(data.reshape(-1)[0])


def _is(node: Node | None, ir_op: str, **attrs) -> bool:
    return node is not None and node.op == ir_op and all(node.attrs.get(k) == v for k, v in attrs.items())


def _other(node: Node, name: str) -> str:
    return node.inputs[1] if node.inputs[0] == name else node.inputs[0]


def _replace_nodes(g: Graph, old: list[Node], new: Node) -> None:
    """Remove `old` and put `new` where the last of them was (its inputs exist by then)."""
    index = max(g.nodes.index(n) for n in old)
    g.nodes[index] = new
    for n in old:
        if n is not new and n in g.nodes:
            g.nodes.remove(n)


def remove_identity(g: Graph) -> None:
    """Drop identity nodes (Identity, Dropout, no-op casts) and reshapes to the same shape: readers
    use the input. An identity that gives a graph output renames its producer's output instead; one
    whose input is an input, a constant or another output stays (it becomes a copy step)."""
    producers = g.producers()
    for node in list(g.nodes):
        trivial = node.op == "identity" or (
            node.op == "strided_copy" and g.values[node.inputs[0]].shape == g.values[node.outputs[0]].shape
            and node.attrs["x_offset"] == 0 and _is_dense(g.values[node.outputs[0]].shape, node.attrs["x_strides"]))
        if not trivial:
            continue
        x, y = node.inputs[0], node.outputs[0]
        if y not in g.outputs:
            g.replace_uses(y, x)
            g.nodes.remove(node)
            continue
        p = producers.get(x)
        if p is not None and x not in g.outputs and x not in g.inputs:
            p.outputs = [y if o == x else o for o in p.outputs]
            g.replace_uses(x, y)
            g.nodes.remove(node)
            producers = g.producers()
    g.prune_values()


def _is_dense(shape, strides) -> bool:
    acc = 1
    for d, s in zip(reversed(shape), reversed(strides)):
        if d != 1 and s != acc:
            return False
        acc *= d
    return True


# ------------------------------------------------------------------------------------------------
# Pattern fusion
# ------------------------------------------------------------------------------------------------

def _near(v: float | None, target: float, tol: float = 1e-4) -> bool:
    return v is not None and abs(v - target) <= tol * max(1.0, abs(target))


def fuse_gelu(g: Graph) -> None:
    """x * 0.5 * (1 + erf(x / sqrt 2)), as PyTorch exports nn.GELU (in any association of the
    products, with Div by sqrt 2 or Mul by 1/sqrt 2) -> one gelu activation."""
    for erf in [n for n in g.nodes if _is(n, "onnx", op_type="Erf")]:
        cons, prod = g.consumers(), g.producers()
        scale = prod.get(erf.inputs[0])
        if not (_is(scale, "binary", act="none") and _sole_consumer(g, erf.inputs[0], cons) is erf):
            continue
        x = scale.inputs[0]
        c = _scalar(g, scale.inputs[1])
        if not ((scale.attrs["op"] == "div" and _near(c, math.sqrt(2)))
                or (scale.attrs["op"] == "mul" and _near(c, 1 / math.sqrt(2)))):
            continue
        add = _sole_consumer(g, erf.outputs[0], cons)
        if not (_is(add, "binary", op="add", act="none") and _near(_scalar(g, _other(add, erf.outputs[0])), 1.0)):
            continue
        m = _sole_consumer(g, add.outputs[0], cons)
        if not _is(m, "binary", op="mul", act="none"):
            continue
        other = _other(m, add.outputs[0])
        removed, final = [scale, erf, add, m], None
        if other == x:                              # (x * (1 + erf)) * 0.5
            m2 = _sole_consumer(g, m.outputs[0], cons)
            if _is(m2, "binary", op="mul", act="none") and _near(_scalar(g, _other(m2, m.outputs[0])), 0.5):
                removed.append(m2)
                final = m2.outputs[0]
        elif _near(_scalar(g, other), 0.5):         # x * ((1 + erf) * 0.5)
            m2 = _sole_consumer(g, m.outputs[0], cons)
            if _is(m2, "binary", op="mul", act="none") and _other(m2, m.outputs[0]) == x:
                removed.append(m2)
                final = m2.outputs[0]
        else:                                       # (x * 0.5) * (1 + erf)
            h = prod.get(other)
            if (_is(h, "binary", op="mul", act="none") and x in h.inputs and _near(_scalar(g, _other(h, x)), 0.5)
                    and _sole_consumer(g, other, cons) is m):
                removed.append(h)
                final = m.outputs[0]
        if final is None or g.values[final].shape != g.values[x].shape:
            continue
        _replace_nodes(g, removed, Node("activation", erf.name, [x], [final],
                                        act_attrs("gelu"), "Erf (GELU)"))
    g.prune_values()


def fuse_silu(g: Graph) -> None:
    """x * sigmoid(x) -> silu; x * hardsigmoid(x; 1/6, 1/2) -> hardswish."""
    for m in [n for n in g.nodes if _is(n, "binary", op="mul", act="none")]:
        if m not in g.nodes:
            continue
        cons, prod = g.consumers(), g.producers()
        for i in (0, 1):
            s = prod.get(m.inputs[i])
            x = m.inputs[1 - i]
            if not (_is(s, "activation") and s.inputs[0] == x and _sole_consumer(g, m.inputs[i], cons) is m):
                continue
            if s.attrs["act"] == "sigmoid":
                act = "silu"
            elif (s.attrs["act"] == "hardsigmoid" and _near(s.attrs["alpha"], 1 / 6, 1e-6)
                  and _near(s.attrs["beta"], 0.5, 1e-6)):
                act = "hardswish"
            else:
                continue
            if g.values[m.outputs[0]].shape != g.values[x].shape:
                continue
            _replace_nodes(g, [s, m], Node("activation", m.name, [x], m.outputs, act_attrs(act),
                                           m.onnx_op))
            break
    g.prune_values()


def matmul_to_gemm(g: Graph) -> None:
    """matmul of two 2-D operands -> gemm; of an N-D activation with a constant [k, n] matrix ->
    reshape to 2-D, gemm, reshape back (so linear layers get bias and activation epilogues)."""
    for node in [n for n in g.nodes if n.op == "matmul"]:
        sa, sb = g.values[node.inputs[0]].shape, g.values[node.inputs[1]].shape
        attrs = {"trans_a": False, "trans_b": False, **NO_ACT}
        if len(sa) == 2 and len(sb) == 2:
            node.op, node.attrs = "gemm", attrs
            node.inputs = node.inputs + ["", ""]
        elif len(sa) > 2 and len(sb) == 2 and g.const(node.inputs[1]) is not None:
            m = int(np.prod(sa[:-1]))
            a2 = g.unique_name(f"{node.name}/a2d")
            y2 = g.unique_name(f"{node.name}/y2d")
            g.add_value(a2, (m, sa[-1]))
            g.add_value(y2, (m, sb[-1]))
            out = node.outputs[0]
            index = g.nodes.index(node)
            g.nodes[index:index + 1] = [
                Node("strided_copy", node.name, [node.inputs[0]], [a2], {"x_strides": [sa[-1], 1], "x_offset": 0}, node.onnx_op),
                Node("gemm", node.name, [a2, node.inputs[1], "", ""], [y2], attrs, node.onnx_op),
                Node("strided_copy", node.name, [y2], [out], {"x_strides": _dense(g.values[out].shape), "x_offset": 0},
                     node.onnx_op),
            ]


def _dense(shape) -> list[int]:
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= d
    return strides[::-1]


def _channel_vector(data: np.ndarray, rank: int, channels: int) -> np.ndarray | None:
    """A constant that, broadcast against a rank-`rank` [n, channels, ...] tensor, varies along dim 1
    only -> its [channels] values; None otherwise."""
    if data.ndim > rank or data.dtype.kind != "f":
        return None
    full = (1,) * (rank - data.ndim) + data.shape
    if any(d != 1 for i, d in enumerate(full) if i != 1) or full[1] not in (1, channels):
        return None
    return np.broadcast_to(data.reshape(-1).astype(np.float64), (channels,))


def _epilogue_free(node: Node) -> bool:
    return node.attrs.get("act") == "none" and (len(node.inputs) < 4 or not node.inputs[3])


def _scale_weights(g: Graph, node: Node, scale: np.ndarray, shift: np.ndarray) -> bool:
    """node's output becomes out * scale[channel] + shift[channel] by rewriting its weights and bias
    (new constants: the old ones may be shared). False when the weights are not constant."""
    w = g.const(node.inputs[1])
    if w is None:
        return False
    b = g.const(node.inputs[2]) if node.inputs[2] else None
    if node.inputs[2] and b is None:
        return False
    w64 = w.astype(np.float64)
    if node.op == "conv2d":
        w64 = w64 * scale[:, None, None, None]
    elif node.op == "conv_transpose2d":
        groups = node.attrs["groups"]
        cin, kg = w.shape[:2]
        per = scale.reshape(groups, kg)  # output channel g * kg + j
        w64 = (w64.reshape(groups, cin // groups, kg, *w.shape[2:]) * per[:, None, :, None, None]).reshape(w.shape)
    elif node.op == "gemm":
        if node.attrs["trans_a"] or w.ndim != 2:
            return False
        w64 = w64 * (scale[:, None] if node.attrs["trans_b"] else scale[None, :])
    else:
        return False
    bias = (np.zeros_like(scale) if b is None else b.astype(np.float64)) * scale + shift
    node.inputs[1] = g.add_const(f"{node.inputs[1]}/folded", w64.astype(np.float32))
    node.inputs[2] = g.add_const(f"{node.name}/bias", bias.astype(np.float32))
    return True


def _out_channels(g: Graph, node: Node) -> int:
    return g.values[node.outputs[0]].shape[1]


def _bn_affine(g: Graph, bn) -> tuple[np.ndarray, np.ndarray] | None:
    """A batch_norm with constant parameters as y = x * scale + shift per channel (float64), else None."""
    params = [g.const(i) for i in bn.inputs[1:5]]
    if any(v is None for v in params):
        return None
    gamma, beta, mean, var = (v.astype(np.float64) for v in params)
    with np.errstate(all="ignore"):  # a negative variance gives NaN, as in onnxruntime
        scale = gamma / np.sqrt(var + bn.attrs["eps"])
    return scale, beta - mean * scale


def fold_batch_norm(g: Graph) -> None:
    """batch_norm after a conv2d / conv_transpose2d / gemm whose output nothing else reads -> folded
    into that node's weights and bias."""
    for bn in [n for n in g.nodes if _is(n, "batch_norm", act="none")]:
        cons, prod = g.consumers(), g.producers()
        p = prod.get(bn.inputs[0])
        if p is None or p.op not in ("conv2d", "conv_transpose2d", "gemm") or not _epilogue_free(p):
            continue
        if _sole_consumer(g, bn.inputs[0], cons) is not bn:
            continue
        affine = _bn_affine(g, bn)
        if affine is None or not _scale_weights(g, p, *affine):
            continue
        p.outputs = bn.outputs
        g.nodes.remove(bn)
    g.prune_values()


def fold_batch_norm_through_max_pool(g: Graph) -> None:
    """conv -> max_pool -> batch_norm with every BN scale > 0: max commutes with an increasing affine
    map, so the BN folds into the conv and the pool runs on its output (fastnet's conv-pool-BN)."""
    for bn in [n for n in g.nodes if _is(n, "batch_norm", act="none")]:
        cons, prod = g.consumers(), g.producers()
        pool = prod.get(bn.inputs[0])
        if pool is None or pool.op != "max_pool2d" or _sole_consumer(g, bn.inputs[0], cons) is not bn:
            continue
        conv = prod.get(pool.inputs[0])
        if conv is None or conv.op not in ("conv2d", "conv_transpose2d") or not _epilogue_free(conv):
            continue
        if _sole_consumer(g, pool.inputs[0], cons) is not pool:
            continue
        affine = _bn_affine(g, bn)
        if affine is None or not np.all(affine[0] > 0) or not _scale_weights(g, conv, *affine):
            continue
        pool.outputs = bn.outputs
        g.nodes.remove(bn)
    g.prune_values()


def fold_constant_epilogue(g: Graph) -> None:
    """conv/gemm followed by Add/Sub of a per-channel constant, or Mul/Div by one -> new bias and
    weights (PyTorch exports Linear without bias as MatMul + Add, and scaled heads as Mul)."""
    changed = True
    while changed:
        changed = False
        cons, prod = g.consumers(), g.producers()
        for node in g.nodes:
            if not _is(node, "binary", act="none"):
                continue
            for i in (0, 1):
                p = prod.get(node.inputs[i])
                data = g.const(node.inputs[1 - i])
                if p is None or data is None or p.op not in ("conv2d", "conv_transpose2d", "gemm"):
                    continue
                if not _epilogue_free(p) or _sole_consumer(g, node.inputs[i], cons) is not node:
                    continue
                if g.values[node.outputs[0]].shape != g.values[p.outputs[0]].shape:
                    continue
                op = node.attrs["op"]
                if op in ("sub", "div") and i == 1:
                    continue  # c - conv, c / conv
                vec = _channel_vector(data, len(g.values[p.outputs[0]].shape), _out_channels(g, p))
                if vec is None:
                    continue
                ones, zeros = np.ones_like(vec), np.zeros_like(vec)
                scale, shift = {"add": (ones, vec), "sub": (ones, -vec), "mul": (vec, zeros),
                                "div": (1 / vec, zeros)}[op]
                if not np.all(np.isfinite(scale)) or not _scale_weights(g, p, scale, shift):
                    continue
                p.outputs = node.outputs
                g.nodes.remove(node)
                changed = True
                break
            if changed:
                break
    g.prune_values()


def fuse_activations(g: Graph, into=EPILOGUE_OPS) -> None:
    """activation whose input comes from a conv/gemm/binary/batch_norm (ops in `into`) that nothing
    else reads -> the producer's epilogue."""
    for a in [n for n in g.nodes if n.op == "activation"]:
        cons, prod = g.consumers(), g.producers()
        p = prod.get(a.inputs[0])
        if p is None or p.op not in into or p.attrs["act"] != "none":
            continue
        if p.attrs.get("residual_after_act") or _sole_consumer(g, a.inputs[0], cons) is not a:
            continue
        p.attrs.update(act=a.attrs["act"], alpha=a.attrs["alpha"], beta=a.attrs["beta"])
        p.outputs = a.outputs
        g.nodes.remove(a)
    g.prune_values()


def fuse_residual(g: Graph) -> None:
    """Add(conv_or_gemm(...), r) with r of the same shape -> r as the producer's residual input
    (after its activation when it already has one). The producer moves to the Add's place, so r is
    computed by then."""
    for add in [n for n in g.nodes if _is(n, "binary", op="add", act="none")]:
        cons, prod = g.consumers(), g.producers()
        out_shape = g.values[add.outputs[0]].shape
        if any(g.values[i].shape != out_shape for i in add.inputs) or add.inputs[0] == add.inputs[1]:
            continue
        best = None
        for i in (0, 1):
            p = prod.get(add.inputs[i])
            if p is None or p.op not in ("conv2d", "gemm") or p.inputs[3]:
                continue
            if _sole_consumer(g, add.inputs[i], cons) is not add:
                continue
            rank = (p.attrs["act"] == "none", g.nodes.index(p))
            if best is None or rank > best[0]:
                best = (rank, p, add.inputs[1 - i])
        if best is None:
            continue
        _, p, residual = best
        p.inputs[3] = residual
        p.attrs["residual_after_act"] = p.attrs["act"] != "none"
        p.outputs = add.outputs
        g.nodes.remove(p)
        g.nodes[g.nodes.index(add)] = p
    g.prune_values()


# CPU plans keep a stride >= 2 conv_transpose2d (GEMM with packed weights, then col2im) where the sub-pixel conv
# would compute at least this many times its multiply-adds: the DCGAN generators' 4x4 -> 8x8 layer (5x5
# positions per phase for 4x4 inputs, 1.56x) and 8x8 -> 16x16 (1.27x). In one process against the sub-pixel
# plan (Xeon, 2 threads): DCGAN generator 0.83x, cifar10-dcgan 0.86x the time; also taking 16x16 -> 32x32
# (1.13x) was slower there (its layer 139 vs 128 us).
MIN_SUBPIXEL_WASTE = 1.2


def conv_transpose_as_conv(g: Graph, keep_wasteful: bool = False) -> None:
    """conv_transpose2d with stride s (the same in both dims), a kernel that is a multiple of s, no dilation, one
    group, constant weights and no residual -> conv2d making s*s sub-pixel channels per output channel, a CRD
    pixel_shuffle and, where the pads or output_padding call for it, a crop (strided_copy). keep_wasteful (CPU
    plans): not where the sub-pixel conv's padding costs MIN_SUBPIXEL_WASTE times the multiply-adds or more.

    Why: with kernel r = s*t, output row s*q + b - pad sums x[q - a] * w[s*a + b] over a < t, which is a t x t
    conv of x (padded by t - 1) whose output channel (k, b_y, b_x) holds w[:, k, s*(t-1-j_y) + b_y, ...]. The
    conv GEMM runs the DCGAN generator's layers at 75-78 GFLOP/s where the transposed conv's GEMM + col2im
    scatter ran at 30-40 (epyc2, 2 threads), for (h + t - 1) / h times the multiply-adds per dim (1.25 at
    4x4 -> 8x8, t = 2)."""
    for node in [n for n in g.nodes if n.op == "conv_transpose2d"]:
        a = node.attrs
        w, bias = g.const(node.inputs[1]), g.const(node.inputs[2]) if node.inputs[2] else None
        s = a["stride"][0]
        if (w is None or (node.inputs[2] and bias is None) or a["groups"] != 1 or list(a["dilation"]) != [1, 1]
                or a["stride"][1] != s or (len(node.inputs) > 3 and node.inputs[3])
                or w.shape[2] % s or w.shape[3] % s):
            continue
        c, k, r, q = w.shape
        th, tw = r // s, q // s
        n, _, h, wd = g.values[node.inputs[0]].shape
        oh, ow = g.values[node.outputs[0]].shape[2:]
        top, left = a["pads"][0], a["pads"][1]
        # output_padding can reach past the last input's taps: extra zero padding below/right makes the conv
        # produce those rows/columns too (bias and activation only, as in the transposed conv).
        extra_h = max(0, -(-(top + oh) // s) - (h + th - 1))
        extra_w = max(0, -(-(left + ow) // s) - (wd + tw - 1))
        zh, zw = h + th - 1 + extra_h, wd + tw - 1 + extra_w
        if keep_wasteful and s > 1 and zh * zw >= MIN_SUBPIXEL_WASTE * h * wd:
            continue
        # w[c, k, s*a_y + b_y, s*a_x + b_x] -> w2[(k, b_y, b_x), c, t_h-1-a_y, t_w-1-a_x]
        w6 = w.reshape(c, k, th, s, tw, s)[:, :, ::-1, :, ::-1, :]
        w2 = np.ascontiguousarray(w6.transpose(1, 3, 5, 0, 2, 4).reshape(k * s * s, c, th, tw))
        b2 = g.add_const(f"{node.name}/subpixel_bias", np.repeat(bias, s * s)) if bias is not None else ""
        z = g.unique_name(f"{node.name}/subpixel")
        g.add_value(z, (n, k * s * s, zh, zw))
        epilogue = {key: a[key] for key in ("act", "alpha", "beta", "residual_after_act")}
        new = [Node("conv2d", node.name, [node.inputs[0], g.add_const(f"{node.name}/subpixel_w", w2), b2, ""], [z],
                    {"stride": [1, 1], "pads": [th - 1, tw - 1, th - 1 + extra_h, tw - 1 + extra_w],
                     "dilation": [1, 1], "groups": 1, **epilogue}, node.onnx_op)]
        full = (n, k, s * zh, s * zw)
        if s > 1:
            shuffled = g.unique_name(f"{node.name}/shuffled") if full[2:] != (oh, ow) else node.outputs[0]
            if shuffled != node.outputs[0]:
                g.add_value(shuffled, full)
            new.append(Node("pixel_shuffle", node.name, [z], [shuffled], {"block": s, "mode": "CRD"}, node.onnx_op))
            z = shuffled
        if full[2:] != (oh, ow):
            strides = [k * full[2] * full[3], full[2] * full[3], full[3], 1]
            new.append(Node("strided_copy", node.name, [z], [node.outputs[0]],
                            {"x_strides": strides, "x_offset": top * full[3] + left}, node.onnx_op))
        elif s == 1:
            new[0].outputs = list(node.outputs)
        i = g.nodes.index(node)
        g.nodes[i:i + 1] = new
    g.prune_values()


# The narrowest depthwise outputs that fuse_depthwise_pointwise fuses (Xeon, 2 threads, paired, a C++ harness
# of MobileNetV2's blocks: expand 1x1, depthwise, 1x1, fused against the three convs in turn). Without the
# expand conv: 56 and 112 wide maps took 0.86-0.91x the time; at 28x28 1.03-1.13x, since the maps fit the caches
# anyway and the fused step, splitting over rows, reads what the expand conv wrote split over channels. With the
# expand conv in the step: 0.65-0.76x at 56 and 112, 0.93-0.95x at 28x28 stride 1; at stride 2 to 28x28 the
# band kernel was 1.07x (the small-map depthwise kernel is better there, so it is not fused).
MIN_FUSED_WIDTH = 56
MIN_FUSED_WIDTH_WITH_EXPAND = 28
# Blocks up to 28 wide with the expand conv, expanded channels a multiple of 16 and a 3x3 or 5x5 depthwise (any
# stride) run on 16-channel blocks split over the threads (csrc/cpu/dw_pw_blocked.cpp, AVX-512 builds; others
# run the three convs in turn inside the step). MobileNetV2's steps, in one process: 0.71-0.79x the time at 28x28
# (band kernel before), 0.78-0.88x at 14x14 and 7x7 (separate convs before); at 56 wide 1.02-1.03x the band kernel.
MAX_BLOCKED_WIDTH = 28


def fuse_depthwise_pointwise(g: Graph) -> None:
    """conv2d depthwise 3x3 (stride 1 or 2, multiplier 1) whose output only a 1x1 conv2d reads -> one
    conv2d_dw_pw step (CPU plans only), which also takes the 1x1 expand conv2d before the depthwise when only
    the depthwise reads that conv's output (MobileNet-style inverted-residual blocks): the intermediate maps
    then stay in cache, band by band, instead of going out to memory and back between steps. Blocks with the
    expand conv up to MAX_BLOCKED_WIDTH wide (3x3 or 5x5, any stride) fuse for the blocked kernel."""
    def pointwise(n):
        a = n.attrs
        return (n.op == "conv2d" and a["groups"] == 1 and list(g.values[n.inputs[1]].shape[2:]) == [1, 1]
                and list(a["stride"]) == [1, 1] and not any(a["pads"]))

    for pw in [n for n in g.nodes if n.op == "conv2d"]:
        cons, prod = g.consumers(), g.producers()
        dw = prod.get(pw.inputs[0])
        if (not pointwise(pw) or dw is None or dw.op != "conv2d" or dw.inputs[3] or pw.inputs[0] in g.outputs
                or _sole_consumer(g, pw.inputs[0], cons) is not pw):
            continue
        a = dw.attrs
        c = g.values[dw.inputs[0]].shape[1]
        wd = g.values[dw.inputs[1]].shape
        if a["groups"] != c or wd[0] != c or list(a["dilation"]) != [1, 1]:
            continue
        ex = prod.get(dw.inputs[0])
        if (ex is None or not pointwise(ex) or ex.inputs[3] or dw.inputs[0] in g.outputs
                or _sole_consumer(g, dw.inputs[0], cons) is not dw):
            ex = None
        width = g.values[pw.inputs[0]].shape[3]
        blocked = (ex is not None and c % 16 == 0 and list(wd[2:]) in ([3, 3], [5, 5])
                   and width <= MAX_BLOCKED_WIDTH)
        if not blocked:
            narrowest = MIN_FUSED_WIDTH_WITH_EXPAND if ex is not None and a["stride"][0] == 1 else MIN_FUSED_WIDTH
            if list(wd[2:]) != [3, 3] or list(a["stride"]) not in ([1, 1], [2, 2]) or width < narrowest:
                continue
        attrs = {"stride": a["stride"], "pads": a["pads"], "dilation": a["dilation"],
                 "dw_act": a["act"], "dw_alpha": a["alpha"], "dw_beta": a["beta"],
                 **{k: pw.attrs[k] for k in ("act", "alpha", "beta", "residual_after_act")}}
        inputs = [*dw.inputs[:3], *pw.inputs[1:4]]
        if ex is not None:
            attrs.update(ex_act=ex.attrs["act"], ex_alpha=ex.attrs["alpha"], ex_beta=ex.attrs["beta"])
            inputs = [ex.inputs[0], *inputs[1:], ex.inputs[1], ex.inputs[2]]
            g.nodes.remove(ex)
        g.nodes[g.nodes.index(pw)] = Node("conv2d_dw_pw", pw.name, inputs, pw.outputs, attrs, pw.onnx_op)
        g.nodes.remove(dw)
    g.prune_values()


def fuse_conv_max_pool(g: Graph) -> None:
    """conv2d whose output only a max_pool2d reads -> the conv2d with attrs max_pool (kernel), max_pool_stride
    and max_pool_pads (CPU plans only): each thread pools the conv rows it computed (csrc/cpu/conv2d.cpp
    conv_padded_pool), so the classic CNN's conv -> relu -> 2x2 pool and ResNet's stem conv -> 3x3 stride-2
    pool are one step and the conv output never crosses cores. Paired C++ A/B on the Xeon, 2 threads, the seed
    CNN's convs with their pools: 0.69-0.85x the time of the conv and the pool in turn (batch 8: 0.88-0.89x).
    Not fused: dilated pools, pads not under the kernel (a window all padding), and ceil mode where it adds a
    partial window."""
    for pool in [n for n in g.nodes if n.op == "max_pool2d"]:
        cons, prod = g.consumers(), g.producers()
        conv = prod.get(pool.inputs[0])
        a = pool.attrs
        if (conv is None or conv.op != "conv2d" or "max_pool" in conv.attrs or pool.inputs[0] in g.outputs
                or _sole_consumer(g, pool.inputs[0], cons) is not pool):
            continue
        k, st, pads = list(a["kernel"]), list(a["stride"]), list(a["pads"])
        if list(a["dilation"]) != [1, 1] or any(p >= k[i % 2] for i, p in enumerate(pads)):
            continue
        h, w = g.values[pool.inputs[0]].shape[2:]
        if list(g.values[pool.outputs[0]].shape[2:]) != [
                (size + pads[i] + pads[i + 2] - k[i]) // st[i] + 1 for i, size in enumerate((h, w))]:
            continue  # ceil mode with a partial last window
        conv.attrs = {**conv.attrs, "max_pool": k, "max_pool_stride": st, "max_pool_pads": pads}
        conv.outputs = pool.outputs
        g.nodes.remove(pool)
    g.prune_values()


def fold_crop_into_pixel_shuffle(g: Graph) -> None:
    """pixel_shuffle whose output only a crop reads (a strided_copy of a window of it: the sub-pixel form of a
    padded transposed conv, see conv_transpose_as_conv) -> the pixel_shuffle with attr crop = [top, left] and the
    crop's output (CPU plans only): one pass over the data and one step fewer. The DCGAN generators' three
    crops took 17-21 us of their 0.34 / 0.64 ms at batch 1 (Xeon, 2 threads)."""
    for crop in [n for n in g.nodes if n.op == "strided_copy"]:
        cons, prod = g.consumers(), g.producers()
        ps = prod.get(crop.inputs[0])
        if (ps is None or ps.op != "pixel_shuffle" or "crop" in ps.attrs
                or _sole_consumer(g, crop.inputs[0], cons) is not crop):
            continue
        full, out = list(g.values[crop.inputs[0]].shape), list(g.values[crop.outputs[0]].shape)
        if len(out) != 4 or out[:2] != full[:2] or list(crop.attrs["x_strides"]) != _dense(full):
            continue
        top, left = divmod(int(crop.attrs["x_offset"]), full[3])
        if top + out[2] > full[2] or left + out[3] > full[3]:
            continue
        ps.attrs = {**ps.attrs, "crop": [top, left]}
        ps.outputs = crop.outputs
        g.nodes.remove(crop)
    g.prune_values()


def remove_dead(g: Graph) -> None:
    """Drop nodes none of whose outputs is read (transitively) by a graph output."""
    live = set(g.outputs)
    kept = []
    for node in reversed(g.nodes):
        if any(o in live for o in node.outputs):
            kept.append(node)
            live.update(i for i in node.inputs if i)
    g.nodes = kept[::-1]
    g.prune_values()


def optimize(g: Graph, device: str = "cpu") -> Graph:
    """Run every pass in the order the fusions need (in place); returns g. device: the plan's ("cpu" keeps the
    transposed convs that conv_transpose_as_conv's sub-pixel form would pad, see MIN_SUBPIXEL_WASTE)."""
    remove_identity(g)
    fold_constants(g)
    remove_dead(g)
    fuse_gelu(g)
    fuse_silu(g)
    matmul_to_gemm(g)
    fold_batch_norm(g)
    fold_batch_norm_through_max_pool(g)
    fold_constant_epilogue(g)
    fuse_activations(g, into=EPILOGUE_OPS - {"binary"})  # an Add may still become a residual
    fuse_residual(g)
    fuse_activations(g)
    conv_transpose_as_conv(g, keep_wasteful=device == "cpu")
    remove_identity(g)
    remove_dead(g)
    return g
