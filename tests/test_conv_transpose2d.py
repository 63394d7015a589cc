"""conv_transpose2d: reference vs fast CPU vs torch over random configurations, every activation,
asymmetric pads (torch by cropping, and onnxruntime), DCGAN layers, CUDA vs torch, bad input."""
import numpy as np
import pytest

from conftest import TARGETS, TOL
from edgevision import ops

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _on(target, *arrays):
    """Arrays on the target device and dtype, plus the float32 copies torch should see."""
    dev, dt = target
    if dev == "cpu":
        return arrays, arrays
    moved = []
    for a in arrays:
        t = None if a is None else torch.tensor(a).cuda()
        moved.append(t.half() if t is not None and dt == "float16" else t)
    seen = tuple(None if t is None else t.float().cpu().numpy() for t in moved)
    return tuple(moved), seen


def _host(y):
    return y.float().cpu().numpy() if isinstance(y, torch.Tensor) else y


def _torch_ct(x, w, b, stride, padding, output_padding, dilation, groups):
    return F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w),
                              None if b is None else torch.from_numpy(b), stride=stride,
                              padding=padding, output_padding=output_padding, groups=groups,
                              dilation=dilation).numpy()


def _check(y, expected, dtype, what):
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(_host(y), expected, rtol=rtol, atol=atol, err_msg=what)


def _random_config(rng):
    while True:
        g = int(rng.choice([1, 1, 1, 2, 3, 4]))
        c, k = g * int(rng.integers(1, 5)), g * int(rng.integers(1, 9))
        r, s = (int(v) for v in rng.integers(1, 6, 2))
        st = tuple(int(v) for v in rng.integers(1, 5, 2))
        d = tuple(int(v) for v in rng.choice([1, 1, 2, 3], 2))
        p = (int(rng.integers(0, d[0] * (r - 1) + 1)), int(rng.integers(0, d[1] * (s - 1) + 1)))
        op = tuple(int(rng.integers(0, max(st[i], d[i]))) for i in range(2))
        n, h, w = int(rng.integers(1, 4)), int(rng.integers(1, 9)), int(rng.integers(1, 9))
        oh = (h - 1) * st[0] - 2 * p[0] + d[0] * (r - 1) + op[0] + 1
        ow = (w - 1) * st[1] - 2 * p[1] + d[1] * (s - 1) + op[1] + 1
        if oh >= 1 and ow >= 1:
            return dict(n=n, c=c, k=k, hw=(h, w), rs=(r, s), stride=st, padding=p,
                        output_padding=op, dilation=d, groups=g)


def _data(rng, cfg, bias=True):
    c, k, g = cfg["c"], cfg["k"], cfg["groups"]
    x = rng.standard_normal((cfg["n"], c, *cfg["hw"])).astype(np.float32)
    fan = (c // g) * cfg["rs"][0] * cfg["rs"][1]
    w = (rng.standard_normal((c, k // g, *cfg["rs"])) / np.sqrt(fan)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32) if bias else None
    return x, w, b


@pytest.mark.parametrize("target", TARGETS)
def test_random_configs_vs_torch(target, rng):
    dt = target[1]
    for i in range(220):
        cfg = _random_config(rng)
        x, w, b = _data(rng, cfg, bias=i % 3 != 0)
        (xt, wt, bt), (x32, w32, b32) = _on(target, x, w, b)
        kw = {key: cfg[key] for key in ("stride", "padding", "output_padding", "dilation", "groups")}
        expected = _torch_ct(x32, w32, b32, **kw)
        _check(ops.conv_transpose2d(xt, wt, bt, **kw), expected, dt, f"fast {cfg}")
        if target[0] == "cpu":
            _check(ops.conv_transpose2d(x, w, b, **kw, reference=True), expected, dt, f"ref {cfg}")


_ACTS = {
    "relu": (None, None, F.relu),
    "leaky_relu": (0.2, None, lambda t: F.leaky_relu(t, 0.2)),
    "clip": (-0.5, 0.7, lambda t: t.clamp(-0.5, 0.7)),
    "relu6": (None, None, F.relu6),
    "sigmoid": (None, None, torch.sigmoid),
    "tanh": (None, None, torch.tanh),
    "silu": (None, None, F.silu),
    "hardswish": (None, None, F.hardswish),
    "gelu": (None, None, F.gelu),
    "hardsigmoid": (0.25, 0.4, lambda t: (0.25 * t + 0.4).clamp(0, 1)),
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("act", sorted(_ACTS))
def test_fused_activation(target, act, rng):
    alpha, beta, fn = _ACTS[act]
    dt = target[1]
    # A general-path shape and a 1x1-input (dense) shape.
    for shape, wshape, stride, pad in [((2, 6, 5, 4), (6, 5, 3, 3), 2, 1),
                                       ((3, 7, 1, 1), (7, 9, 4, 4), 1, 0)]:
        x = rng.standard_normal(shape).astype(np.float32)
        w = (rng.standard_normal(wshape) / 4).astype(np.float32)
        b = rng.standard_normal(wshape[1]).astype(np.float32)
        (xt, wt, bt), (x32, w32, b32) = _on(target, x, w, b)
        expected = fn(torch.from_numpy(_torch_ct(x32, w32, b32, stride, pad, 0, 1, 1))).numpy()
        kw = dict(stride=stride, padding=pad, activation=act, alpha=alpha, beta=beta)
        _check(ops.conv_transpose2d(xt, wt, bt, **kw), expected, dt, act)
        if target[0] == "cpu":
            _check(ops.conv_transpose2d(x, w, b, **kw, reference=True), expected, dt, act)


@pytest.mark.parametrize("target", TARGETS)
def test_dcgan_generator_layers(target, rng):
    # nz=64 -> 128 x 4x4 -> 64 x 8x8 -> 32 x 16x16 -> 3 x 32x32 (tanh), batch 3 (a ragged GEMM tile).
    dt = target[1]
    layers = [(64, 128, 1, 0, "relu"), (128, 64, 2, 1, "relu"), (64, 32, 2, 1, "relu"),
              (32, 3, 2, 1, "tanh")]
    x = rng.standard_normal((3, 64, 1, 1)).astype(np.float32)
    for c, k, stride, pad, act in layers:
        w = (rng.standard_normal((c, k, 4, 4)) / np.sqrt(c * 4)).astype(np.float32)
        b = (rng.standard_normal(k) * 0.1).astype(np.float32)
        (xt, wt, bt), (x32, w32, b32) = _on(target, x, w, b)
        y = _torch_ct(x32, w32, b32, stride, pad, 0, 1, 1)
        expected = np.tanh(y) if act == "tanh" else np.maximum(y, 0)
        got = ops.conv_transpose2d(xt, wt, bt, stride=stride, padding=pad, activation=act)
        _check(got, expected, dt, f"layer {c}->{k}")
        if target[0] == "cpu":
            _check(ops.conv_transpose2d(x, w, b, stride=stride, padding=pad, activation=act,
                                        reference=True), expected, dt, f"ref layer {c}->{k}")
        x = expected


def test_dense_1x1_path_edges(rng):
    # 1x1 input without padding takes a GEMM over the batch: ragged batch blocks (5, 9), columns not
    # a multiple of 16 (k * r * s = 3 * 5 * 1), groups, and padding/dilation that leave that path.
    cases = [((5, 7, 1, 1), (7, 3, 5, 1), {}), ((9, 6, 1, 1), (6, 2, 3, 3), dict(groups=3)),
             ((2, 4, 1, 1), (4, 8, 4, 4), dict(padding=1)),
             ((2, 4, 1, 1), (4, 8, 3, 3), dict(dilation=2, output_padding=1)),
             ((1, 1, 1, 1), (1, 1, 1, 1), {})]
    for xs, ws, kw in cases:
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal(ws).astype(np.float32)
        b = rng.standard_normal(ws[1] * kw.get("groups", 1)).astype(np.float32)
        full = dict(stride=1, padding=0, output_padding=0, dilation=1, groups=1)
        full.update(kw)
        expected = _torch_ct(x, w, b, **full)
        for ref in (False, True):
            _check(ops.conv_transpose2d(x, w, b, **kw, reference=ref), expected, "float32", str(kw))


def test_larger_shapes(rng):
    # Enough positions that the GEMM runs in several chunks, plus odd sizes and stride 3.
    for xs, ws, kw in [((2, 16, 33, 29), (16, 8, 3, 3), dict(stride=2, padding=1, output_padding=1)),
                       ((1, 32, 16, 16), (32, 16, 4, 4), dict(stride=2, padding=1)),
                       ((2, 8, 20, 9), (8, 4, 5, 2), dict(stride=3, padding=(2, 0), dilation=(1, 2)))]:
        x = rng.standard_normal(xs).astype(np.float32)
        w = (rng.standard_normal(ws) / np.sqrt(ws[0] * ws[2] * ws[3])).astype(np.float32)
        b = rng.standard_normal(ws[1]).astype(np.float32)
        full = dict(stride=1, padding=0, output_padding=0, dilation=1, groups=1)
        full.update(kw)
        expected = _torch_ct(x, w, b, **full)
        _check(ops.conv_transpose2d(x, w, b, **kw), expected, "float32", str(kw))
        _check(ops.conv_transpose2d(x, w, b, **kw, reference=True), expected, "float32", str(kw))


def test_asymmetric_padding_vs_cropped_torch(rng):
    # Padding only removes rows/columns of the full output: (top, left, bottom, right) crops it.
    done = 0
    while done < 40:
        c, k = (int(v) for v in rng.integers(1, 5, 2))
        r, s = (int(v) for v in rng.integers(1, 5, 2))
        st = tuple(int(v) for v in rng.integers(1, 4, 2))
        x = rng.standard_normal((2, c, *(int(v) for v in rng.integers(1, 7, 2)))).astype(np.float32)
        w = rng.standard_normal((c, k, r, s)).astype(np.float32)
        full = _torch_ct(x, w, None, st, 0, 0, 1, 1)
        H, W = full.shape[2:]
        t, b = (int(v) for v in rng.integers(0, H, 2))
        left, right = (int(v) for v in rng.integers(0, W, 2))
        if t + b >= H or left + right >= W:
            continue
        expected = full[:, :, t:H - b, left:W - right]
        for ref in (False, True):
            y = ops.conv_transpose2d(x, w, stride=st, padding=(t, left, b, right), reference=ref)
            _check(y, expected, "float32", f"pads {(t, left, b, right)} stride {st}")
        done += 1


def test_vs_onnxruntime_asymmetric(rng):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    for _ in range(20):
        g = int(rng.choice([1, 2]))
        c, k = g * int(rng.integers(1, 4)), g * int(rng.integers(1, 4))
        r, s = (int(v) for v in rng.integers(2, 5, 2))
        st = [int(v) for v in rng.integers(1, 4, 2)]
        d = [int(v) for v in rng.integers(1, 3, 2)]
        pads = [int(rng.integers(0, d[i % 2] * ((r, s)[i % 2] - 1) + 1)) for i in range(4)]
        x = rng.standard_normal((2, c, *(int(v) for v in rng.integers(2, 7, 2)))).astype(np.float32)
        w = rng.standard_normal((c, k // g, r, s)).astype(np.float32)
        b = rng.standard_normal(k).astype(np.float32)
        oh = (x.shape[2] - 1) * st[0] - pads[0] - pads[2] + d[0] * (r - 1) + 1
        ow = (x.shape[3] - 1) * st[1] - pads[1] - pads[3] + d[1] * (s - 1) + 1
        if oh < 1 or ow < 1:
            continue
        node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], strides=st, dilations=d,
                                pads=[pads[0], pads[1], pads[2], pads[3]], group=g,
                                kernel_shape=[r, s])
        graph = helper.make_graph(
            [node], "ct", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "k", "h", "w"])],
            initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 9
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        expected = sess.run(None, {"x": x})[0]
        for ref in (False, True):
            y = ops.conv_transpose2d(x, w, b, stride=st, padding=pads, dilation=d, groups=g,
                                     reference=ref)
            _check(y, expected, "float32", f"pads {pads} stride {st} dil {d} groups {g}")


def test_bad_inputs(rng):
    x = rng.standard_normal((1, 4, 5, 5)).astype(np.float32)
    w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    with pytest.raises(ValueError):
        ops.conv_transpose2d(x[0], w)  # rank 3 input
    with pytest.raises(ValueError):
        ops.conv_transpose2d(x, w[0])  # rank 3 weight
    with pytest.raises(ValueError):
        ops.conv_transpose2d(x, w[:3])  # weight's in_channels != 4
    with pytest.raises(ValueError):
        ops.conv_transpose2d(x, w, groups=3)  # groups do not divide the channels
    with pytest.raises(ValueError):
        ops.conv_transpose2d(x, w, np.zeros(3, np.float32))  # bias of the wrong length
    with pytest.raises(ValueError):
        ops.conv_transpose2d(x, w, stride=2, output_padding=2)  # output_padding >= stride
    with pytest.raises(ValueError):
        ops.conv_transpose2d(x, w, padding=7)  # padding removes the whole output
    with pytest.raises(ValueError):
        ops.conv_transpose2d(x, w, stride=0)
    with pytest.raises(ValueError):
        ops.conv_transpose2d(x, w, activation="swish")
    with pytest.raises(TypeError):
        ops.conv_transpose2d(x.astype(np.float64), w)
    with pytest.raises(TypeError):
        ops.conv_transpose2d(x, w.astype(np.int32))
