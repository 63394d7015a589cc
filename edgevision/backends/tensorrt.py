"""The TensorRT backend, written against the documented TensorRT 10 Python API only and kept thin.

Build: trt.Builder -> network (explicit batch, the only mode in TensorRT 10) -> trt.OnnxParser -> BuilderConfig
(FP16 flag for fp16; INT8 + FP16 flags for int8, whose input is the QDQ model of quantize.py, so TensorRT
uses the model's own scales: explicit quantisation, no TensorRT calibrator) -> one optimisation profile
(batch from 1 to max_batch, optimised for `batch`) -> timing cache file -> build_serialized_network. Progress
goes to the "edgevision" logger through a trt.IProgressMonitor.

Engines are cached on disk (cache.py) under a key of the ONNX bytes' sha256, GPU name, compute capability,
TensorRT version, precision and profile; an entry that fails to deserialise is rebuilt.

Run: IExecutionContext.set_input_shape + set_tensor_address on CUDA buffers (the caller's torch CUDA tensors
bound directly; numpy inputs staged through torch) + execute_async_v3 on a CUDA stream. Device memory comes
from torch, so this backend needs a CUDA build of torch besides TensorRT.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time

import numpy as np

from . import cache
from .base import BackendUnavailableError, Engine, hold_until_done, require, stage_on_device

log = logging.getLogger("edgevision")

PRECISIONS = ("fp32", "fp16", "int8")


def _trt():
    return require("tensorrt", "tensorrt", "tensorrt")


def gpu_facts(index: int = 0) -> dict:
    """Name and compute capability of GPU `index` (from edgevision._C when built with CUDA, else torch)."""
    from .. import _C

    if getattr(_C, "WITH_CUDA", False):
        for g in _C.build_info().get("gpus", []):
            if g["index"] == index:
                return {"gpu": g["name"], "compute_capability": str(g["compute_capability"])}
    torch = require("torch", "train", "tensorrt")
    if not torch.cuda.is_available():
        raise BackendUnavailableError("the tensorrt backend needs a visible NVIDIA GPU; none is")
    major, minor = torch.cuda.get_device_capability(index)
    return {"gpu": torch.cuda.get_device_name(index), "compute_capability": f"{major}.{minor}"}


def profile_shapes(specs, dynamic, max_batch: int | None) -> dict:
    """{input: (min, opt, max)}: a dynamic batch dim spans 1 .. max_batch (default: the compiled batch), optimised
    for the compiled batch; every other dim is fixed."""
    out = {}
    for s, dyn in zip(specs, dynamic):
        opt = tuple(s.shape)
        if 0 in dyn and opt:
            top = max_batch or opt[0]
            if top < opt[0]:
                raise ValueError(f"max_batch={top} is smaller than batch={opt[0]}")
            out[s.name] = ((1,) + opt[1:], opt, (top,) + opt[1:])
        else:
            out[s.name] = (opt, opt, opt)
    return out


def engine_key(onnx_sha256: str, *, gpu: str, compute_capability: str, trt_version: str, precision: str,
               profile: dict, workspace: int | None = None) -> str:
    """The cache key of a serialised engine: any field changed, another engine."""
    return cache.cache_key(kind="tensorrt", onnx=onnx_sha256, gpu=gpu, compute_capability=compute_capability,
                           tensorrt=trt_version, precision=precision,
                           profile={k: [list(s) for s in v] for k, v in sorted(profile.items())}, workspace=workspace)


def _progress_monitor(trt):
    class Progress(trt.IProgressMonitor):
        """Build phases as log lines; step_complete returning True lets the build go on."""

        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self._depth = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            self._depth[phase_name] = self._depth.get(parent_phase, -1) + 1 if parent_phase else 0
            log.info("TensorRT build: %s%s (%d steps)", "  " * self._depth[phase_name], phase_name, num_steps)

        def step_complete(self, phase_name, step):
            return True

        def phase_finish(self, phase_name):
            self._depth.pop(phase_name, None)

    return Progress()


def build_serialized(onnx_bytes: bytes, *, precision: str, profile: dict, timing_cache_path, workspace=None,
                     name: str = "model") -> bytes:
    """ONNX bytes -> a serialised TensorRT engine (the timing cache file is read and updated)."""
    trt = _trt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"TensorRT cannot parse {name}: {errors}")
    config = builder.create_builder_config()
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    if workspace:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace))
    opt_profile = builder.create_optimization_profile()
    for input_name, (lo, opt, hi) in profile.items():
        opt_profile.set_shape(input_name, lo, opt, hi)
    config.add_optimization_profile(opt_profile)
    timing = config.create_timing_cache(cache.read_entry(timing_cache_path) or b"")
    config.set_timing_cache(timing, False)
    monitor = _progress_monitor(trt) if hasattr(trt, "IProgressMonitor") else None  # outlives the build
    if monitor is not None:
        config.progress_monitor = monitor
    log.info("edgevision: building a TensorRT %s engine for %s (this takes a while; cached afterwards)", precision, name)
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine for {name} (see the TensorRT log above)")
    cache.write_entry(timing_cache_path, bytes(config.get_timing_cache().serialize()))
    log.info("edgevision: TensorRT engine built in %.1f s", time.perf_counter() - t0)
    return bytes(serialized)


class TensorRTEngine(Engine):
    backend = "tensorrt"

    def __init__(self, source, *, device="cuda", precision="fp32", batch=None, input_shapes=None, max_batch=None,
                 calib=None, calib_images=64, workspace=None):
        trt = _trt()
        torch = require("torch", "train", "tensorrt")
        if device == "cpu":
            raise ValueError("the tensorrt backend runs on CUDA only; use device='cuda' (or another backend)")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        device = "cuda:0" if device == "cuda" else device
        index = int(device.split(":")[1])
        facts = gpu_facts(index)
        specs = source.resolve_shapes(batch, input_shapes)
        dynamic = source.dynamic_dims()
        self.profile = profile_shapes(specs, dynamic, max_batch)
        onnx_bytes = source.data
        if precision == "int8":
            from .quantize import quantized_model

            onnx_bytes = quantized_model(source, calib, num_images=calib_images, input_shapes=input_shapes)
        key = engine_key(hashlib.sha256(onnx_bytes).hexdigest(), gpu=facts["gpu"],
                         compute_capability=facts["compute_capability"], trt_version=trt.__version__,
                         precision=precision, profile=self.profile, workspace=workspace)
        self.cache_path = cache.entry_path("trt", key, "engine")
        timing_path = cache.entry_path("timing", cache.cache_key(kind="timing", **facts, tensorrt=trt.__version__))
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        loaded = {}

        def deserialize(payload):
            loaded["engine"] = self._runtime.deserialize_cuda_engine(payload)
            return loaded["engine"] is not None

        with torch.cuda.device(index):
            payload, self.cache_hit = cache.cached(
                self.cache_path, lambda: build_serialized(onnx_bytes, precision=precision, profile=self.profile,
                                                          timing_cache_path=timing_path, workspace=workspace,
                                                          name=source.name), deserialize)
            if not self.cache_hit and not deserialize(payload):
                raise RuntimeError(f"TensorRT could not load the engine it just built for {source.name}")
            self._engine = loaded["engine"]
            self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        from ..graph.ir import TensorSpec

        dtypes = {n: np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))).name for n in names}
        in_specs = [TensorSpec(s.name, tuple(s.shape), dtypes[s.name]) for s in specs]
        for s in in_specs:
            self._context.set_input_shape(s.name, s.shape)
        out_specs = [TensorSpec(n, tuple(self._context.get_tensor_shape(n)), dtypes[n]) for n in self._outputs]
        self._max_batch = {n: hi[0] if hi else 1 for n, (_, _, hi) in self.profile.items()}
        self._lock = threading.Lock()
        self._torch = torch
        super().__init__(source, device=device, precision=precision, input_spec=in_specs, output_spec=out_specs,
                         variable_dims=[(0,) if 0 in d else () for d in dynamic])

    def _enqueue(self, arrays, stream: int):
        torch = self._torch
        for s, a in zip(self.input_spec, arrays):
            if a.shape and a.shape[0] > self._max_batch[s.name]:
                raise ValueError(f"input {s.name!r}: batch {a.shape[0]} is above this engine's max_batch "
                                 f"{self._max_batch[s.name]} (load with max_batch=N to build a larger profile)")
        staged = stage_on_device(arrays, self.device)
        with self._lock:
            for s, t in zip(self.input_spec, staged):
                self._context.set_input_shape(s.name, tuple(t.shape))
                self._context.set_tensor_address(s.name, t.data_ptr())
            outs = []
            for s in self.output_spec:
                y = torch.empty(tuple(self._context.get_tensor_shape(s.name)), dtype=getattr(torch, s.dtype),
                                device=self.device)
                self._context.set_tensor_address(s.name, y.data_ptr())
                outs.append(y)
            if not self._context.execute_async_v3(stream):
                raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        hold_until_done(staged + outs, stream, self.device)
        return outs

    def _run(self, arrays):
        stream = self._torch.cuda.current_stream(self._torch.device(self.device))
        ys = self._enqueue(arrays, stream.cuda_stream)
        if isinstance(arrays[0], np.ndarray):
            return [y.cpu().numpy() for y in ys]
        stream.synchronize()
        return ys

    def _run_async(self, arrays, stream):
        return self._enqueue(arrays, stream)

    def summary(self) -> str:
        prof = ", ".join(f"{n}: {list(lo)}..{list(hi)} opt {list(opt)}" for n, (lo, opt, hi) in self.profile.items())
        return (super().summary() + f"\n  {self._engine.num_layers} layers; profile {prof}\n  engine "
                f"{'loaded from' if self.cache_hit else 'built into'} {self.cache_path}")

    def _close(self):
        self._context = None
        self._engine = None


def build(model, *, precision="fp16", batch=1, max_batch=None, calib=None, input_shapes=None, device="cuda",
          workspace=None) -> dict:
    """Build (or find in the cache) the TensorRT engine of `model`; what `edgevision build` runs."""
    from .base import ModelSource

    t0 = time.perf_counter()
    with TensorRTEngine(ModelSource.open(model), device=device, precision=precision, batch=batch,
                        max_batch=max_batch, calib=calib, input_shapes=input_shapes, workspace=workspace) as engine:
        return {"engine": str(engine.cache_path), "cached": engine.cache_hit, "precision": precision,
                "profile": {k: [list(s) for s in v] for k, v in engine.profile.items()},
                "seconds": round(time.perf_counter() - t0, 2), "summary": engine.summary()}
