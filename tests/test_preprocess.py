"""preprocess (uint8 HWC frame -> normalised float NCHW) and postprocess_image (float CHW -> uint8
HWC): reference vs fast CPU vs torch / numpy / OpenCV.

Conventions checked here (see ops.h):
- bilinear is torch F.interpolate(mode="bilinear", align_corners=False, antialias=False) on the float
  image, which is cv2.INTER_LINEAR's half-pixel mapping without its 11-bit fixed-point weights and
  final rounding: the two agree within one grey level.
- nearest picks source pixel floor((o + 0.5) * in / out): torch 'nearest-exact' bit for bit.
  cv2.INTER_NEAREST_EXACT means the same but computes it in 16-bit fixed point, so at exact ties
  ((o + 0.5) * in / out an integer, e.g. 48 -> 87 columns, o = 72) it picks the pixel before.
  cv2.INTER_NEAREST is a different convention, floor(o * in / out) (torch 'nearest'), which shifts
  the image by up to half a source pixel; ONNX Resize's default nearest (half_pixel,
  round_prefer_floor) differs from ours at the same exact ties (a 2x downscale takes pixel 2o where
  we take 2o + 1).
- postprocess rounds half to even (numpy.rint) and is bit exact against numpy in float64.
"""
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import TARGETS, TOL
from edgevision import ops
from target_util import to_numpy, to_target

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _frame(rng, h, w, pad=0, x0=0):
    """A uint8 [h, w, 3] frame; with pad/x0 > 0 a view into a wider buffer (padded rows, ROI)."""
    buf = rng.integers(0, 256, (h, w + pad + x0, 3), dtype=np.uint8)
    return buf[:, x0:x0 + w]


def _expected(frame, size, resize, swap_rb, mean, std, scale, interpolation):
    """torch's float pipeline: resize the float image, centre crop, swap, normalise."""
    img = torch.from_numpy(np.ascontiguousarray(frame)).float().permute(2, 0, 1)[None]
    rh, rw = resize
    if (rh, rw) != img.shape[2:]:
        if interpolation == "bilinear":
            img = F.interpolate(img, size=(rh, rw), mode="bilinear", align_corners=False,
                                antialias=False)
        else:
            img = F.interpolate(img, size=(rh, rw), mode="nearest-exact")
    top, left = (rh - size[0]) // 2, (rw - size[1]) // 2
    img = img[:, :, top:top + size[0], left:left + size[1]]
    if swap_rb:
        img = img.flip(1)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((img * np.float32(scale) - m) / s).numpy()


def _random_case(rng, i):
    if i % 10 == 0:
        h, w = 1, 1
    else:
        h, w = (int(v) for v in rng.integers(1, 48, 2))
    frame = _frame(rng, h, w, pad=int(rng.integers(0, 3)) * int(i % 3 == 0),
                   x0=int(rng.integers(0, 4)) * int(i % 4 == 0))
    if i % 4 == 0:  # straight to size (down- or upscale)
        size = tuple(int(v) for v in rng.integers(1, 64, 2))
        resize = None
    elif i % 4 == 1:  # no resize, crop only
        size = tuple(int(rng.integers(1, d + 1)) for d in (h, w))
        resize = (h, w)
    else:  # resize, then centre crop
        resize = tuple(int(v) for v in rng.integers(1, 70, 2))
        size = tuple(int(rng.integers(1, d + 1)) for d in resize)
    color, model_color = rng.choice(["bgr", "rgb"]), rng.choice(["bgr", "rgb"])
    if i % 2:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        mean = tuple(float(v) for v in rng.random(3))
        std = tuple(float(v) for v in rng.random(3) + 0.2)
    scale = float(rng.choice([1 / 255, 1.0, 2 / 255]))
    interpolation = "nearest" if i % 3 == 2 else "bilinear"
    return frame, dict(size=size, resize=resize, color=color, model_color=model_color, mean=mean,
                       std=std, scale=scale, interpolation=interpolation)


@pytest.mark.parametrize("target", TARGETS)
def test_preprocess_random_configs(rng, target):
    dtype = "float16" if target[1] == "float16" else None
    rtol, atol = TOL[target[1]]
    for i in range(240):
        frame, kw = _random_case(rng, i)
        resize = kw["resize"] or kw["size"]
        exp = _expected(frame, kw["size"], resize, kw["color"] != kw["model_color"], kw["mean"],
                        kw["std"], kw["scale"], kw["interpolation"])
        msg = f"case {i}: frame {frame.shape} {kw}"
        if target[0] == "cpu":
            y = ops.preprocess(frame, **kw, reference=True)
            np.testing.assert_allclose(y, exp, rtol, atol, err_msg=msg)
            y = ops.preprocess(frame, **kw)
        else:
            y = to_numpy(ops.preprocess(to_target(np.ascontiguousarray(frame), target), **kw,
                                        dtype=dtype))
        assert y.shape == (1, 3) + kw["size"], msg
        np.testing.assert_allclose(y, exp, rtol, atol, err_msg=msg)


def _unnormalised(frame, size, interpolation, reference=False):
    """Our resize of the frame as float grey levels [h, w, 3] (scale 1, no mean/std, no swap)."""
    y = ops.preprocess(frame, size, color="rgb", model_color="rgb", scale=1.0,
                       interpolation=interpolation, reference=reference)
    return y[0].transpose(1, 2, 0)


def test_bilinear_matches_cv2(rng):
    for i in range(60):
        frame = _frame(rng, *(int(v) for v in rng.integers(1, 60, 2)))
        size = tuple(int(v) for v in rng.integers(1, 90, 2))
        exp = cv2.resize(np.ascontiguousarray(frame), size[::-1], interpolation=cv2.INTER_LINEAR)
        for ref in (True, False):
            ours = _unnormalised(frame, size, "bilinear", ref)
            # cv2 rounds its 11-bit weights and its result; ours is exact float.
            assert np.abs(ours - exp).max() <= 1.0, (frame.shape, size)


def test_nearest_matches_cv2_nearest_exact_off_ties(rng):
    for i in range(60):
        h, w = (int(v) for v in rng.integers(1, 60, 2))
        frame = _frame(rng, h, w)
        size = tuple(int(v) for v in rng.integers(1, 90, 2))
        exp = cv2.resize(frame, size[::-1], interpolation=cv2.INTER_NEAREST_EXACT)
        ours = _unnormalised(frame, size, "nearest")
        # Exact ties: (2o + 1) * in is a multiple of 2 * out; cv2's fixed point may go either way.
        tie_rows = ((2 * np.arange(size[0]) + 1) * h) % (2 * size[0]) == 0
        tie_cols = ((2 * np.arange(size[1]) + 1) * w) % (2 * size[1]) == 0
        ok = ~tie_rows[:, None] & ~tie_cols[None, :]
        np.testing.assert_array_equal(ours[ok], exp[ok], err_msg=f"{frame.shape} -> {size}")


def test_nearest_differs_from_cv2_inter_nearest():
    # A 2x downscale of a ramp: cv2.INTER_NEAREST takes columns 0, 2, 4..., we take 1, 3, 5...
    frame = np.repeat(np.arange(8, dtype=np.uint8)[None, :, None], 3, axis=2).repeat(2, axis=0)
    ours = _unnormalised(frame, (1, 4), "nearest")[0, :, 0]
    np.testing.assert_array_equal(ours, [1, 3, 5, 7])
    assert list(cv2.resize(frame, (4, 1), interpolation=cv2.INTER_NEAREST)[0, :, 0]) == [0, 2, 4, 6]


def test_720p_resize_and_crop(rng):
    # The classifier case: a padded 720p BGR frame, resize 256 then centre crop 224, ImageNet norm.
    frame = _frame(rng, 720, 1280, pad=16)
    kw = dict(size=(224, 224), resize=(256, 455), color="bgr", model_color="rgb",
              mean=IMAGENET_MEAN, std=IMAGENET_STD)
    y = ops.preprocess(frame, **kw)
    np.testing.assert_allclose(y, ops.preprocess(frame, **kw, reference=True), *TOL["float32"])
    exp = _expected(frame, (224, 224), (256, 455), True, IMAGENET_MEAN, IMAGENET_STD, 1 / 255,
                    "bilinear")
    np.testing.assert_allclose(y, exp, *TOL["float32"])


def test_upscale_threaded(rng):
    # Super-resolution direction: 3x upscale, large enough to run threaded, both interpolations.
    frame = _frame(rng, 61, 83, x0=5)
    for interpolation in ("bilinear", "nearest"):
        kw = dict(size=(183, 249), interpolation=interpolation, color="rgb", model_color="rgb")
        exp = _expected(frame, (183, 249), (183, 249), False, (0, 0, 0), (1, 1, 1), 1 / 255,
                        interpolation)
        np.testing.assert_allclose(ops.preprocess(frame, **kw), exp, *TOL["float32"])
        np.testing.assert_allclose(ops.preprocess(frame, **kw, reference=True), exp,
                                   *TOL["float32"])


def test_one_pixel_frame():
    frame = np.array([[[10, 20, 30]]], np.uint8)
    for interpolation in ("bilinear", "nearest"):
        for size in ((1, 1), (5, 3)):
            for ref in (True, False):
                y = ops.preprocess(frame, size, interpolation=interpolation, scale=1.0,
                                   reference=ref)
                exp = np.broadcast_to(np.array([30, 20, 10], np.float32)[:, None, None], (3,) + size)
                np.testing.assert_array_equal(y[0], exp)


def test_torch_frame():
    torch.manual_seed(0)
    frame = torch.randint(0, 256, (20, 30, 3), dtype=torch.uint8)
    y = ops.preprocess(frame, (8, 12))
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32 and y.shape == (1, 3, 8, 12)
    np.testing.assert_allclose(y.numpy(), ops.preprocess(frame.numpy(), (8, 12)), rtol=0, atol=0)


def test_preprocess_bad_inputs():
    frame = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError):
        ops.preprocess(np.zeros((8, 8, 4), np.uint8), (4, 4))  # BGRA
    with pytest.raises(ValueError):
        ops.preprocess(np.zeros((8, 8), np.uint8), (4, 4))  # grey, rank 2
    with pytest.raises(TypeError):
        ops.preprocess(frame.astype(np.float32), (4, 4))
    with pytest.raises(ValueError):
        ops.preprocess(frame, (9, 4), resize=(8, 8))  # crop larger than the resized frame
    with pytest.raises(ValueError):
        ops.preprocess(frame, (0, 4))
    with pytest.raises(ValueError):
        ops.preprocess(frame, (4, 4), std=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError):
        ops.preprocess(frame[:, ::2], (4, 4))  # pixels not packed
    with pytest.raises(ValueError):
        ops.preprocess(frame, (4, 4), interpolation="bicubic")
    with pytest.raises(ValueError):
        ops.preprocess(frame, (4, 4), color="yuv")


# ---------------------------------------------------------------------------------------------
# postprocess_image
# ---------------------------------------------------------------------------------------------

def _post_expected(x, mean, std, scale, swap):
    """numpy in float64, which is how the kernel evaluates the formula (so bytes match exactly)."""
    chw = x.reshape(x.shape[-3:]).astype(np.float64)
    c = chw.shape[0]
    m = np.asarray(mean, np.float32)[:c, None, None].astype(np.float64)
    s = np.asarray(std, np.float32)[:c, None, None].astype(np.float64)
    v = (chw * s + m) * np.float64(np.float32(scale))
    img = np.clip(np.rint(np.nan_to_num(v, nan=0.0)), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return img[..., ::-1] if swap and c == 3 else img


@pytest.mark.parametrize("target", TARGETS)
def test_postprocess_random_configs(rng, target):
    for i in range(240):
        c = 1 if i % 4 == 0 else 3
        h, w = (1, 1) if i % 10 == 0 else tuple(int(v) for v in rng.integers(1, 40, 2))
        if i % 30 == 0:
            h, w = 130, 97  # threaded
        shape = ((1,) if i % 2 else ()) + (c, h, w)
        x = (rng.standard_normal(shape) * 0.6).astype(np.float32)
        if i % 3 == 0:  # a Tanh generator's output
            kw = dict(mean=(0.5,) * 3, std=(0.5,) * 3, scale=255.0)
        else:
            kw = dict(mean=tuple(rng.random(3)), std=tuple(rng.random(3) + 0.1),
                      scale=float(rng.choice([255.0, 1.0, 100.0])))
            if kw["scale"] == 1.0:
                x = x * 200 + 100
        color, model_color = rng.choice(["rgb", "bgr"]), rng.choice(["rgb", "bgr"])
        if target[1] == "float16":
            x = x.astype(np.float16).astype(np.float32)
        exp = _post_expected(x, kw["mean"], kw["std"], kw["scale"], color != model_color)
        msg = f"case {i}: {shape} {kw} {color}/{model_color}"
        if target[0] == "cpu":
            y = ops.postprocess_image(x, **kw, color=color, model_color=model_color, reference=True)
            np.testing.assert_array_equal(y, exp, err_msg=msg)
            y = ops.postprocess_image(x, **kw, color=color, model_color=model_color)
            np.testing.assert_array_equal(y, exp, err_msg=msg)
        else:
            # The CUDA kernel computes in float: allow one level where float and double round
            # differently.
            y = to_numpy(ops.postprocess_image(to_target(x, target), **kw, color=color,
                                               model_color=model_color))
            assert y.dtype == np.uint8 and y.shape == exp.shape, msg
            assert np.abs(y.astype(int) - exp).max() <= 1, msg


@pytest.mark.parametrize("reference", [True, False])
def test_postprocess_rounds_half_to_even_and_clamps(reference):
    x = np.array([0.5, 1.5, 2.5, 3.5, 254.5, 255.5, -0.5, -0.6, 0.49999997, 300.0, -1e9,
                  np.inf, -np.inf, np.nan, 127.5, 128.5], np.float32).reshape(1, 1, -1)
    y = ops.postprocess_image(x, scale=1.0, reference=reference)[0, :, 0]
    np.testing.assert_array_equal(y, [0, 2, 2, 4, 254, 255, 0, 0, 0, 255, 0, 255, 0, 0, 128, 128])


def test_postprocess_inverts_preprocess(rng):
    # An identity model: preprocess then postprocess with the same mean/std returns the frame.
    frame = _frame(rng, 37, 53)
    x = ops.preprocess(frame, (37, 53), color="bgr", model_color="rgb", mean=IMAGENET_MEAN,
                       std=IMAGENET_STD)
    back = ops.postprocess_image(x, mean=IMAGENET_MEAN, std=IMAGENET_STD, scale=255.0,
                                 color="bgr", model_color="rgb")
    np.testing.assert_array_equal(back, frame)


def test_postprocess_torch():
    torch.manual_seed(0)
    x = torch.rand(3, 5, 7)
    y = ops.postprocess_image(x)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.uint8 and y.shape == (5, 7, 3)
    torch.testing.assert_close(y, (x * 255).round().clamp(0, 255).byte().permute(1, 2, 0),
                               rtol=0, atol=0)


def test_postprocess_bad_inputs():
    with pytest.raises(ValueError):
        ops.postprocess_image(np.zeros((2, 4, 4), np.float32))  # 2 channels
    with pytest.raises(ValueError):
        ops.postprocess_image(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError):
        ops.postprocess_image(np.zeros((2, 3, 4, 4), np.float32))  # a batch of 2
    with pytest.raises(TypeError):
        ops.postprocess_image(np.zeros((3, 4, 4), np.uint8))
    with pytest.raises(ValueError):
        ops.postprocess_image(np.zeros((3, 4, 4), np.float32), color="hsv")
