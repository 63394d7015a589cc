"""Typed functions over edgevision's kernels.

Every function accepts numpy arrays and DLPack tensors (torch on the CPU or CUDA, CuPy, ...) without
copying and returns its result on the input's device, in the input's framework. Shapes, dtypes,
strides and devices are checked in the extension (edgevision._C) before any kernel runs: a wrong
argument raises ValueError or TypeError naming it, never a crash.

Common keyword arguments:
  out        an existing output tensor to write into (its shape, dtype and device must match)
  reference  run the plain scalar reference kernel instead of the fast one (CPU only; for tests)
  stream     CUDA stream: an int handle, a torch.cuda.Stream or a cupy Stream; default: the
             framework's current stream of the input (the legacy default stream for raw DLPack)
"""
from __future__ import annotations

import math
import operator
from typing import Any, Sequence

import numpy as np

from . import _C

__all__ = [
    "conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "global_avg_pool2d",
    "global_max_pool2d", "gemm", "linear", "pixel_shuffle", "resize", "softmax", "log_softmax",
    "add", "sub", "mul", "div", "activation", "batch_norm", "concat", "preprocess",
    "postprocess_image", "strided_copy", "transpose", "slice", "expand", "pad", "lrn", "reduce",
    "reduce_mean", "set_num_threads", "get_num_threads", "ACTIVATIONS",
]

# name -> (kernel enum, default alpha, default beta)
ACTIVATIONS = {
    None: (_C.Act.NONE, 0.0, 0.0),
    "none": (_C.Act.NONE, 0.0, 0.0),
    "relu": (_C.Act.RELU, 0.0, 0.0),
    "leaky_relu": (_C.Act.LEAKY_RELU, 0.01, 0.0),
    "clip": (_C.Act.CLIP, -math.inf, math.inf),
    "relu6": (_C.Act.CLIP, 0.0, 6.0),
    "sigmoid": (_C.Act.SIGMOID, 0.0, 0.0),
    "tanh": (_C.Act.TANH, 0.0, 0.0),
    "silu": (_C.Act.SILU, 0.0, 0.0),
    "hardswish": (_C.Act.HARDSWISH, 0.0, 0.0),
    "gelu": (_C.Act.GELU, 0.0, 0.0),
    "hardsigmoid": (_C.Act.HARDSIGMOID, 0.2, 0.5),  # ONNX defaults; PyTorch uses 1/6, 0.5
}

_RESIZE_MODES = {"nearest": _C.ResizeMode.NEAREST, "bilinear": _C.ResizeMode.BILINEAR}
_COORD_MODES = {
    "half_pixel": _C.CoordMode.HALF_PIXEL,
    "pytorch_half_pixel": _C.CoordMode.PYTORCH_HALF_PIXEL,
    "align_corners": _C.CoordMode.ALIGN_CORNERS,
    "asymmetric": _C.CoordMode.ASYMMETRIC,
}
_NEAREST_MODES = {
    "round_prefer_floor": _C.NearestMode.ROUND_PREFER_FLOOR,
    "round_prefer_ceil": _C.NearestMode.ROUND_PREFER_CEIL,
    "floor": _C.NearestMode.FLOOR,
    "ceil": _C.NearestMode.CEIL,
}
_INTERP = {"nearest": _C.Interp.NEAREST, "bilinear": _C.Interp.BILINEAR}
_SHUFFLE = {"CRD": _C.ShuffleMode.CRD, "DCR": _C.ShuffleMode.DCR}
_PAD_MODES = {"constant": _C.PadMode.CONSTANT, "reflect": _C.PadMode.REFLECT, "edge": _C.PadMode.EDGE}
_REDUCE_OPS = {"mean": _C.ReduceOp.MEAN, "sum": _C.ReduceOp.SUM, "max": _C.ReduceOp.MAX,
               "min": _C.ReduceOp.MIN}


def set_num_threads(n: int) -> None:
    """Threads used by the CPU kernels (OpenMP). Like torch.set_num_threads, process-wide."""
    _C.set_num_threads(_int(n, "n"))


def get_num_threads() -> int:
    return _C.get_num_threads()


# ----------------------------------------------------------------------------------------------
# Argument normalization
# ----------------------------------------------------------------------------------------------

def _choice(value, table: dict, name: str):
    try:
        return table[value]
    except (KeyError, TypeError):
        names = ", ".join(repr(k) for k in table if k is not None)
        raise ValueError(f"{name} must be one of {names}; got {value!r}") from None


def _int(v, name: str) -> int:
    if isinstance(v, bool):
        raise TypeError(f"{name} must be an int, got a bool")
    try:
        return operator.index(v)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(v).__name__}") from None


def _pair(v, name: str) -> tuple[int, int]:
    if isinstance(v, Sequence) and not isinstance(v, str):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair (h, w), got {tuple(v)!r}")
        return _int(v[0], name), _int(v[1], name)
    i = _int(v, name)
    return i, i


def _pads(v, name: str = "padding") -> tuple[int, int, int, int]:
    """int, (ph, pw) or (top, left, bottom, right) -> (top, left, bottom, right)."""
    if isinstance(v, Sequence) and not isinstance(v, str) and len(v) == 4:
        return tuple(_int(e, name) for e in v)  # type: ignore[return-value]
    if isinstance(v, Sequence) and not isinstance(v, str) and len(v) != 2:
        raise ValueError(f"{name} must be an int, (ph, pw) or (top, left, bottom, right); got {tuple(v)!r}")
    ph, pw = _pair(v, name)
    return ph, pw, ph, pw


def _ints(v, name: str) -> list[int]:
    """A sequence of ints (a single int is a one-element list)."""
    if isinstance(v, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of ints, got {type(v).__name__}")
    if not isinstance(v, Sequence) and not isinstance(v, np.ndarray):
        return [_int(v, name)]
    return [_int(e, name) for e in v]


def _float(v, name: str) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(v).__name__}") from None


def _triple(v, name: str) -> tuple[float, float, float]:
    if isinstance(v, (int, float)):
        return (float(v),) * 3
    vals = tuple(_float(e, name) for e in v)
    if len(vals) != 3:
        raise ValueError(f"{name} must have 3 values (one per channel), got {len(vals)}")
    return vals  # type: ignore[return-value]


def _epilogue(activation, alpha, beta):
    act, a, b = _choice(activation.lower() if isinstance(activation, str) else activation,
                        ACTIVATIONS, "activation")
    return (act, a if alpha is None else _float(alpha, "alpha"),
            b if beta is None else _float(beta, "beta"))


# ----------------------------------------------------------------------------------------------
# Framework bridging: outputs are allocated by the input's own framework, on its device
# ----------------------------------------------------------------------------------------------

def _framework(x) -> str:
    if isinstance(x, np.ndarray):
        return "numpy"
    mod = type(x).__module__.split(".")[0]
    return mod if mod in ("torch", "cupy") else "dlpack"


def _tensor(x):
    """What the extension receives. numpy arrays as they are; torch CPU tensors as zero-copy numpy
    views (reading a numpy array costs the extension far less than a DLPack export), detached
    first since inference records no gradient; other objects as they are (the extension calls
    __dlpack__); plain sequences become float32 numpy arrays, as numpy's own functions accept."""
    if x is None or isinstance(x, np.ndarray):
        return x
    if _framework(x) == "torch":
        if x.requires_grad:
            x = x.detach()
        return x.numpy() if x.device.type == "cpu" and x.dtype in _TORCH_NUMPY else x
    if not hasattr(x, "__dlpack__") and type(x).__name__ != "PyCapsule":
        try:
            return np.ascontiguousarray(x, dtype=np.float32)
        except (TypeError, ValueError):
            raise TypeError(f"expected a numpy array or a DLPack tensor, got {type(x).__name__}") from None
    return x


class _LazyTorchDtypes:
    """The torch dtypes that have a numpy twin, looked up on first use (torch is optional)."""

    def __contains__(self, dtype):
        import torch
        return dtype in (torch.float32, torch.float16, torch.uint8)


_TORCH_NUMPY = _LazyTorchDtypes()


class _Target:
    """Where an op's output goes: the first tensor argument's framework and device, or `out`."""

    def __init__(self, like, out=None, stream=None):
        self.like = like
        self.out = out
        self.framework = _framework(like)
        self.stream = self._stream(stream)
        self.result = None  # the tensor handed back when the extension sees a view of it

    def _stream(self, stream) -> int:
        if stream is not None:
            for attr in ("cuda_stream", "ptr"):  # torch.cuda.Stream, cupy Stream
                if hasattr(stream, attr):
                    return int(getattr(stream, attr))
            return _int(stream, "stream")
        if self.framework == "torch" and self.like.is_cuda:
            import torch
            return torch.cuda.current_stream(self.like.device).cuda_stream
        if self.framework == "cupy":
            import cupy
            return cupy.cuda.get_current_stream().ptr
        return 0

    def alloc(self, shape, dtype: str, device: str, is_output: bool):
        """Called by the extension for the output (is_output) and for scratch memory."""
        if is_output and self.out is not None:
            self.result = self.out
            return _tensor(self.out)
        if device == "cpu":
            if self.framework == "torch":
                import torch
                t = torch.empty(shape, dtype=getattr(torch, dtype))
                if is_output:
                    self.result = t
                return t.numpy()
            return np.empty(shape, _NUMPY_DTYPES[dtype])
        index = int(device.split(":")[1])
        if self.framework == "torch":
            import torch
            return torch.empty(tuple(shape), dtype=getattr(torch, dtype), device=f"cuda:{index}")
        if self.framework == "cupy":
            import cupy
            with cupy.cuda.Device(index):
                return cupy.empty(tuple(shape), dtype=dtype)
        raise TypeError("edgevision cannot allocate CUDA memory for this tensor type; pass out= "
                        "(a CUDA tensor of the result's shape) or use torch or CuPy tensors")


_NUMPY_DTYPES = {name: np.dtype(name) for name in ("float32", "float16", "uint8")}


def _numpy_alloc(shape, dtype: str, device: str, is_output: bool):
    # The common CPU case without a _Target: a few microseconds matter for small ops.
    return np.empty(shape, _NUMPY_DTYPES[dtype])


def _call(fn, first, *args, out=None, reference=False, stream=None):
    """Run a binding. `first` is the caller's first tensor as passed (it picks the output's framework
    and device); `args` hold the converted tensors and parameters; (alloc, reference, stream) follow."""
    if type(first) is np.ndarray and out is None and stream is None:
        return fn(*args, _numpy_alloc, bool(reference), 0)
    target = _Target(first, out, stream)
    y = fn(*args, target.alloc, bool(reference), target.stream)
    return y if target.result is None else target.result


# ----------------------------------------------------------------------------------------------
# Ops
# ----------------------------------------------------------------------------------------------

def conv2d(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1, activation=None,
           alpha=None, beta=None, residual=None, residual_after_act=False, out=None,
           reference=False, stream=None):
    """2-D convolution, NCHW, weight [out_ch, in_ch / groups, kh, kw], with a fused epilogue:
    y = act(conv + bias + residual) (or act(conv + bias) + residual when residual_after_act).
    padding: int, (ph, pw) or (top, left, bottom, right)."""
    act, a, b = _epilogue(activation, alpha, beta)
    return _call(_C.conv2d, x, _tensor(x), _tensor(weight), _tensor(bias), _tensor(residual),
                 _pair(stride, "stride"), _pads(padding), _pair(dilation, "dilation"),
                 _int(groups, "groups"), act, a, b, bool(residual_after_act),
                 out=out, reference=reference, stream=stream)


def conv_transpose2d(x, weight, bias=None, *, stride=1, padding=0, output_padding=0, dilation=1,
                     groups=1, activation=None, alpha=None, beta=None, out=None, reference=False,
                     stream=None):
    """Transposed 2-D convolution, weight [in_ch, out_ch / groups, kh, kw] (PyTorch/ONNX layout)."""
    act, a, b = _epilogue(activation, alpha, beta)
    return _call(_C.conv_transpose2d, x, _tensor(x), _tensor(weight), _tensor(bias),
                 _pair(stride, "stride"), _pads(padding),
                 _pair(output_padding, "output_padding"), _pair(dilation, "dilation"),
                 _int(groups, "groups"), act, a, b, out=out, reference=reference, stream=stream)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, *, out=None,
               reference=False, stream=None):
    """Max pooling with PyTorch/ONNX semantics; stride defaults to kernel_size."""
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None else _pair(stride, "stride")
    return _call(_C.max_pool2d, x, _tensor(x), k, s, _pads(padding), _pair(dilation, "dilation"),
                 bool(ceil_mode), out=out, reference=reference, stream=stream)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, *,
               out=None, reference=False, stream=None):
    """Average pooling with PyTorch/ONNX semantics; stride defaults to kernel_size."""
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None else _pair(stride, "stride")
    return _call(_C.avg_pool2d, x, _tensor(x), k, s, _pads(padding), bool(ceil_mode),
                 bool(count_include_pad), out=out, reference=reference, stream=stream)


def global_avg_pool2d(x, *, out=None, reference=False, stream=None):
    """[n, c, h, w] -> [n, c, 1, 1] mean over h and w."""
    return _call(_C.global_avg_pool2d, x, _tensor(x), out=out, reference=reference, stream=stream)


def global_max_pool2d(x, *, out=None, reference=False, stream=None):
    """[n, c, h, w] -> [n, c, 1, 1] max over h and w."""
    return _call(_C.global_max_pool2d, x, _tensor(x), out=out, reference=reference, stream=stream)


def gemm(a, b, bias=None, *, trans_a=False, trans_b=False, alpha=1.0, activation=None,
         act_alpha=None, act_beta=None, residual=None, residual_after_act=False, out=None,
         reference=False, stream=None):
    """y = act(alpha * op(a) @ op(b) + bias[n] + residual[m, n])."""
    act, aa, ab = _epilogue(activation, act_alpha, act_beta)
    return _call(_C.gemm, a, _tensor(a), _tensor(b), _tensor(bias), _tensor(residual), bool(trans_a),
                 bool(trans_b), _float(alpha, "alpha"), act, aa, ab, bool(residual_after_act),
                 out=out, reference=reference, stream=stream)


def linear(x, weight, bias=None, *, activation=None, alpha=None, beta=None, residual=None,
           out=None, reference=False, stream=None):
    """x [m, in] @ weight[out, in]^T + bias, as torch.nn.functional.linear (2-D x)."""
    return gemm(x, weight, bias, trans_b=True, activation=activation, act_alpha=alpha,
                act_beta=beta, residual=residual, out=out, reference=reference, stream=stream)


def pixel_shuffle(x, upscale_factor, mode="CRD", *, out=None, reference=False, stream=None):
    """[n, c*r*r, h, w] -> [n, c, h*r, w*r]. CRD: torch.pixel_shuffle; DCR: ONNX DepthToSpace."""
    return _call(_C.pixel_shuffle, x, _tensor(x), _int(upscale_factor, "upscale_factor"),
                 _choice(mode, _SHUFFLE, "mode"), out=out, reference=reference, stream=stream)


def resize(x, size=None, scale_factor=None, mode="nearest", coordinate_mode=None,
           nearest_mode=None, *, out=None, reference=False, stream=None):
    """Nearest or bilinear resize of [n, c, h, w] to `size` (h, w) or by `scale_factor`.

    Defaults follow PyTorch's F.interpolate: nearest uses asymmetric coordinates with floor;
    bilinear uses half_pixel (align_corners=False). ONNX Resize modes are available by name."""
    if coordinate_mode is None:
        coordinate_mode = "asymmetric" if mode == "nearest" else "half_pixel"
    if nearest_mode is None:
        nearest_mode = "floor" if coordinate_mode == "asymmetric" else "round_prefer_floor"
    sz = None if size is None else _pair(size, "size")
    sc = None
    if scale_factor is not None:
        sc = ((_float(scale_factor, "scale_factor"),) * 2 if isinstance(scale_factor, (int, float))
              else tuple(_float(f, "scale_factor") for f in scale_factor))
        if len(sc) != 2:
            raise ValueError(f"scale_factor must be a number or a pair, got {scale_factor!r}")
    return _call(_C.resize, x, _tensor(x), sz, sc, _choice(mode, _RESIZE_MODES, "mode"),
                 _choice(coordinate_mode, _COORD_MODES, "coordinate_mode"),
                 _choice(nearest_mode, _NEAREST_MODES, "nearest_mode"),
                 out=out, reference=reference, stream=stream)


def softmax(x, axis=-1, *, out=None, reference=False, stream=None):
    """Numerically stable softmax along `axis`."""
    return _call(_C.softmax, x, _tensor(x), _int(axis, "axis"), False, out=out, reference=reference,
                 stream=stream)


def log_softmax(x, axis=-1, *, out=None, reference=False, stream=None):
    return _call(_C.softmax, x, _tensor(x), _int(axis, "axis"), True, out=out, reference=reference,
                 stream=stream)


def _binary(op, a, b, activation, alpha, beta, out, reference, stream):
    act, aa, ab = _epilogue(activation, alpha, beta)
    return _call(_C.binary, a, _tensor(a), _tensor(b), op, act, aa, ab, out=out,
                 reference=reference, stream=stream)


def add(a, b, *, activation=None, alpha=None, beta=None, out=None, reference=False, stream=None):
    """a + b with numpy broadcasting, then an optional activation."""
    return _binary(_C.BinaryOp.ADD, a, b, activation, alpha, beta, out, reference, stream)


def sub(a, b, *, activation=None, alpha=None, beta=None, out=None, reference=False, stream=None):
    return _binary(_C.BinaryOp.SUB, a, b, activation, alpha, beta, out, reference, stream)


def mul(a, b, *, activation=None, alpha=None, beta=None, out=None, reference=False, stream=None):
    return _binary(_C.BinaryOp.MUL, a, b, activation, alpha, beta, out, reference, stream)


def div(a, b, *, activation=None, alpha=None, beta=None, out=None, reference=False, stream=None):
    return _binary(_C.BinaryOp.DIV, a, b, activation, alpha, beta, out, reference, stream)


def activation(x, name, alpha=None, beta=None, *, out=None, reference=False, stream=None):
    """Elementwise activation by name (see ACTIVATIONS). out=x works in place."""
    act, a, b = _epilogue(name, alpha, beta)
    return _call(_C.activation, x, _tensor(x), act, a, b, out=out, reference=reference, stream=stream)


def batch_norm(x, gamma, beta, mean, var, eps=1e-5, *, activation=None, act_alpha=None,
               act_beta=None, out=None, reference=False, stream=None):
    """Inference batch norm over channel dim 1 of [n, c, ...], then an optional activation."""
    act, a, b = _epilogue(activation, act_alpha, act_beta)
    return _call(_C.batch_norm, x, _tensor(x), _tensor(gamma), _tensor(beta), _tensor(mean),
                 _tensor(var),
                 _float(eps, "eps"), act, a, b, out=out, reference=reference, stream=stream)


def concat(tensors, axis=1, *, out=None, reference=False, stream=None):
    """Concatenate tensors that agree on every dimension but `axis`."""
    if isinstance(tensors, (str, bytes)) or not isinstance(tensors, Sequence) or not tensors:
        raise ValueError("concat: tensors must be a non-empty sequence of tensors")
    return _call(_C.concat, tensors[0], [_tensor(t) for t in tensors], _int(axis, "axis"),
                 out=out, reference=reference,
                 stream=stream)


def preprocess(frame, size, *, resize=None, color="bgr", model_color="rgb", mean=(0.0, 0.0, 0.0),
               std=(1.0, 1.0, 1.0), scale=1.0 / 255.0, interpolation="bilinear", dtype=None,
               out=None, reference=False, stream=None):
    """A uint8 [h, w, 3] camera frame -> float [1, 3, size_h, size_w] in one pass.

    resize=(rh, rw) resizes the frame first, then a centre crop of `size` is taken (the usual
    "resize 256, crop 224"); without it the frame is resized straight to `size`. Each value becomes
    (pixel * scale - mean[c]) / std[c], channels in `model_color` order. dtype "float16" is
    available on CUDA. Row-padded frames and ROI views (frame[y0:y1, x0:x1]) are read in place."""
    color = _choice(color.lower() if isinstance(color, str) else color, {"bgr": 0, "rgb": 1}, "color")
    model = _choice(model_color.lower() if isinstance(model_color, str) else model_color,
                    {"bgr": 0, "rgb": 1}, "model_color")
    sz = _pair(size, "size")
    rs = None if resize is None else _pair(resize, "resize")
    if rs is None:
        rs = sz
    return _call(_C.preprocess, frame, _tensor(frame), sz, rs, color != model,
                 _choice(interpolation, _INTERP, "interpolation"), _float(scale, "scale"),
                 _triple(mean, "mean"), _triple(std, "std"),
                 "float32" if dtype is None else str(dtype).replace("torch.", ""),
                 out=out, reference=reference, stream=stream)


def postprocess_image(x, *, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), scale=255.0, color="rgb",
                      model_color="rgb", out=None, reference=False, stream=None):
    """A float [c, h, w] or [1, c, h, w] model output -> uint8 [h, w, c] image:
    clamp(round((x * std + mean) * scale), 0, 255), channels in `color` order. For a Tanh generator
    pass mean=0.5, std=0.5."""
    color = _choice(color.lower() if isinstance(color, str) else color, {"bgr": 0, "rgb": 1}, "color")
    model = _choice(model_color.lower() if isinstance(model_color, str) else model_color,
                    {"bgr": 0, "rgb": 1}, "model_color")
    return _call(_C.postprocess_image, x, _tensor(x), color != model, _float(scale, "scale"),
                 _triple(mean, "mean"), _triple(std, "std"), out=out, reference=reference,
                 stream=stream)


def strided_copy(x, shape, strides, offset=0, *, out=None, reference=False, stream=None):
    """Copy of the strided view of x's elements: y[i0, ..., ik] = x.flat[offset + sum(i_d *
    strides[d])], like torch.as_strided(x, shape, strides, offset).contiguous() but strides may be
    0 or negative (in elements). A view that would read outside x raises ValueError."""
    return _call(_C.strided_copy, x, _tensor(x), _ints(shape, "shape"), _ints(strides, "strides"),
                 _int(offset, "offset"), out=out, reference=reference, stream=stream)


def transpose(x, perm=None, *, out=None, reference=False, stream=None):
    """x with its axes permuted (numpy.transpose / torch.permute / ONNX Transpose), as a new
    tensor; perm defaults to reversing the axes."""
    return _call(_C.transpose, x, _tensor(x), None if perm is None else _ints(perm, "perm"),
                 out=out, reference=reference, stream=stream)


def slice(x, starts, ends, axes=None, steps=None, *, out=None, reference=False, stream=None):  # noqa: A001
    """ONNX Slice, i.e. numpy basic slicing x[start:end:step] along `axes` (default 0, 1, ...):
    negative starts/ends count from the end and out-of-range ones are clamped, so
    slice(x, [-1], [-2**63], [1], [-1]) reverses axis 1. An empty result raises ValueError."""
    return _call(_C.slice, x, _tensor(x), _ints(starts, "starts"), _ints(ends, "ends"),
                 None if axes is None else _ints(axes, "axes"),
                 None if steps is None else _ints(steps, "steps"),
                 out=out, reference=reference, stream=stream)


def expand(x, shape, *, out=None, reference=False, stream=None):
    """ONNX Expand: x broadcast against `shape` with numpy rules in both directions (a 1 in either
    keeps the other's extent), copied into a new tensor. With a full target shape this is
    numpy.broadcast_to / torch.expand."""
    return _call(_C.expand, x, _tensor(x), _ints(shape, "shape"), out=out, reference=reference,
                 stream=stream)


def pad(x, pads_begin, pads_end, mode="constant", value=0.0, *, out=None, reference=False,
        stream=None):
    """Pads every dimension d of x by pads_begin[d] in front and pads_end[d] behind (one entry per
    dimension, >= 0). mode: "constant" (fills `value`), "reflect" (mirrors without repeating the
    edge, numpy's 'reflect'; pads must be smaller than the dimension) or "edge" (repeats it).
    F.pad(x, (l, r, t, b)) of an NCHW tensor is pad(x, (0, 0, t, l), (0, 0, b, r))."""
    return _call(_C.pad, x, _tensor(x), _ints(pads_begin, "pads_begin"),
                 _ints(pads_end, "pads_end"), _choice(mode, _PAD_MODES, "mode"),
                 _float(value, "value"), out=out, reference=reference, stream=stream)


def lrn(x, size, alpha=1e-4, beta=0.75, bias=1.0, *, out=None, reference=False, stream=None):
    """ONNX LRN across channels of [n, c, ...]: y = x / (bias + alpha / size * sum of x^2 over the
    channels [c - (size - 1) // 2, c + size // 2])^beta. For odd sizes this equals
    torch.nn.functional.local_response_norm(x, size, alpha, beta, k=bias)."""
    return _call(_C.lrn, x, _tensor(x), _int(size, "size"), _float(alpha, "alpha"),
                 _float(beta, "beta"), _float(bias, "bias"), out=out, reference=reference,
                 stream=stream)


def reduce(x, axis=None, op="mean", *, keepdims=False, out=None, reference=False, stream=None):
    """Mean, sum, max or min over `axis`: an int, or a contiguous run of axes in any order (None:
    all axes). keepdims keeps the reduced axes with extent 1, as numpy does; without it a full
    reduction gives a 0-d tensor. Max and min propagate NaN."""
    axes = [] if axis is None else _ints(axis, "axis")
    return _call(_C.reduce, x, _tensor(x), axes, _choice(op, _REDUCE_OPS, "op"), bool(keepdims),
                 out=out, reference=reference, stream=stream)


def reduce_mean(x, axes=None, keepdims=True, *, out=None, reference=False, stream=None):
    """ONNX ReduceMean over a contiguous run of axes (None: all), keeping them by default."""
    return reduce(x, axes, "mean", keepdims=keepdims, out=out, reference=reference, stream=stream)
