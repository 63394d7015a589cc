"""The torch backend: executes the plan spec of edgevision.graph (the same dict edgevision._C.Plan runs) op
by op with torch.nn.functional, on the CPU or on CUDA (cuDNN). An independent peer of the native runtime
and a cross-check of the ONNX lowering: it reads only the spec, never the ONNX graph.

Values are separate torch tensors, not an arena: the memory plan (offsets, in-place reuse) is the one part
of the spec it does not exercise. Aliases are views of their base's bytes, as in the arena. Needs torch
(the train extra).
"""
from __future__ import annotations

import math

import numpy as np

from .base import BackendUnavailableError, Engine, ProgramCache, is_torch, require, stage_on_device, torch_device_of

_TORCH_DTYPES = ("float32", "float16")


def _torch():
    return require("torch", "train", "torch")


class TorchPlan:
    """A plan spec (section 2 of the runtime contract) executed with torch ops.

    run(inputs) takes torch tensors or numpy arrays of the spec's input shapes and returns torch tensors on
    the plan's device. A spec that names an unknown op or is inconsistent raises ValueError naming the step.
    """

    def __init__(self, spec: dict, device: str | None = None):
        torch = _torch()
        self.spec = spec
        self.device = torch.device(device or spec.get("device", "cpu"))
        dtype = spec.get("dtype", "float32")
        if dtype not in _TORCH_DTYPES:
            raise ValueError(f"plan dtype must be one of {_TORCH_DTYPES}, got {dtype!r}")
        self.dtype = getattr(torch, dtype)
        self.values = spec["values"]
        self.constants = [torch.tensor(np.asarray(c, dtype=np.float32)).to(self.device, self.dtype)
                          for c in spec["constants"]]
        self.inputs, self.outputs, self.steps = list(spec["inputs"]), list(spec["outputs"]), list(spec["steps"])
        for step in self.steps:
            if step.get("op") not in _OPS:
                raise ValueError(f"step {step.get('name')!r}: unknown op {step.get('op')!r}; the torch backend runs "
                                 f"{sorted(_OPS)}")

    def run(self, inputs) -> list:
        torch = _torch()
        if len(inputs) != len(self.inputs):
            raise ValueError(f"plan takes {len(self.inputs)} inputs, got {len(inputs)}")
        env: dict[int, object] = {}
        for vid, x in zip(self.inputs, inputs):
            t = x if is_torch(x) else torch.from_numpy(np.ascontiguousarray(x))
            env[vid] = t.to(self.device, self.dtype)
        with torch.inference_mode():
            for step in self.steps:
                args = [None if i < 0 else self._read(env, i) for i in step["inputs"]]
                try:
                    results = _OPS[step["op"]](step.get("attrs", {}), args, self._out_shapes(step))
                except (RuntimeError, IndexError, KeyError, TypeError) as e:
                    raise ValueError(f"step {step['op']} {step.get('name')!r}: {e}") from None
                for vid, y in zip(step["outputs"], results):
                    self._write(env, vid, y)
        return [self._read(env, v) for v in self.outputs]

    def _out_shapes(self, step):
        return [tuple(self.values[v]["shape"]) for v in step["outputs"]]

    def _read(self, env, vid):
        v = self.values[vid]
        if v["kind"] == "constant":
            return self.constants[v["index"]].reshape(v["shape"])
        if v["kind"] == "alias":
            return self._alias(env, vid)
        if vid not in env:
            raise ValueError(f"value {v['name']!r} is read before any step writes it")
        return env[vid]

    def _alias(self, env, vid, for_write=False):
        v = self.values[vid]
        base_id = v["index"]
        base = self.values[base_id]
        if for_write and base["kind"] not in ("constant", "alias", "input") and base_id not in env:
            env[base_id] = _torch().zeros(base["shape"], dtype=self.dtype, device=self.device)
        flat = (self._alias(env, base_id, for_write) if base["kind"] == "alias" else self._read(env, base_id)).reshape(-1)
        start = v["offset"] // flat.element_size()
        n = math.prod(v["shape"])
        if start + n > flat.numel():
            raise ValueError(f"alias {v['name']!r} reaches past its base {base['name']!r}")
        return flat[start:start + n].view(v["shape"])

    def _write(self, env, vid, y):
        v = self.values[vid]
        if tuple(y.shape) != tuple(v["shape"]):
            raise ValueError(f"value {v['name']!r}: a step produced shape {list(y.shape)}, the plan says {v['shape']}")
        if v["kind"] == "alias":
            self._alias(env, vid, for_write=True).copy_(y)
        else:
            env[vid] = y


# ------------------------------------------------------------------------------------------------
# Ops: (attrs, input tensors, output shapes) -> list of output tensors
# ------------------------------------------------------------------------------------------------
def _act(x, attrs, key_prefix=""):
    """The activation named by attrs["act"], its parameters from attrs[key_prefix + "alpha" / "beta"] (gemm says
    act_alpha / act_beta: its own "alpha" is the product's scale), defaults as in edgevision.ops."""
    import torch
    import torch.nn.functional as F

    from ..ops import ACTIVATIONS

    name = attrs.get("act", "none")
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}")
    _, a0, b0 = ACTIVATIONS[name]
    alpha = float(attrs.get(key_prefix + "alpha", a0))
    beta = float(attrs.get(key_prefix + "beta", b0))
    if name in (None, "none"):
        return x
    if name == "relu":
        return F.relu(x)
    if name == "leaky_relu":
        return F.leaky_relu(x, alpha)
    if name in ("clip", "relu6"):
        return torch.clamp(x, alpha, beta)
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name == "tanh":
        return torch.tanh(x)
    if name == "silu":
        return F.silu(x)
    if name == "hardswish":
        return F.hardswish(x)
    if name == "gelu":
        return F.gelu(x)
    return torch.clamp(alpha * x + beta, 0.0, 1.0)  # hardsigmoid, ONNX form


def _epilogue(y, attrs, residual=None, key_prefix=""):
    """act(y + residual), or act(y) + residual when residual_after_act: the kernels' fused epilogue."""
    if residual is None:
        return _act(y, attrs, key_prefix)
    if attrs.get("residual_after_act", False):
        return _act(y, attrs, key_prefix) + residual
    return _act(y + residual, attrs, key_prefix)


def _pads4(attrs, key="pads"):
    t, l, b, r = (int(p) for p in attrs.get(key, (0, 0, 0, 0)))
    return t, l, b, r


def _conv2d(attrs, args, shapes):
    import torch.nn.functional as F

    x, w, bias, res = (args + [None] * 4)[:4]
    t, l, b, r = _pads4(attrs)
    if (t, l) == (b, r):
        padding = (t, l)
    else:
        x, padding = F.pad(x, (l, r, t, b)), (0, 0)
    y = F.conv2d(x, w, bias, tuple(attrs.get("stride", (1, 1))), padding, tuple(attrs.get("dilation", (1, 1))),
                 int(attrs.get("groups", 1)))
    y = _epilogue(y, attrs, res)
    if "max_pool" in attrs:  # a CPU plan's fused pool; padding never wins a max
        t, l, b, r = attrs.get("max_pool_pads", (0, 0, 0, 0))
        y = F.max_pool2d(F.pad(y, (l, r, t, b), value=float("-inf")), tuple(attrs["max_pool"]),
                         tuple(attrs.get("max_pool_stride", attrs["max_pool"])))
    return [y]


def _conv2d_dw_pw(attrs, args, shapes):
    """A CPU plan's fused inverted-residual convs ([expand 1x1], depthwise, 1x1), as separate convs."""
    x, wd, bd, wp, bp, res, we, be = (args + [None] * 8)[:8]
    if we is not None:  # the expand conv
        x = _conv2d({"act": attrs.get("ex_act", "none"), "alpha": attrs.get("ex_alpha", 0.0),
                     "beta": attrs.get("ex_beta", 0.0)}, [x, we, be], shapes)[0]
    dw = {**attrs, "groups": x.shape[1], "act": attrs.get("dw_act", "none"), "alpha": attrs.get("dw_alpha", 0.0),
          "beta": attrs.get("dw_beta", 0.0), "residual_after_act": False}
    pw = {k: attrs[k] for k in ("act", "alpha", "beta", "residual_after_act") if k in attrs}
    return _conv2d(pw, [_conv2d(dw, [x, wd, bd], shapes)[0], wp, bp, res], shapes)


def _conv_transpose2d(attrs, args, shapes):
    import torch.nn.functional as F

    x, w, bias = (args + [None] * 3)[:3]
    t, l, b, r = _pads4(attrs)
    oph, opw = (int(v) for v in attrs.get("output_padding", (0, 0)))
    # The full (unpadded) transposed convolution, grown by output_padding at the end, then cropped by the pads:
    # one path for symmetric and asymmetric pads. The bias goes on last so the grown border gets it too.
    y = F.conv_transpose2d(x, w, None, tuple(attrs.get("stride", (1, 1))), 0, 0, int(attrs.get("groups", 1)),
                           tuple(attrs.get("dilation", (1, 1))))
    y = F.pad(y, (0, opw, 0, oph))
    y = y[:, :, t:y.shape[2] - b, l:y.shape[3] - r]
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return [_epilogue(y, attrs)]


def _pool_extent(size, out, k, s, d, pad_begin):
    """Padding after the input so that `out` windows fit exactly (explicit end pads plus ceil_mode)."""
    return (out - 1) * s + d * (k - 1) + 1 - size - pad_begin


def _pool_pad(x, attrs, out_shape, value):
    """x padded by `value` on both sides as the output size requires (negative: cropped)."""
    import torch.nn.functional as F

    kh, kw = attrs["kernel"]
    sh, sw = attrs.get("stride", (1, 1))
    dh, dw = attrs.get("dilation", (1, 1))
    t, l, _, _ = _pads4(attrs)
    eh = _pool_extent(x.shape[2], out_shape[2], kh, sh, dh, t)
    ew = _pool_extent(x.shape[3], out_shape[3], kw, sw, dw, l)
    return F.pad(x, (l, ew, t, eh), value=value), (kh, kw), (sh, sw), (dh, dw)


def _max_pool2d(attrs, args, shapes):
    import torch.nn.functional as F

    xp, k, s, d = _pool_pad(args[0], attrs, shapes[0], -math.inf)
    return [F.max_pool2d(xp, k, s, 0, d)]


def _avg_pool2d(attrs, args, shapes):
    import torch
    import torch.nn.functional as F

    x = args[0]
    xp, k, s, _ = _pool_pad(x, attrs, shapes[0], 0.0)
    total = F.avg_pool2d(xp, k, s, 0, divisor_override=1)
    # The divisor: window positions inside the input, plus the explicit pads when count_include_pad
    # (never the extra ceil_mode border), counted by pooling a mask the same way.
    h, w = x.shape[2:]
    t, l, b, r = _pads4(attrs)
    if attrs.get("count_include_pad", False):
        mask = torch.ones(1, 1, h + t + b, w + l + r, dtype=x.dtype, device=x.device)
        mask = F.pad(mask, (0, xp.shape[3] - mask.shape[3], 0, xp.shape[2] - mask.shape[2]))
    else:
        mask = F.pad(torch.ones(1, 1, h, w, dtype=x.dtype, device=x.device), (l, xp.shape[3] - w - l, t, xp.shape[2] - h - t))
    count = F.avg_pool2d(mask, k, s, 0, divisor_override=1)
    return [total / count.clamp(min=1)]


def _gemm(attrs, args, shapes):
    a, b, bias, res = (args + [None] * 4)[:4]
    if attrs.get("trans_a", False):
        a = a.t()
    if attrs.get("trans_b", False):
        b = b.t()
    y = (a @ b) * float(attrs.get("alpha", 1.0))
    if bias is not None:
        y = y + bias.reshape(1, -1)
    return [_epilogue(y, attrs, res, key_prefix="act_")]


def _pixel_shuffle(attrs, args, shapes):
    import torch.nn.functional as F

    x, block = args[0], int(attrs["block"])
    if attrs.get("mode", "CRD") == "CRD":
        y = F.pixel_shuffle(x, block)
    else:
        n, c, h, w = x.shape
        y = x.reshape(n, block, block, c // (block * block), h, w).permute(0, 3, 4, 1, 5, 2)
        y = y.reshape(n, c // (block * block), h * block, w * block)
    if "crop" in attrs:  # a window of the shuffled map, of the output's size (fold_crop_into_pixel_shuffle)
        (top, left), (oh, ow) = attrs["crop"], shapes[0][2:]
        y = y[:, :, top:top + oh, left:left + ow]
    return [y]


def _source_coords(out, size, scale, coord):
    """ONNX Resize: output index -> input coordinate along one axis."""
    import torch

    o = torch.arange(out, dtype=torch.float64)
    if coord == "align_corners":
        return o * ((size - 1) / (out - 1)) if out > 1 else torch.zeros(out, dtype=torch.float64)
    if coord == "asymmetric":
        return o / scale
    if coord == "pytorch_half_pixel" and out == 1:
        return torch.zeros(out, dtype=torch.float64)
    return (o + 0.5) / scale - 0.5  # half_pixel, pytorch_half_pixel


def _resize(attrs, args, shapes):
    import torch

    x = args[0]
    mode, coord = attrs.get("mode", "nearest"), attrs.get("coord", "half_pixel")
    y = x
    for axis, key in ((2, "scale_h"), (3, "scale_w")):
        size, out = x.shape[axis], shapes[0][axis]
        scale = float(attrs.get(key, 0.0)) or out / size
        src = _source_coords(out, size, scale, coord)
        if mode == "nearest":
            rule = attrs.get("nearest", "round_prefer_floor")
            idx = {"round_prefer_floor": torch.ceil(src - 0.5), "round_prefer_ceil": torch.floor(src + 0.5),
                   "floor": torch.floor(src), "ceil": torch.ceil(src)}[rule]
            y = y.index_select(axis, idx.clamp(0, size - 1).long().to(x.device))
        else:
            src = src.clamp(0, size - 1)
            i0 = src.floor().long()
            i1 = (i0 + 1).clamp(max=size - 1)
            frac = (src - i0).to(x.dtype).to(x.device)
            view = [1, 1, 1, 1]
            view[axis] = out
            frac = frac.view(view)
            y = y.index_select(axis, i0.to(x.device)) * (1 - frac) + y.index_select(axis, i1.to(x.device)) * frac
    return [y]


def _softmax(attrs, args, shapes):
    x = args[0]
    v = x.reshape(int(attrs["outer"]), int(attrs["dim"]), int(attrs["inner"]))
    y = v.log_softmax(1) if attrs.get("log", False) else v.softmax(1)
    return [y.reshape(shapes[0])]


def _binary(attrs, args, shapes):
    a, b = args
    y = {"add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b, "div": lambda: a / b}[attrs["op"]]()
    return [_epilogue(y, attrs).expand(shapes[0])]


def _activation(attrs, args, shapes):
    return [_act(args[0], attrs)]


def _batch_norm(attrs, args, shapes):
    import torch.nn.functional as F

    x, gamma, beta, mean, var = args
    return [_act(F.batch_norm(x, mean, var, gamma, beta, False, 0.0, float(attrs.get("eps", 1e-5))), attrs)]


def _global_avg_pool(attrs, args, shapes):
    return [args[0].mean(dim=(2, 3), keepdim=True)]


def _global_max_pool(attrs, args, shapes):
    return [args[0].amax(dim=(2, 3), keepdim=True)]


def _matmul(attrs, args, shapes):
    return [args[0] @ args[1]]


def _concat(attrs, args, shapes):
    import torch

    return [torch.cat(args, int(attrs["axis"]))]


def _strided_copy(attrs, args, shapes):
    import torch

    x = args[0].reshape(-1)
    shape = shapes[0]
    strides = [int(s) for s in attrs["x_strides"]]
    offset = int(attrs.get("x_offset", 0))
    if len(strides) != len(shape):
        raise ValueError(f"x_strides has {len(strides)} entries for a rank-{len(shape)} output")
    # torch.as_strided takes no negative strides: walk those dims forwards from their last element, then flip.
    flip = [d for d, s in enumerate(strides) if s < 0 and shape[d] > 1]
    for d in flip:
        offset += (shape[d] - 1) * strides[d]
        strides[d] = -strides[d]
    strides = [abs(s) for s in strides]
    if math.prod(shape) and (offset < 0 or offset + sum((n - 1) * s for n, s in zip(shape, strides)) >= x.numel()):
        raise ValueError("strided_copy reads outside its input")
    y = torch.as_strided(x, shape, strides, offset)
    return [(y.flip(flip) if flip else y).contiguous()]


def _pad(attrs, args, shapes):
    import torch
    import torch.nn.functional as F

    x = args[0]
    begin, end = [int(p) for p in attrs["pad_begin"]], [int(p) for p in attrs["pad_end"]]
    mode = attrs.get("mode", "constant")
    if mode == "constant":
        flat = []
        for b, e in zip(reversed(begin), reversed(end)):
            flat += [b, e]
        return [F.pad(x, flat, value=float(attrs.get("value", 0.0)))]
    y = x
    for d, (b, e) in enumerate(zip(begin, end)):
        n = x.shape[d]
        i = torch.arange(-b, n + e)
        if mode == "reflect":
            i = i.abs()
            i = torch.where(i >= n, 2 * (n - 1) - i, i)
        else:  # edge
            i = i.clamp(0, n - 1)
        y = y.index_select(d, i.to(x.device))
    return [y]


def _lrn(attrs, args, shapes):
    import torch.nn.functional as F

    x = args[0]
    size = int(attrs["size"])
    alpha, beta, bias = float(attrs.get("alpha", 1e-4)), float(attrs.get("beta", 0.75)), float(attrs.get("bias", 1.0))
    n, c = x.shape[0], x.shape[1]
    sq = (x * x).reshape(n, 1, c, -1)
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    window = F.avg_pool2d(F.pad(sq, (0, 0, lo, hi)), (size, 1), 1, 0, divisor_override=1).reshape(x.shape)
    return [x / (bias + alpha / size * window) ** beta]


def _reduce(attrs, args, shapes):
    v = args[0].reshape(int(attrs["outer"]), int(attrs["dim"]), int(attrs["inner"]))
    op = attrs.get("op", "mean")
    y = {"mean": lambda: v.mean(1), "sum": lambda: v.sum(1), "max": lambda: v.amax(1), "min": lambda: v.amin(1)}[op]()
    return [y.reshape(shapes[0])]


def _copy(attrs, args, shapes):
    return [args[0].reshape(shapes[0]).clone()]


_OPS = {
    "conv2d": _conv2d, "conv2d_dw_pw": _conv2d_dw_pw, "conv_transpose2d": _conv_transpose2d,
    "max_pool2d": _max_pool2d, "avg_pool2d": _avg_pool2d,
    "global_avg_pool": _global_avg_pool, "global_max_pool": _global_max_pool, "gemm": _gemm, "matmul": _matmul,
    "pixel_shuffle": _pixel_shuffle, "resize": _resize, "softmax": _softmax, "binary": _binary,
    "activation": _activation, "batch_norm": _batch_norm, "concat": _concat, "strided_copy": _strided_copy,
    "pad": _pad, "lrn": _lrn, "reduce": _reduce, "copy": _copy,
}


# ------------------------------------------------------------------------------------------------
# The engine
# ------------------------------------------------------------------------------------------------
class TorchEngine(Engine):
    """The torch backend: fp32 on the CPU, fp32/fp16 on CUDA; one TorchPlan per input shape set (compiled by
    edgevision.graph.compile_spec on first use), so every size of the model's dynamic dims is accepted."""

    backend = "torch"

    def __init__(self, source, *, device="cpu", precision="fp32", batch=None, input_shapes=None, threads=None):
        torch = _torch()
        from ..graph import compile_spec

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailableError("the torch backend on cuda needs a CUDA build of torch and a visible GPU")
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"the torch backend runs fp32 (and fp16 on CUDA), not {precision!r}; int8 needs "
                             f"backend='tensorrt' (or onnxruntime with calib=)")
        if precision == "fp16" and not device.startswith("cuda"):
            raise ValueError("the torch backend runs fp16 only on CUDA; use precision='fp32' on the CPU")
        self._threads = int(threads or 0)
        self._torch_device = device if device != "cuda" else "cuda:0"
        specs = source.resolve_shapes(batch, input_shapes)

        def compile_shapes(shapes):
            spec, _ = compile_spec(source.proto, device=self._torch_device, precision=precision,
                                   input_shapes={s.name: list(shape) for s, shape in zip(specs, shapes)},
                                   batch=shapes[0][0] if shapes and shapes[0] else None)
            return TorchPlan(spec, self._torch_device)

        self._plans = ProgramCache(compile_shapes)
        plan = self._plans.get(tuple(tuple(s.shape) for s in specs))
        dt = plan.spec.get("dtype", "float32")
        from ..graph.ir import TensorSpec

        ins = [TensorSpec(s.name, tuple(s.shape), dt if s.dtype in _TORCH_DTYPES else s.dtype) for s in specs]
        outs = [TensorSpec(plan.values[v]["name"], tuple(plan.values[v]["shape"]), dt) for v in plan.outputs]
        super().__init__(source, device=self._torch_device, precision=precision, input_spec=ins, output_spec=outs,
                         variable_dims=source.dynamic_dims())

    def _run(self, arrays):
        plan = self._plans.get(tuple(tuple(a.shape) for a in arrays))
        if self._threads:  # torch's thread count is process-wide: set for this run, then restored
            torch = _torch()
            before = torch.get_num_threads()
            torch.set_num_threads(self._threads)
            try:
                ys = plan.run(arrays)
            finally:
                torch.set_num_threads(before)
        else:
            ys = plan.run(arrays)
        if isinstance(arrays[0], np.ndarray):
            return [y.cpu().numpy() for y in ys]
        device = torch_device_of(arrays[0])
        return [y.to(device) for y in ys]

    def _run_async(self, arrays, stream):
        torch = _torch()
        with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
            staged = stage_on_device(arrays, self._torch_device)
            return self._plans.get(tuple(tuple(a.shape) for a in arrays)).run(staged)

    def summary(self) -> str:
        plan = self._plans.first()
        counts: dict[str, int] = {}
        for step in plan.steps:
            counts[step["op"]] = counts.get(step["op"], 0) + 1
        ops = ", ".join(f"{op} x{n}" for op, n in sorted(counts.items()))
        return super().summary() + f"\n  {len(plan.steps)} steps executed with torch.nn.functional: {ops}"

    def _close(self):
        self._plans.clear()
