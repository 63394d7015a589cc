"""Per-layer profile of the native backend: each fused step's time, share of the total, FLOPs and achieved
GFLOP/s, from NativeEngine.profile_layers (the plan's C++ timers on the CPU, CUDA events on the GPU), with a
roll-up per op type."""
from __future__ import annotations


def profile_layers(model, *, device: str = "cpu", precision: str = "fp32", batch: int = 1, runs: int = 20,
                   threads: int | None = None, input_shapes: dict | None = None) -> dict:
    """Load `model` on the native backend and profile its steps over `runs` runs (after 3 unprofiled warm-up
    runs, which also capture the CUDA graph that profiled runs bypass). Returns the section the report keeps
    under "layers"."""
    from .. import load
    from .latency import random_inputs

    options = {k: v for k, v in (("threads", threads), ("input_shapes", input_shapes)) if v is not None}
    with load(model, backend="native", device=device, precision=precision, batch=batch, **options) as engine:
        inputs = random_inputs(engine)
        for _ in range(3):
            engine.run(inputs)
        records = engine.profile_layers(inputs, runs)
        return summarize_layers(records, backend="native", device=engine.device, precision=precision,
                                batch=batch, runs=runs)


def summarize_layers(records: list[dict], **about) -> dict:
    """Step records (NativeEngine.profile_layers) -> {about..., "total_ms", "gflop", "steps": [... "ms",
    "share", "gflops_per_s"], "by_op": [{op, count, ms, share, gflop, gflops_per_s}] slowest first}."""
    total = sum(r["seconds"] for r in records)
    steps = []
    for r in records:
        s = dict(r)
        s["ms"] = r["seconds"] * 1e3
        s["share"] = r["seconds"] / total if total > 0 else 0.0
        s["gflops_per_s"] = r["flops"] / r["seconds"] / 1e9 if r["seconds"] > 0 and r["flops"] else None
        steps.append(s)
    by_op: dict[str, dict] = {}
    for s in steps:
        g = by_op.setdefault(s["op"], {"op": s["op"], "count": 0, "seconds": 0.0, "flops": 0.0})
        g["count"] += 1
        g["seconds"] += s["seconds"]
        g["flops"] += s["flops"]
    ops = []
    for g in sorted(by_op.values(), key=lambda g: -g["seconds"]):
        ops.append({"op": g["op"], "count": g["count"], "ms": g["seconds"] * 1e3,
                    "share": g["seconds"] / total if total > 0 else 0.0, "gflop": g["flops"] / 1e9,
                    "gflops_per_s": g["flops"] / g["seconds"] / 1e9 if g["seconds"] > 0 and g["flops"] else None})
    flops = sum(r["flops"] for r in records)
    return {**about, "total_ms": total * 1e3, "gflop": flops / 1e9,
            "gflops_per_s": flops / total / 1e9 if total > 0 else None, "steps": steps, "by_op": ops}
