#!/usr/bin/env python3
"""The stream pipeline's own cost: end-to-end latency minus model time at 1280x720 with the bundled
classifier, and whether throughput is bounded by the model rather than by the pipeline.

    python benchmarks/bench_stream.py [--backend native] [--threads 2] [--size 1280x720] [--fps 10]

1. model alone: engine.run on one preprocessed frame, after a warm-up (median, p95).
2. camera run: a synthetic WxH source paced at --fps (below the model's rate, as a camera would deliver
   frames), latest frame wins; per result e2e (capture -> result delivered), infer, and overhead =
   e2e - infer, split into wait (capture -> inference start), preprocess and postprocess.
3. throughput run: the source at --fast-fps (faster than the model); processed frames/s against the
   model-alone rate, and the share of time the inference thread spends inside engine.run.
4. null-model run: the camera run with an engine that returns at once (same metadata, same input
   size), which leaves the pipeline's own cost without the model competing for the CPU.
Writes JSON to benchmarks/results/ and prints a table. Never part of the test suite.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import edgevision  # noqa: E402
from edgevision import ops  # noqa: E402
from edgevision.stream import ClassifyTask, Pipeline  # noqa: E402


def pct(values, qs=(50, 95, 99)) -> dict:
    v = np.asarray(values, np.float64)
    return {f"p{q}": float(np.percentile(v, q)) for q in qs} | {"mean": float(v.mean()), "n": int(len(v))}


def run_pipeline(task, spec: str, frames: int, threads, warmup: int = 5) -> tuple[list, dict]:
    p = Pipeline(spec, task, preprocess_threads=threads)
    rows = []
    for i, r in enumerate(p):
        if i == warmup - 1:
            t0 = time.perf_counter()
            switches = resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw
        if i >= warmup:
            t = r.timings
            rows.append((t.e2e_ms, t.infer_ms, t.overhead_ms, t.age_ms, t.preprocess_ms, t.postprocess_ms))
        if i + 1 >= frames + warmup:
            break
    wall = time.perf_counter() - t0
    busy = sum(r[1] for r in rows) / 1e3
    stats = p.stats.as_dict()
    # involuntary context switches of the inference thread: how often the OS took the core away
    stats["preempted_per_result"] = (resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw - switches) / len(rows)
    return rows, stats, (busy, wall)


class NullEngine:
    """The real engine's interface and metadata, answering at once: the pipeline's cost alone."""

    def __init__(self, engine):
        self.metadata, self.input_spec, self.device = engine.metadata, engine.input_spec, engine.device
        self.classes = len(engine.metadata.get("labels", [])) or 1000

    def run(self, x):
        return [np.zeros((len(x), self.classes), np.float32)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="imagenet-efficientnet-lite0")
    ap.add_argument("--backend", default="native")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="model threads")
    ap.add_argument("--preprocess-threads", type=int, default=1,
                    help="the pipeline's preprocess_threads (0: OpenMP's default)")
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--fps", type=float, default=10.0, help="camera run: source rate")
    ap.add_argument("--fast-fps", type=float, default=60.0, help="throughput run: source rate")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    pre_threads = args.preprocess_threads or None
    if pre_threads:
        ops.set_num_threads(pre_threads)  # for the preprocess-alone timing; the pipeline sets its own

    opts = {"threads": args.threads} if args.threads else {}
    engine = edgevision.load(args.model, backend=args.backend, device=args.device, **opts)
    task = ClassifyTask(engine)
    frame = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    x = np.array(task.batch.fill([frame]))
    for _ in range(5):
        engine.run(x)
    model_ms = []
    for _ in range(max(30, args.frames // 4)):
        t = time.perf_counter()
        engine.run(x)
        model_ms.append((time.perf_counter() - t) * 1e3)
    pre_ms = []
    for _ in range(100):
        t = time.perf_counter()
        task.batch.fill([frame])
        pre_ms.append((time.perf_counter() - t) * 1e3)

    cam_rows, cam_stats, _ = run_pipeline(task, f"test://moving?width={w}&height={h}&fps={args.fps:g}", args.frames, pre_threads)
    fast_rows, fast_stats, fast_busy = run_pipeline(task, f"test://moving?width={w}&height={h}&fps={args.fast_fps:g}", args.frames, pre_threads)
    null_rows, null_stats, _ = run_pipeline(ClassifyTask(NullEngine(engine)), f"test://moving?width={w}&height={h}&fps={args.fps:g}",
                                   args.frames, pre_threads)
    cam = np.array(cam_rows)
    names = ["e2e", "infer", "overhead", "wait", "preprocess", "postprocess"]
    report = {
        "benchmark": "stream", "command": " ".join([Path(sys.argv[0]).name] + (argv or sys.argv[1:])),
        "machine": {"host": socket.gethostname(), "cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(), "load_avg": os.getloadavg()},
        "engine": {"backend": getattr(engine, "backend", type(engine).__name__), "device": str(engine.device),
                   "threads": args.threads, "preprocess_threads": ops.get_num_threads()},
        "frame": [h, w], "model_alone_ms": pct(model_ms), "preprocess_alone_ms": pct(pre_ms),
        "camera_run": {"fps": args.fps, "ms": {n: pct(cam[:, i]) for i, n in enumerate(names)},
                       "counters": {k: cam_stats[k] for k in ("captured", "processed", "dropped", "failed")},
                       "preempted_per_result": cam_stats["preempted_per_result"]},
        "null_model_run": {"fps": args.fps, "ms": {n: pct(np.array(null_rows)[:, i]) for i, n in enumerate(names)},
                           "preempted_per_result": null_stats["preempted_per_result"]},
        "throughput_run": {"source_fps": args.fast_fps, "processed_fps": len(fast_rows) / fast_busy[1],
                           # share of the inference thread's time spent inside engine.run: near 1 means
                           # the model bounds throughput, not the pipeline
                           "model_busy_fraction": fast_busy[0] / fast_busy[1],
                           "model_alone_fps": 1e3 / float(np.median(model_ms)),
                           "ms": {n: pct(np.array(fast_rows)[:, i]) for i, n in enumerate(names)}},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"stream-{socket.gethostname()}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))

    print(f"{report['engine']['backend']} on {report['engine']['device']}, model threads {args.threads}, "
          f"preprocess threads {report['engine']['preprocess_threads']}, frames {w}x{h}, load average "
          f"{report['machine']['load_avg'][0]:.1f} on {os.cpu_count()} cores")
    m = report["model_alone_ms"]
    print(f"model alone:      p50 {m['p50']:7.2f}  p95 {m['p95']:7.2f} ms")
    m = report["preprocess_alone_ms"]
    print(f"preprocess alone: p50 {m['p50']:7.2f}  p95 {m['p95']:7.2f} ms")
    print(f"camera run at {args.fps:g} fps ({len(cam)} results; the inference thread was preempted "
          f"{report['camera_run']['preempted_per_result']:.2f} times per result):")
    print(f"  {'ms':<12}{'p50':>8}{'p95':>8}{'p99':>8}{'mean':>8}")
    for n in names:
        v = report["camera_run"]["ms"][n]
        print(f"  {n:<12}{v['p50']:8.2f}{v['p95']:8.2f}{v['p99']:8.2f}{v['mean']:8.2f}")
    v = report["null_model_run"]["ms"]["e2e"]
    print(f"null model at {args.fps:g} fps: pipeline alone (e2e) p50 {v['p50']:.2f}  p95 {v['p95']:.2f}  "
          f"p99 {v['p99']:.2f} ms (preempted {report['null_model_run']['preempted_per_result']:.2f} times per result)")
    t = report["throughput_run"]
    print(f"throughput run, source at {args.fast_fps:g} fps: {t['processed_fps']:.1f} frames/s processed vs "
          f"{t['model_alone_fps']:.1f} model-alone (ratio {t['processed_fps'] / t['model_alone_fps']:.2f}); "
          f"engine.run busy {t['model_busy_fraction']:.0%} of the time, infer p50 {t['ms']['infer']['p50']:.1f} ms "
          f"in the pipeline; overhead p50 {t['ms']['overhead']['p50']:.2f} p95 {t['ms']['overhead']['p95']:.2f} ms")
    print(f"written {path}")
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
