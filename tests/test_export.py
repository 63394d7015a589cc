"""Export to self-describing ONNX: each task's checkpoint from a tiny run, reloaded through ONNX
Runtime and compared with torch; complete metadata; a loud failure on disagreement; the bundled
models; the pretrained EfficientNet-Lite0 on real photos through ONNX Runtime."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from edgevision import cli, export  # noqa: E402
from edgevision.model_files import bundled_models, read_metadata  # noqa: E402
from edgevision.models import create_model  # noqa: E402
from edgevision.train import train_classify, train_gan, train_sr  # noqa: E402

from test_train import make_cifar, make_sr_folder  # noqa: E402

COMMON_KEYS = {"edgevision.metadata_version", "task", "name", "layout", "inputs", "outputs", "metrics", "color"}
TASK_KEYS = {
    "classify": {"labels", "input_size", "mean", "std", "pixel_scale"},
    "enhance": {"sr_scale", "channels", "mean", "std", "pixel_scale"},
    "generate": {"labels", "latent_size", "num_classes", "output_size", "output_range"},
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    cifar = make_cifar(root / "cifar")
    sr_data = make_sr_folder(root / "hr")
    train_classify(cifar, str(root / "cls"), "seed_cnn", epochs=1, holdout=40, batch_size=32, quiet=True)
    train_gan(cifar, str(root / "gan"), epochs=0.1, latent=16, g_width=32, d_width=8, batch_size=32, quiet=True)
    train_sr(sr_data, str(root / "sr"), epochs=1, scale=2, width=8, depth=2, patch=8, batch_size=4,
             steps_per_epoch=2, holdout=1, quiet=True)
    return {k: str(root / k / "best.pt") for k in ("cls", "gan", "sr")}


def check_metadata(path):
    meta = read_metadata(path)
    missing = (COMMON_KEYS | TASK_KEYS[meta["task"]]) - set(meta)
    assert not missing, f"{path}: metadata lacks {sorted(missing)}"
    return meta


@pytest.mark.parametrize("kind, task", [("cls", "classify"), ("gan", "generate"), ("sr", "enhance")])
def test_export_checkpoint_roundtrip(checkpoints, tmp_path, kind, task):
    path = str(tmp_path / f"{kind}.onnx")
    assert cli.main(["export", checkpoints[kind], "--format", "onnx", "-o", path]) == 0
    proto = onnx.load(path)
    assert proto.opset_import[0].version >= 17
    meta = check_metadata(path)
    assert meta["task"] == task and meta["name"] == kind
    assert "final" in meta["metrics"] and meta["training_command"] == ""
    # dynamic batch, and the file agrees with the checkpoint's torch model
    ckpt = torch.load(checkpoints[kind], weights_only=True)
    model = create_model(ckpt["config"]["model"], **ckpt["config"]["model_kwargs"]).eval()
    model.load_state_dict(ckpt["modules"]["generator" if kind == "gan" else "model"])
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(5)
    if kind == "gan":
        inputs = (torch.randn(4, 16, generator=g), torch.eye(10)[:4])
    elif kind == "sr":
        inputs = (torch.rand(4, 1, 11, 13, generator=g),)
    else:
        inputs = (torch.randn(4, 3, 32, 32, generator=g),)
    got = session.run(None, {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(*inputs).numpy(), rtol=1e-3, atol=1e-4)
    if kind == "sr":
        assert got.shape == (4, 1, 22, 26)
        assert set(meta) >= {"input"} and meta["sr_scale"] == 2


def test_export_only_plain_ops(checkpoints, tmp_path):
    allowed = {"Conv", "ConvTranspose", "BatchNormalization", "Relu", "Clip", "Gemm", "MatMul", "MaxPool",
               "AveragePool", "GlobalAveragePool", "Add", "Mul", "Div", "Sub", "DepthToSpace", "Concat", "Reshape",
               "Flatten", "Tanh", "Sigmoid", "Erf", "Constant", "Identity", "LeakyRelu"}
    for kind in ("cls", "gan", "sr"):
        report = export.export_checkpoint(checkpoints[kind], str(tmp_path / f"{kind}.onnx"))
        assert set(report["ops"]) <= allowed, (kind, set(report["ops"]) - allowed)


def test_disagreement_fails_loudly(checkpoints, tmp_path):
    path = str(tmp_path / "cls.onnx")
    export.export_checkpoint(checkpoints["cls"], path)
    other = create_model("seed_cnn").eval()  # different weights than the file
    meta = read_metadata(path)
    with pytest.raises(RuntimeError, match="disagrees"):
        export.verify(path, other, meta)


def test_export_argument_errors(checkpoints, tmp_path):
    with pytest.raises(SystemExit):
        cli.main(["export", "-o", str(tmp_path / "x.onnx")])
    with pytest.raises(ValueError, match="opset"):
        export.export_checkpoint(checkpoints["cls"], str(tmp_path / "x.onnx"), opset=13)
    with pytest.raises(ValueError, match="pretrained"):
        export.export_builtin("resnet18", str(tmp_path / "x.onnx"), pretrained=True)
    bogus = tmp_path / "bogus.pt"
    torch.save({"weights": torch.zeros(1)}, str(bogus))
    with pytest.raises(ValueError, match="not an edgevision checkpoint"):
        export.export_checkpoint(str(bogus), str(tmp_path / "x.onnx"))


def test_export_builtin_random_classifier(tmp_path):
    path = str(tmp_path / "mnv2.onnx")
    report = export.export_builtin("mobilenet_v2", path, num_classes=10, input_size=(64, 64))
    assert report["max_abs_diff"] < 1e-3
    meta = check_metadata(path)
    assert meta["input_size"] == [64, 64] and len(meta["labels"]) == 10 and meta["pretrained"] is False


def test_bundled_efficientnet_lite0_on_photos():
    """The shipped file (exported by `edgevision export --model efficientnet_lite0 --pretrained`) on real
    photos: the cat is a cat class, the coffee an espresso."""
    skdata = pytest.importorskip("skimage.data")
    from test_models import CAT_CLASSES, _photo_tensor

    path = str(bundled_models()["imagenet-efficientnet-lite0"])
    meta = check_metadata(path)
    assert meta["labels"][967] == "espresso" and meta["mean"][0] == pytest.approx(127 / 255)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = torch.cat([_photo_tensor(skdata.chelsea()), _photo_tensor(skdata.coffee())]).numpy()
    logits = session.run(None, {"input": x})[0]
    assert int(logits[0].argmax()) in CAT_CLASSES and int(logits[1].argmax()) == 967


@pytest.mark.parametrize("path", [str(p) for p in bundled_models().values()], ids=list(bundled_models()))
def test_bundled_models_load_with_complete_metadata(path):
    meta = check_metadata(path)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = {}
    for i in session.get_inputs():
        shape = [1 if not isinstance(d, int) else d for d in i.shape]
        if meta["task"] == "enhance":
            shape = [1, shape[1], 16, 16]
        feeds[i.name] = np.zeros(shape, np.float32)
    out = session.run(None, feeds)[0]
    assert np.isfinite(out).all() and meta["metrics"]
