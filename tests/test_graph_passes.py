"""Graph passes and memory planning, checked on the IR and the spec dict (numerics are in
test_onnx_ops / test_graph_models)."""
import math

import numpy as np
import pytest
from onnx import helper

from graph_util import check_model, make_model, run_ort
from edgevision import _C
from edgevision.graph import compile_spec, import_model, optimize
from edgevision.graph.memory import Buffer, plan_arena
from edgevision.graph.program import summarize

rng = np.random.default_rng(0)


def r(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def node(op, inputs, outputs, **attrs):
    return helper.make_node(op, inputs, outputs, name=outputs[0], **attrs)


def bn_consts(c, prefix=""):
    return {prefix + "g": r(c), prefix + "b": r(c), prefix + "m": r(c),
            prefix + "v": rng.uniform(0.5, 2, c).astype(np.float32)}


def ops_of(g):
    return [n.op for n in g.nodes]


def compiled(nodes, inputs, consts=None, opset=17, outputs=("y",)):
    outs = [o if isinstance(o, tuple) else (o, None) for o in outputs]  # (name, shape) where inference cannot tell
    model = make_model(nodes, inputs, outs, consts or {}, opset)
    return model, optimize(import_model(model))


def test_bn_folded_into_conv_and_activation_fused():
    model, g = compiled([node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                         node("BatchNormalization", ["c", "g", "b", "m", "v"], ["n"], epsilon=1e-3),
                         node("Relu", ["n"], ["y"])], [("x", [1, 3, 6, 6])], {"w": r(4, 3, 3, 3), **bn_consts(4)})
    assert ops_of(g) == ["conv2d"]
    conv = g.nodes[0]
    assert conv.attrs["act"] == "relu" and conv.inputs[2]  # the folded BN gave it a bias
    check_model(model, [r(1, 3, 6, 6)], "reference")


def test_bn_not_folded_when_conv_output_is_shared():
    _, g = compiled([node("Conv", ["x", "w"], ["c"]), node("BatchNormalization", ["c", "g", "b", "m", "v"], ["n"]),
                     node("Add", ["n", "c"], ["y"])], [("x", [1, 3, 4, 4])], {"w": r(3, 3, 1, 1), **bn_consts(3)})
    assert "batch_norm" in ops_of(g)


def test_identity_dropout_removed_and_output_renamed():
    _, g = compiled([node("Relu", ["x"], ["a"]), node("Dropout", ["a"], ["d"]), node("Identity", ["d"], ["y"])],
                    [("x", [2, 3])])
    assert ops_of(g) == ["activation"] and g.nodes[0].outputs == ["y"]


def test_shape_chain_folds_to_an_alias():
    model, g = compiled([node("Shape", ["x"], ["s"]), node("Gather", ["s", "i"], ["n"], axis=0),
                         node("Unsqueeze", ["n", "ax"], ["u"]), node("Concat", ["u", "m"], ["t"], axis=0),
                         node("Relu", ["x"], ["a"]), node("Reshape", ["a", "t"], ["y"])], [("x", [2, 3, 4])],
                        {"i": np.array(0, np.int64), "ax": np.array([0], np.int64), "m": np.array([-1], np.int64)},
                        opset=13, outputs=(("y", [2, 12]),))
    assert ops_of(g) == ["activation", "strided_copy"]
    spec, _ = compile_spec(model)
    assert [s["op"] for s in spec["steps"]] == ["activation", "strided_copy"]  # the output needs a real copy


def test_gelu_silu_hardswish_patterns():
    consts = {"s2": np.float32(math.sqrt(2)), "one": np.float32(1), "half": np.float32(0.5)}
    _, g = compiled([node("Conv", ["x", "w"], ["c"]), node("Div", ["c", "s2"], ["d"]), node("Erf", ["d"], ["e"]),
                     node("Add", ["e", "one"], ["a"]), node("Mul", ["c", "a"], ["m"]), node("Mul", ["m", "half"], ["y"])],
                    [("x", [1, 2, 3, 3])], {"w": r(2, 2, 1, 1), **consts})
    assert ops_of(g) == ["conv2d"] and g.nodes[0].attrs["act"] == "gelu"
    _, g = compiled([node("Sigmoid", ["x"], ["s"]), node("Mul", ["x", "s"], ["y"])], [("x", [2, 3])])
    assert ops_of(g) == ["activation"] and g.nodes[0].attrs["act"] == "silu"
    _, g = compiled([node("HardSigmoid", ["x"], ["s"], alpha=1 / 6), node("Mul", ["s", "x"], ["y"])], [("x", [2, 3])])
    assert g.nodes[0].attrs["act"] == "hardswish"
    # a sigmoid that something else also reads must stay
    _, g = compiled([node("Sigmoid", ["x"], ["s"]), node("Mul", ["x", "s"], ["y"]), node("Relu", ["s"], ["z"])],
                    [("x", [2, 3])], outputs=("y", "z"))
    assert ops_of(g).count("binary") == 1


def test_activation_not_fused_into_shared_output():
    _, g = compiled([node("Conv", ["x", "w"], ["c"]), node("Relu", ["c"], ["y"]), node("Sigmoid", ["c"], ["z"])],
                    [("x", [1, 2, 3, 3])], {"w": r(2, 2, 1, 1)}, outputs=("y", "z"))
    assert ops_of(g) == ["conv2d", "activation", "activation"]


def test_residual_fused_and_producer_moved():
    # c1 (no activation) takes the residual; it moves after c2's conv, which computes that residual
    model, g = compiled([node("Conv", ["x", "w1"], ["c1"]), node("Conv", ["x", "w2"], ["c2"]), node("Relu", ["c2"], ["r"]),
                         node("Add", ["c1", "r"], ["s"]), node("Relu", ["s"], ["y"])],
                        [("x", [1, 2, 4, 4])], {"w1": r(3, 2, 1, 1), "w2": r(3, 2, 1, 1)})
    assert ops_of(g) == ["conv2d", "conv2d"]
    first, fused = g.nodes
    assert first.name == "c2" and first.attrs["act"] == "relu"
    assert fused.name == "c1" and fused.inputs[3] == first.outputs[0] and fused.attrs["act"] == "relu"
    assert not fused.attrs["residual_after_act"]
    check_model(model, [r(1, 2, 4, 4)], "reference")


def test_residual_after_activation():
    _, g = compiled([node("Gemm", ["x", "w"], ["m"]), node("Relu", ["m"], ["a"]), node("Add", ["a", "x"], ["y"])],
                    [("x", [3, 4])], {"w": r(4, 4)})
    assert ops_of(g) == ["gemm"]
    assert g.nodes[0].attrs["act"] == "relu" and g.nodes[0].attrs["residual_after_act"]


def inverted_residual(width, stride=1, kernel=3, share=None, expanded=24):
    """MobileNetV2's block on a [1, 8, 8, width] input: 1x1 expand 8 -> expanded, ReLU6, depthwise, ReLU6, 1x1
    project expanded -> 8, + x at stride 1. share: "expand" or "depthwise", whose output is also a graph output."""
    pad, e = kernel // 2, expanded
    nodes = [node("Conv", ["x", "we", "be"], ["e"]), node("Clip", ["e", "lo", "hi"], ["e6"]),
             node("Conv", ["e6", "wd", "bd"], ["d"], group=e, strides=[stride] * 2, pads=[pad] * 4),
             node("Clip", ["d", "lo", "hi"], ["d6"]), node("Conv", ["d6", "wp", "bp"], ["p"])]
    nodes.append(node("Add", ["p", "x"], ["y"]) if stride == 1 else node("Identity", ["p"], ["y"]))
    outputs = [("y", None)] + ([({"expand": "e6", "depthwise": "d6"}[share], None)] if share else [])
    consts = {"we": r(e, 8, 1, 1) * 0.3, "be": r(e), "wd": r(e, 1, kernel, kernel) * 0.3, "bd": r(e),
              "wp": r(8, e, 1, 1) * 0.3, "bp": r(8), "lo": np.float32(0), "hi": np.float32(6)}
    return make_model(nodes, [("x", [1, 8, 8, width])], outputs, consts)


def fused_ops(spec):
    return [(s["op"], s["attrs"].get("ex_act"), s["attrs"].get("dw_act"), s["attrs"]["act"]) for s in spec["steps"]
            if s["op"] != "copy"]


@pytest.mark.parametrize("executor", ["plan", "reference"])
@pytest.mark.parametrize("stride", [1, 2])
def test_inverted_residual_fused_on_cpu(executor, stride):
    """The expand conv, the depthwise and the 1x1 conv become one conv2d_dw_pw step on the CPU."""
    model = inverted_residual(120, stride)
    spec, _ = compile_spec(model)
    assert fused_ops(spec) == [("conv2d_dw_pw", "clip", "clip", "none")]
    assert (spec["steps"][0]["inputs"][5] >= 0) == (stride == 1)  # the Add became the 1x1 conv's residual
    assert ("ex clip -> dw clip -> +residual" if stride == 1 else "ex clip -> dw clip ->") in summarize(spec)
    check_model(model, [r(1, 8, 8, 120)], executor)
    cuda_spec, _ = compile_spec(model, device="cuda")  # CUDA keeps the convs apart
    assert [s["op"] for s in cuda_spec["steps"]] == ["conv2d"] * 3


@pytest.mark.parametrize("executor", ["plan", "reference"])
def test_depthwise_and_pointwise_fused_without_the_expand(executor):
    """When the expand conv's output is read elsewhere too, only the depthwise and the 1x1 conv fuse."""
    model = inverted_residual(120, share="expand")
    spec, _ = compile_spec(model)
    assert fused_ops(spec) == [("conv2d", None, None, "clip"), ("conv2d_dw_pw", None, "clip", "none")]
    check_model(model, [r(1, 8, 8, 120)], executor)


@pytest.mark.parametrize("case, width, expected", [
    ("narrow", 24, ["conv2d"] * 3),                              # under 28 wide, 24 expanded channels
    ("stride 2", 40, ["conv2d"] * 3),                            # stride 2 to 20 wide
    ("narrow without expand", 48, ["conv2d"] * 3),               # the expand output is shared: under 56 wide
    ("with expand", 40, ["conv2d_dw_pw"]),                       # 28 or more wide with the expand conv
    ("shared depthwise output", 120, ["conv2d"] * 3),
    ("5x5", 120, ["conv2d"] * 3),
    ("blocked", 24, ["conv2d_dw_pw"]),                           # 32 expanded channels: 16-channel blocks
    ("blocked stride 2", 40, ["conv2d_dw_pw"]),
    ("blocked 5x5", 24, ["conv2d_dw_pw"]),
    ("blocked 5x5", 120, ["conv2d"] * 3),                        # wider than 28: the band kernel is 3x3 only
])
def test_depthwise_fusion_limits(case, width, expected):
    """Fused only where it measured faster: not on narrow maps (they fit the caches as separate steps) unless
    the blocked kernel takes them (an expand conv, expanded channels a multiple of 16, 3x3 or 5x5, at most 28
    wide), not when something else reads the depthwise output, and wider maps only for 3x3 kernels."""
    model = inverted_residual(width, stride=2 if "stride 2" in case else 1, kernel=5 if "5x5" in case else 3,
                              share={"shared depthwise output": "depthwise", "narrow without expand": "expand"}.get(case),
                              expanded=32 if case.startswith("blocked") else 24)
    spec, _ = compile_spec(model)
    assert [s["op"] for s in spec["steps"] if s["op"] != "copy"] == expected
    check_model(model, [r(1, 8, 8, width)], "plan")


def conv_pool(kernel=2, stride=None, pads=(0, 0, 0, 0), ceil_mode=0, size=14, share=False):
    """Conv 3 -> 8 (3x3, pad 1) -> Relu -> MaxPool on a [1, 3, size, size] input; share: the Relu's output is
    also a graph output."""
    stride = stride or kernel
    nodes = [node("Conv", ["x", "w", "b"], ["c"], pads=[1] * 4), node("Relu", ["c"], ["a"]),
             node("MaxPool", ["a"], ["y"], kernel_shape=[kernel] * 2, strides=[stride] * 2, pads=list(pads),
                  ceil_mode=ceil_mode)]
    outputs = [("y", None)] + ([("a", None)] if share else [])
    return make_model(nodes, [("x", [1, 3, size, size])], outputs, {"w": r(8, 3, 3, 3), "b": r(8)})


@pytest.mark.parametrize("executor", ["plan", "reference"])
@pytest.mark.parametrize("kernel, stride, pads, size, text", [
    (2, 2, (0, 0, 0, 0), 14, "2x2"), (2, 2, (0, 0, 0, 0), 15, "2x2"), (3, 3, (0, 0, 0, 0), 14, "3x3"),
    (3, 2, (1, 1, 1, 1), 14, "3x3 s2x2 p1,1,1,1"),   # ResNet's stem pool: overlapping, padded windows
    (3, 2, (0, 0, 0, 0), 15, "3x3 s2x2"), (2, 1, (1, 0, 0, 1), 9, "2x2 s1x1 p1,0,0,1")])
def test_conv_max_pool_fused_on_cpu(executor, kernel, stride, pads, size, text):
    """conv -> relu -> max pool becomes one conv2d step on the CPU (an odd map under 2x2 windows drops its last
    row and column, as the pool does); CUDA keeps the pool a step of its own."""
    model = conv_pool(kernel, stride, pads, size=size)
    spec, _ = compile_spec(model)
    assert [(s["op"], s["attrs"]["act"], s["attrs"].get("max_pool")) for s in spec["steps"]] == [
        ("conv2d", "relu", [kernel, kernel])]
    assert any(line.endswith(f"relu -> max_pool {text}") for line in summarize(spec).splitlines())
    x = r(1, 3, size, size)
    check_model(model, [x], executor)
    if executor == "plan":  # the torch backend's reading of the fused step
        torch_backend = pytest.importorskip("edgevision.backends.torch")
        np.testing.assert_allclose(torch_backend.TorchPlan(spec).run([x])[0].numpy(), run_ort(model, [x])[0],
                                   rtol=1e-4, atol=1e-4)
    cuda_spec, _ = compile_spec(model, device="cuda")
    assert [s["op"] for s in cuda_spec["steps"]] == ["conv2d", "max_pool2d"]


@pytest.mark.parametrize("case", ["pads not under the kernel", "ceil mode", "shared conv output"])
def test_conv_max_pool_fusion_limits(case):
    """Pools with a window all padding, or ceil mode's partial last window, do not fuse, nor pools of a conv
    output that something else reads too; ceil mode fuses when the windows divide the map."""
    model = conv_pool(**{"pads not under the kernel": dict(kernel=2, stride=2, pads=(2, 0, 0, 0)),
                         "ceil mode": dict(ceil_mode=1, size=15), "shared conv output": dict(share=True)}[case])
    spec, _ = compile_spec(model)
    assert [s["op"] for s in spec["steps"] if s["op"] != "copy"] == ["conv2d", "max_pool2d"]
    if case != "pads not under the kernel":  # which ONNX Runtime refuses to run
        check_model(model, [r(1, 3, 15, 15) if case == "ceil mode" else r(1, 3, 14, 14)], "plan")


def test_conv_max_pool_ceil_mode_on_divisible_map():
    spec, _ = compile_spec(conv_pool(ceil_mode=1, size=14))
    assert [s["op"] for s in spec["steps"]] == ["conv2d"]


def test_matmul_to_gemm_and_bias_folding():
    _, g = compiled([node("MatMul", ["x", "w"], ["m"]), node("Add", ["m", "b"], ["a"]), node("Mul", ["a", "k"], ["y"])],
                    [("x", [3, 5])], {"w": r(5, 4), "b": r(4), "k": np.float32(0.25)})
    assert ops_of(g) == ["gemm"] and g.nodes[0].inputs[2]
    _, g = compiled([node("MatMul", ["x", "w"], ["y"])], [("x", [2, 3, 5])], {"w": r(5, 4)})
    assert ops_of(g) == ["strided_copy", "gemm", "strided_copy"]
    _, g = compiled([node("MatMul", ["x", "w"], ["y"])], [("x", [2, 3, 5]), ("w", [5, 4])])
    assert ops_of(g) == ["matmul"]


def test_conv_bias_and_scale_constants_folded():
    _, g = compiled([node("Conv", ["x", "w"], ["c"]), node("Add", ["c", "b"], ["a"]), node("Mul", ["s", "a"], ["y"])],
                    [("x", [1, 2, 3, 3])], {"w": r(4, 2, 1, 1), "b": r(1, 4, 1, 1), "s": r(4, 1, 1)})
    assert ops_of(g) == ["conv2d"]
    # a constant that varies along H is not a per-channel bias
    _, g = compiled([node("Conv", ["x", "w"], ["c"]), node("Add", ["c", "b"], ["y"])],
                    [("x", [1, 2, 3, 3])], {"w": r(4, 2, 1, 1), "b": r(3, 1)})
    assert ops_of(g) == ["conv2d", "binary"]


def test_gemm_scale_folds_and_parametrised_activation_fuses():
    # The IR's gemm has no scale (it goes into the constant operand); its alpha/beta are the activation's,
    # which the plan spec calls act_alpha / act_beta.
    model, g = compiled([node("Gemm", ["x", "w"], ["m"], alpha=2.0), node("LeakyRelu", ["m"], ["y"], alpha=0.1)],
                        [("x", [3, 4])], {"w": r(4, 2)})
    assert ops_of(g) == ["gemm"] and g.nodes[0].attrs["act"] == "leaky_relu"
    step = [s for s in compile_spec(model)[0]["steps"] if s["op"] == "gemm"][0]
    assert step["attrs"]["alpha"] == 1.0 and step["attrs"]["act_alpha"] == pytest.approx(0.1)


@pytest.mark.parametrize("stride,kernel,pads,out_pad,bias,act", [
    (2, 4, [1, 1, 1, 1], [0, 0], True, "Relu"),    # the DCGAN layer, ReLU fused
    (2, 4, [0, 0, 0, 0], [0, 0], False, None),     # no crop needed
    (2, 2, [0, 1, 0, 0], [1, 0], True, "Tanh"),    # asymmetric pads, output_padding
    (3, 6, [2, 1, 3, 0], [0, 2], True, None),      # stride 3, uneven crop
    (1, 3, [1, 1, 1, 1], [0, 0], True, "Relu"),    # stride 1: a flipped conv
    (2, 6, [3, 2, 1, 4], [1, 1], False, "Sigmoid"),
])
def test_conv_transpose_rewritten_as_subpixel_conv(stride, kernel, pads, out_pad, bias, act):
    nodes = [node("ConvTranspose", ["x", "w", "b"] if bias else ["x", "w"], ["c" if act else "y"], strides=[stride] * 2,
                  pads=pads, output_padding=out_pad)]
    if act:
        nodes.append(node(act, ["c"], ["y"]))
    consts = {"w": r(5, 3, kernel, kernel), **({"b": r(3)} if bias else {})}
    model = make_model(nodes, [("x", [2, 5, 4, 3])], [("y", None)], consts)
    # (CUDA graphs: on the CPU these 4x3 inputs keep the transposed conv, see test_conv_transpose_kept_on_small_maps)
    g = optimize(import_model(model), "cuda")
    assert "conv_transpose2d" not in ops_of(g) and ops_of(g)[0] == "conv2d"
    assert g.nodes[0].attrs["act"] == (act or "none").lower()
    # A crop after the pixel shuffle folds into it on the CPU (at stride 1 there is no shuffle to fold into; CUDA
    # plans keep the strided_copy). A wider input, so that the CPU plan takes the sub-pixel conv too.
    cropped = "strided_copy" in ops_of(g)
    wide = make_model(nodes, [("x", [1, 5, 40, 40])], [("y", None)], consts)
    spec, _ = compile_spec(wide)
    assert "conv_transpose2d" not in [s["op"] for s in spec["steps"]]
    assert ("strided_copy" in [s["op"] for s in spec["steps"]]) == (cropped and stride == 1)
    assert any("crop" in s["attrs"] for s in spec["steps"] if s["op"] == "pixel_shuffle") == (cropped and stride > 1)
    if stride > 1:
        cuda_ops = [s["op"] for s in compile_spec(wide, device="cuda")[0]["steps"]]
        assert ("strided_copy" in cuda_ops) == cropped
    check_model(wide, [r(1, 5, 40, 40)], "plan")
    x = r(2, 5, 4, 3)
    check_model(model, [x], "plan")
    check_model(model, [x], "reference")


@pytest.mark.parametrize("executor", ["plan", "reference"])
@pytest.mark.parametrize("size, kept", [(4, True), (8, True), (16, False)])
def test_conv_transpose_kept_on_small_maps(executor, size, kept):
    """CPU plans keep a strided transposed conv whose sub-pixel conv would compute MIN_SUBPIXEL_WASTE times its
    multiply-adds or more (the DCGAN generators' 4x4 -> 8x8 and 8x8 -> 16x16 layers): its GEMM runs on weights
    packed at build, then col2im. CUDA plans take the sub-pixel conv."""
    nodes = [node("ConvTranspose", ["x", "w", "b"], ["c"], strides=[2, 2], pads=[1, 1, 1, 1]),
             node("Relu", ["c"], ["y"])]
    model = make_model(nodes, [("x", [1, 6, size, size])], [("y", None)], {"w": r(6, 4, 4, 4), "b": r(4)})
    spec, _ = compile_spec(model)
    ops = [s["op"] for s in spec["steps"]]
    assert (ops == ["conv_transpose2d"]) == kept, ops
    assert "conv_transpose2d" not in [s["op"] for s in compile_spec(model, device="cuda")[0]["steps"]]
    if kept:
        assert _C.Plan(spec).packed_bytes > 0  # the weights in the GEMM's layout
    check_model(model, [r(1, 6, size, size)], executor)


def test_conv_transpose_kept_when_the_rewrite_does_not_apply():
    for attrs, w in [({"strides": [2, 2], "group": 2}, r(4, 3, 4, 4)),       # groups
                     ({"strides": [2, 2], "dilations": [2, 2]}, r(4, 3, 4, 4)),  # dilation
                     ({"strides": [2, 2]}, r(4, 3, 3, 3)),                    # kernel not a multiple of the stride
                     ({"strides": [2, 1]}, r(4, 3, 4, 4))]:                   # unequal strides
        model, g = compiled([node("ConvTranspose", ["x", "w"], ["y"], **attrs)], [("x", [1, 4, 3, 3])], {"w": w})
        assert ops_of(g) == ["conv_transpose2d"], attrs
        check_model(model, [r(1, 4, 3, 3)], "plan")


def test_dead_nodes_removed():
    _, g = compiled([node("Relu", ["x"], ["y"]), node("Sigmoid", ["x"], ["unused"]), node("Tanh", ["unused"], ["u2"])],
                    [("x", [2, 3])])
    assert ops_of(g) == ["activation"]


# ------------------------------------------------------------------------------------------------
# memory planning
# ------------------------------------------------------------------------------------------------

def lifetimes(spec):
    """Arena value id -> (first step, last step reading it or an alias of it)."""
    values = spec["values"]

    def root(i):
        while values[i]["kind"] == "alias":
            i = values[i]["index"]
        return i
    life = {}
    for s, step in enumerate(spec["steps"]):
        for o in step["outputs"]:
            if values[o]["kind"] == "arena":
                life[o] = [s, s]
        for i in step["inputs"]:
            if i >= 0 and root(i) in life:
                life[root(i)][1] = max(life[root(i)][1], s)
    return life


def check_no_overlap(spec):
    values, steps = spec["values"], spec["steps"]
    life = lifetimes(spec)
    for v in life:
        assert values[v]["offset"] % 64 == 0
        assert values[v]["offset"] + 4 * np.prod(values[v]["shape"]) <= spec["arena_bytes"]
    ids = sorted(life)
    for a in ids:
        for b in ids:
            if a >= b:
                continue
            (fa, la), (fb, lb) = life[a], life[b]
            if la < fb or lb < fa:
                continue
            oa, ob = values[a]["offset"], values[b]["offset"]
            if oa + 4 * np.prod(values[a]["shape"]) <= ob or ob + 4 * np.prod(values[b]["shape"]) <= oa:
                continue
            # only in place: the later one is written by the step that last reads the earlier one
            first, second = (a, b) if fa < fb else (b, a)
            step = steps[life[second][0]]
            assert life[first][1] == life[second][0] and step["op"] in ("activation", "binary", "batch_norm"), \
                f"values {values[a]['name']} and {values[b]['name']} overlap while both alive"


def test_arena_reuse_no_overlap_in_place():
    nodes, prev = [], "x"
    for i in range(6):
        nodes += [node("Conv", [prev, "w"], [f"c{i}"], pads=[1, 1, 1, 1]), node("Sigmoid", [f"c{i}"], [f"s{i}"]),
                  node("Sub", [f"s{i}", "half"], [f"d{i}"])]
        prev = f"d{i}"
    nodes.append(node("Relu", [prev], ["y"]))
    model = make_model(nodes, [("x", [1, 4, 8, 8])], [("y", None)], {"w": r(4, 4, 3, 3), "half": np.float32(0.5)})
    spec, _ = compile_spec(model)
    check_no_overlap(spec)
    arena_values = [v for v in spec["values"] if v["kind"] == "arena"]
    assert spec["arena_bytes"] < sum(4 * np.prod(v["shape"]) for v in arena_values) / 3
    in_place = [s for s in spec["steps"] if s["op"] == "binary" and spec["values"][s["outputs"][0]]["kind"] == "arena"]
    assert len(in_place) == 5  # sigmoid fused into each conv, each sub written over its input
    for step in in_place:
        assert spec["values"][step["inputs"][0]]["offset"] == spec["values"][step["outputs"][0]]["offset"]
    check_model(model, [r(1, 4, 8, 8)], "reference")


def test_alias_keeps_base_alive():
    # r is reshaped (alias) and read late: its buffer must not be reused by t or u meanwhile
    model = make_model([node("Relu", ["x"], ["r"]), node("Flatten", ["r"], ["f"]), node("Sigmoid", ["x"], ["t"]),
                        node("Tanh", ["t"], ["u"]), node("Flatten", ["u"], ["uf"]), node("Add", ["f", "uf"], ["y"])],
                       [("x", [2, 3, 4])], [("y", None)])
    spec, _ = compile_spec(model)
    kinds = [v["kind"] for v in spec["values"]]
    assert kinds.count("alias") == 2
    check_no_overlap(spec)
    check_model(model, [r(2, 3, 4)], "reference")


def test_split_along_leading_axis_is_an_alias():
    model = make_model([node("Relu", ["x"], ["a"]), node("Split", ["a"], ["p", "q"], axis=0),
                        node("Mul", ["p", "q"], ["y"])], [("x", [4, 3])], [("y", None)], opset=13)
    spec, _ = compile_spec(model)
    aliases = [v for v in spec["values"] if v["kind"] == "alias"]
    assert sorted(v["offset"] for v in aliases) == [0, 24]  # bytes
    check_model(model, [r(4, 3)], "reference")
    spec, _ = compile_spec(model, device="cuda", precision="fp16")
    assert sorted(v["offset"] for v in spec["values"] if v["kind"] == "alias") == [0, 12]


def test_plan_arena_best_fit_and_in_place():
    bufs = [Buffer("a", 1000, 0, 1), Buffer("b", 100, 1, 2), Buffer("c", 1000, 2, 3, in_place=["b"]),
            Buffer("d", 900, 2, 3), Buffer("e", 64, 3, 3, in_place=["d"])]
    peak = plan_arena(bufs, 4)
    by = {b.name: b for b in bufs}
    assert by["c"].shares is None  # b's block is too small to take over
    assert by["c"].offset == 0  # a's block, free again after step 1
    assert by["d"].offset == 1024 + 128 and by["e"].shares == "d" and by["e"].offset == by["d"].offset
    assert peak == 1024 + 128 + 960
    with pytest.raises(ValueError, match="lifetime"):
        plan_arena([Buffer("z", 4, 2, 1)], 3)
