"""INT8 post-training quantisation into a QDQ ONNX model, the explicit-quantisation input TensorRT builds
directly (and ONNX Runtime runs, which is how its accuracy is checked without a GPU).

onnxruntime.quantization.quantize_static with a CalibrationDataReader over an image folder, each image through
the model's own preprocessing from its metadata (edgevision.backends.base.preprocess_image); generator
models calibrate on seeded random latents instead. Settings for TensorRT: QDQ format, signed int8,
symmetric activations and weights, per-channel weights, biases left in float (TensorRT takes no int32
bias DequantizeLinear; it fuses the float bias itself), only the compute ops (Conv, ConvTranspose, Gemm,
MatMul) quantised. Results are cached (cache.py) by model hash, calibration files and settings.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from . import cache
from .base import ModelSource, preprocess_image, require

log = logging.getLogger("edgevision")

QUANTIZED_OPS = ["Conv", "ConvTranspose", "Gemm", "MatMul"]


def calibration_files(folder) -> list[Path]:
    """Every file under `folder` (recursively, sorted); the ones OpenCV cannot decode are skipped when read."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"calibration folder {str(folder)!r} does not exist (expected a folder of images)")
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def calibration_inputs(source: ModelSource, folder, num_images: int = 64, input_shapes=None) -> list[dict]:
    """Feeds for the calibration runs: up to num_images images of `folder` preprocessed for the model (or, for
    a generator, num_images seeded random latents with one-hot classes)."""
    specs = source.resolve_shapes(None, input_shapes)
    task = source.metadata.get("task", "classify")
    if task == "generate":  # latents z ~ N(0, 1); a class_onehot input cycles through the classes
        rng = np.random.default_rng(0)
        feeds = []
        for i in range(num_images):
            feed = {}
            for s in specs:
                if s.name == "class_onehot":
                    feed[s.name] = np.zeros(s.shape, np.float32)
                    feed[s.name][:, i % s.shape[1]] = 1.0
                else:
                    feed[s.name] = rng.standard_normal(s.shape).astype(np.float32)
            feeds.append(feed)
        return feeds
    if folder is None:
        raise ValueError(f"int8 calibration of a {task} model needs a folder of images (calib=IMAGE_DIR)")
    import cv2

    spec = specs[0]
    feeds = []
    for path in calibration_files(folder):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            continue
        if task == "enhance":  # fixed-size calibration patches, as the engine is built for spec's size
            image = cv2.resize(image, (spec.shape[3], spec.shape[2]), interpolation=cv2.INTER_AREA)
        x = preprocess_image(source.metadata, image, spec)
        feeds.append({spec.name: np.repeat(x, spec.shape[0], axis=0)})
        if len(feeds) == num_images:
            break
    if not feeds:
        raise ValueError(f"calibration folder {str(folder)!r} holds no image OpenCV can read")
    return feeds


def quantize_qdq(source: ModelSource, feeds: list[dict]) -> bytes:
    """The QDQ int8 model (bytes) calibrated on `feeds`."""
    q = require("onnxruntime.quantization", "ort", "int8 quantisation")

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

    with tempfile.TemporaryDirectory(prefix="edgevision-qdq-") as tmp:
        src, dst = os.path.join(tmp, "model.onnx"), os.path.join(tmp, "model.int8.onnx")
        Path(src).write_bytes(source.data)
        q.quantize_static(src, dst, Reader(), quant_format=q.QuantFormat.QDQ, op_types_to_quantize=QUANTIZED_OPS,
                          per_channel=True, activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8,
                          calibrate_method=q.CalibrationMethod.MinMax,
                          extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                         "QuantizeBias": False})
        return Path(dst).read_bytes()


def quantized_model(source: ModelSource, calib, num_images: int = 64, input_shapes=None) -> bytes:
    """The QDQ int8 model for `source` calibrated on the images of `calib`, from the cache when the model, the
    calibration files and the settings are unchanged."""
    ort = require("onnxruntime", "ort", "int8 quantisation")
    files = [] if calib is None else [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in calibration_files(calib)]
    key = cache.cache_key(kind="qdq", onnx=source.sha256(), calib=files, num_images=num_images,
                          input_shapes=input_shapes, ops=QUANTIZED_OPS, onnxruntime=ort.__version__)

    def build():
        log.info("edgevision: calibrating int8 on %s (%d images max)", calib, num_images)
        return quantize_qdq(source, calibration_inputs(source, calib, num_images, input_shapes))

    data, hit = cache.cached(cache.entry_path("qdq", key), build)
    if hit:
        log.info("edgevision: int8 QDQ model from the cache")
    return data
