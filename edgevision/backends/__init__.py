"""Backends behind one Engine API, and `load`, which picks one.

    engine = edgevision.load("resnet18.onnx", backend="auto", device="auto", precision="fp32", batch=1)
    logits, = engine.run(x)

Backends: native (edgevision's own runtime, CPU/CUDA), tensorrt (CUDA, engine cache, fp16/int8), onnxruntime
(CPU/CUDA), torch (executes the native plan with torch ops; a reference peer). "auto" picks TensorRT when it is
importable and a GPU is visible, else native CUDA when edgevision was built with CUDA and sees a GPU, else native
on the CPU, and logs the choice on the "edgevision" logger. Each module imports its optional package only when
an engine is created.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging

from .base import BackendUnavailableError, Engine, EngineClosedError, ModelSource

log = logging.getLogger("edgevision")

# name -> (module, Engine class)
BACKENDS = {
    "native": ("native", "NativeEngine"),
    "tensorrt": ("tensorrt", "TensorRTEngine"),
    "onnxruntime": ("onnxruntime", "OnnxRuntimeEngine"),
    "torch": ("torch", "TorchEngine"),
}
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "fp16", "int8")


def engine_class(backend: str):
    if backend not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {sorted(BACKENDS)}, got {backend!r}")
    module, cls = BACKENDS[backend]
    return getattr(importlib.import_module(f".{module}", __name__), cls)


def _gpu_visible() -> bool:
    from .native import cuda_available

    if cuda_available():
        return True
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def choose(backend: str, device: str) -> tuple[str, str]:
    """Resolve "auto" backend and device: (backend, device), the reason logged."""
    if device not in DEVICES and not (isinstance(device, str) and device.startswith("cuda:")):
        raise ValueError(f"device must be one of {DEVICES} or 'cuda:N', got {device!r}")
    if backend == "auto":
        from .native import cuda_available

        if device != "cpu" and importlib.util.find_spec("tensorrt") is not None and _gpu_visible():
            backend, why = "tensorrt", "TensorRT is installed and a GPU is visible"
        elif device != "cpu" and cuda_available():
            backend, why = "native", "edgevision was built with CUDA and sees a GPU"
        else:
            backend, why = "native", ("device='cpu' was asked for" if device == "cpu" else
                                      "no TensorRT with a GPU, no CUDA build of edgevision with a GPU")
            if device.startswith("cuda"):
                raise BackendUnavailableError(f"device={device!r} but no backend can run there: {why}")
            device = "cpu"
        log.info("edgevision: backend 'auto' -> %s (%s)", backend, why)
    engine_class(backend)  # validates the name
    if device == "auto":
        if backend == "tensorrt":
            device = "cuda"
        elif backend == "native":
            from .native import cuda_available

            device = "cuda" if cuda_available() else "cpu"
        elif backend == "onnxruntime":  # the CPU-only onnxruntime package has no CUDA provider
            has_cuda = False
            if importlib.util.find_spec("onnxruntime") is not None:  # else the backend says what to install
                import onnxruntime

                has_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
            device = "cuda" if has_cuda and _gpu_visible() else "cpu"
        else:
            device = "cuda" if _gpu_visible() else "cpu"
        log.info("edgevision: device 'auto' -> %s for the %s backend", device, backend)
    return backend, device


def load(model, backend: str = "auto", device: str = "auto", precision: str = "fp32", batch: int | None = None,
         **options) -> Engine:
    """A model (path, bundled name, ONNX bytes or onnx.ModelProto) compiled by a backend into an Engine.

    batch: the batch size compiled for (default 1, or the model's fixed batch). Options, per backend:
      input_shapes={"name": [..]} fixes dynamic dims other than the batch (e.g. an SR model's height, width);
      threads=N CPU threads (native, onnxruntime, torch); max_batch, workspace (tensorrt: the profile's upper
      batch bound, the builder's workspace bytes); calib=IMAGE_DIR, calib_images=N (int8: calibration images
      for the QDQ model; tensorrt and onnxruntime).
    Batch sizes other than the compiled one: onnxruntime takes any; native and torch compile one plan per new
    input shape on first use; tensorrt takes 1 .. max_batch.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    backend, device = choose(backend, device)
    cls = engine_class(backend)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "source")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(f"the {backend} backend takes no option {unknown}; its options are {accepted}")
    source = ModelSource.open(model)
    return cls(source, device=device, precision=precision, batch=batch, **options)


__all__ = ["BACKENDS", "BackendUnavailableError", "Engine", "EngineClosedError", "ModelSource", "choose", "load"]
