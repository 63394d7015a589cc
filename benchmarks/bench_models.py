"""Whole-model benchmark: edgevision.load engines side by side, same process, same run, same inputs.

Models: the bundled ones (edgevision/bundled/*.onnx) plus resnet18, mobilenet_v2, efficientnet_lite0 (224x224,
random weights: speed does not depend on them), the DCGAN generator (32x32) and ESPCN x2 (Y channel,
--sr-size input), exported once with edgevision.export into --models-dir. Batch 1 and 8.

Contenders: native, onnxruntime and torch on the CPU, all with --threads threads; with a GPU also native CUDA
fp32/fp16, torch CUDA, onnxruntime CUDA (when its provider is installed) and TensorRT fp32/fp16 (when
installed); --no-cpu times the GPU contenders only. Every contender gets the same random inputs in its own dtype,
already on its GPU for CUDA contenders (host wall time of run + synchronize). Contenders take turns of --block calls
after a warm-up, so load from other processes hits all alike; each turn starts with a --settle sleep and
--handover untimed calls, so the previous contender's spin-waiting threads are not timed against this one. Reported per case:
median and p90 latency, images/s, the max abs difference to onnxruntime's CPU output, and ratio = contender median /
native median of the same device (>= 1: native is faster). A contender that fails to load or run is listed as skipped with its error. Writes JSON (--out) and
prints a Markdown table. Never part of the test suite.

    PYTHONPATH=. python benchmarks/bench_models.py [--threads N] [--quick] [--only resnet18] [--out FILE]
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_ops import cpu_model  # noqa: E402 - the same machine facts as bench_ops

from edgevision.profile.latency import HostTimer, random_inputs, run_timed  # noqa: E402 - the profiler's loop and statistics
from edgevision.profile.stats import summarize  # noqa: E402

BUILTIN = {  # name: (model factory kwargs, export metadata)
    "resnet18": ({}, {"task": "classify", "input_size": [224, 224]}),
    "mobilenet_v2": ({}, {"task": "classify", "input_size": [224, 224]}),
    "efficientnet_lite0": ({}, {"task": "classify", "input_size": [224, 224]}),
    "dcgan_generator": ({}, {"task": "generate", "latent_size": 128, "num_classes": 10, "output_size": [32, 32]}),
    "espcn": ({"scale": 2, "channels": 1}, {"task": "enhance", "sr_scale": 2, "channels": "Y"}),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads for every contender")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--sr-size", type=int, nargs=2, default=[240, 320], metavar=("H", "W"), help="ESPCN input size")
    p.add_argument("--min-runs", type=int, default=200, help="timed runs per contender at least")
    p.add_argument("--block", type=int, default=20, help="consecutive calls per contender and turn (see run_timed)")
    p.add_argument("--handover", type=int, default=2, help="untimed calls at the start of each turn")
    p.add_argument("--settle", type=float, default=0.05,
                   help="seconds of sleep before each turn, so the last contender's spinning threads stop first")
    p.add_argument("--budget", type=float, default=2.0, help="seconds of timed calls per contender and case")
    p.add_argument("--quick", action="store_true", help="batch 1, 3 runs (smoke test)")
    p.add_argument("--only", default=None, help="models whose name contains this text (a|b: either)")
    p.add_argument("--models-dir", default=None, help="where the exported models go (default: a temporary folder)")
    p.add_argument("--out", default=None, help="JSON output (default benchmarks/results/bench_models_<host>.json)")
    p.add_argument("--no-cpu", action="store_true",
                   help="time the GPU contenders only (ONNX Runtime on the CPU still gives the reference output)")
    return p.parse_args(argv)


def export_models(folder: str, names) -> dict[str, str]:
    """Export the built-in benchmark models once (kept in `folder` for later runs)."""
    import torch

    from edgevision.export import export_module
    from edgevision.models import create_model

    paths = {}
    for name in names:
        path = os.path.join(folder, f"{name}.onnx")
        if not os.path.exists(path):
            kwargs, meta = BUILTIN[name]
            torch.manual_seed(0)
            meta = dict(meta, model=name, labels=[str(i) for i in range(meta.get("num_classes", 1000))])
            print(f"exporting {name} -> {path}", file=sys.stderr)
            export_module(create_model(name, **kwargs).eval(), meta, path, name=name)
        paths[name] = path
    return paths


def contenders(gpu: bool, threads: int, cpu: bool = True):
    """(label, device, load kwargs) in table order; the first of each device is the ratio's base. ONNX Runtime on
    the CPU is always loaded: its output is the reference (timed only with `cpu`)."""
    out = [("native", "cpu", {"backend": "native", "device": "cpu", "threads": threads}),
           ("onnxruntime", "cpu", {"backend": "onnxruntime", "device": "cpu", "threads": threads}),
           ("torch", "cpu", {"backend": "torch", "device": "cpu", "threads": threads})]
    if not cpu:
        out = out[1:2]
    if gpu:
        out += [("native fp32", "cuda", {"backend": "native", "device": "cuda"}),
                ("native fp16", "cuda", {"backend": "native", "device": "cuda", "precision": "fp16"}),
                ("torch fp32", "cuda", {"backend": "torch", "device": "cuda"}),
                ("torch fp16", "cuda", {"backend": "torch", "device": "cuda", "precision": "fp16"}),
                ("onnxruntime", "cuda", {"backend": "onnxruntime", "device": "cuda"}),
                ("tensorrt fp32", "cuda", {"backend": "tensorrt", "device": "cuda"}),
                ("tensorrt fp16", "cuda", {"backend": "tensorrt", "device": "cuda", "precision": "fp16"})]
    return out


def inputs_on(engine, xs: list[np.ndarray]) -> list:
    """The same inputs in the engine's dtype (float16 for fp16 engines), already on its GPU for CUDA engines: a
    GPU figure is the inference alone, as in an app whose frames are on the device (the profiler's --device-timing
    splits out the copies)."""
    xs = [x.astype(s.dtype) for x, s in zip(xs, engine.input_spec)]
    if not engine.device.startswith("cuda"):
        return xs
    import torch

    return [torch.from_numpy(x).to(engine.device) for x in xs]


def time_round_robin(engines, inputs, min_runs: int, budget: float, syncs, block: int, handover: int = 1,
                     settle: float = 0.0):
    """Interleaved timing of several engines, each on its own copy of the same inputs (edgevision.profile's
    loop): 2 warm-up calls each, then turns of `block` calls each (after `settle` seconds of sleep, the first
    `handover` untimed, see run_timed) until each has min_runs samples and about `budget` seconds each (at most
    10 x min_runs). Returns one list of seconds per engine."""
    timers = [HostTimer(e, xs, None if s is _no_sync else s) for e, xs, s in zip(engines, inputs, syncs)]
    samples, errors = run_timed(timers, warmup=2, iterations=min_runs, duration=budget * len(timers),
                                max_iterations=10 * min_runs, block=block, handover=handover, settle=settle)
    for err in errors:
        if err is not None:
            raise err
    return [[s["host"] for s in got] for got in samples]


def bench_model(name, path, args, gpu, rng):
    import edgevision

    rows = []
    for batch in args.batches:
        shapes = {"input": [batch, 1, *args.sr_size]} if name == "espcn" or "espcn" in name else None
        loaded, runs = [], []
        for label, device, kwargs in contenders(gpu, args.threads, cpu=not args.no_cpu):
            row = {"model": name, "batch": batch, "contender": label, "device": device}
            try:
                opts = dict(kwargs, batch=batch, **({"input_shapes": shapes} if shapes else {}))
                engine = edgevision.load(path, **opts)
                row["engine_device"] = engine.device
                loaded.append((row, engine))
            except Exception as exc:  # noqa: BLE001 - reported per contender, the run goes on
                row["skipped"] = f"{type(exc).__name__}: {exc}"
                print(f"  skip {name} b{batch} {label}: {row['skipped'][:200]}", file=sys.stderr)
            rows.append(row)
        if not loaded:
            continue
        reference_engine = next((e for row, e in loaded if row["contender"] == "onnxruntime"), loaded[0][1])
        xs = random_inputs(reference_engine, seed=int(rng.integers(1 << 31)))
        reference = None
        for row, engine in loaded:
            try:
                row_inputs = inputs_on(engine, xs)
                ys = engine.run(row_inputs)
            except Exception as exc:  # noqa: BLE001
                row["skipped"] = f"{type(exc).__name__}: {exc}"
                continue
            ys = [np.asarray(y.float().cpu() if hasattr(y, "cpu") else y, np.float32) for y in ys]
            if row["contender"] == "onnxruntime" and row["device"] == "cpu":
                reference = ys
                if args.no_cpu:
                    rows.remove(row)
                    continue
            runs.append((row, engine, ys, row_inputs))
        for row, _, ys, _ in runs:
            if reference is not None:
                row["max_abs_diff_vs_onnxruntime"] = max(float(np.abs(a - b).max()) for a, b in zip(ys, reference))
        syncs = [_sync_for(row["device"]) for row, _, _, _ in runs]
        min_runs = 3 if args.quick else args.min_runs
        budget = args.budget / (4 if args.quick else 1)
        times = time_round_robin([e for _, e, _, _ in runs], [x for _, _, _, x in runs], min_runs, budget, syncs,
                                 2 if args.quick else args.block, 1 if args.quick else args.handover,
                                 0.0 if args.quick else args.settle)
        for (row, _, _, _), ts in zip(runs, times):
            row.update(summarize(ts, batch))
            row["images_per_s"] = batch / (row["median_ms"] * 1e-3)
        native = {}  # device -> median of its first native contender: the ratios' base
        for row, _, _, _ in runs:
            if row["contender"].startswith("native"):
                native.setdefault(row["device"], row["median_ms"])
        for row, _, _, _ in runs:
            base = native.get(row["device"])
            row["ratio_vs_native"] = row["median_ms"] / base if base else None
            ratio = f"x{row['ratio_vs_native']:.2f}" if base else "(no native)"
            print(f"  {name:24s} b{batch:<2d} {row['contender']:14s} {row['device']:4s} {row['median_ms']:9.3f} ms "
                  f"(p90 {row['p90_ms']:.3f})  {ratio}", file=sys.stderr)
        for _, engine in loaded:
            engine.close()
    return rows


def _no_sync():
    pass


def _sync_for(device):
    if device != "cuda":
        return _no_sync
    import torch

    return torch.cuda.synchronize


def markdown(rows):
    out = ["| model | batch | contender | device | median ms | p90 ms | images/s | ratio vs native | max abs diff vs ORT |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r or "median_ms" not in r:
            out.append(f"| {r['model']} | {r['batch']} | {r['contender']} | {r['device']} | skipped: "
                       f"{r.get('skipped', 'not timed')[:120]} | | | | |")
            continue
        diff = r.get("max_abs_diff_vs_onnxruntime")
        ratio = "" if r["ratio_vs_native"] is None else f"**{r['ratio_vs_native']:.2f}**"
        out.append(f"| {r['model']} | {r['batch']} | {r['contender']} | {r['device']} | {r['median_ms']:.3f} | "
                   f"{r['p90_ms']:.3f} | {r['images_per_s']:.1f} | {ratio} | "
                   f"{'' if diff is None else f'{diff:.2e}'} |")
    return "\n".join(out)


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.quick:
        args.batches = [1]
    import tempfile

    import torch

    import edgevision
    from edgevision.model_files import bundled_models

    torch.set_num_threads(args.threads)
    edgevision.ops.set_num_threads(args.threads)
    gpu = torch.cuda.is_available()
    if gpu:  # FP32 means FP32: no TF32 for torch; cuDNN picks its best algorithms, as a deployment would
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    models_dir = args.models_dir or tempfile.mkdtemp(prefix="edgevision-bench-")
    os.makedirs(models_dir, exist_ok=True)
    wanted = lambda n: not args.only or any(o in n for o in args.only.split("|"))  # noqa: E731
    names = [n for n in BUILTIN if wanted(n)]
    models = {n: str(p) for n, p in bundled_models().items() if wanted(n)}
    models.update(export_models(models_dir, names))
    t_start, load_before = time.time(), os.getloadavg()
    rng = np.random.default_rng(0)
    rows = []
    for name, path in models.items():
        print(f"{name}:", file=sys.stderr)
        rows += bench_model(name, path, args, gpu, rng)
    import json
    import platform

    result = {
        "benchmark": "bench_models", "host": socket.gethostname(), "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "threads": args.threads,
        "machine": {"cpu": cpu_model(), "logical_cores": os.cpu_count(), "platform": platform.platform(),
                    "gpu": torch.cuda.get_device_name(0) if gpu else None, "load_average_before": load_before,
                    "load_average_after": os.getloadavg()},
        "edgevision": dict(edgevision.info()), "torch": torch.__version__,
        "settings": {"batches": args.batches, "sr_size": args.sr_size, "min_runs": args.min_runs,
                     "budget_s": args.budget, "block": args.block, "handover": args.handover,
                     "settle_s": args.settle, "quick": args.quick, "only": args.only,
                     "no_cpu": args.no_cpu},
        "wall_s": time.time() - t_start, "results": rows,
    }
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   f"bench_models_{socket.gethostname()}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1, default=str)
    print(f"\n{cpu_model()}, {args.threads} threads; load average {load_before[0]:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after\n")
    print(markdown(rows))
    print(f"\nwrote {out} ({result['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
