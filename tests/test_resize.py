"""resize: reference vs fast CPU vs torch F.interpolate (nearest, bilinear with and without
align_corners, by size and by scale factor), vs onnxruntime Resize for every coordinate and nearest
mode (scales and sizes inputs), CUDA vs torch, bad input."""
import math
from fractions import Fraction

import numpy as np
import pytest

from conftest import TARGETS
from target_util import check_close as _check, on_target as _on, to_numpy as _host
from edgevision import ops

torch = pytest.importorskip("torch")
F = torch.nn.functional

# Scale factors that are exact in float32, so 1 / scale rounds the same in torch (double) and in
# the kernel (float): nearest sits on exact ties for some of these, and must match torch there.
SCALES = [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0]


def _random_case(rng):
    n, c = int(rng.integers(1, 3)), int(rng.integers(1, 4))
    h, w = (int(v) for v in rng.integers(1, 12, 2))
    if rng.random() < 0.5:
        size = tuple(int(v) for v in rng.integers(1, 25, 2))
        return (n, c, h, w), dict(size=size), dict(size=size)
    while True:
        sf = (float(rng.choice(SCALES)), float(rng.choice(SCALES)))
        if int(h * sf[0]) >= 1 and int(w * sf[1]) >= 1:
            return (n, c, h, w), dict(scale_factor=sf), dict(scale_factor=sf,
                                                             recompute_scale_factor=False)


def _torch_shortcut(shape, ev_kw, mode):
    """torch copies the input when out == in and (nearest) returns o >> 1 when out == 2 * in,
    whatever the explicit scale; the kernel, like ONNX, uses the scale. Those cases are skipped."""
    sf = ev_kw.get("scale_factor")
    if sf is None:
        return False
    for n_in, f in zip(shape[2:], sf):
        n_out = int(n_in * f)
        if (n_out == n_in and f != 1) or (mode == "nearest" and n_out == 2 * n_in and f != 2):
            return True
    return False


@pytest.mark.parametrize("target", TARGETS)
def test_nearest_vs_torch(target, rng):
    done = 0
    while done < 220:
        shape, ev_kw, torch_kw = _random_case(rng)
        if _torch_shortcut(shape, ev_kw, "nearest"):
            continue
        done += 1
        x = rng.standard_normal(shape).astype(np.float32)
        xt, x32 = _on(target, x)
        expected = F.interpolate(torch.from_numpy(x32), mode="nearest", **torch_kw).numpy()
        sf = ev_kw.get("scale_factor", (None, None))
        exact, rows, cols = _nearest_expectation(x32, expected.shape[2:], sf, "asymmetric",
                                                 "floor", "torch")
        np.testing.assert_array_equal(expected[:, :, rows][:, :, :, cols],
                                      exact[:, :, rows][:, :, :, cols])
        # nearest copies values: exact on the CPU, one rounding in FP16.
        _check(ops.resize(xt, **ev_kw), exact, target[1], f"{shape} {ev_kw}")
        if target[0] == "cpu":
            np.testing.assert_array_equal(ops.resize(x, **ev_kw, reference=True), exact)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("align_corners", [False, True])
def test_bilinear_vs_torch(target, align_corners, rng):
    coord = "align_corners" if align_corners else "half_pixel"
    done = 0
    while done < 220:
        shape, ev_kw, torch_kw = _random_case(rng)
        if _torch_shortcut(shape, ev_kw, "bilinear"):
            continue
        done += 1
        x = rng.standard_normal(shape).astype(np.float32)
        xt, x32 = _on(target, x)
        expected = F.interpolate(torch.from_numpy(x32), mode="bilinear",
                                 align_corners=align_corners, **torch_kw).numpy()
        kw = dict(mode="bilinear", coordinate_mode=coord, **ev_kw)
        _check(ops.resize(xt, **kw), expected, target[1], f"{shape} {kw}")
        if target[0] == "cpu":
            _check(ops.resize(x, **kw, reference=True), expected, "float32", f"ref {shape} {kw}")


def test_large_planes_vs_torch(rng):
    # Output rows longer than one column-table chunk, odd sizes, up and down.
    for shape, size in [((1, 3, 37, 300), (75, 1100)), ((2, 2, 400, 13), (123, 1)),
                        ((1, 1, 1, 1), (5, 700))]:
        x = rng.standard_normal(shape).astype(np.float32)
        tx = torch.from_numpy(x)
        np.testing.assert_array_equal(ops.resize(x, size=size),
                                      F.interpolate(tx, size=size, mode="nearest").numpy())
        for ac in (False, True):
            _check(ops.resize(x, size=size, mode="bilinear",
                              coordinate_mode="align_corners" if ac else "half_pixel"),
                   F.interpolate(tx, size=size, mode="bilinear", align_corners=ac).numpy(),
                   "float32", f"{shape} -> {size}")


# ------------------------------------------------------------------------------------------------
# onnxruntime: every coordinate_transformation_mode and nearest_mode, scales and sizes inputs
# ------------------------------------------------------------------------------------------------

COORDS = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"]
NEARESTS = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]


def _ort_resize(x, mode, coord, nearest, scales=None, sizes=None):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    inits, names = [], ["x", "", ""]
    if scales is not None:
        names[2] = "scales"
        inits.append(numpy_helper.from_array(np.array([1, 1, *scales], np.float32), "scales"))
    else:
        names.append("sizes")
        inits.append(numpy_helper.from_array(np.array([*x.shape[:2], *sizes], np.int64), "sizes"))
    node = helper.make_node("Resize", names, ["y"], mode=mode, coordinate_transformation_mode=coord,
                            nearest_mode=nearest)
    graph = helper.make_graph(
        [node], "resize", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "h", "w"])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _exact_index(o, n_in, n_out, scale, coord, nearest):
    """The nearest neighbour by exact rational arithmetic (scale: the float32 value, or None)."""
    s = Fraction(n_out, n_in) if scale is None else Fraction(float(np.float32(scale)))
    if coord == "align_corners":
        x = Fraction(0) if n_out == 1 else Fraction(o * (n_in - 1), n_out - 1)
    elif coord == "asymmetric":
        x = o / s
    elif coord == "pytorch_half_pixel" and n_out == 1:
        x = Fraction(0)
    else:
        x = (o + Fraction(1, 2)) / s - Fraction(1, 2)
    half = Fraction(1, 2)
    r = {"round_prefer_floor": math.ceil(x - half), "round_prefer_ceil": math.floor(x + half),
         "floor": math.floor(x), "ceil": math.ceil(x)}[nearest]
    return min(max(r, 0), n_in - 1)


def _float_index(o, n_in, n_out, scale, coord, nearest, style):
    """The neighbour float32 arithmetic finds: onnxruntime ("ort") divides by the scale, torch
    multiplies by the rounded 1 / scale."""
    f = np.float32
    o = f(o)
    if scale is None:
        ratio, sc = f(n_in) / f(n_out), f(n_out) / f(n_in)
    else:
        ratio, sc = f(1.0 / scale), f(scale)
    if coord == "align_corners":
        x = (f(0) if n_out == 1 else o * f(n_in - 1) / f(n_out - 1) if style == "ort"
             else o * (f(n_in - 1) / f(n_out - 1)))
    elif coord == "pytorch_half_pixel" and n_out == 1:
        x = f(0)
    elif coord == "asymmetric":
        x = o / sc if style == "ort" else o * ratio
    else:
        x = (o + f(0.5)) / sc - f(0.5) if style == "ort" else (o + f(0.5)) * ratio - f(0.5)
    r = {"round_prefer_floor": np.ceil(x - f(0.5)), "round_prefer_ceil": np.floor(x + f(0.5)),
         "floor": np.floor(x), "ceil": np.ceil(x)}[nearest]
    return int(min(max(r, 0), n_in - 1))


def _nearest_expectation(x, out_hw, scale, coord, nearest, style):
    """(the exact-arithmetic result, rows and columns where `style`'s float arithmetic agrees with
    exact arithmetic). Elsewhere the reference sits an ulp off an exact tie and picks the other
    neighbour; edgevision is exact everywhere."""
    idx, keep = [], []
    for axis in range(2):
        n_in, n_out = x.shape[2 + axis], out_hw[axis]
        e = [_exact_index(o, n_in, n_out, scale[axis], coord, nearest) for o in range(n_out)]
        fl = [_float_index(o, n_in, n_out, scale[axis], coord, nearest, style) for o in range(n_out)]
        idx.append(np.array(e))
        keep.append(np.array(e) == np.array(fl))
    return x[:, :, idx[0]][:, :, :, idx[1]], keep[0], keep[1]


@pytest.mark.parametrize("coord", COORDS)
def test_nearest_vs_onnxruntime(coord, rng):
    for nearest in NEARESTS:
        for i in range(8):
            h, w = (int(v) for v in rng.integers(1, 10, 2))
            x = rng.standard_normal((2, 2, h, w)).astype(np.float32)
            if i % 2:
                sc = [float(np.float32(rng.choice(SCALES + [0.6, 1.7, 2.2]))) for _ in range(2)]
                if int(h * sc[0]) < 1 or int(w * sc[1]) < 1:
                    continue
                expected = _ort_resize(x, "nearest", coord, nearest, scales=sc)
                ev_kw, scale = dict(scale_factor=sc), sc
            else:
                size = [int(v) for v in rng.integers(1, 20, 2)]
                expected = _ort_resize(x, "nearest", coord, nearest, sizes=size)
                ev_kw, scale = dict(size=size), [None, None]
            exact, rows, cols = _nearest_expectation(x, expected.shape[2:], scale, coord, nearest,
                                                     "ort")
            for ref in (False, True):
                y = ops.resize(x, **ev_kw, mode="nearest", coordinate_mode=coord,
                               nearest_mode=nearest, reference=ref)
                what = f"{coord} {nearest} {x.shape} {ev_kw}"
                np.testing.assert_array_equal(y, exact, err_msg=what)
                np.testing.assert_array_equal(y[:, :, rows][:, :, :, cols],
                                              expected[:, :, rows][:, :, :, cols], err_msg=what)


@pytest.mark.parametrize("coord", COORDS)
def test_bilinear_vs_onnxruntime(coord, rng):
    for i in range(20):
        h, w = (int(v) for v in rng.integers(1, 10, 2))
        x = rng.standard_normal((2, 2, h, w)).astype(np.float32)
        if i % 2:
            sc = [float(np.float32(rng.choice(SCALES + [0.6, 1.7, 2.2]))) for _ in range(2)]
            if int(h * sc[0]) < 1 or int(w * sc[1]) < 1:
                continue
            expected = _ort_resize(x, "linear", coord, "floor", scales=sc)
            ev_kw = dict(scale_factor=sc)
        else:
            size = [int(v) for v in rng.integers(1, 20, 2)]
            expected = _ort_resize(x, "linear", coord, "floor", sizes=size)
            ev_kw = dict(size=size)
        for ref in (False, True):
            y = ops.resize(x, **ev_kw, mode="bilinear", coordinate_mode=coord, reference=ref)
            _check(y, expected, "float32", f"{coord} {x.shape} {ev_kw}")


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------

def test_bad_inputs(rng):
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    with pytest.raises(ValueError):
        ops.resize(x[0], size=(4, 4))  # rank 3
    with pytest.raises(ValueError):
        ops.resize(x)  # neither size nor scale
    with pytest.raises(ValueError):
        ops.resize(x, size=(4, 4), scale_factor=2)  # both
    with pytest.raises(ValueError):
        ops.resize(x, size=(0, 4))
    with pytest.raises(ValueError):
        ops.resize(x, scale_factor=-2)
    with pytest.raises(ValueError):
        ops.resize(x, scale_factor=0.1)  # floor(5 * 0.1) == 0
    with pytest.raises(ValueError):
        ops.resize(x, size=(4, 4), mode="bicubic")
    with pytest.raises(ValueError):
        ops.resize(x, size=(4, 4), coordinate_mode="tf_crop_and_resize")
    with pytest.raises(ValueError):
        ops.resize(x, size=(4, 4), nearest_mode="nearest")
    with pytest.raises(TypeError):
        ops.resize(x.astype(np.float64), size=(4, 4))
