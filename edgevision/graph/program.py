"""Lowering of an optimized IR graph to the plan spec (csrc/runtime/plan.h), and Program: the
compiled model around edgevision._C.Plan with run(), summary(), input/output specs and metadata.
"""
from __future__ import annotations

import numpy as np

from .. import _C
from . import passes
from .ir import PLAN_OPS, Graph, InvalidModelError, TensorSpec, UnsupportedModelError
from .memory import Buffer, plan_arena
from .onnx_import import MAX_VALUE_BYTES, import_model

MAX_ARENA_BYTES = 16 << 30
_IN_PLACE_OPS = {"activation": (0,), "batch_norm": (0,), "binary": (0, 1)}
_PRECISIONS = {"fp32": "float32", "fp16": "float16"}


def _device(device: str) -> str:
    if device == "cpu":
        return "cpu"
    if isinstance(device, str) and (device == "cuda" or device.startswith("cuda:")):
        index = device[5:] or "0"
        if not index.isdigit():
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
        return f"cuda:{int(index)}"
    raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def _contiguous_view(g: Graph, node) -> bool:
    """A strided_copy that reads one contiguous run of its input in order (reshape, Flatten,
    Squeeze, a Split/Slice along the leading non-trivial axis) can be an alias instead of a copy."""
    shape = g.values[node.outputs[0]].shape
    acc = 1
    for d, s in zip(reversed(shape), reversed(node.attrs["x_strides"])):
        if d != 1 and s != acc:
            return False
        acc *= d
    return node.attrs["x_offset"] >= 0


def lower(g: Graph, *, device: str = "cpu", dtype: str = "float32", num_threads: int = 0) -> dict:
    """The plan spec of an optimized graph: values (with the arena plan), constants, steps."""
    for node in g.nodes:
        if node.op == "onnx":
            raise UnsupportedModelError(
                f"{node.onnx_op} node {node.name!r} is not supported on run-time tensors"
                + (" (Erf only inside the GELU pattern x * 0.5 * (1 + erf(x / sqrt 2)))" if node.onnx_op == "Erf" else ""))
        if node.op not in PLAN_OPS and node.op != "identity":
            raise AssertionError(f"IR op {node.op!r} left after the passes")
    itemsize = 2 if dtype == "float16" else 4
    values: list[dict] = []
    constants: list[np.ndarray] = []
    vid: dict[str, int] = {}
    steps: list[dict] = []

    def add(name, shape, kind, **extra) -> int:
        values.append({"name": name, "shape": [int(d) for d in shape], "kind": kind, **extra})
        return len(values) - 1

    output_names = set(g.outputs)
    aliases = {}  # alias value name -> (root value name, byte offset into the root)
    for node in g.nodes:
        if node.op == "strided_copy" and node.outputs[0] not in output_names and _contiguous_view(g, node):
            root, offset = aliases.get(node.inputs[0], (node.inputs[0], 0))
            aliases[node.outputs[0]] = (root, offset + node.attrs["x_offset"] * itemsize)

    def ref(name: str) -> int:
        """The value id of `name`, creating constants and aliases on first use."""
        if not name:
            return -1
        if name not in vid:
            v = g.values[name]
            if name in aliases:
                root, offset = aliases[name]
                vid[name] = add(name, v.shape, "alias", index=ref(root), offset=offset)
            elif v.is_const:
                if v.data.dtype.kind != "f":
                    raise UnsupportedModelError(f"constant {name!r} of dtype {v.data.dtype} feeds a run-time op")
                constants.append(np.asarray(v.data, dtype=np.float32, order="C"))
                vid[name] = add(name, v.shape, "constant", index=len(constants) - 1)
            else:
                raise AssertionError(f"value {name!r} is read before it is written")
        return vid[name]

    for k, name in enumerate(g.inputs):
        vid[name] = add(name, g.values[name].shape, "input", index=k)
    produced = {o for n in g.nodes for o in n.outputs if o not in aliases}
    output_ids, copies = [], []  # copies: outputs that are inputs, constants or repeated
    for k, name in enumerate(g.outputs):
        out_id = add(name, g.values[name].shape, "output", index=k)
        output_ids.append(out_id)
        if name in produced and name not in vid:
            vid[name] = out_id
        else:
            copies.append((name, out_id))
    for node in g.nodes:
        if node.outputs[0] in aliases:
            continue
        inputs = [ref(i) for i in node.inputs]
        for o in node.outputs:
            if o not in vid:
                vid[o] = add(o, g.values[o].shape, "arena")
        steps.append({"op": "copy" if node.op == "identity" else node.op, "name": node.name,
                      "inputs": inputs, "outputs": [vid[o] for o in node.outputs], "attrs": _step_attrs(node)})
    for src, out_id in copies:
        steps.append({"op": "copy", "name": f"output {values[out_id]['name']}", "inputs": [ref(src)],
                      "outputs": [out_id], "attrs": {}})
    for v in values:
        if _prod(v["shape"]) * itemsize > MAX_VALUE_BYTES:
            raise InvalidModelError(f"value {v['name']!r} of shape {v['shape']} is too large")
    arena_bytes = _plan(values, steps, itemsize)
    if arena_bytes > MAX_ARENA_BYTES:
        raise InvalidModelError(f"the model needs a {arena_bytes / 2**30:.1f} GiB arena (limit {MAX_ARENA_BYTES >> 30} GiB)")
    return {"device": device, "dtype": dtype, "num_threads": int(num_threads), "arena_bytes": int(arena_bytes),
            "constants": constants, "values": values, "steps": steps,
            "inputs": [vid[n] for n in g.inputs], "outputs": output_ids}


def _step_attrs(node) -> dict:
    """The IR attrs in the plan's terms: the plan's gemm calls its scale alpha (always 1 here: the importer
    folds any scale into an operand) and its activation's parameters act_alpha / act_beta."""
    attrs = _plain(node.attrs)
    if node.op == "gemm":
        attrs["act_alpha"], attrs["act_beta"] = attrs.pop("alpha"), attrs.pop("beta")
        attrs["alpha"] = 1.0
    return attrs


def _plain(attrs: dict) -> dict:
    out = {}
    for k, v in attrs.items():
        if isinstance(v, (bool, np.bool_)):
            out[k] = bool(v)
        elif isinstance(v, (int, np.integer)):
            out[k] = int(v)
        elif isinstance(v, (float, np.floating)):
            out[k] = float(v)
        elif isinstance(v, (list, tuple)):
            out[k] = [int(e) for e in v]
        else:
            out[k] = v
    return out


def _prod(shape) -> int:
    p = 1
    for d in shape:
        p *= int(d)
    return p


def _root(values, i: int) -> tuple[int, int]:
    off = 0
    while values[i]["kind"] == "alias":
        off += values[i]["offset"]
        i = values[i]["index"]
    return i, off


def _plan(values: list[dict], steps: list[dict], itemsize: int) -> int:
    """Arena offsets for every "arena" value (in place where safe); returns the arena size."""
    buffers: dict[int, Buffer] = {}
    for s, step in enumerate(steps):
        for o in step["outputs"]:
            if values[o]["kind"] == "arena":
                buffers[o] = Buffer(str(o), _prod(values[o]["shape"]) * itemsize, s, s)
        for i in step["inputs"]:
            if i >= 0:
                root, _ = _root(values, i)
                if root in buffers:
                    buffers[root].last = max(buffers[root].last, s)
    for step in steps:
        slots = _IN_PLACE_OPS.get(step["op"], ())
        out = step["outputs"][0]
        if out not in buffers:
            continue
        roots = [(_root(values, i) if i >= 0 else (-1, 0)) for i in step["inputs"]]
        for slot in slots:
            i = step["inputs"][slot]
            root, off = roots[slot]
            others = [r for j, (r, _) in enumerate(roots) if j != slot]
            if (root in buffers and off == 0 and values[i]["shape"] == values[out]["shape"]
                    and _prod(values[root]["shape"]) == _prod(values[out]["shape"]) and root not in others):
                buffers[out].in_place.append(str(root))
    peak = plan_arena(list(buffers.values()), len(steps))
    for o, b in buffers.items():
        values[o]["offset"] = b.offset
    return peak


# ------------------------------------------------------------------------------------------------
# FLOPs and the summary
# ------------------------------------------------------------------------------------------------

def step_flops(step: dict, values: list[dict]) -> float:
    shape = lambda i: values[i]["shape"]  # noqa: E731
    out = shape(step["outputs"][0])
    n_out = _prod(out)
    op, a = step["op"], step["attrs"]
    if op == "conv2d":  # with a fused max pool: the whole conv output (the rows under no window are few), the pool
        w = shape(step["inputs"][1])
        if "max_pool" not in a:
            return 2.0 * n_out * w[1] * w[2] * w[3]
        x = shape(step["inputs"][0])
        conv_hw = [(x[2 + i] + a["pads"][i] + a["pads"][i + 2] - a["dilation"][i] * (w[2 + i] - 1) - 1)
                   // a["stride"][i] + 1 for i in range(2)]
        return 2.0 * out[0] * w[0] * _prod(conv_hw) * w[1] * w[2] * w[3] + n_out * _prod(a["max_pool"])
    if op == "conv2d_dw_pw":  # the depthwise's output map is the 1x1 conv's; the expand conv's is its input's
        wd, wp = shape(step["inputs"][1]), shape(step["inputs"][3])
        flops = 2.0 * n_out / out[1] * (wd[0] * wd[2] * wd[3] + wp[0] * wp[1])
        if len(step["inputs"]) > 6 and step["inputs"][6] >= 0:
            x, we = shape(step["inputs"][0]), shape(step["inputs"][6])
            flops += 2.0 * _prod(x) / x[1] * we[0] * we[1]
        return flops
    if op == "conv_transpose2d":
        w = shape(step["inputs"][1])
        return 2.0 * _prod(shape(step["inputs"][0])) * w[1] * w[2] * w[3]
    if op == "gemm":
        sa = shape(step["inputs"][0])
        return 2.0 * n_out * (sa[0] if a["trans_a"] else sa[1])
    if op == "matmul":
        return 2.0 * n_out * shape(step["inputs"][0])[-1]
    if op in ("max_pool2d", "avg_pool2d"):
        return float(n_out * a["kernel"][0] * a["kernel"][1])
    if op in ("global_avg_pool", "global_max_pool", "reduce"):
        return float(_prod(shape(step["inputs"][0])))
    if op in ("binary", "activation", "batch_norm", "softmax", "lrn", "resize"):
        return float(n_out * (a.get("size", 1) if op == "lrn" else 1))
    return 0.0


def epilogue_text(step: dict) -> str:
    a = step["attrs"]
    parts = []
    if a.get("act", "none") != "none":
        parts.append(a["act"])
    residual = {"conv2d": 3, "gemm": 3, "conv2d_dw_pw": 5}.get(step["op"])
    if residual is not None and len(step["inputs"]) > residual and step["inputs"][residual] >= 0:
        parts.insert(len(parts) if a.get("residual_after_act") else 0, "+residual")
    if "max_pool" in a:
        k, st, pads = a["max_pool"], a.get("max_pool_stride", a["max_pool"]), a.get("max_pool_pads", [0] * 4)
        parts.append("-> max_pool " + "x".join(map(str, k)) + ("" if st == k else " s" + "x".join(map(str, st)))
                     + (" p" + ",".join(map(str, pads)) if any(pads) else ""))
    if step["op"] == "conv2d_dw_pw":  # the expand and depthwise convs' activations come first
        parts.insert(0, f"dw {a['dw_act']} ->" if a["dw_act"] != "none" else "dw ->")
        if "ex_act" in a:
            parts.insert(0, f"ex {a['ex_act']} ->" if a["ex_act"] != "none" else "ex ->")
    return " ".join(parts)


def summarize(spec: dict, packed_bytes: int = 0) -> str:
    values = spec["values"]
    rows = [("#", "op", "name", "output", "MFLOP", "epilogue")]
    total = 0.0
    for k, step in enumerate(spec["steps"]):
        f = step_flops(step, values)
        total += f
        outs = " ".join("x".join(map(str, values[o]["shape"])) for o in step["outputs"])
        rows.append((str(k), step["op"], step["name"][:40], outs, f"{f / 1e6:.2f}", epilogue_text(step)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    itemsize = 2 if spec["dtype"] == "float16" else 4
    arena_values = [v for v in values if v["kind"] == "arena"]
    unshared = sum(_prod(v["shape"]) * itemsize for v in arena_values)
    const_bytes = sum(c.nbytes for c in spec["constants"])
    n_alias = sum(v["kind"] == "alias" for v in values)
    lines.append("")
    lines.append(f"{len(spec['steps'])} steps, {total / 1e9:.3f} GFLOP per run, device {spec['device']}, {spec['dtype']}")
    lines.append(f"arena {spec['arena_bytes'] / 2**20:.2f} MiB for {len(arena_values)} values that would take "
                 f"{unshared / 2**20:.2f} MiB unshared; {n_alias} aliases; constants {const_bytes / 2**20:.2f} MiB"
                 + (f", of which conv and gemm weights are held in the CPU kernels' layout ({packed_bytes / 2**20:.2f} MiB "
                    "packed; an original that nothing else reads is not kept)" if packed_bytes else ""))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Entry points
# ------------------------------------------------------------------------------------------------

def compile_spec(model, *, device: str = "cpu", precision: str = "fp32", input_shapes=None, batch=None,
                 num_threads: int = 0) -> tuple[dict, Graph]:
    """ONNX model (path, bytes or ModelProto) -> (plan spec, optimized IR graph)."""
    device = _device(device)
    if precision == "int8":
        raise UnsupportedModelError("precision 'int8' is not supported by the native runtime; "
                                    "use the tensorrt backend for INT8")
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(_PRECISIONS)}, got {precision!r}")
    dtype = _PRECISIONS[precision]
    if dtype == "float16" and device == "cpu":
        raise ValueError("precision 'fp16' needs a CUDA device; the CPU runtime computes in fp32")
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 0:
        raise ValueError(f"num_threads must be an int >= 0, got {num_threads!r}")
    graph = import_model(model, input_shapes=input_shapes, batch=batch)
    passes.optimize(graph, device)
    if device == "cpu":
        passes.fuse_depthwise_pointwise(graph)
        passes.fuse_conv_max_pool(graph)
        passes.fold_crop_into_pixel_shuffle(graph)
    return lower(graph, device=device, dtype=dtype, num_threads=num_threads), graph


def compile_onnx(model, *, device: str = "cpu", precision: str = "fp32", input_shapes=None, batch=None,
                 num_threads: int = 0) -> "Program":
    """ONNX model -> Program (the plan built by edgevision._C.Plan)."""
    spec, graph = compile_spec(model, device=device, precision=precision, input_shapes=input_shapes,
                               batch=batch, num_threads=num_threads)
    return Program(spec, graph)


class Program:
    """A compiled model: `run(inputs) -> outputs` in one native call. One Program serialises its own
    run() calls (the Plan's mutex); use one Program per thread for parallel inference."""

    def __init__(self, spec: dict, graph: Graph):
        if not hasattr(_C, "Plan"):
            raise RuntimeError("this build of edgevision._C has no Plan (the native runtime); rebuild edgevision")
        self.spec = spec
        self.ir = graph
        self.metadata = graph.metadata
        self.input_specs = graph.input_specs()
        self.output_specs = [TensorSpec(s.name, s.shape, "float32") for s in graph.output_specs()]
        self.flops = sum(step_flops(s, spec["values"]) for s in spec["steps"])
        self.plan = _C.Plan(spec)
        self.device = spec["device"]

    def _outputs(self, out):
        if out is not None:
            if len(out) != len(self.output_specs):
                raise ValueError(f"out must hold {len(self.output_specs)} arrays, got {len(out)}")
            return list(out)
        if self.device != "cpu":
            raise ValueError("on CUDA pass out= (DLPack tensors on the device); Program allocates CPU outputs only")
        return [np.empty(s.shape, np.float32) for s in self.output_specs]

    def run(self, inputs, out=None) -> list:
        """inputs: list of arrays in input_specs order (numpy on the CPU; float arrays of another
        float dtype are converted). Returns the outputs (new arrays, or `out`)."""
        if isinstance(inputs, np.ndarray) or not isinstance(inputs, (list, tuple)):
            raise TypeError("inputs must be a list of arrays, one per model input")
        if len(inputs) != len(self.input_specs):
            raise ValueError(f"the model takes {len(self.input_specs)} inputs "
                             f"({', '.join(s.name for s in self.input_specs)}), got {len(inputs)}")
        args = []
        for x, s in zip(inputs, self.input_specs):
            if self.device == "cpu" or isinstance(x, np.ndarray):
                x = np.asarray(x)
                if x.dtype.kind != "f":
                    raise TypeError(f"input {s.name!r} must be a float array, got {x.dtype}")
                if tuple(x.shape) != tuple(s.shape):
                    raise ValueError(f"input {s.name!r} must have shape {list(s.shape)}, got {list(x.shape)}")
                x = np.asarray(x, dtype=np.float32, order="C")
            args.append(x)
        return self.run_checked(args, out)

    def run_checked(self, inputs: list, out=None) -> list:
        """run() for inputs already checked against input_specs (float32, C-contiguous, these shapes; the
        engines check them once): skips the second check on the per-inference path."""
        outs = self._outputs(out)
        self.plan.run(inputs, outs)
        return outs

    __call__ = run

    def summary(self) -> str:
        return summarize(self.spec, self.plan.packed_bytes)
