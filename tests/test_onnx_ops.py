"""Every supported ONNX op, in each opset variant that changes its meaning, as a hand-built graph
compiled by edgevision.graph and compared with onnxruntime (graph_util.OP_TOL, fp32)."""
import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from graph_util import EXECUTORS, check_model, make_model

I64 = np.int64
rng = np.random.default_rng(0)


def r(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def node(op, inputs, outputs, **attrs):
    return helper.make_node(op, inputs, outputs, **attrs)


def single(op, x_shape, opset, consts=None, extra_inputs=(), y_shape=None, **attrs):
    """One node y = op(x, *extra_inputs) with constants `consts` (name -> array)."""
    consts = consts or {}
    model = make_model([node(op, ["x", *extra_inputs], ["y"], **attrs)], [("x", list(x_shape))],
                       [("y", y_shape)], consts, opset)
    return model, [r(*x_shape)]


def chain(nodes, inputs, opset, consts=None, outputs=("y",)):
    outs = [o if isinstance(o, tuple) else (o, None) for o in outputs]  # (name, shape) when inference cannot tell
    model = make_model(nodes, [(n, list(s)) for n, s in inputs], outs, consts or {}, opset)
    return model, [r(*s) for _, s in inputs]


CASES = {}


def case(name):
    def register(fn):
        CASES[name] = fn
        return fn
    return register


# --- convolution -------------------------------------------------------------------------------
for opset in (9, 11, 17, 22):
    CASES[f"conv-3x3-pad-opset{opset}"] = (lambda o: lambda: single(
        "Conv", (1, 4, 9, 8), o, {"w": r(6, 4, 3, 3), "b": r(6)}, ["w", "b"], pads=[1, 1, 1, 1]))(opset)
CASES["conv-stride-dil-groups-asym"] = lambda: single(
    "Conv", (2, 4, 11, 10), 13, {"w": r(6, 2, 3, 2)}, ["w"], strides=[2, 1], dilations=[2, 1], group=2,
    pads=[0, 1, 2, 1])
CASES["conv-depthwise"] = lambda: single("Conv", (1, 5, 7, 7), 17, {"w": r(10, 1, 3, 3), "b": r(10)}, ["w", "b"],
                                         group=5, pads=[1, 1, 1, 1], strides=[2, 2])
CASES["conv-same-upper"] = lambda: single("Conv", (1, 3, 8, 7), 11, {"w": r(4, 3, 4, 3)}, ["w"], auto_pad="SAME_UPPER",
                                          strides=[2, 2])
CASES["conv-same-lower"] = lambda: single("Conv", (1, 3, 8, 7), 11, {"w": r(4, 3, 4, 3)}, ["w"], auto_pad="SAME_LOWER",
                                          strides=[2, 2])
CASES["conv-valid"] = lambda: single("Conv", (1, 3, 8, 7), 9, {"w": r(4, 3, 3, 3)}, ["w"], auto_pad="VALID")
CASES["conv-runtime-weight"] = lambda: chain([node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
                                             [("x", (1, 3, 6, 6)), ("w", (4, 3, 3, 3))], 17)
CASES["convtranspose-stride-pad-outpad-groups"] = lambda: single(
    "ConvTranspose", (1, 4, 5, 6), 17, {"w": r(4, 3, 4, 4), "b": r(6)}, ["w", "b"], strides=[2, 2], pads=[1, 1, 1, 1],
    output_padding=[1, 0], group=2)
CASES["convtranspose-dilation"] = lambda: single("ConvTranspose", (1, 3, 5, 5), 11, {"w": r(3, 2, 3, 3)}, ["w"],
                                                 dilations=[2, 2], strides=[1, 2])
CASES["convtranspose-output-shape"] = lambda: single("ConvTranspose", (1, 3, 5, 5), 13, {"w": r(3, 2, 3, 3)}, ["w"],
                                                     strides=[2, 2], output_shape=[10, 10])

# --- batch norm --------------------------------------------------------------------------------
def _bn_consts(c):
    return {"g": r(c), "bb": r(c), "m": r(c), "v": rng.uniform(0.5, 2, c).astype(np.float32)}


for opset in (9, 14, 15):
    CASES[f"batchnorm-4d-opset{opset}"] = (lambda o: lambda: single(
        "BatchNormalization", (2, 3, 4, 5), o, _bn_consts(3), ["g", "bb", "m", "v"], epsilon=1e-3))(opset)
CASES["batchnorm-2d"] = lambda: single("BatchNormalization", (4, 6), 15, _bn_consts(6), ["g", "bb", "m", "v"])
CASES["batchnorm-3d"] = lambda: single("BatchNormalization", (2, 6, 7), 15, _bn_consts(6), ["g", "bb", "m", "v"])
CASES["conv-bn-relu-folded"] = lambda: chain(
    [node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), node("BatchNormalization", ["c", "g", "bb", "m", "v"], ["n"]),
     node("Relu", ["n"], ["y"])], [("x", (1, 3, 6, 6))], 17, {"w": r(4, 3, 3, 3), **_bn_consts(4)})
CASES["convtranspose-bn-folded"] = lambda: chain(
    [node("ConvTranspose", ["x", "w"], ["c"], strides=[2, 2], group=2),
     node("BatchNormalization", ["c", "g", "bb", "m", "v"], ["y"])],
    [("x", (1, 4, 3, 3))], 17, {"w": r(4, 3, 2, 2), **_bn_consts(6)})

# --- activations -------------------------------------------------------------------------------
for op, attrs, opset in [("Relu", {}, 9), ("Relu", {}, 14), ("LeakyRelu", {}, 9), ("LeakyRelu", {"alpha": 0.2}, 16),
                         ("Sigmoid", {}, 13), ("Tanh", {}, 13), ("HardSigmoid", {}, 9),
                         ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, 22), ("HardSwish", {}, 14)]:
    CASES[f"{op.lower()}-opset{opset}{'-attrs' if attrs else ''}"] = (
        lambda op, a, o: lambda: single(op, (2, 3, 4, 5), o, **a))(op, attrs, opset)
CASES["clip-attrs-opset9"] = lambda: single("Clip", (2, 3, 4), 9, min=-0.5, max=0.7)
CASES["clip-inputs-opset13"] = lambda: single("Clip", (2, 3, 4), 13, {"lo": np.float32(-0.5), "hi": np.float32(0.7)},
                                              ["lo", "hi"])
CASES["clip-min-only-opset11"] = lambda: single("Clip", (2, 3, 4), 11, {"lo": np.float32(0.1)}, ["lo"])
CASES["clip-max-only-opset13"] = lambda: single("Clip", (2, 3, 4), 13, {"hi": np.float32(0.1)}, ["", "hi"])
CASES["relu6-after-conv"] = lambda: chain(
    [node("Conv", ["x", "w"], ["c"]), node("Clip", ["c", "lo", "hi"], ["y"])], [("x", (1, 3, 5, 5))], 13,
    {"w": r(4, 3, 1, 1), "lo": np.float32(0), "hi": np.float32(6)})

# --- elementwise -------------------------------------------------------------------------------
for op in ("Add", "Sub", "Mul", "Div"):
    CASES[f"{op.lower()}-broadcast"] = (lambda op: lambda: chain(
        [node(op, ["a", "b"], ["y"])], [("a", (2, 3, 4, 5)), ("b", (3, 1, 5))], 14))(op)
    CASES[f"{op.lower()}-const-first"] = (lambda op: lambda: chain(
        [node(op, ["c", "a"], ["y"])], [("a", (2, 3, 4))], 13, {"c": rng.uniform(1, 2, (3, 1)).astype(np.float32)}))(op)
CASES["sum-three-broadcast"] = lambda: chain([node("Sum", ["a", "b", "c"], ["y"])],
                                             [("a", (2, 3, 4)), ("b", (3, 4)), ("c", (1, 3, 1))], 13)
CASES["sum-one"] = lambda: chain([node("Sum", ["a"], ["y"])], [("a", (2, 3))], 9)
CASES["squeeze-excite"] = lambda: chain(
    [node("GlobalAveragePool", ["x"], ["p"]), node("Conv", ["p", "w"], ["s"]), node("Sigmoid", ["s"], ["g"]),
     node("Mul", ["x", "g"], ["y"])], [("x", (2, 4, 5, 5))], 13, {"w": r(4, 4, 1, 1)})
CASES["conv-add-residual"] = lambda: chain(
    [node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), node("Add", ["c", "x"], ["s"]), node("Relu", ["s"], ["y"])],
    [("x", (1, 3, 5, 5))], 17, {"w": r(3, 3, 3, 3)})
CASES["conv-relu-add-residual-after-act"] = lambda: chain(
    [node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), node("Relu", ["c"], ["a"]), node("Add", ["x", "a"], ["y"])],
    [("x", (1, 3, 5, 5))], 17, {"w": r(3, 3, 3, 3)})
CASES["two-convs-added"] = lambda: chain(
    [node("Conv", ["x", "w1"], ["c1"]), node("Conv", ["x", "w2"], ["c2"]), node("Add", ["c1", "c2"], ["y"])],
    [("x", (1, 3, 5, 5))], 17, {"w1": r(4, 3, 1, 1), "w2": r(4, 3, 1, 1)})
CASES["gelu-erf-pattern"] = lambda: chain(
    [node("Div", ["x", "s2"], ["d"]), node("Erf", ["d"], ["e"]), node("Add", ["e", "one"], ["a"]),
     node("Mul", ["x", "a"], ["m"]), node("Mul", ["m", "half"], ["y"])], [("x", (2, 3, 4))], 13,
    {"s2": np.float32(math.sqrt(2)), "one": np.float32(1), "half": np.float32(0.5)})
CASES["gelu-erf-pattern-half-first"] = lambda: chain(
    [node("Mul", ["x", "is2"], ["d"]), node("Erf", ["d"], ["e"]), node("Add", ["one", "e"], ["a"]),
     node("Mul", ["x", "half"], ["h"]), node("Mul", ["h", "a"], ["y"])], [("x", (2, 3, 4))], 13,
    {"is2": np.float32(1 / math.sqrt(2)), "one": np.float32(1), "half": np.float32(0.5)})
CASES["silu-pattern"] = lambda: chain([node("Sigmoid", ["x"], ["s"]), node("Mul", ["s", "x"], ["y"])],
                                      [("x", (2, 3, 4))], 13)
CASES["hardswish-pattern"] = lambda: chain(
    [node("HardSigmoid", ["x"], ["s"], alpha=1 / 6, beta=0.5), node("Mul", ["x", "s"], ["y"])], [("x", (2, 3, 4))], 13)

# --- pooling -----------------------------------------------------------------------------------
CASES["maxpool-opset9"] = lambda: single("MaxPool", (1, 2, 9, 8), 9, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 1])
CASES["maxpool-ceil-opset10"] = lambda: single("MaxPool", (1, 2, 9, 8), 10, kernel_shape=[3, 2], strides=[2, 2],
                                               ceil_mode=1)
CASES["maxpool-dilation-opset12"] = lambda: single("MaxPool", (1, 2, 9, 9), 12, kernel_shape=[2, 2], dilations=[2, 2],
                                                   pads=[1, 1, 1, 1])
CASES["maxpool-same-upper"] = lambda: single("MaxPool", (1, 2, 7, 7), 11, kernel_shape=[3, 3], strides=[2, 2],
                                             auto_pad="SAME_UPPER")
CASES["avgpool-exclude-pad"] = lambda: single("AveragePool", (1, 2, 7, 8), 11, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
CASES["avgpool-include-pad"] = lambda: single("AveragePool", (1, 2, 7, 8), 11, kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                              count_include_pad=1, strides=[2, 2])
CASES["avgpool-ceil-opset19"] = lambda: single("AveragePool", (1, 2, 8, 8), 19, kernel_shape=[3, 3], strides=[2, 2],
                                               ceil_mode=1)
CASES["global-avg"] = lambda: single("GlobalAveragePool", (2, 3, 5, 4), 9)
CASES["global-max"] = lambda: single("GlobalMaxPool", (2, 3, 5, 4), 9)
CASES["global-avg-3d"] = lambda: single("GlobalAveragePool", (2, 3, 7), 13)

# --- shapes ------------------------------------------------------------------------------------
for axis, opset in ((0, 9), (2, 9), (-1, 13)):
    CASES[f"flatten-axis{axis}"] = (lambda a, o: lambda: chain(
        [node("Relu", ["x"], ["t"]), node("Flatten", ["t"], ["y"], axis=a)], [("x", (2, 3, 4, 5))], o))(axis, opset)
CASES["reshape-zero-minus-one"] = lambda: chain(
    [node("Relu", ["x"], ["t"]), node("Reshape", ["t", "s"], ["y"])], [("x", (2, 3, 4, 5))], 13,
    {"s": np.array([0, -1, 5], I64)})
CASES["reshape-allowzero-opset14"] = lambda: chain(
    [node("Relu", ["x"], ["t"]), node("Reshape", ["t", "s"], ["y"], allowzero=1)], [("x", (2, 3, 4))], 14,
    {"s": np.array([4, 6], I64)})
CASES["reshape-shape-chain"] = lambda: chain(
    [node("Shape", ["x"], ["sh"]), node("Gather", ["sh", "i0"], ["n"], axis=0), node("Unsqueeze", ["n", "ax"], ["nu"]),
     node("Concat", ["nu", "m1"], ["s"], axis=0), node("Reshape", ["x", "s"], ["y"])], [("x", (2, 3, 4))], 13,
    {"i0": np.array(0, I64), "ax": np.array([0], I64), "m1": np.array([-1], I64)}, outputs=(("y", [2, 12]),))
CASES["shape-slice-opset15"] = lambda: chain(
    [node("Shape", ["x"], ["sh"], start=1, end=-1), node("Concat", ["one", "sh"], ["s"], axis=0),
     node("Reshape", ["x", "s"], ["y"])], [("x", (2, 3, 4))], 15, {"one": np.array([-1], I64)})
CASES["transpose-nhwc"] = lambda: single("Transpose", (2, 3, 4, 5), 13, perm=[0, 2, 3, 1])
CASES["transpose-default"] = lambda: single("Transpose", (2, 3, 4), 9)
CASES["channel-shuffle"] = lambda: chain(
    [node("Reshape", ["x", "s1"], ["a"]), node("Transpose", ["a"], ["b"], perm=[0, 2, 1, 3, 4]),
     node("Reshape", ["b", "s2"], ["y"])], [("x", (1, 6, 3, 3))], 13,
    {"s1": np.array([1, 2, 3, 3, 3], I64), "s2": np.array([1, 6, 3, 3], I64)})
CASES["squeeze-opset11"] = lambda: single("Squeeze", (2, 1, 3, 1), 11, axes=[1, -1])
CASES["squeeze-opset13"] = lambda: single("Squeeze", (2, 1, 3, 1), 13, {"ax": np.array([1], I64)}, ["ax"])
CASES["squeeze-all"] = lambda: single("Squeeze", (2, 1, 3, 1), 13)
CASES["unsqueeze-opset11"] = lambda: single("Unsqueeze", (2, 3), 11, axes=[0, 3])
CASES["unsqueeze-opset13"] = lambda: single("Unsqueeze", (2, 3), 13, {"ax": np.array([-1, 1], I64)}, ["ax"])
CASES["split-attr-opset11"] = lambda: chain([node("Split", ["x"], ["y", "z"], axis=1, split=[1, 3])],
                                            [("x", (2, 4, 3))], 11, outputs=("y", "z"))
CASES["split-input-opset13"] = lambda: chain([node("Split", ["x", "sp"], ["y", "z"], axis=0)],
                                             [("x", (5, 4))], 13, {"sp": np.array([2, 3], I64)}, outputs=("y", "z"))
CASES["split-equal-opset13"] = lambda: chain([node("Split", ["x"], ["y", "z", "w"], axis=-1)],
                                             [("x", (2, 6))], 13, outputs=("y", "z", "w"))
CASES["split-num-outputs-opset18"] = lambda: chain(
    [node("Split", ["x"], ["y", "z", "w"], axis=1, num_outputs=3)], [("x", (2, 7, 2))], 18, outputs=("y", "z", "w"))
CASES["slice-attrs-opset9"] = lambda: single("Slice", (4, 5, 6), 9, starts=[1, -4], ends=[3, 1000], axes=[0, 2])
CASES["slice-steps-opset13"] = lambda: single(
    "Slice", (4, 5, 6), 13, {"st": np.array([-1, 0], I64), "en": np.array([-1000, 6], I64),
                             "ax": np.array([1, 2], I64), "sp": np.array([-2, 3], I64)}, ["st", "en", "ax", "sp"])
CASES["slice-no-axes-opset10"] = lambda: single("Slice", (4, 5), 10, {"st": np.array([1, 1], I64),
                                                                      "en": np.array([3, 4], I64)}, ["st", "en"])
CASES["gather-runtime-scalar"] = lambda: single("Gather", (2, 5, 3), 13, {"i": np.array(-2, I64)}, ["i"], axis=1)
CASES["gather-runtime-range"] = lambda: single("Gather", (2, 5, 3), 13, {"i": np.array([1, 3], I64)}, ["i"], axis=1)
CASES["expand-runtime"] = lambda: single("Expand", (3, 1), 13, {"s": np.array([2, 1, 4], I64)}, ["s"])
CASES["concat-with-constant"] = lambda: chain([node("Concat", ["a", "c", "b"], ["y"], axis=1)],
                                              [("a", (2, 3, 4)), ("b", (2, 1, 4))], 13, {"c": r(2, 2, 4)})
CASES["concat-last-axis"] = lambda: chain([node("Concat", ["a", "b"], ["y"], axis=-1)],
                                          [("a", (2, 3)), ("b", (2, 5))], 11)
CASES["cast-float"] = lambda: single("Cast", (2, 3), 13, to=TensorProto.FLOAT)
CASES["constant-of-shape-add"] = lambda: chain(
    [node("ConstantOfShape", ["s"], ["c"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5])),
     node("Add", ["x", "c"], ["y"])], [("x", (2, 3))], 13, {"s": np.array([2, 3], I64)})
CASES["constant-node-folding"] = lambda: chain(
    [node("Constant", [], ["c"], value_floats=[1.0, 2.0, 3.0]), node("Constant", [], ["k"], value_float=2.0),
     node("Mul", ["c", "k"], ["c2"]), node("Sqrt", ["c2"], ["c3"]), node("Add", ["x", "c3"], ["y"])],
    [("x", (2, 3))], 13)
CASES["dropout-opset12-identity"] = lambda: chain(
    [node("Dropout", ["x"], ["d"]), node("Identity", ["d"], ["i"]), node("Relu", ["i"], ["y"])], [("x", (2, 3))], 12)
CASES["dropout-opset9"] = lambda: chain([node("Dropout", ["x"], ["d"], ratio=0.3), node("Relu", ["d"], ["y"])],
                                        [("x", (2, 3))], 9)
CASES["output-is-input"] = lambda: chain([node("Identity", ["x"], ["y"]), node("Relu", ["x"], ["z"])],
                                         [("x", (2, 3))], 13, outputs=("y", "z"))
CASES["output-is-constant"] = lambda: chain([node("Relu", ["x"], ["z"]), node("Constant", [], ["y"], value_floats=[1.0, 2.0])],
                                            [("x", (2, 3))], 13, outputs=("y", "z"))
CASES["output-read-later"] = lambda: chain([node("Relu", ["x"], ["y"]), node("Flatten", ["y"], ["z"])],
                                           [("x", (2, 3, 2))], 13, outputs=("y", "z"))

# --- gemm / matmul ----------------------------------------------------------------------------
CASES["gemm-transb-bias"] = lambda: single("Gemm", (3, 5), 13, {"w": r(4, 5), "c": r(4)}, ["w", "c"], transB=1)
CASES["gemm-transa-alpha-beta-matrix"] = lambda: single("Gemm", (5, 3), 11, {"w": r(5, 4), "c": r(3, 4)}, ["w", "c"],
                                                        transA=1, alpha=0.5, beta=2.0)
CASES["gemm-scalar-c-opset9"] = lambda: single("Gemm", (3, 5), 9, {"w": r(5, 4), "c": r(1)}, ["w", "c"], beta=0.5)
CASES["gemm-no-c"] = lambda: single("Gemm", (3, 5), 13, {"w": r(5, 4)}, ["w"])
CASES["gemm-runtime-operands"] = lambda: chain([node("Gemm", ["a", "b", "c"], ["y"], alpha=2.0, beta=0.5, transB=1)],
                                               [("a", (3, 5)), ("b", (4, 5)), ("c", (3, 1))], 13)
CASES["gemm-relu-sigmoid"] = lambda: chain(
    [node("Gemm", ["x", "w", "c"], ["g"]), node("Relu", ["g"], ["h"]), node("Gemm", ["h", "w2"], ["g2"]),
     node("LeakyRelu", ["g2"], ["y"], alpha=0.3)], [("x", (2, 5))], 13, {"w": r(5, 4), "c": r(4), "w2": r(4, 3)})
CASES["matmul-2d-const"] = lambda: chain([node("MatMul", ["x", "w"], ["m"]), node("Add", ["m", "b"], ["y"])],
                                         [("x", (3, 5))], 13, {"w": r(5, 4), "b": r(4)})
CASES["matmul-3d-const"] = lambda: single("MatMul", (2, 3, 5), 13, {"w": r(5, 4)}, ["w"])
CASES["matmul-batched-broadcast"] = lambda: chain([node("MatMul", ["a", "b"], ["y"])], [("a", (2, 1, 3, 4)), ("b", (3, 4, 5))], 13)
CASES["matmul-vector"] = lambda: chain([node("MatMul", ["a", "b"], ["y"])], [("a", (4,)), ("b", (2, 4, 3))], 13)
CASES["matmul-runtime-2d"] = lambda: chain([node("MatMul", ["a", "b"], ["y"])], [("a", (3, 4)), ("b", (4, 2))], 9)

# --- resize ------------------------------------------------------------------------------------
CASES["upsample-nearest-opset9"] = lambda: single("Upsample", (1, 2, 3, 4), 9, {"s": np.array([1, 1, 2, 3], np.float32)},
                                                  ["s"], mode="nearest")
CASES["upsample-linear-opset9"] = lambda: single("Upsample", (1, 2, 3, 4), 9, {"s": np.array([1, 1, 2, 2], np.float32)},
                                                 ["s"], mode="linear")
CASES["resize-nearest-opset10"] = lambda: single("Resize", (1, 2, 3, 4), 10, {"s": np.array([1, 1, 3, 2], np.float32)},
                                                 ["s"], mode="nearest")
CASES["resize-linear-opset10"] = lambda: single("Resize", (1, 2, 3, 4), 10, {"s": np.array([1, 1, 2, 1.5], np.float32)},
                                                ["s"], mode="linear")
for coord in ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"):
    CASES[f"resize-linear-sizes-{coord}-opset11"] = (lambda c: lambda: single(
        "Resize", (1, 2, 4, 5), 11, {"roi": np.array([], np.float32), "sc": np.array([], np.float32),
                                     "sz": np.array([1, 2, 7, 3], I64)}, ["roi", "sc", "sz"], mode="linear",
        coordinate_transformation_mode=c))(coord)
for nm in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil"):
    CASES[f"resize-nearest-scales-{nm}-opset13"] = (lambda n: lambda: single(
        "Resize", (1, 2, 4, 5), 13, {"sc": np.array([1, 1, 1.5, 2.5], np.float32)}, ["", "sc"], mode="nearest",
        nearest_mode=n, coordinate_transformation_mode="asymmetric" if n == "floor" else "half_pixel"))(nm)
CASES["resize-nearest-downsample-opset10"] = lambda: single("Resize", (1, 2, 8, 9), 10,
                                                           {"s": np.array([1, 1, 0.5, 0.4], np.float32)}, ["s"])
CASES["resize-nearest-downsample-opset13"] = lambda: single(
    "Resize", (1, 2, 8, 9), 13, {"sc": np.array([1, 1, 0.5, 0.4], np.float32)}, ["", "sc"], nearest_mode="round_prefer_ceil")
CASES["resize-linear-downsample-opset13"] = lambda: single(
    "Resize", (1, 2, 8, 9), 13, {"sc": np.array([1, 1, 0.5, 0.5], np.float32)}, ["", "sc"], mode="linear")
CASES["resize-axes-opset18"] = lambda: single("Resize", (1, 2, 4, 5), 18, {"sz": np.array([6, 10], I64)}, ["", "", "sz"],
                                              mode="nearest", axes=[2, 3])
CASES["depthtospace-dcr"] = lambda: single("DepthToSpace", (1, 8, 3, 4), 11, blocksize=2)
CASES["depthtospace-crd"] = lambda: single("DepthToSpace", (1, 18, 2, 3), 13, blocksize=3, mode="CRD")
CASES["depthtospace-opset9"] = lambda: single("DepthToSpace", (1, 8, 3, 4), 9, blocksize=2)

# --- softmax, lrn, pad, reduce ------------------------------------------------------------------
CASES["softmax-opset11-flattens"] = lambda: single("Softmax", (2, 3, 4), 11, axis=1)
CASES["softmax-opset13-axis1"] = lambda: single("Softmax", (2, 3, 4), 13, axis=1)
CASES["softmax-default-opset9"] = lambda: single("Softmax", (2, 3, 4), 9)
CASES["logsoftmax-opset13"] = lambda: single("LogSoftmax", (2, 5), 13)
CASES["lrn-size3"] = lambda: single("LRN", (2, 7, 3, 3), 13, size=3, alpha=0.01, beta=0.6, bias=2.0)
CASES["lrn-size5"] = lambda: single("LRN", (1, 6, 2, 2), 9, size=5)
CASES["pad-attrs-opset9"] = lambda: single("Pad", (1, 2, 3, 4), 9, pads=[0, 0, 1, 2, 0, 0, 2, 1], value=1.5)
CASES["pad-reflect-opset11"] = lambda: single("Pad", (1, 2, 4, 5), 11, {"p": np.array([0, 0, 2, 1, 0, 0, 1, 3], I64)},
                                              ["p"], mode="reflect")
CASES["pad-edge-opset13"] = lambda: single("Pad", (1, 2, 4, 5), 13, {"p": np.array([0, 1, 2, 1, 0, 0, 1, 3], I64)},
                                           ["p"], mode="edge")
CASES["pad-constant-value-opset13"] = lambda: single("Pad", (2, 3), 13, {"p": np.array([1, 0, 0, 2], I64),
                                                                         "v": np.float32(-1)}, ["p", "v"])
CASES["pad-axes-opset18"] = lambda: single("Pad", (1, 2, 4, 5), 18, {"p": np.array([1, 2, 3, 0], I64),
                                                                     "ax": np.array([2, -1], I64)}, ["p", "", "ax"])
CASES["pad-negative-opset13"] = lambda: single("Pad", (1, 2, 4, 5), 13, {"p": np.array([0, 0, -1, 2, 0, 0, 1, -2], I64)},
                                               ["p"])
CASES["reducemean-attrs-opset13"] = lambda: single("ReduceMean", (2, 3, 4, 5), 13, axes=[2, 3])
CASES["reducemean-keepdims0-opset11"] = lambda: single("ReduceMean", (2, 3, 4, 5), 11, axes=[-1], keepdims=0)
CASES["reducemean-input-opset18"] = lambda: single("ReduceMean", (2, 3, 4, 5), 18, {"ax": np.array([1, 3], I64)}, ["ax"])
CASES["reducemean-all-opset18"] = lambda: single("ReduceMean", (2, 3, 4), 18, keepdims=0)
CASES["reducesum-input-opset13"] = lambda: single("ReduceSum", (2, 3, 4), 13, {"ax": np.array([0, 2], I64)}, ["ax"])
CASES["reducemax-opset13"] = lambda: single("ReduceMax", (2, 3, 4), 13, axes=[1], keepdims=0)
CASES["reducemin-opset20"] = lambda: single("ReduceMin", (2, 3, 4), 20, {"ax": np.array([1], I64)}, ["ax"])


def _ort_max_opset():
    import onnxruntime
    # onnxruntime lags the onnx package: the newest opset it runs, found by trying a trivial model
    for opset in range(onnx.defs.onnx_opset_version(), 9, -1):
        try:
            onnxruntime.InferenceSession(make_model([node("Relu", ["x"], ["y"])], [("x", [1])], [("y", [1])],
                                                    opset=opset).SerializeToString())
            return opset
        except Exception:
            continue
    return 13


ORT_MAX = _ort_max_opset()
CASES[f"conv-bn-relu-pool-gemm-newest-ort-opset{ORT_MAX}"] = lambda: chain(
    [node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), node("BatchNormalization", ["c", "g", "bb", "m", "v"], ["n"]),
     node("Relu", ["n"], ["a"]), node("MaxPool", ["a"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
     node("Flatten", ["p"], ["f"]), node("Gemm", ["f", "fw"], ["y"], transB=1)],
    [("x", (1, 3, 4, 4))], ORT_MAX, {"w": r(4, 3, 3, 3), **_bn_consts(4), "fw": r(5, 16)})


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("name", list(CASES))
def test_op_matches_onnxruntime(name, executor):
    model, inputs = CASES[name]()
    check_model(model, inputs, executor)
