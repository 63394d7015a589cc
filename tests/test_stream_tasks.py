"""Tasks on real models: the bundled classifier on the sample clip (agrees with ONNX Runtime run on the
same frames by hand), enhance with small random-init ESPCN models (Y and RGB), generate with a random
conditional DCGAN driven by a random CIFAR-10 classifier. Models are exported here (needs torch)."""
import numpy as np
import pytest
from stream_util import SAMPLE_CLIP, OrtEngine, engine

from edgevision import ops
from edgevision.stream import (ClassifyTask, EnhanceTask, GenerateTask, Pipeline, make_task)
from edgevision.stream.tasks import _rgb_to_ycbcr, _ycbcr_to_rgb

CIFAR = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.mark.parametrize("backend", ["native", "onnxruntime"])
def test_bundled_classifier_on_the_sample_clip(backend):
    eng = engine("imagenet-efficientnet-lite0", backend=backend)
    ref = OrtEngine("imagenet-efficientnet-lite0")
    p = Pipeline(str(SAMPLE_CLIP), ClassifyTask(eng, top_k=5), policy="lossless", realtime=False)
    results = []
    for r in p:
        results.append(r)
        if len(results) == 3:
            break
    for r in results:
        # the same frame, preprocessed by hand (resize the short side to 224, centre crop) through ORT
        h, w = r.frame.image.shape[:2]
        s = 224 / min(h, w)
        meta = ref.metadata
        x = ops.preprocess(r.frame.image, (224, 224), resize=(round(h * s), round(w * s)), mean=meta["mean"],
                           std=meta["std"], scale=meta["pixel_scale"])
        logits = ref.run(x)[0][0]
        assert r.output.class_id == int(np.argmax(logits))
        p_ref = np.exp(logits - logits.max())
        p_ref /= p_ref.sum()
        assert abs(r.output.score - p_ref.max()) < 1e-3
        assert len(r.output.top_k) == 5 and r.output.top_k[0] == (r.output.label, r.output.score)
    # the clip opens on Chelsea the cat
    assert any(k in results[0].output.label for k in ("cat", "tabby", "lynx")), results[0].output.top_k


def test_smoothing_is_an_ema_per_source():
    from stream_util import FakeEngine

    t = ClassifyTask(FakeEngine(classes=4), smoothing=0.5)
    a = np.array([[4.0, 0, 0, 0]], np.float32)
    b = np.array([[0, 4.0, 0, 0]], np.float32)
    first = t.classify(a, ["s"])[0]
    second = t.classify(b, ["s"])[0]
    other = t.classify(b, ["t"])[0]
    pa, pb = (np.exp(v[0]) / np.exp(v[0]).sum() for v in (a, b))
    assert second.score == pytest.approx(max(0.5 * pa + 0.5 * pb), rel=1e-5)
    assert other.label == "c1" and other.score == pytest.approx(pb.max(), rel=1e-5)
    assert first.label == "c0"
    with pytest.raises(ValueError, match="smoothing"):
        ClassifyTask(FakeEngine(), smoothing=1.0)


def test_ycbcr_round_trip():
    rgb = np.random.default_rng(0).random((1, 3, 5, 7), dtype=np.float32)
    np.testing.assert_allclose(_ycbcr_to_rgb(_rgb_to_ycbcr(rgb)), rgb, atol=1e-5)
    y = _rgb_to_ycbcr(np.ones((1, 3, 1, 1), np.float32))[0, 0, 0, 0]
    assert y == pytest.approx(235 / 255, abs=1e-5)  # BT.601 studio range, as the SR models are trained


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from edgevision.export import export_module
    from edgevision.models import create_model

    d = tmp_path_factory.mktemp("stream_models")
    torch.manual_seed(0)
    out = {}
    for channels in (1, 3):
        m = create_model("espcn", scale=2, channels=channels, width=8, depth=2)
        with torch.no_grad():  # random detail on top of the nearest-upsampling residual
            m.body[-1].weight.normal_(0, 0.05)
        meta = {"task": "enhance", "sr_scale": 2, "color": "rgb", "pixel_scale": 1 / 255,
                "channels": "Y" if channels == 1 else "RGB", "mean": [0.0] * channels, "std": [1.0] * channels}
        path = d / f"espcn-{channels}.onnx"
        export_module(m, meta, str(path), name=path.stem)
        out[f"espcn{channels}"] = (path, m)
    g = create_model("dcgan_generator", latent=16, num_classes=10, width=32)
    meta = {"task": "generate", "labels": CIFAR, "latent_size": 16, "num_classes": 10, "output_size": [32, 32],
            "color": "rgb", "output_range": [-1.0, 1.0]}
    export_module(g.eval(), meta, str(d / "gan.onnx"), name="gan")
    out["gan"] = (d / "gan.onnx", g)
    c = create_model("seed_cnn", num_classes=10)
    meta = {"task": "classify", "labels": CIFAR, "input_size": [32, 32], "color": "rgb", "mean": [0.5] * 3,
            "std": [0.25] * 3, "pixel_scale": 1 / 255}
    export_module(c.eval(), meta, str(d / "cls.onnx"), name="cls")
    out["cls"] = (d / "cls.onnx", c)
    return out


@pytest.mark.parametrize("channels", [1, 3])
def test_enhance_matches_the_model(models, channels):
    import torch

    path, module = models[f"espcn{channels}"]
    task = make_task(None, engine(str(path), input_shapes={"input": [1, channels, 32, 48]}), max_input_width=64)
    assert isinstance(task, EnhanceTask) and task.scale == 2
    p = Pipeline("test://moving?width=96&height=64&fps=0&frames=3", task, policy="lossless", render=True)
    results = list(p)
    assert len(results) == 3
    out = results[0].output
    assert out.input_size == (32, 48) and out.image.shape == (64, 96, 3) and out.bicubic.shape == (64, 96, 3)
    assert results[0].image.shape == (64, 192, 3)  # bicubic beside the model
    # the model's output, recomputed with torch on the same low-resolution input
    lr = ops.preprocess(results[0].frame.image, (32, 48), scale=1 / 255)
    x = lr if channels == 3 else _rgb_to_ycbcr(lr)[:, :1]
    with torch.no_grad():
        sr = module(torch.from_numpy(np.ascontiguousarray(x))).numpy()
    if channels == 3:
        expect = ops.postprocess_image(sr, color="bgr")
    else:
        import cv2

        up = np.stack([cv2.resize(c, (96, 64), interpolation=cv2.INTER_CUBIC) for c in _rgb_to_ycbcr(lr)[0]])[None]
        up[0, 0] = sr[0, 0]
        expect = ops.postprocess_image(np.ascontiguousarray(_ycbcr_to_rgb(up)), color="bgr")
    # uint8 outputs: ONNX Runtime and torch differ by ~1e-6 before rounding, so a pixel may round the
    # other way at a .5 boundary: at most 1 grey level.
    assert np.abs(out.image.astype(int) - expect.astype(int)).max() <= 1
    with pytest.raises(ValueError, match="enhance"):
        EnhanceTask(engine("imagenet-efficientnet-lite0"))


def test_generate_draws_the_class_the_classifier_sees(models):
    import torch

    gan_path, gen = models["gan"]
    cls_path, cls = models["cls"]
    task = GenerateTask(engine(str(gan_path)), classifier=engine(str(cls_path)), samples=4, smoothing=0.0)
    p = Pipeline("test://moving?width=64&height=48&fps=0&frames=4", task, policy="lossless", render=True)
    results = list(p)
    assert len(results) == 4
    for r in results:
        out = r.output
        assert out.images.shape == (4, 32, 32, 3) and out.images.dtype == np.uint8
        assert out.label == CIFAR[out.class_id]
        x = task.classifier.batch.fill([r.frame.image])
        with torch.no_grad():
            assert int(cls(torch.from_numpy(np.array(x))).argmax()) == out.class_id
        assert r.image.shape[0] == 48 and r.image.shape[1] > 64
    # consecutive frames draw from a moving latent: the samples change smoothly, not all at once
    assert not np.array_equal(results[0].output.images, results[1].output.images)
    # spherical interpolation keeps the latents at the norm of Gaussian samples (about sqrt(latent))
    norms = np.linalg.norm(np.stack([task._latents() for _ in range(40)]), axis=2)
    assert np.all((norms > 1.5) & (norms < 7)), norms


def test_generate_rejects_a_classifier_of_other_classes(models):
    with pytest.raises(ValueError, match="not among the generator"):
        GenerateTask(engine(str(models["gan"][0])), classifier=engine("imagenet-efficientnet-lite0"))
    with pytest.raises(ValueError, match="generate"):
        GenerateTask(engine(str(models["cls"][0])), classifier=engine(str(models["cls"][0])))
