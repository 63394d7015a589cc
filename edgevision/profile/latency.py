"""Model latency: one ONNX model on several backends, precisions, devices and batch sizes, timed side by side in
one process on the same inputs.

Per iteration the host latency is the wall time of one inference as an application sees it, numpy in and numpy
out. On a GPU (backends with an asynchronous run: native, torch, tensorrt) each iteration also records CUDA
events on one stream around the three phases, as trtexec separates them: H2D (the inputs copied from pinned host
memory), compute (the engine's own work, inputs already on the device) and D2H (the outputs back to pinned host
memory); host latency is then the wall time of all three plus the synchronisation, and enqueue the host time
until the last of them was queued. torch drives these copies and events and is imported only for a CUDA row.

Order: "round-robin" (default) runs turns of `block` iterations of each contender, so a burst of load from other
processes, or a clock change, lands on every contender alike, and leaves the first iteration of each turn
unrecorded (see run_timed); "sequential" times each contender alone, as it runs when deployed. Warm-up iterations
come first in the same order and are not recorded.
"""
from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field

import numpy as np

from .stats import summarize

PHASES = ("host", "enqueue", "h2d", "compute", "d2h")
ORDERS = ("round-robin", "sequential")


# ------------------------------------------------------------------------------------------------
# Timers: one call = one timed iteration, returning seconds per phase
# ------------------------------------------------------------------------------------------------
class HostTimer:
    """Host wall time of engine.run(inputs); `sync` (e.g. torch.cuda.synchronize) is called inside the timed
    span for engines that may return before the device is done."""
    device_timing = None

    def __init__(self, engine, inputs, sync=None):
        self.engine, self.inputs, self.sync = engine, inputs, sync

    def __call__(self) -> dict:
        t0 = time.perf_counter()
        self.engine.run(self.inputs)
        if self.sync is not None:
            self.sync()
        return {"host": time.perf_counter() - t0}


class CudaEventTimer:
    """H2D / compute / D2H between CUDA events on one stream, inputs and outputs in pinned host buffers
    allocated once; host = wall time of the whole iteration."""
    device_timing = "cuda-events"

    def __init__(self, engine, inputs):
        import torch

        self.torch, self.engine = torch, engine
        device = torch.device(engine.device)
        self.stream = torch.cuda.Stream(device)
        self.host_in = [torch.from_numpy(np.ascontiguousarray(x)).pin_memory() for x in inputs]
        self.dev_in = [torch.empty(h.shape, dtype=h.dtype, device=device) for h in self.host_in]
        for d, h in zip(self.dev_in, self.host_in):
            d.copy_(h)
        with torch.cuda.stream(self.stream):
            outs = engine.run_async(self.dev_in, self.stream)  # the outputs' shapes and dtypes
        self.stream.synchronize()
        self.host_out = [torch.empty(tuple(o.shape), dtype=o.dtype, pin_memory=True) for o in outs]
        self.events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]

    def __call__(self) -> dict:
        e, s = self.events, self.stream
        t0 = time.perf_counter()
        with self.torch.cuda.stream(s):
            e[0].record(s)
            for d, h in zip(self.dev_in, self.host_in):
                d.copy_(h, non_blocking=True)
            e[1].record(s)
            outs = self.engine.run_async(self.dev_in, s)
            e[2].record(s)
            for h, o in zip(self.host_out, outs):
                h.copy_(o, non_blocking=True)
            e[3].record(s)
        t_enqueued = time.perf_counter()
        e[3].synchronize()
        t1 = time.perf_counter()
        return {"host": t1 - t0, "enqueue": t_enqueued - t0, "h2d": e[0].elapsed_time(e[1]) * 1e-3,
                "compute": e[1].elapsed_time(e[2]) * 1e-3, "d2h": e[2].elapsed_time(e[3]) * 1e-3}


def make_timer(engine, inputs):
    """(timer, note): CUDA events for a CUDA engine with an asynchronous run when torch is importable, else host
    time only, the note saying why the device columns are missing (None on a CPU engine, where host time is
    the compute time)."""
    from ..backends.base import Engine

    if not engine.device.startswith("cuda"):
        return HostTimer(engine, inputs), None
    if importlib.util.find_spec("torch") is None:
        return HostTimer(engine, inputs), "torch is not installed: no CUDA-event device times, host time only"
    import torch

    if type(engine)._run_async is Engine._run_async:
        return (HostTimer(engine, inputs, torch.cuda.synchronize),
                f"the {engine.backend} backend takes host arrays only (no run_async): its copies are inside its "
                f"run, host time only")
    return CudaEventTimer(engine, inputs), None


def random_inputs(engine, seed: int = 0) -> list[np.ndarray]:
    """Inputs of the engine's shapes and dtypes: standard normal, except a one-hot class input (generators)."""
    rng = np.random.default_rng(seed)
    out = []
    for s in engine.input_spec:
        if s.name == "class_onehot":
            x = np.zeros(s.shape, s.dtype)
            x[np.arange(s.shape[0]), rng.integers(0, s.shape[1], s.shape[0])] = 1
        else:
            x = rng.standard_normal(s.shape).astype(s.dtype)
        out.append(x)
    return out


# ------------------------------------------------------------------------------------------------
# The timing loop (also used by benchmarks/bench_models.py)
# ------------------------------------------------------------------------------------------------
def run_timed(timers, *, warmup: int = 10, iterations: int = 100, duration: float = 0.0,
              max_iterations: int | None = None, order: str = "round-robin", origin: float | None = None,
              block: int = 10, handover: int = 1, settle: float = 0.0):
    """Time callables that return {phase: seconds}. Each first gets `warmup` unrecorded calls, then timed calls
    until it has at least `iterations` samples and the timed phase has lasted `duration` seconds (round-robin:
    the whole phase, shared; sequential: each timer's own), at most max_iterations each.

    Round-robin takes turns of `block` consecutive calls per timer, the first `handover` calls of a turn
    unrecorded, after `settle` seconds of sleep: right after another runtime's calls, that runtime's worker
    threads still spin (ONNX Runtime's pool and OpenMP spin-wait before they sleep) and take the cores from the
    next runtime, which a user running one engine never sees (native DCGAN on epyc2: 6.3 ms median alternating
    single calls, 1.9 ms alone; seed CNN, 2 threads: native's first call after ONNX Runtime's 2.5 ms, its second
    0.31 ms, then 0.21 as alone). The sleep lets them stop before the turn, the unrecorded calls wake the next
    runtime's own threads.

    Returns (samples, errors): per timer a list of {"t": start of the call in seconds since `origin` (default:
    when this was called), phase: seconds, ...}, and per timer None or the exception that stopped it: a timer
    that raises is dropped from the rotation, the others go on."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    for name, v in (("warmup", warmup), ("iterations", iterations), ("block", block), ("handover", handover)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be an int >= 0, got {v!r}")
    if block < 1:
        raise ValueError(f"block must be at least 1 call per turn, got {block}")
    if not isinstance(duration, (int, float)) or duration < 0:
        raise ValueError(f"duration must be >= 0 seconds, got {duration!r}")
    if not isinstance(settle, (int, float)) or settle < 0:
        raise ValueError(f"settle must be >= 0 seconds, got {settle!r}")
    if iterations == 0 and duration == 0:
        raise ValueError("iterations and duration are both 0: nothing would be timed")
    origin = time.perf_counter() if origin is None else origin
    cap = max_iterations if max_iterations is not None else float("inf")
    samples = [[] for _ in timers]
    errors: list = [None] * len(timers)

    def call(i: int, record: bool) -> None:
        if errors[i] is not None:
            return
        t = time.perf_counter() - origin
        try:
            phases = timers[i]()
        except Exception as e:  # noqa: BLE001 - one failing contender must not end the others' run
            errors[i] = e
            return
        if record:
            samples[i].append({"t": t, **phases})

    def done(i: int, start: float) -> bool:
        n = len(samples[i])
        return errors[i] is not None or n >= cap or (
            n >= iterations and time.perf_counter() - start >= duration)

    groups = [list(range(len(timers)))] if order == "round-robin" else [[i] for i in range(len(timers))]
    for group in groups:
        for _ in range(warmup):
            for i in group:
                call(i, False)
        start = time.perf_counter()
        shared = len(group) > 1
        skip = min(handover, block - 1) if shared else 0  # every turn records at least one call
        while not all(done(i, start) for i in group):
            for i in group:
                if done(i, start):
                    continue
                if shared and settle:
                    time.sleep(settle)
                for _ in range(skip):
                    call(i, False)
                for _ in range(block - skip):
                    if not done(i, start):
                        call(i, True)
    return samples, errors


# ------------------------------------------------------------------------------------------------
# Contenders and the model profile
# ------------------------------------------------------------------------------------------------
@dataclass
class Contender:
    backend: str
    device: str
    precision: str
    batch: int
    row: dict = field(default_factory=dict)
    engine: object = None
    timer: object = None


def parse_list(text, what: str, allowed=None, convert=str) -> list:
    """"a,b,c" (or a list) -> [a, b, c], each checked against `allowed`."""
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    items = [t for t in items if t != ""]
    if not items:
        raise ValueError(f"{what}: give at least one value")
    try:
        items = [convert(t) for t in items]
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a comma-separated list of {convert.__name__}") from None
    if allowed is not None:
        bad = [t for t in items if t not in allowed]
        if bad:
            raise ValueError(f"{what}: unknown {bad}; choose from {list(allowed)}")
    return list(dict.fromkeys(items))


def plan_devices(backends, device: str) -> tuple[list[tuple[str, str]], list[dict], list[str]]:
    """(backend, device) pairs to run, the skipped ones as rows with a reason, and notes.

    device "auto": every backend on the CPU (TensorRT excepted) and, where a GPU is visible, every backend on
    cuda too (native only when edgevision was built with CUDA); "cpu": the CPU only; "cuda" or "cuda:N": the
    GPU only."""
    from ..backends import _gpu_visible
    from ..backends.native import cuda_available

    if not (device in ("auto", "cpu", "cuda") or (isinstance(device, str) and device.startswith("cuda:")
                                                   and device[5:].isdigit())):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    gpu = device != "cpu" and _gpu_visible()
    notes = []
    if device == "auto" and not gpu:
        notes.append("no CUDA GPU is visible: CPU rows only (device times, copies and TensorRT need a GPU)")
    cuda = "cuda" if device == "auto" else device
    pairs, skipped = [], []
    for b in backends:
        wanted = ([] if b == "tensorrt" else ["cpu"]) if device in ("auto", "cpu") else []
        # Without a GPU, "auto" lists a CUDA row as skipped only for TensorRT, which has no CPU row to show.
        if device != "cpu" and (gpu or device != "auto" or b == "tensorrt"):
            wanted.append(cuda)
        for d in wanted:
            why = None
            if d != "cpu" and not gpu:
                why = "no CUDA GPU is visible"
            elif d != "cpu" and b == "native" and not cuda_available():
                why = "edgevision was built without CUDA (or its CUDA runtime sees no GPU)"
            if why:
                skipped.append({"backend": b, "device": d, "status": "skipped", "reason": why})
            else:
                pairs.append((b, d))
        if b == "tensorrt" and device == "cpu":
            skipped.append({"backend": b, "device": "cpu", "status": "skipped",
                            "reason": "TensorRT runs on CUDA GPUs only"})
    return pairs, skipped, notes


def profile_model(model, *, backends=("native", "onnxruntime", "torch"), precisions=("fp32",), device="auto",
                  batches=(1,), warmup: int = 10, iterations: int = 100, duration: float = 0.0,
                  order: str = "round-robin", block: int = 10, threads: int | None = None,
                  input_shapes: dict | None = None, calib: str | None = None, origin: float | None = None, log=None) -> dict:
    """Time a model on every (backend, device, precision) contender at each batch size.

    Returns {"rows": [...], "notes": [...]}: one row per contender and batch with its keys (model, backend,
    precision, device, batch), status "ok" with statistics per phase (host, and on a GPU enqueue, h2d, compute,
    d2h; see stats.summarize) and the raw samples (t_s, host_ms, ...), or status "skipped" / "failed" with the
    reason. Contenders that cannot load (a missing package, fp16 on a CPU, no GPU) are skipped, never fatal."""
    from ..backends import BACKENDS, PRECISIONS, load
    from ..backends.base import ModelSource

    backends = parse_list(backends, "backends", BACKENDS)
    precisions = parse_list(precisions, "precisions", PRECISIONS)
    batches = parse_list(batches, "batches", convert=int)
    if any(b < 1 for b in batches):
        raise ValueError(f"batches must be positive, got {batches}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    log = log or (lambda msg: None)
    source = ModelSource.open(model)
    name = source.name
    origin = time.perf_counter() if origin is None else origin
    pairs, skipped, notes = plan_devices(backends, device)
    rows = []
    for s in skipped:
        for p in precisions:
            for b in batches:
                rows.append({"model": name, **s, "precision": p, "batch": b})
    tf32 = _disable_tf32() if any(d != "cpu" for _, d in pairs) else None
    try:
        for batch in batches:
            contenders = [Contender(b, d, p, batch) for b, d in pairs for p in precisions]
            live = []
            for c in contenders:
                c.row = {"model": name, "backend": c.backend, "precision": c.precision, "device": c.device,
                         "batch": batch}
                rows.append(c.row)
                options = {"threads": threads} if threads and c.backend != "tensorrt" else {}
                if calib and c.backend in ("tensorrt", "onnxruntime"):
                    options["calib"] = calib
                if input_shapes:
                    options["input_shapes"] = input_shapes
                try:
                    c.engine = load(source.data, backend=c.backend, device=c.device, precision=c.precision,
                                    batch=batch, **options)
                    c.timer, note = make_timer(c.engine, random_inputs(c.engine))
                except Exception as e:  # noqa: BLE001 - a contender that cannot load is skipped, with why
                    c.row.update(status="skipped", reason=f"{type(e).__name__}: {e}")
                    log(f"skip {c.backend} {c.precision} {c.device} batch {batch}: {c.row['reason']}")
                    if c.engine is not None:
                        c.engine.close()
                    continue
                c.row.update(engine_device=c.engine.device, device_timing=c.timer.device_timing)
                if note:
                    c.row["device_timing_note"] = note
                live.append(c)
            if not live:
                continue
            log(f"batch {batch}: timing {', '.join(f'{c.backend} {c.precision} {c.device}' for c in live)}")
            samples, errors = run_timed([c.timer for c in live], warmup=warmup, iterations=iterations,
                                        duration=duration, order=order, block=block, origin=origin)
            for c, got, err in zip(live, samples, errors):
                c.engine.close()
                if err is not None:
                    c.row.update(status="failed", reason=f"{type(err).__name__}: {err}")
                    continue
                c.row.update(_row_stats(got, batch))
    finally:
        _restore_tf32(tf32)
    return {"rows": rows, "notes": notes}


def _row_stats(samples: list[dict], batch: int) -> dict:
    out = {"status": "ok", "stats": {}, "samples": {"t_s": [round(s["t"], 6) for s in samples]}}
    for phase in PHASES:
        if phase in samples[0]:
            seconds = [s[phase] for s in samples]
            out["stats"][phase] = summarize(seconds, batch)
            out["samples"][f"{phase}_ms"] = [round(v * 1e3, 6) for v in seconds]
    return out


def _disable_tf32():
    """FP32 means FP32: torch on an Ampere+ GPU would otherwise run fp32 convolutions and matmuls in TF32. Returns
    the previous flags (restored afterwards), None without torch."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    return saved


def _restore_tf32(saved) -> None:
    if saved is not None:
        import torch

        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
