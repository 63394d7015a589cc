"""ONNX -> IR: load and check a model (onnx.checker, strict shape inference), fix its dynamic dims, and
translate every node, opset variant by opset variant, into IR nodes whose attrs are already those of
the plan. Nodes whose inputs are all constant fold as they are imported (passes.fold_node), so shape
chains (Shape -> Gather -> Concat -> Reshape) give constants that later nodes can read.

Every problem is raised here, at load: InvalidModelError for malformed models, UnsupportedModelError
for valid ones that use something the runtime lacks (the message names op type, node and attribute).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from . import passes
from .ir import NO_ACT, Graph, InvalidModelError, Node, UnsupportedModelError, act_attrs

MIN_OPSET = 9
# Largest number of bytes one value may take (a model with bigger tensors is treated as malformed).
MAX_VALUE_BYTES = 16 << 30

SUPPORTED_OPS = sorted([
    "Conv", "ConvTranspose", "BatchNormalization", "Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh",
    "HardSigmoid", "HardSwish", "Mul", "Add", "Sub", "Div", "Sum", "MaxPool", "AveragePool",
    "GlobalAveragePool", "GlobalMaxPool", "Flatten", "Reshape", "Transpose", "Split", "Slice", "Gemm",
    "MatMul", "Concat", "Resize", "Upsample", "DepthToSpace", "Softmax", "LogSoftmax", "LRN", "Pad",
    "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "Dropout", "Identity", "Constant",
    "ConstantOfShape", "Shape", "Size", "Gather", "Unsqueeze", "Squeeze", "Cast", "Expand",
    "Erf (in GELU)",
] + passes.ONNX_FOLDERS_ONLY)


def max_opset() -> int:
    return onnx.defs.onnx_opset_version()


# ------------------------------------------------------------------------------------------------
# Loading and checking
# ------------------------------------------------------------------------------------------------

def load_model(model) -> onnx.ModelProto:
    """A path, bytes or ModelProto -> a checked ModelProto (external data resolved for paths)."""
    if isinstance(model, onnx.ModelProto):
        proto = model
    elif isinstance(model, (bytes, bytearray, memoryview)):
        proto = _parse(bytes(model), "the given bytes")
    elif isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model file {str(path)!r} does not exist")
        proto = _parse(path.read_bytes(), str(path))
        try:
            onnx.external_data_helper.load_external_data_for_model(proto, str(path.parent))
        except (OSError, ValueError, onnx.checker.ValidationError) as e:
            raise InvalidModelError(f"{path}: cannot load its external data: {e}") from None
    else:
        raise TypeError(f"model must be a path, bytes or onnx.ModelProto, got {type(model).__name__}")
    try:
        onnx.checker.check_model(proto)
    except (onnx.checker.ValidationError, ValueError) as e:
        raise InvalidModelError(f"the ONNX checker rejects the model: {_first_line(e)}") from None
    return proto


def _parse(data: bytes, what: str) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as e:  # google.protobuf.message.DecodeError and friends
        raise InvalidModelError(f"{what} is not a valid ONNX protobuf (truncated or corrupt): {e}") from None
    if not proto.HasField("graph"):
        raise InvalidModelError(f"{what} is not an ONNX model: it has no graph")
    return proto


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def model_opset(proto: onnx.ModelProto) -> int:
    opset = None
    for imp in proto.opset_import:
        if imp.domain in ("", "ai.onnx"):
            opset = imp.version
        elif imp.domain != "ai.onnx.ml" and any(n.domain == imp.domain for n in proto.graph.node):
            raise UnsupportedModelError(f"operator domain {imp.domain!r} is not supported (only the default ONNX domain)")
    if opset is None:
        raise InvalidModelError("the model imports no version of the default ONNX operator set")
    if not MIN_OPSET <= opset <= max_opset():
        raise UnsupportedModelError(f"opset {opset} is not supported; supported opsets: {MIN_OPSET} .. {max_opset()}")
    return opset


# ------------------------------------------------------------------------------------------------
# Input shapes
# ------------------------------------------------------------------------------------------------

def _fixed_input_shapes(proto, initializers: set, input_shapes, batch) -> dict[str, list[int]]:
    input_shapes = dict(input_shapes or {})
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    shapes = {}
    for inp in proto.graph.input:
        if inp.name in initializers:
            continue
        t = inp.type
        if t.WhichOneof("value") != "tensor_type":
            raise UnsupportedModelError(f"input {inp.name!r} is not a tensor")
        if t.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            raise UnsupportedModelError(
                f"input {inp.name!r} has dtype {onnx.TensorProto.DataType.Name(t.tensor_type.elem_type)}; "
                "only float32 inputs are supported")
        if not t.tensor_type.HasField("shape"):
            if inp.name not in input_shapes:
                raise ValueError(f"input {inp.name!r} has no shape in the model: pass input_shapes={{{inp.name!r}: [...]}}")
        dims = list(t.tensor_type.shape.dim)
        given = input_shapes.pop(inp.name, None)
        if given is not None:
            given = [int(d) for d in given]
            if t.tensor_type.HasField("shape") and len(given) != len(dims):
                raise ValueError(f"input_shapes[{inp.name!r}] = {given} has rank {len(given)}; the model's input has rank {len(dims)}")
            for i, d in enumerate(given):
                if d < 1:
                    raise ValueError(f"input_shapes[{inp.name!r}] = {given}: dims must be positive")
                if i < len(dims) and dims[i].HasField("dim_value") and dims[i].dim_value != d:
                    raise ValueError(f"input_shapes[{inp.name!r}] = {given} disagrees with the model's fixed dim {i} = {dims[i].dim_value}")
            shapes[inp.name] = given
            continue
        shape = []
        for i, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value > 0:
                if i == 0 and batch is not None and d.dim_value != batch:
                    raise ValueError(f"input {inp.name!r} has a fixed batch of {d.dim_value}; cannot compile for batch {batch}")
                shape.append(d.dim_value)
            elif i == 0:
                shape.append(batch or 1)
            else:
                label = d.dim_param or "unknown"
                raise ValueError(f"input {inp.name!r} dim {i} ({label!r}) is dynamic: fix it with "
                                 f"input_shapes={{{inp.name!r}: [...]}}")
        shapes[inp.name] = shape
    if input_shapes:
        raise ValueError(f"input_shapes names {sorted(input_shapes)}, which are not model inputs")
    return shapes


def _inferred_shapes(proto, shapes: dict[str, list[int]]) -> dict[str, tuple[int, ...]]:
    """Strict ONNX shape inference with the inputs fixed; static shapes it finds, by value name."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(proto)
    for inp in fixed.graph.input:
        if inp.name in shapes:
            tt = inp.type.tensor_type
            tt.shape.Clear()
            for d in shapes[inp.name]:
                tt.shape.dim.add().dim_value = d
    try:
        inferred = onnx.shape_inference.infer_shapes(fixed, check_type=True, strict_mode=True, data_prop=True)
    except Exception as e:  # onnx raises InferenceError (and ValueError for oversized protos)
        raise InvalidModelError(f"ONNX shape inference fails: {_first_line(e)}") from None
    out = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        tt = vi.type.tensor_type
        if vi.type.WhichOneof("value") == "tensor_type" and tt.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
            if all(d is not None for d in dims):
                out[vi.name] = tuple(dims)
    return out


# ------------------------------------------------------------------------------------------------
# The importer
# ------------------------------------------------------------------------------------------------

def import_model(model, *, input_shapes=None, batch=None) -> Graph:
    """Load `model` (path, bytes or ModelProto) and translate it into an IR Graph with static shapes."""
    proto = load_model(model)
    return _Importer(proto, input_shapes, batch).run()


def _to_array(t: onnx.TensorProto, what: str) -> np.ndarray:
    if t.data_location == onnx.TensorProto.EXTERNAL:
        raise InvalidModelError(f"{what} {t.name!r} keeps its data in an external file that was not loaded "
                                "(load the model from its path)")
    if t.data_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
        raise UnsupportedModelError(f"{what} {t.name!r} has dtype {onnx.TensorProto.DataType.Name(t.data_type)}")
    n = 1
    for d in t.dims:
        if d < 0:
            raise InvalidModelError(f"{what} {t.name!r} has a negative dim {list(t.dims)}")
        n *= d
    if n * 8 > MAX_VALUE_BYTES:
        raise InvalidModelError(f"{what} {t.name!r} of shape {list(t.dims)} is too large")
    try:
        a = numpy_helper.to_array(t)
    except Exception as e:  # wrong raw_data length, unknown dtype, ...
        raise InvalidModelError(f"{what} {t.name!r} cannot be decoded: {_first_line(e)}") from None
    if a.dtype.kind not in "fiub":
        raise UnsupportedModelError(f"{what} {t.name!r} has dtype {a.dtype}, which is not supported")
    if a.dtype.kind == "f" and a.dtype != np.float32 and a.dtype.itemsize not in (2, 4, 8):
        a = a.astype(np.float32)  # bfloat16 / float8 variants: the runtime computes in float32
    return np.asarray(a, order="C")


class _Importer:
    def __init__(self, proto: onnx.ModelProto, input_shapes, batch):
        self.proto = proto
        self.opset = model_opset(proto)
        graph = proto.graph
        self.init_names = {t.name for t in graph.initializer}
        self.shapes = _fixed_input_shapes(proto, self.init_names, input_shapes, batch)
        self.inferred = _inferred_shapes(proto, self.shapes)
        self.used = {i for n in graph.node for i in n.input if i} | {o.name for o in graph.output}
        self.g = Graph()
        self.g.opset = self.opset
        from ..model_files import decode_metadata
        self.g.metadata = decode_metadata(proto)

    def run(self) -> Graph:
        g, graph = self.g, self.proto.graph
        for t in graph.initializer:
            if t.name in g.values:
                raise InvalidModelError(f"initializer {t.name!r} is defined twice")
            data = _to_array(t, "initializer")
            g.add_value(t.name, data.shape, str(data.dtype), data)
        for t in graph.sparse_initializer:
            raise UnsupportedModelError(f"sparse initializer {t.values.name!r} is not supported")
        for inp in graph.input:
            if inp.name in self.init_names:
                continue
            if inp.name in g.values:
                raise InvalidModelError(f"input {inp.name!r} is listed twice")
            g.add_value(inp.name, self.shapes[inp.name])
            _check_size(g.values[inp.name].shape, f"input {inp.name!r}")
            g.inputs.append(inp.name)
        for index, node in enumerate(graph.node):
            ctx = _NodeCtx(self, node, index)
            handler = _HANDLERS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
            if handler is None and node.op_type in passes.ONNX_FOLDERS and node.domain in ("", "ai.onnx"):
                handler = _fold_only
            if handler is None:
                where = f" (domain {node.domain!r})" if node.domain not in ("", "ai.onnx") else ""
                raise UnsupportedModelError(
                    f"op {node.op_type}{where} (node {ctx.name!r}) is not supported. Supported ops: "
                    f"{', '.join(SUPPORTED_OPS)} (the last group only when their inputs are constant)")
            for i in node.input:
                if i and i not in g.values:
                    raise InvalidModelError(f"{ctx.describe()} reads {i!r}, which no initializer, input or "
                                            "earlier node defines (missing initializer or nodes out of order)")
            for o in node.output:
                if o and o in g.values:
                    raise InvalidModelError(f"{ctx.describe()} writes {o!r}, which is already defined")
            try:
                handler(ctx)
            except (IndexError, KeyError, ZeroDivisionError, OverflowError) as e:
                # a malformed node the checks above let through must still fail cleanly
                raise InvalidModelError(f"{ctx.describe()} is malformed ({type(e).__name__}: {e})") from None
            for o in node.output:
                if o and o in self.used and o not in g.values:
                    raise UnsupportedModelError(f"{ctx.describe()}: its output {o!r} is not supported")
                self._check_inferred(ctx, o)
        for o in graph.output:
            if o.name not in g.values:
                raise InvalidModelError(f"graph output {o.name!r} is not produced by any node")
            v = g.values[o.name]
            if not v.is_const and v.dtype != "float32" or v.is_const and v.data.dtype.kind != "f":
                raise UnsupportedModelError(f"graph output {o.name!r} has dtype {v.dtype}; only float32 is supported")
            g.outputs.append(o.name)
        for name in g.outputs:  # a graph output must not be held as a non-float32 constant
            v = g.values[name]
            if v.is_const and v.data.dtype != np.float32:
                v.data = v.data.astype(np.float32)
                v.dtype = "float32"
        return g

    def _check_inferred(self, ctx, name):
        if not name or name not in self.g.values:
            return
        want = self.inferred.get(name)
        have = self.g.values[name].shape
        if want is not None and tuple(want) != tuple(have):
            raise InvalidModelError(f"{ctx.describe()}: output {name!r} has shape {list(have)}, but ONNX shape "
                                    f"inference gives {list(want)} (inconsistent model)")


def _check_size(shape, what: str, itemsize: int = 4):
    n = 1
    for d in shape:
        n *= d
    if n * itemsize > MAX_VALUE_BYTES:
        raise InvalidModelError(f"{what} of shape {list(shape)} would take {n * itemsize / 2**30:.1f} GiB "
                                f"(limit {MAX_VALUE_BYTES >> 30} GiB)")


def _dense_strides(shape) -> list[int]:
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= d
    return strides[::-1]


def _prod(xs) -> int:
    p = 1
    for x in xs:
        p *= int(x)
    return p


class _NodeCtx:
    """One ONNX node being imported: its attributes (typed getters that raise clean errors), inputs,
    and `emit`, which adds IR nodes (folding them when every input is constant)."""

    def __init__(self, imp: _Importer, node: onnx.NodeProto, index: int):
        self.imp, self.g, self.node = imp, imp.g, node
        self.op_type = node.op_type
        self.name = node.name or f"{node.op_type}_{index}"
        try:
            self.version = onnx.defs.get_schema(node.op_type, imp.opset, node.domain or "").since_version
        except Exception:  # unknown to this onnx version: the handler table decides
            self.version = imp.opset
        self.attrs = {}
        for a in node.attribute:
            if a.ref_attr_name:
                raise UnsupportedModelError(f"{self.describe()}: attribute {a.name!r} refers to a function attribute")
            try:
                v = onnx.helper.get_attribute_value(a)
            except Exception as e:
                raise InvalidModelError(f"{self.describe()}: attribute {a.name!r} cannot be read: {e}") from None
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            self.attrs[a.name] = v
        self.inputs = list(node.input)
        self.outputs = list(node.output)

    def describe(self) -> str:
        return f"{self.op_type} node {self.name!r}"

    # -- errors ---------------------------------------------------------------------------------
    def unsupported(self, what: str, attr: str | None = None) -> UnsupportedModelError:
        where = f" attribute {attr!r}:" if attr else ""
        return UnsupportedModelError(f"{self.describe()}:{where} {what}")

    def invalid(self, what: str, attr: str | None = None) -> InvalidModelError:
        where = f" attribute {attr!r}:" if attr else ""
        return InvalidModelError(f"{self.describe()}:{where} {what}")

    # -- attributes -----------------------------------------------------------------------------
    def a_int(self, key: str, default=None) -> int:
        v = self.attrs.get(key, default)
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise self.invalid(f"expected an int, got {v!r}", key)
        return int(v)

    def a_float(self, key: str, default=None) -> float:
        v = self.attrs.get(key, default)
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise self.invalid(f"expected a float, got {v!r}", key)
        return float(v)

    def a_ints(self, key: str, default=None, length: int | None = None) -> list[int] | None:
        v = self.attrs.get(key, default)
        if v is None:
            return None
        if not isinstance(v, (list, tuple)) or not all(isinstance(e, (int, np.integer)) for e in v):
            raise self.invalid(f"expected a list of ints, got {v!r}", key)
        if length is not None and len(v) != length:
            raise self.invalid(f"expected {length} values, got {list(v)}", key)
        return [int(e) for e in v]

    def a_str(self, key: str, default: str, choices=None) -> str:
        v = self.attrs.get(key, default)
        if not isinstance(v, str):
            raise self.invalid(f"expected a string, got {v!r}", key)
        if choices is not None and v not in choices:
            raise self.unsupported(f"{v!r} is not supported (supported: {', '.join(map(repr, choices))})", key)
        return v

    # -- inputs ---------------------------------------------------------------------------------
    def inp(self, i: int) -> str:
        return self.inputs[i] if i < len(self.inputs) else ""

    def shape(self, i: int) -> tuple[int, ...]:
        return self.g.values[self.inp(i)].shape

    def rank(self, i: int) -> int:
        return len(self.shape(i))

    def const(self, i: int):
        return self.g.const(self.inp(i))

    def const_input(self, i: int, what: str) -> np.ndarray | None:
        """Input i as a constant array (None when absent); a non-constant input is unsupported."""
        name = self.inp(i)
        if not name:
            return None
        data = self.g.const(name)
        if data is None:
            raise self.unsupported(f"input {i} ({what}) must be a constant (it is computed at run time)")
        return data

    def const_ints(self, i: int, what: str) -> list[int] | None:
        data = self.const_input(i, what)
        if data is None:
            return None
        if data.dtype.kind not in "iu":
            raise self.invalid(f"input {i} ({what}) must hold integers, got {data.dtype}")
        return [int(v) for v in data.reshape(-1)]

    def out(self, i: int = 0) -> str:
        return self.outputs[i] if i < len(self.outputs) else ""

    def require_rank(self, i: int, ranks, what: str = "input"):
        if self.rank(i) not in ranks:
            raise self.unsupported(f"{what} of rank {self.rank(i)} (shape {list(self.shape(i))}) is not "
                                   f"supported (rank {' or '.join(map(str, ranks))})")

    def check_extra_outputs(self, first_unsupported: int, what: str):
        for o in self.outputs[first_unsupported:]:
            if o and o in self.imp.used:
                raise self.unsupported(f"its output {o!r} ({what}) is used, which is not supported")

    # -- emitting IR ----------------------------------------------------------------------------
    def emit(self, op: str, inputs: list[str], outputs, attrs: dict | None = None) -> list[str]:
        """Add an IR node. outputs: list of (name or None for a fresh one, shape). Folds when every
        present input is constant. Returns the output value names."""
        names = []
        for name, shape in outputs:
            shape = tuple(int(d) for d in shape)
            if any(d < 0 for d in shape):
                raise self.invalid(f"computes a negative dim {list(shape)}")
            _check_size(shape, f"{self.describe()}: output")
            names.append(name or self.g.unique_name(f"{self.name}/{op}"))
        node = Node(op, self.name, list(inputs), names, dict(attrs or {}), self.op_type)
        folded = passes.fold_node(self.g, node, [s for _, s in outputs])
        if folded is None:
            for n, (_, shape) in zip(names, outputs):
                if any(d == 0 for d in shape):
                    raise self.unsupported(f"produces an empty tensor of shape {list(shape)} at run time")
                for i in inputs:
                    v = self.g.values.get(i) if i else None
                    if v is not None and not v.is_const and v.dtype != "float32":
                        raise self.unsupported(f"computes with {v.dtype} tensors at run time (only float32)")
                self.g.add_value(n, shape)
            self.g.nodes.append(node)
        return names

    def emit_one(self, op, inputs, shape, attrs=None, name=None) -> str:
        return self.emit(op, inputs, [(name, shape)], attrs)[0]

    def const_value(self, name: str, data: np.ndarray) -> str:
        data = np.asarray(data, order="C")
        _check_size(data.shape, f"{self.describe()}: constant", data.dtype.itemsize)
        self.g.add_value(name, data.shape, str(data.dtype), data)
        return name

    def view(self, x: str, shape, offset: int = 0, strides=None, name=None) -> str:
        """y = x read with `strides` from element `offset` (default: dense strides of `shape`, i.e. a
        reshape). Lowering turns contiguous ones into aliases."""
        shape = [int(d) for d in shape]
        strides = _dense_strides(shape) if strides is None else [int(s) for s in strides]
        return self.emit_one("strided_copy", [x], shape, {"x_strides": strides, "x_offset": int(offset)}, name)

    def identity(self, x: str, name: str) -> str:
        return self.emit_one("identity", [x], self.g.values[x].shape, {}, name)


# ------------------------------------------------------------------------------------------------
# Handlers, one per ONNX op type
# ------------------------------------------------------------------------------------------------

def _spatial_pads(ctx: _NodeCtx, in_hw, kernel, strides, dilations) -> list[int]:
    """(top, left, bottom, right) from pads / auto_pad of a Conv or pooling node."""
    auto = ctx.a_str("auto_pad", "NOTSET", ["NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"])
    if auto == "NOTSET":
        pads = ctx.a_ints("pads", [0, 0, 0, 0], 4)
        if any(p < 0 for p in pads):
            raise ctx.invalid(f"negative pads {pads}", "pads")
        return pads
    if auto == "VALID":
        return [0, 0, 0, 0]
    begin, end = [], []
    for i in range(2):
        out = -(-in_hw[i] // strides[i])
        total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - in_hw[i])
        small = total // 2
        begin.append(small if auto == "SAME_UPPER" else total - small)
        end.append(total - begin[-1])
    return begin + end


def _pos_ints(ctx, key, default, length):
    v = ctx.a_ints(key, default, length)
    if any(e < 1 for e in v):
        raise ctx.invalid(f"must be positive, got {v}", key)
    return v


def _conv(ctx: _NodeCtx):
    ctx.require_rank(0, (4,), "input (only 2-D convolution)")
    if ctx.rank(1) != 4:
        raise ctx.invalid(f"weight must be 4-D, got shape {list(ctx.shape(1))}")
    n, c, h, w = ctx.shape(0)
    k, cg, r, s = ctx.shape(1)
    kernel = ctx.a_ints("kernel_shape", [r, s], 2)
    if kernel != [r, s]:
        raise ctx.invalid(f"{kernel} disagrees with the weight shape {[k, cg, r, s]}", "kernel_shape")
    strides = _pos_ints(ctx, "strides", [1, 1], 2)
    dil = _pos_ints(ctx, "dilations", [1, 1], 2)
    groups = ctx.a_int("group", 1)
    if groups < 1 or c % groups or k % groups or cg * groups != c:
        raise ctx.invalid(f"group {groups} does not fit input channels {c} and weight {[k, cg, r, s]}", "group")
    pads = _spatial_pads(ctx, (h, w), kernel, strides, dil)
    bias = ctx.inp(2)
    if bias and ctx.shape(2) != (k,):
        raise ctx.invalid(f"bias shape {list(ctx.shape(2))} is not [{k}]")
    oh = (h + pads[0] + pads[2] - dil[0] * (r - 1) - 1)
    ow = (w + pads[1] + pads[3] - dil[1] * (s - 1) - 1)
    if oh < 0 or ow < 0:
        raise ctx.invalid(f"the kernel {[r, s]} (dilated) is larger than the padded input {[h, w]}")
    attrs = {"stride": strides, "pads": pads, "dilation": dil, "groups": groups, **NO_ACT}
    ctx.emit_one("conv2d", [ctx.inp(0), ctx.inp(1), bias, ""],
                 [n, k, oh // strides[0] + 1, ow // strides[1] + 1], attrs, ctx.out())


def _conv_transpose(ctx: _NodeCtx):
    ctx.require_rank(0, (4,), "input (only 2-D transposed convolution)")
    if ctx.rank(1) != 4:
        raise ctx.invalid(f"weight must be 4-D, got shape {list(ctx.shape(1))}")
    n, c, h, w = ctx.shape(0)
    cw, kg, r, s = ctx.shape(1)
    groups = ctx.a_int("group", 1)
    if groups < 1 or cw != c or c % groups:
        raise ctx.invalid(f"group {groups} does not fit input channels {c} and weight {list(ctx.shape(1))}", "group")
    k = kg * groups
    kernel = ctx.a_ints("kernel_shape", [r, s], 2)
    if kernel != [r, s]:
        raise ctx.invalid(f"{kernel} disagrees with the weight shape", "kernel_shape")
    strides = _pos_ints(ctx, "strides", [1, 1], 2)
    dil = _pos_ints(ctx, "dilations", [1, 1], 2)
    out_pad = ctx.a_ints("output_padding", [0, 0], 2)
    if any(p < 0 or (p >= st and p >= d) for p, st, d in zip(out_pad, strides, dil)):
        raise ctx.invalid(f"{out_pad} must be below the stride or dilation", "output_padding")
    auto = ctx.a_str("auto_pad", "NOTSET", ["NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"])
    out_shape = ctx.a_ints("output_shape", None)
    if out_shape is not None and len(out_shape) not in (2, 4):
        raise ctx.invalid(f"expected 2 spatial dims, got {out_shape}", "output_shape")
    if out_shape is not None:
        out_shape = out_shape[-2:]
    full = [strides[i] * ((h, w)[i] - 1) + out_pad[i] + ((r, s)[i] - 1) * dil[i] + 1 for i in range(2)]
    if out_shape is None and auto in ("SAME_UPPER", "SAME_LOWER"):
        out_shape = [(h, w)[i] * strides[i] for i in range(2)]
    if out_shape is not None:
        pads = [0] * 4
        for i in range(2):
            total = full[i] - out_shape[i]
            if total < 0:
                raise ctx.unsupported(f"{out_shape} needs negative padding", "output_shape")
            small = total // 2
            pads[i], pads[i + 2] = (small, total - small) if auto == "SAME_UPPER" else (total - small, small)
    elif auto == "VALID":
        pads = [0, 0, 0, 0]
    else:
        pads = ctx.a_ints("pads", [0, 0, 0, 0], 4)
        if any(p < 0 for p in pads):
            raise ctx.invalid(f"negative pads {pads}", "pads")
    oh, ow = full[0] - pads[0] - pads[2], full[1] - pads[1] - pads[3]
    if oh < 1 or ow < 1:
        raise ctx.invalid(f"the output would be {[oh, ow]}")
    bias = ctx.inp(2)
    if bias and ctx.shape(2) != (k,):
        raise ctx.invalid(f"bias shape {list(ctx.shape(2))} is not [{k}]")
    attrs = {"stride": strides, "pads": pads, "output_padding": out_pad, "dilation": dil,
             "groups": groups, **NO_ACT}
    ctx.emit_one("conv_transpose2d", [ctx.inp(0), ctx.inp(1), bias], [n, k, oh, ow], attrs, ctx.out())


def _batch_norm(ctx: _NodeCtx):
    if ctx.a_int("training_mode", 0) != 0:
        raise ctx.unsupported("training mode is not supported (export the model in eval mode)", "training_mode")
    ctx.check_extra_outputs(1, "running statistics of training mode")
    if ctx.rank(0) < 2:
        raise ctx.invalid(f"input must have a channel dim, got shape {list(ctx.shape(0))}")
    c = ctx.shape(0)[1]
    for i, what in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "var")):
        if ctx.shape(i) != (c,):
            raise ctx.invalid(f"{what} has shape {list(ctx.shape(i))}, expected [{c}]")
    eps = ctx.a_float("epsilon", 1e-5)
    ctx.emit_one("batch_norm", ctx.inputs[:5], ctx.shape(0), {"eps": eps, **NO_ACT}, ctx.out())


def _act(name: str, alpha: float = 0.0, beta: float = 0.0):
    def handler(ctx: _NodeCtx):
        a, b = alpha, beta
        if name == "leaky_relu":
            a = ctx.a_float("alpha", 0.01)
        elif name == "hardsigmoid":
            a, b = ctx.a_float("alpha", 0.2), ctx.a_float("beta", 0.5)
        _activation(ctx, name, a, b)
    return handler


def _activation(ctx, act, alpha, beta):
    if ctx.g.values[ctx.inp(0)].dtype[0] not in "f" and ctx.const(0) is None:
        raise ctx.unsupported("only float inputs are supported")
    ctx.emit_one("activation", [ctx.inp(0)], ctx.shape(0), act_attrs(act, alpha, beta), ctx.out())


def _clip(ctx: _NodeCtx):
    if ctx.version < 11:
        lo, hi = ctx.a_float("min", -math.inf), ctx.a_float("max", math.inf)
    else:
        bounds = []
        for i, default in ((1, -math.inf), (2, math.inf)):
            data = ctx.const_input(i, ("min", "max")[i - 1])
            if data is not None and data.size != 1:
                raise ctx.invalid(f"input {i} must be a scalar, got shape {list(data.shape)}")
            bounds.append(default if data is None else float(data.reshape(-1)[0]))
        lo, hi = bounds
        if ctx.const(0) is not None:
            return _fold_only(ctx)
    _activation(ctx, "clip", lo, hi)


def _broadcast(ctx, *shapes) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ctx.invalid(f"input shapes {[list(s) for s in shapes]} do not broadcast") from None


def _binary(op: str):
    def handler(ctx: _NodeCtx):
        out = _broadcast(ctx, ctx.shape(0), ctx.shape(1))
        ctx.emit_one("binary", [ctx.inp(0), ctx.inp(1)], out, {"op": op, **NO_ACT}, ctx.out())
    return handler


def _sum(ctx: _NodeCtx):
    xs = [i for i in ctx.inputs if i]
    if not xs:
        raise ctx.invalid("needs at least one input")
    if len(xs) == 1:
        ctx.identity(xs[0], ctx.out())
        return
    out = _broadcast(ctx, *[ctx.g.values[x].shape for x in xs])
    acc = xs[0]
    for i, x in enumerate(xs[1:]):
        last = i == len(xs) - 2
        shape = _broadcast(ctx, ctx.g.values[acc].shape, ctx.g.values[x].shape)
        acc = ctx.emit_one("binary", [acc, x], out if last else shape, {"op": "add", **NO_ACT},
                           ctx.out() if last else None)


def _pool(kind: str):
    def handler(ctx: _NodeCtx):
        ctx.require_rank(0, (4,), "input (only 2-D pooling)")
        if kind == "max":
            ctx.check_extra_outputs(1, "Indices")
        n, c, h, w = ctx.shape(0)
        kernel = _pos_ints(ctx, "kernel_shape", None, 2) if "kernel_shape" in ctx.attrs else None
        if kernel is None:
            raise ctx.invalid("is required", "kernel_shape")
        strides = _pos_ints(ctx, "strides", [1, 1], 2)
        dil = _pos_ints(ctx, "dilations", [1, 1], 2)
        if kind == "avg" and dil != [1, 1]:
            raise ctx.unsupported(f"dilated average pooling {dil} is not supported", "dilations")
        ceil = ctx.a_int("ceil_mode", 0)
        pads = _spatial_pads(ctx, (h, w), kernel, strides, dil)
        if any(p >= k * d for p, k, d in zip(pads, kernel * 2, dil * 2)) and kind == "avg":
            raise ctx.unsupported(f"padding {pads} as large as the kernel {kernel}", "pads")
        out = []
        for i, size in enumerate((h, w)):
            span = size + pads[i] + pads[i + 2] - dil[i] * (kernel[i] - 1) - 1
            if span < 0:
                raise ctx.invalid(f"the kernel {kernel} is larger than the padded input {[h, w]}")
            o = (-(-span // strides[i]) if ceil else span // strides[i]) + 1
            if ceil and (o - 1) * strides[i] >= size + pads[i]:
                o -= 1
            out.append(o)
        attrs = {"kernel": kernel, "stride": strides, "pads": pads, "ceil_mode": bool(ceil)}
        if kind == "max":
            attrs["dilation"] = dil
            ctx.emit_one("max_pool2d", [ctx.inp(0)], [n, c, *out], attrs, ctx.out())
        else:
            attrs["count_include_pad"] = bool(ctx.a_int("count_include_pad", 0))
            ctx.emit_one("avg_pool2d", [ctx.inp(0)], [n, c, *out], attrs, ctx.out())
    return handler


def _global_pool(op: str):
    def handler(ctx: _NodeCtx):
        shape = ctx.shape(0)
        if len(shape) < 3:
            raise ctx.invalid(f"input must be at least 3-D, got {list(shape)}")
        x = ctx.inp(0)
        if len(shape) != 4:
            x = ctx.view(x, [shape[0], shape[1], _prod(shape[2:]), 1])
        y_shape = [shape[0], shape[1]] + [1] * (len(shape) - 2)
        if len(shape) == 4:
            ctx.emit_one(op, [x], y_shape, {}, ctx.out())
        else:
            y = ctx.emit_one(op, [x], [shape[0], shape[1], 1, 1], {})
            ctx.view(y, y_shape, name=ctx.out())
    return handler


def _flatten(ctx: _NodeCtx):
    shape = ctx.shape(0)
    axis = ctx.a_int("axis", 1)
    if axis < 0:
        axis += len(shape)
    if not 0 <= axis <= len(shape):
        raise ctx.invalid(f"{axis} is out of range for rank {len(shape)}", "axis")
    ctx.view(ctx.inp(0), [_prod(shape[:axis]), _prod(shape[axis:])], name=ctx.out())


def _reshape(ctx: _NodeCtx):
    shape = ctx.shape(0)
    target = ctx.const_ints(1, "shape")
    allowzero = ctx.a_int("allowzero", 0) if ctx.version >= 14 else 0
    out, infer = [], None
    for i, d in enumerate(target):
        if d == 0 and not allowzero:
            if i >= len(shape):
                raise ctx.invalid(f"shape {target}: dim {i} copies a dim the input {list(shape)} lacks")
            d = shape[i]
        elif d == -1:
            if infer is not None:
                raise ctx.invalid(f"shape {target} has more than one -1")
            infer = i
            d = 1
        elif d < 0:
            raise ctx.invalid(f"shape {target} has a negative dim")
        out.append(d)
    total = _prod(shape)
    if infer is not None:
        rest = _prod(out)
        if rest == 0 or total % rest:
            raise ctx.invalid(f"cannot reshape {list(shape)} to {target}")
        out[infer] = total // rest
    if _prod(out) != total:
        raise ctx.invalid(f"cannot reshape {list(shape)} ({total} elements) to {target}")
    ctx.view(ctx.inp(0), out, name=ctx.out())


def _axes(ctx, axes, rank, what="axes") -> list[int]:
    out = []
    for a in axes:
        if not -rank <= a < rank:
            raise ctx.invalid(f"axis {a} is out of range for rank {rank}", what)
        out.append(a % rank)
    if len(set(out)) != len(out):
        raise ctx.invalid(f"repeated axes {axes}", what)
    return out


def _squeeze(ctx: _NodeCtx):
    shape = ctx.shape(0)
    axes = ctx.a_ints("axes", None) if ctx.version < 13 else ctx.const_ints(1, "axes")
    if axes is None:
        axes = [i for i, d in enumerate(shape) if d == 1]
    axes = _axes(ctx, axes, len(shape))
    if any(shape[a] != 1 for a in axes):
        raise ctx.invalid(f"cannot squeeze axes {axes} of shape {list(shape)}")
    ctx.view(ctx.inp(0), [d for i, d in enumerate(shape) if i not in axes], name=ctx.out())


def _unsqueeze(ctx: _NodeCtx):
    shape = list(ctx.shape(0))
    axes = ctx.a_ints("axes", None) if ctx.version < 13 else ctx.const_ints(1, "axes")
    if axes is None:
        raise ctx.invalid("axes are required")
    rank = len(shape) + len(axes)
    axes = sorted(_axes(ctx, axes, rank))
    for a in axes:
        shape.insert(a, 1)
    ctx.view(ctx.inp(0), shape, name=ctx.out())


def _transpose(ctx: _NodeCtx):
    shape = ctx.shape(0)
    perm = ctx.a_ints("perm", list(range(len(shape)))[::-1])
    if sorted(perm) != list(range(len(shape))):
        raise ctx.invalid(f"{perm} is not a permutation of {len(shape)} axes", "perm")
    strides = _dense_strides(shape)
    ctx.view(ctx.inp(0), [shape[p] for p in perm], 0, [strides[p] for p in perm], name=ctx.out())


def _slice_axis(ctx, x: str, axis: int, start: int, count: int, step: int = 1, name=None) -> str:
    shape = list(ctx.g.values[x].shape)
    strides = _dense_strides(shape)
    offset = start * strides[axis]
    out_strides = list(strides)
    out_strides[axis] = strides[axis] * step
    shape[axis] = count
    return ctx.view(x, shape, offset, out_strides, name)


def _split(ctx: _NodeCtx):
    shape = ctx.shape(0)
    axis = _axes(ctx, [ctx.a_int("axis", 0)], len(shape), "axis")[0]
    dim = shape[axis]
    nout = len(ctx.outputs)
    if ctx.version < 13:
        sizes = ctx.a_ints("split", None)
    else:
        sizes = ctx.const_ints(1, "split")
    if sizes is None:
        parts = ctx.a_int("num_outputs", nout) if ctx.version >= 18 and "num_outputs" in ctx.attrs else nout
        if parts != nout or parts < 1:
            raise ctx.invalid(f"num_outputs {parts} but the node has {nout} outputs", "num_outputs")
        chunk = -(-dim // parts)
        if ctx.version < 18 and dim % parts:
            raise ctx.invalid(f"dim {dim} does not split into {parts} equal parts")
        sizes = [min(chunk, dim - i * chunk) for i in range(parts)]
    if len(sizes) != nout or sum(sizes) != dim or any(s < 0 for s in sizes):
        raise ctx.invalid(f"split sizes {sizes} do not cover dim {dim} with {nout} outputs", "split")
    start = 0
    for o, size in zip(ctx.outputs, sizes):
        if o:
            _slice_axis(ctx, ctx.inp(0), axis, start, size, 1, o)
        start += size


def _slice(ctx: _NodeCtx):
    shape = ctx.shape(0)
    if ctx.version < 10:
        starts, ends = ctx.a_ints("starts", None), ctx.a_ints("ends", None)
        axes, steps = ctx.a_ints("axes", None), None
        if starts is None or ends is None:
            raise ctx.invalid("starts and ends are required")
    else:
        starts, ends = ctx.const_ints(1, "starts"), ctx.const_ints(2, "ends")
        axes, steps = ctx.const_ints(3, "axes"), ctx.const_ints(4, "steps")
    if axes is None:
        axes = list(range(len(starts)))
    if steps is None:
        steps = [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ctx.invalid(f"starts {starts}, ends {ends}, axes {axes}, steps {steps} differ in length")
    axes = _axes(ctx, axes, len(shape))
    strides = _dense_strides(shape)
    out_shape, out_strides, offset = list(shape), list(strides), 0
    for a, st, en, sp in zip(axes, starts, ends, steps):
        d = shape[a]
        if sp == 0:
            raise ctx.invalid("a step is 0")
        st = st + d if st < 0 else st
        en = en + d if en < 0 else en
        if sp > 0:
            st, en = min(max(st, 0), d), min(max(en, 0), d)
            count = max(0, -(-(en - st) // sp))
        else:
            st, en = min(max(st, 0), d - 1), min(max(en, -1), d - 1)
            count = max(0, -(-(st - en) // -sp))
        out_shape[a] = count
        out_strides[a] = strides[a] * sp
        if count:
            offset += st * strides[a]
    ctx.view(ctx.inp(0), out_shape, offset, out_strides, name=ctx.out())


def _gather(ctx: _NodeCtx):
    data = ctx.const(0)
    indices = ctx.const_input(1, "indices")
    shape = ctx.shape(0)
    axis = _axes(ctx, [ctx.a_int("axis", 0)], max(len(shape), 1), "axis")[0]
    if indices.dtype.kind not in "iu":
        raise ctx.invalid(f"indices must be integers, got {indices.dtype}")
    d = shape[axis]
    if indices.size and (indices.min() < -d or indices.max() >= d):
        raise ctx.invalid(f"indices {indices.reshape(-1)[:8].tolist()} out of range for dim {d}")
    idx = np.where(indices < 0, indices + d, indices).astype(np.int64)
    if data is not None:
        ctx.const_value(ctx.out(), np.take(data, idx, axis=axis))
        return
    flat = idx.reshape(-1)
    step = int(flat[1] - flat[0]) if flat.size > 1 else 1
    if flat.size == 0 or step == 0 or np.any(np.diff(flat) != step):
        raise ctx.unsupported("gathering from a run-time tensor needs evenly spaced constant indices")
    strides = _dense_strides(shape)
    out_shape = list(shape[:axis]) + list(idx.shape) + list(shape[axis + 1:])
    idx_strides = [0] * idx.ndim
    if idx.ndim:
        idx_strides[-1] = strides[axis] * step
    out_strides = strides[:axis] + idx_strides + strides[axis + 1:]
    ctx.view(ctx.inp(0), out_shape, int(flat[0]) * strides[axis], out_strides, name=ctx.out())


def _gemm(ctx: _NodeCtx):
    a_shape, b_shape = ctx.shape(0), ctx.shape(1)
    if len(a_shape) != 2 or len(b_shape) != 2:
        raise ctx.invalid(f"A and B must be 2-D, got {list(a_shape)} and {list(b_shape)}")
    ta, tb = bool(ctx.a_int("transA", 0)), bool(ctx.a_int("transB", 0))
    m, k = a_shape[::-1] if ta else a_shape
    k2, n = b_shape[::-1] if tb else b_shape
    if k != k2:
        raise ctx.invalid(f"A {list(a_shape)} and B {list(b_shape)} do not multiply (transA={ta}, transB={tb})")
    alpha, beta = ctx.a_float("alpha", 1.0), ctx.a_float("beta", 1.0)
    bias, residual = "", ""
    c = ctx.inp(2)
    if c and beta != 0.0:
        c_shape = ctx.shape(2)
        _broadcast(ctx, c_shape, (m, n))
        if tuple(np.broadcast_shapes(c_shape, (m, n))) != (m, n):
            raise ctx.invalid(f"C {list(c_shape)} does not broadcast to [{m}, {n}]")
        cdata = ctx.const(2)
        row_vector = all(d == 1 for d in c_shape[:-1])  # [], [1], [n], [1, n]: one bias per column
        if cdata is not None:
            cdata = (beta * cdata.astype(np.float32)).astype(np.float32)
            if row_vector:
                bias = ctx.const_value(ctx.g.unique_name(f"{ctx.name}/bias"),
                                       np.broadcast_to(cdata.reshape(-1), (n,)).copy())
            else:
                residual = ctx.const_value(ctx.g.unique_name(f"{ctx.name}/C"),
                                           np.broadcast_to(cdata, (m, n)).copy())
        else:
            if beta != 1.0:
                scale = ctx.const_value(ctx.g.unique_name(f"{ctx.name}/beta"), np.float32(beta).reshape(()))
                c = ctx.emit_one("binary", [c, scale], c_shape, {"op": "mul", **NO_ACT})
            full = (1,) * (2 - len(c_shape)) + tuple(c_shape)
            if row_vector:
                bias = ctx.view(c, [n], 0, [0 if full[1] == 1 else 1])
            elif full == (m, n):
                residual = c if len(c_shape) == 2 else ctx.view(c, [m, n])
            else:
                dense = _dense_strides(full)
                residual = ctx.view(c, [m, n], 0, [0 if full[i] == 1 else dense[i] for i in range(2)])
    a, b = ctx.inp(0), ctx.inp(1)
    if alpha != 1.0:
        # The IR's gemm has no scale (its alpha/beta are the activation's, as on every epilogue op):
        # the scale goes into an operand.
        if ctx.const(1) is not None:
            b = ctx.const_value(ctx.g.unique_name(f"{ctx.name}/B"), (alpha * ctx.const(1).astype(np.float32)).astype(np.float32))
        else:
            scale = ctx.const_value(ctx.g.unique_name(f"{ctx.name}/alpha"), np.float32(alpha).reshape(()))
            a = ctx.emit_one("binary", [a, scale], a_shape, {"op": "mul", **NO_ACT})
    attrs = {"trans_a": ta, "trans_b": tb, **NO_ACT}
    ctx.emit_one("gemm", [a, b, bias, residual], [m, n], attrs, ctx.out())


def _matmul(ctx: _NodeCtx):
    a, b = ctx.inp(0), ctx.inp(1)
    sa, sb = ctx.shape(0), ctx.shape(1)
    if not sa or not sb:
        raise ctx.invalid("MatMul operands must be at least 1-D")
    if ctx.const(0) is not None and ctx.const(1) is not None:
        ctx.emit_one("matmul", [a, b], np.matmul(np.empty(sa, np.float32), np.empty(sb, np.float32)).shape, {}, ctx.out())
        return
    va = a if len(sa) > 1 else ctx.view(a, [1, sa[0]])
    vb = b if len(sb) > 1 else ctx.view(b, [sb[0], 1])
    ga, gb = ctx.g.values[va].shape, ctx.g.values[vb].shape
    if ga[-1] != gb[-2]:
        raise ctx.invalid(f"shapes {list(sa)} and {list(sb)} do not multiply")
    batch = _broadcast(ctx, ga[:-2], gb[:-2])
    full = list(batch) + [ga[-2], gb[-1]]
    final = list(batch) + ([ga[-2]] if len(sa) > 1 else []) + ([gb[-1]] if len(sb) > 1 else [])
    if final == full:
        ctx.emit_one("matmul", [va, vb], full, {}, ctx.out())
    else:
        y = ctx.emit_one("matmul", [va, vb], full, {})
        ctx.view(y, final, name=ctx.out())


def _concat(ctx: _NodeCtx):
    xs = [i for i in ctx.inputs if i]
    shapes = [ctx.g.values[x].shape for x in xs]
    rank = len(shapes[0])
    if rank == 0:
        raise ctx.invalid("cannot concatenate scalars")
    if "axis" not in ctx.attrs:
        raise ctx.invalid("is required", "axis")
    axis = _axes(ctx, [ctx.a_int("axis")], rank, "axis")[0]
    for s in shapes:
        if len(s) != rank or any(s[i] != shapes[0][i] for i in range(rank) if i != axis):
            raise ctx.invalid(f"input shapes {[list(s) for s in shapes]} differ outside axis {axis}")
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    if len(xs) == 1:
        ctx.identity(xs[0], ctx.out())
        return
    ctx.emit_one("concat", xs, out, {"axis": axis}, ctx.out())


def _resize(ctx: _NodeCtx):
    shape = ctx.shape(0)
    rank = len(shape)
    legacy = ctx.op_type == "Upsample" or ctx.version < 11
    mode = ctx.a_str("mode", "nearest", ["nearest", "linear", "bilinear"] if legacy else ["nearest", "linear"])
    mode = "bilinear" if mode in ("linear", "bilinear") else "nearest"
    if legacy:
        scales = ctx.const_input(1, "scales")
        if scales is None:
            raise ctx.invalid("scales are required")
        scales, sizes = [float(s) for s in scales.reshape(-1)], None
        coord = "asymmetric"
    else:
        coord = ctx.a_str("coordinate_transformation_mode", "half_pixel",
                          ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"])
        if mode == "nearest":
            nearest = ctx.a_str("nearest_mode", "round_prefer_floor",
                                ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
        if ctx.a_int("exclude_outside", 0) != 0:
            raise ctx.unsupported("only 0 is supported", "exclude_outside")
        sc, sz = ctx.const_input(2, "scales"), ctx.const_input(3, "sizes")
        scales = [float(s) for s in sc.reshape(-1)] if sc is not None and sc.size else None
        sizes = [int(s) for s in sz.reshape(-1)] if sz is not None and sz.size else None
        if (scales is None) == (sizes is None):
            raise ctx.invalid("exactly one of scales and sizes must be given")
        axes = ctx.a_ints("axes", None) if ctx.version >= 18 else None
        if ctx.version >= 18:
            ctx.a_str("keep_aspect_ratio_policy", "stretch", ["stretch"])
        if axes is not None:
            axes = _axes(ctx, axes, rank)
            given = scales if scales is not None else sizes
            if len(given) != len(axes):
                raise ctx.invalid(f"{len(given)} scales/sizes for axes {axes}")
            full = [1.0] * rank if scales is not None else list(shape)
            for a, v in zip(axes, given):
                full[a] = v
            if scales is not None:
                scales = full
            else:
                sizes = full
    given = scales if scales is not None else sizes
    if len(given) != rank:
        raise ctx.invalid(f"{len(given)} scales/sizes for a rank-{rank} input")
    if scales is not None:
        if any(not (s > 0 and math.isfinite(s)) for s in scales):
            raise ctx.invalid(f"scales {scales} must be positive")
        out = [int(math.floor(d * s)) for d, s in zip(shape, scales)]
    else:
        out = sizes
    if rank != 4 or out[0] != shape[0] or out[1] != shape[1]:
        raise ctx.unsupported(f"only resizing H and W of a 4-D input is supported (input {list(shape)}, "
                              f"output {out})")
    if any(o < 1 for o in out):
        raise ctx.invalid(f"the output size {out} is empty")
    if ctx.version >= 18 and ctx.op_type == "Resize" and ctx.a_int("antialias", 0) and (out[2] < shape[2] or out[3] < shape[3]):
        raise ctx.unsupported("antialiased downsampling is not supported", "antialias")
    if legacy:
        # ONNX Runtime's legacy nearest mode: floor when upsampling, ceil when downsampling.
        down = [o < d for o, d in zip(out[2:], shape[2:])]
        if mode == "nearest" and down[0] != down[1]:
            raise ctx.unsupported("legacy nearest resizing that grows one axis and shrinks the other")
        nearest = "ceil" if down[0] else "floor"
    elif mode != "nearest":
        nearest = "round_prefer_floor"
    sh, sw = (float(np.float32(scales[2])), float(np.float32(scales[3]))) if scales is not None else (0.0, 0.0)
    if out[2:] == list(shape[2:]) and (scales is None or (sh == 1.0 and sw == 1.0)):
        ctx.identity(ctx.inp(0), ctx.out())
        return
    attrs = {"mode": mode, "coord": coord, "nearest": nearest, "scale_h": sh, "scale_w": sw}
    ctx.emit_one("resize", [ctx.inp(0)], out, attrs, ctx.out())


def _depth_to_space(ctx: _NodeCtx):
    ctx.require_rank(0, (4,))
    n, c, h, w = ctx.shape(0)
    b = ctx.a_int("blocksize", None) if "blocksize" in ctx.attrs else None
    if b is None or b < 1:
        raise ctx.invalid(f"must be a positive int, got {b}", "blocksize")
    mode = ctx.a_str("mode", "DCR", ["DCR", "CRD"]) if ctx.version >= 11 else "DCR"
    if c % (b * b):
        raise ctx.invalid(f"channels {c} are not a multiple of blocksize^2 = {b * b}")
    ctx.emit_one("pixel_shuffle", [ctx.inp(0)], [n, c // (b * b), h * b, w * b], {"block": b, "mode": mode}, ctx.out())


def _softmax(log: bool):
    def handler(ctx: _NodeCtx):
        shape = ctx.shape(0)
        if not shape:
            raise ctx.invalid("input must be at least 1-D")
        axis = _axes(ctx, [ctx.a_int("axis", 1 if ctx.version < 13 else -1)], len(shape), "axis")[0]
        if ctx.version < 13:
            outer, dim, inner = _prod(shape[:axis]), _prod(shape[axis:]), 1
        else:
            outer, dim, inner = _prod(shape[:axis]), shape[axis], _prod(shape[axis + 1:])
        ctx.emit_one("softmax", [ctx.inp(0)], shape, {"outer": outer, "dim": dim, "inner": inner, "log": log}, ctx.out())
    return handler


def _lrn(ctx: _NodeCtx):
    shape = ctx.shape(0)
    if len(shape) < 3:
        raise ctx.invalid(f"input must be at least 3-D, got {list(shape)}")
    size = ctx.a_int("size", None) if "size" in ctx.attrs else None
    if size is None or size < 1:
        raise ctx.invalid(f"must be a positive int, got {size}", "size")
    attrs = {"size": size, "alpha": ctx.a_float("alpha", 1e-4), "beta": ctx.a_float("beta", 0.75),
             "bias": ctx.a_float("bias", 1.0)}
    ctx.emit_one("lrn", [ctx.inp(0)], shape, attrs, ctx.out())


def _pad(ctx: _NodeCtx):
    shape = ctx.shape(0)
    rank = len(shape)
    modes = ["constant", "reflect", "edge"]
    mode = ctx.a_str("mode", "constant", modes)
    if ctx.version < 11:
        pads = ctx.a_ints("pads", None)
        value = ctx.a_float("value", 0.0)
        axes = None
    else:
        pads = ctx.const_ints(1, "pads")
        v = ctx.const_input(2, "constant_value")
        if v is not None and v.size > 1:
            raise ctx.invalid("constant_value must be a scalar")
        value = float(v.reshape(-1)[0]) if v is not None and v.size else 0.0
        axes = ctx.const_ints(3, "axes") if ctx.version >= 18 else None
    if pads is None:
        raise ctx.invalid("pads are required")
    axes = list(range(rank)) if axes is None else _axes(ctx, axes, rank)
    if len(pads) != 2 * len(axes):
        raise ctx.invalid(f"{len(pads)} pads for {len(axes)} axes", "pads")
    begin, end = [0] * rank, [0] * rank
    for i, a in enumerate(axes):
        begin[a], end[a] = pads[i], pads[i + len(axes)]
    for d in range(rank):
        if shape[d] + begin[d] + end[d] < 0:
            raise ctx.invalid(f"pads {pads} remove more than the input {list(shape)} holds")
        if mode == "reflect" and (begin[d] >= shape[d] or end[d] >= shape[d]) and (begin[d] > 0 or end[d] > 0):
            raise ctx.unsupported(f"reflect padding {pads} must be smaller than the input {list(shape)}", "pads")
        if mode == "edge" and shape[d] == 0:
            raise ctx.invalid("edge padding of an empty axis")
    x = ctx.inp(0)
    pos_b, pos_e = [max(p, 0) for p in begin], [max(p, 0) for p in end]
    crop = any(p < 0 for p in begin + end)
    if any(pos_b + pos_e):
        out = [shape[d] + pos_b[d] + pos_e[d] for d in range(rank)]
        attrs = {"pad_begin": pos_b, "pad_end": pos_e, "mode": mode, "value": value}
        x = ctx.emit_one("pad", [x], out, attrs, None if crop else ctx.out())
    if crop:
        cur = ctx.g.values[x].shape
        strides = _dense_strides(cur)
        out = [cur[d] + min(begin[d], 0) + min(end[d], 0) for d in range(rank)]
        offset = sum(-min(begin[d], 0) * strides[d] for d in range(rank))
        ctx.view(x, out, offset, strides, name=ctx.out())
    elif not any(pos_b + pos_e):
        ctx.identity(x, ctx.out())


def _reduce(op: str):
    def handler(ctx: _NodeCtx):
        shape = list(ctx.shape(0))
        rank = len(shape)
        axes_from_input = (ctx.op_type == "ReduceSum" and ctx.version >= 13) or ctx.version >= 18
        axes = ctx.const_ints(1, "axes") if axes_from_input else ctx.a_ints("axes", None)
        keep = ctx.a_int("keepdims", 1)
        if not axes:
            if axes_from_input and ctx.a_int("noop_with_empty_axes", 0):
                ctx.identity(ctx.inp(0), ctx.out())
                return
            axes = list(range(rank))
        axes = sorted(_axes(ctx, axes, rank))
        if ctx.const(0) is not None:
            return _fold_only(ctx)
        runs = []
        for a in axes:
            if runs and runs[-1][-1] == a - 1:
                runs[-1].append(a)
            else:
                runs.append([a])
        out_keep = [1 if i in axes else d for i, d in enumerate(shape)]
        final = out_keep if keep else [d for i, d in enumerate(shape) if i not in axes]
        x, cur = ctx.inp(0), list(shape)
        for j, run in enumerate(reversed(runs)):
            attrs = {"op": op, "outer": _prod(cur[:run[0]]), "dim": _prod(cur[run[0]:run[-1] + 1]),
                     "inner": _prod(cur[run[-1] + 1:])}
            for a in run:
                cur[a] = 1
            last = j == len(runs) - 1
            x = ctx.emit_one("reduce", [x], final if last else cur, attrs, ctx.out() if last else None)
    return handler


def _identity(ctx: _NodeCtx):
    ctx.identity(ctx.inp(0), ctx.out())


def _dropout(ctx: _NodeCtx):
    ctx.check_extra_outputs(1, "mask")
    if ctx.version >= 12:
        training = ctx.const_input(2, "training_mode")
        if training is not None and bool(training.reshape(-1)[0]):
            raise ctx.unsupported("training mode is not supported", "training_mode")
    ctx.identity(ctx.inp(0), ctx.out())


def _constant(ctx: _NodeCtx):
    keys = [k for k in ctx.attrs if k.startswith("value") or k == "sparse_value"]
    if len(keys) != 1:
        raise ctx.invalid(f"needs exactly one value attribute, has {keys}")
    key, v = keys[0], ctx.attrs[keys[0]]
    if key == "value":
        data = _to_array(v, "Constant value")
    elif key == "value_float":
        data = np.array(v, np.float32)
    elif key == "value_floats":
        data = np.array(v, np.float32).reshape(-1)
    elif key == "value_int":
        data = np.array(v, np.int64)
    elif key == "value_ints":
        data = np.array(v, np.int64).reshape(-1)
    else:
        raise ctx.unsupported("is not supported", key)
    ctx.const_value(ctx.out(), data)


def _shape(ctx: _NodeCtx):
    shape = ctx.shape(0)
    start, end = 0, len(shape)
    if ctx.version >= 15:
        start, end = ctx.a_int("start", 0), ctx.a_int("end", len(shape))
        start = min(max(start + len(shape) if start < 0 else start, 0), len(shape))
        end = min(max(end + len(shape) if end < 0 else end, 0), len(shape))
    ctx.const_value(ctx.out(), np.array(shape[start:end], np.int64).reshape(-1))


def _size(ctx: _NodeCtx):
    ctx.const_value(ctx.out(), np.array(_prod(ctx.shape(0)), np.int64))


def _cast(ctx: _NodeCtx):
    if ctx.const(0) is not None:
        return _fold_only(ctx)
    if ctx.a_int("to", 0) != onnx.TensorProto.FLOAT:
        raise ctx.unsupported("casting a run-time tensor to another type than float32", "to")
    ctx.identity(ctx.inp(0), ctx.out())


def _expand(ctx: _NodeCtx):
    shape = ctx.shape(0)
    target = ctx.const_ints(1, "shape")
    out = list(_broadcast(ctx, shape, tuple(target)))
    full = [1] * (len(out) - len(shape)) + list(shape)
    dense = _dense_strides(full)
    strides = [0 if full[i] == 1 and out[i] != 1 else dense[i] for i in range(len(out))]
    ctx.view(ctx.inp(0), out, 0, strides, name=ctx.out())


def _erf(ctx: _NodeCtx):
    if ctx.const(0) is not None:
        return _fold_only(ctx)
    # Kept for the GELU pattern (passes.fuse_gelu); an Erf left after the passes is unsupported.
    ctx.emit_one("onnx", [ctx.inp(0)], ctx.shape(0), {"op_type": "Erf"}, ctx.out())


def _fold_only(ctx: _NodeCtx):
    """Ops evaluated with numpy at import; a run-time input makes them unsupported."""
    for i, name in enumerate(ctx.inputs):
        if name and ctx.g.const(name) is None:
            raise ctx.unsupported(f"is supported only when its inputs are constant (input {i} {name!r} is "
                                  "computed at run time)")
    arrays = [ctx.g.const(n) if n else None for n in ctx.inputs]
    try:
        results = passes.evaluate_onnx(ctx.op_type, ctx.version, ctx.attrs, arrays, len(ctx.outputs))
    except (UnsupportedModelError, InvalidModelError) as e:
        raise type(e)(f"{ctx.describe()}: {e}") from None
    except (ValueError, TypeError, IndexError, KeyError, OverflowError, ZeroDivisionError) as e:
        raise ctx.invalid(f"cannot be evaluated: {e}") from None
    for name, data in zip(ctx.outputs, results):
        if name:
            ctx.const_value(name, data)


_HANDLERS = {
    "Conv": _conv, "ConvTranspose": _conv_transpose, "BatchNormalization": _batch_norm,
    "Relu": _act("relu"), "LeakyRelu": _act("leaky_relu"), "Sigmoid": _act("sigmoid"), "Tanh": _act("tanh"),
    "HardSigmoid": _act("hardsigmoid"), "HardSwish": _act("hardswish"), "Clip": _clip,
    "Add": _binary("add"), "Sub": _binary("sub"), "Mul": _binary("mul"), "Div": _binary("div"), "Sum": _sum,
    "MaxPool": _pool("max"), "AveragePool": _pool("avg"),
    "GlobalAveragePool": _global_pool("global_avg_pool"), "GlobalMaxPool": _global_pool("global_max_pool"),
    "Flatten": _flatten, "Reshape": _reshape, "Squeeze": _squeeze, "Unsqueeze": _unsqueeze,
    "Transpose": _transpose, "Split": _split, "Slice": _slice, "Gather": _gather, "Gemm": _gemm,
    "MatMul": _matmul, "Concat": _concat, "Resize": _resize, "Upsample": _resize,
    "DepthToSpace": _depth_to_space, "Softmax": _softmax(False), "LogSoftmax": _softmax(True), "LRN": _lrn,
    "Pad": _pad, "ReduceMean": _reduce("mean"), "ReduceSum": _reduce("sum"), "ReduceMax": _reduce("max"),
    "ReduceMin": _reduce("min"), "Identity": _identity, "Dropout": _dropout, "Constant": _constant,
    "Shape": _shape, "Size": _size, "Cast": _cast, "Expand": _expand, "Erf": _erf,
}
