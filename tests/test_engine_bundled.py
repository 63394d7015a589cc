"""The bundled models through edgevision.load by name: every backend that runs here, the model's own
preprocessing from its metadata on real photos (scikit-image's samples), and the pretrained classifier's
int8 QDQ model (what TensorRT would build) keeping its answers on them."""
import importlib.util

import numpy as np
import pytest

import edgevision
from edgevision import _C
from edgevision.model_files import bundled_models, read_metadata

from test_engine import cache_dir  # noqa: F401 - fixture

pytest.importorskip("onnxruntime")
skdata = pytest.importorskip("skimage.data")

CLASSIFIER = "imagenet-efficientnet-lite0"
ESPRESSO = 967
_GRAPH = importlib.util.find_spec("edgevision.graph") is not None
BACKENDS = ["onnxruntime"] + (["native"] if _GRAPH and hasattr(_C, "Plan") else []) + \
    (["torch"] if _GRAPH and importlib.util.find_spec("torch") else [])


def _bgr(rgb):
    return np.ascontiguousarray(rgb[..., ::-1])


def _cat_classes():
    from test_models import CAT_CLASSES

    return CAT_CLASSES


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(bundled_models()))
def test_bundled_model_runs(name, backend):
    meta = read_metadata(name)
    opts = {"input_shapes": {"input": [1, 1 if meta.get("channels") == "Y" else 3, 24, 24]}} \
        if meta["task"] == "enhance" else {}
    engine = edgevision.load(name, backend=backend, device="cpu", **opts)
    xs = [np.random.default_rng(0).standard_normal(s.shape).astype(np.float32) for s in engine.input_spec]
    for y, s in zip(engine.run(xs), engine.output_spec):
        assert y.shape == tuple(s.shape) and np.isfinite(y).all()


@pytest.mark.skipif(CLASSIFIER not in bundled_models(), reason=f"{CLASSIFIER} is not bundled")
@pytest.mark.parametrize("backend", BACKENDS)
def test_bundled_classifier_on_photos(backend):
    engine = edgevision.load(CLASSIFIER, backend=backend, device="cpu", batch=2)
    x = np.concatenate([engine.preprocess(_bgr(skdata.chelsea())), engine.preprocess(_bgr(skdata.coffee()))])
    (logits,) = engine.run(x)
    assert int(logits[0].argmax()) in _cat_classes() and int(logits[1].argmax()) == ESPRESSO
    assert engine.metadata["labels"][ESPRESSO] == "espresso"


@pytest.mark.slow
@pytest.mark.skipif(CLASSIFIER not in bundled_models(), reason=f"{CLASSIFIER} is not bundled")
def test_bundled_classifier_int8_keeps_its_answers(tmp_path, cache_dir):
    """Calibrated on six other sample photos (never on the two it is asked about), the int8 QDQ model stays
    close to fp32: each one's top-1 is in the other's top-3 and their top-5 share >= 3 classes. (Measured:
    the cat stays a cat class; the coffee's espresso logit drops from 11.2 to 8.3, just under "cup" at 8.7 --
    per-tensor symmetric int8 on six unrelated photos costs this network about 2.5 logits of margin.)"""
    import cv2

    calib = tmp_path / "calib"
    calib.mkdir()
    for name in ("astronaut", "rocket", "coins", "camera", "immunohistochemistry", "hubble_deep_field"):
        image = getattr(skdata, name)()
        image = np.stack([image] * 3, -1) if image.ndim == 2 else image[..., :3]
        cv2.imwrite(str(calib / f"{name}.png"), _bgr(image))
    fp32 = edgevision.load(CLASSIFIER, backend="onnxruntime", device="cpu")
    int8 = edgevision.load(CLASSIFIER, backend="onnxruntime", device="cpu", precision="int8", calib=str(calib))
    for photo in (skdata.chelsea(), skdata.coffee()):
        x = fp32.preprocess(_bgr(photo))
        a, b = fp32.run(x)[0][0], int8.run(x)[0][0]
        top_a, top_b = np.argsort(-a), np.argsort(-b)
        assert top_b[0] in top_a[:3] and top_a[0] in top_b[:3]
        assert len(set(top_a[:5]) & set(top_b[:5])) >= 3
    cat = int8.run(fp32.preprocess(_bgr(skdata.chelsea())))[0]
    assert int(cat.argmax()) in _cat_classes()
