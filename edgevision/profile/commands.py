"""`edgevision profile` (and tools/profile_latency.py): model latency side by side, the native backend per layer,
optionally a whole stream, with telemetry; prints the tables and writes JSON, CSV and PNG plots into --out.

    edgevision profile cifar10-seed --backends native,onnxruntime,torch
    edgevision profile model.onnx --precisions fp32,fp16 --batch 1,8 --duration 10 --stream
    edgevision profile --compare before/profile.json after/profile.json

Kept free of torch and the backends' packages at import (edgevision --help stays fast).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ALL_BACKENDS = "native,tensorrt,onnxruntime,torch"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", help="ONNX file or bundled model name (not needed with --compare)")
    g = p.add_argument_group("model latency")
    g.add_argument("--backends", default="all",
                   help=f"comma-separated backends, or all (default: {ALL_BACKENDS}; those not installed or "
                        f"without a device are listed as skipped)")
    g.add_argument("--precisions", default="fp32", help="comma-separated: fp32, fp16, int8 (default fp32)")
    g.add_argument("--device", default="auto",
                   help="auto (the CPU, plus the GPU when one is visible), cpu, cuda or cuda:N")
    g.add_argument("--batch", default="1", help="batch sizes, comma-separated (a batch sweep: 1,2,4,8)")
    g.add_argument("--warmup", type=int, default=10, help="untimed iterations per contender first (default 10)")
    g.add_argument("--iterations", type=int, default=100, help="timed iterations per contender, at least")
    g.add_argument("--duration", type=float, default=0.0,
                   help="seconds the timed phase lasts, at least (with --iterations: whichever is longer)")
    g.add_argument("--order", choices=("round-robin", "sequential"), default="round-robin",
                   help="round-robin: turns of --block iterations of each contender (default); sequential: each alone")
    g.add_argument("--block", type=int, default=10,
                   help="round-robin: iterations per turn, the first of each turn untimed (default 10)")
    g.add_argument("--threads", type=int, default=None,
                   help="CPU threads of every CPU backend (default: the number of logical cores)")
    g.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,..",
                   help="fixes a dynamic input dim other than the batch (repeatable)")
    g.add_argument("--calib", default=None, help="int8: folder of calibration images (tensorrt, onnxruntime)")
    g = p.add_argument_group("per layer and stream")
    g.add_argument("--no-layers", action="store_true", help="skip the native backend's per-layer profile")
    g.add_argument("--layer-runs", type=int, default=20, help="profiled runs per-layer times are the median of")
    g.add_argument("--stream", nargs="?", const="", default=None, metavar="SOURCE",
                   help="also profile a whole stream, source to result (default source: the bundled sample clip)")
    g.add_argument("--stream-frames", type=int, default=150, help="results the stream profile takes (default 150)")
    g.add_argument("--stream-policy", choices=("latest", "queue", "lossless"), default="latest",
                   help="frame policy of the stream profile (default latest: a slow model drops frames, as live)")
    g.add_argument("--stream-backend", default=None,
                   help="backend of the stream profile (default: native if listed, else the first listed)")
    g = p.add_argument_group("telemetry and output")
    g.add_argument("--no-telemetry", action="store_true", help="no CPU/GPU/Jetson telemetry sampling")
    g.add_argument("--interval", type=float, default=0.2, help="telemetry sampling interval in seconds")
    g.add_argument("--out", default=None,
                   help="folder for profile.json, latency.csv (layers.csv, stream.csv) and the plots "
                        "(default: profile-<model>)")
    g.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    g.add_argument("--plain", action="store_true", help="plain-text tables even when rich is installed")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress messages")
    p.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"), default=None,
                   help="print the ratios b / a of two reports' matching rows, and how their machines differ")


def run(args) -> int:
    from . import report as R

    try:
        if args.compare:
            a, b = (R.read_report(p) for p in args.compare)
            R.print_comparison(R.compare_reports(a, b), args.compare[0], args.compare[1],
                               use_rich=False if args.plain else None)
            return 0
        if not args.model:
            raise ValueError("give a MODEL (an ONNX file or a bundled model's name) or --compare A.json B.json")
        return _profile(args, R)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as e:
        print(f"edgevision profile: {e}", file=sys.stderr)
        return 2


def _input_shapes(items) -> dict | None:
    from ..backends.commands import _input_shape

    return dict(_input_shape(t) for t in items) if items else None


def _profile(args, R) -> int:
    from .latency import parse_list, profile_model
    from .telemetry import Telemetry

    log = (lambda msg: None) if args.quiet else (lambda msg: print(f"[profile] {msg}", file=sys.stderr, flush=True))
    backends = parse_list(ALL_BACKENDS if args.backends == "all" else args.backends, "--backends")
    batches = parse_list(args.batch, "--batch", convert=int)
    for name in ("layer_runs", "stream_frames", "iterations", "warmup"):
        v = getattr(args, name)
        if v < (0 if name in ("iterations", "warmup") else 1):
            raise ValueError(f"--{name.replace('_', '-')} must be {'>= 0' if name in ('iterations', 'warmup') else 'positive'}, got {v}")
    threads = args.threads if args.threads is not None else _cores()
    shapes = _input_shapes(args.input_shape)
    model = R.model_info(args.model)  # reads the model once: a wrong path fails here, before any timing
    out = Path(args.out or f"profile-{model['name']}")
    origin = time.perf_counter()
    telemetry = None if args.no_telemetry else Telemetry(args.interval, origin=origin).start()
    notes, layers, stream = [], [], None
    try:
        latency = profile_model(args.model, backends=backends, precisions=args.precisions, device=args.device,
                                batches=batches, warmup=args.warmup, iterations=args.iterations,
                                duration=args.duration, order=args.order, block=args.block, threads=threads,
                                input_shapes=shapes,
                                calib=args.calib, origin=origin, log=log)
        if "native" in backends and not args.no_layers:
            layers, layer_notes = _layers(args, latency["rows"], batches[0], threads, shapes, log)
            notes += layer_notes
        if args.stream is not None:
            from .pipeline import profile_stream

            backend = args.stream_backend or ("native" if "native" in backends else backends[0])
            log(f"stream profile on {backend}")
            try:
                stream = profile_stream(args.model, args.stream or None, frames=args.stream_frames, backend=backend,
                                        device=args.device, precision=parse_list(args.precisions, "--precisions")[0],
                                        policy=args.stream_policy, threads=threads, origin=origin, log=log)
            except Exception as e:  # noqa: BLE001 - the model rows are still worth writing
                notes.append(f"stream profile failed: {type(e).__name__}: {e}")
    finally:
        if telemetry is not None:
            telemetry.stop()
    if telemetry is not None:
        notes += _load_notes(telemetry.as_dict()["summary"], _cores())
    settings = {"backends": backends, "precisions": parse_list(args.precisions, "--precisions"),
                "device": args.device, "batches": batches, "warmup": args.warmup, "iterations": args.iterations,
                "duration_s": args.duration, "order": args.order, "block": args.block, "threads": threads, "input_shapes": shapes,
                "layer_runs": args.layer_runs, "telemetry_interval_s": None if telemetry is None else args.interval,
                "fp32_tf32": False}
    report = R.build_report(model=model, latency=latency, settings=settings, layers=layers, stream=stream,
                            telemetry=telemetry.as_dict() if telemetry else None, command=sys.argv, notes=notes)
    plots = not args.no_plots and R.plots_available()
    if not args.no_plots and not plots:
        report["notes"].append("matplotlib is not installed: no plots (pip install edgevision[profile])")
    files = [R.write_json(report, out / "profile.json"), *R.write_csv(report, out)]
    if plots:
        files += R.write_plots(report, out)
    R.print_report(report, use_rich=False if args.plain else None)
    print("wrote " + ", ".join(str(f) for f in files))
    return 0 if any(r["status"] == "ok" for r in report["latency"]) else 1


def _load_notes(summary: dict, cores: int) -> list[str]:
    """A warning when other processes competed for the CPU during the run: the load average (which counts
    this process's busy threads too) above the logical core count."""
    load = summary.get("load1")
    if load and load["max"] > cores:
        return [f"the 1-minute load average reached {load['max']:.1f} on {cores} logical cores: other processes "
                f"competed for the CPU, and multi-threaded CPU rows suffer most (a thread team waits for its "
                f"slowest thread); compare with --threads 1, or profile on an idle machine"]
    return []


def _cores() -> int:
    import os

    return os.cpu_count() or 1


def _layers(args, rows, batch, threads, shapes, log) -> tuple[list, list]:
    """Per-layer profiles of the native backend on each device it ran on (at the first batch size, in the first
    precision that device ran)."""
    from .layers import profile_layers

    done, sections, notes = set(), [], []
    for r in rows:
        if r["backend"] != "native" or r["status"] != "ok" or r["batch"] != batch or r["device"] in done:
            continue
        done.add(r["device"])
        log(f"per-layer profile: native {r['device']} {r['precision']}")
        try:
            sections.append(profile_layers(args.model, device=r["device"], precision=r["precision"], batch=batch,
                                           runs=args.layer_runs, threads=threads if r["device"] == "cpu" else None,
                                           input_shapes=shapes))
        except Exception as e:  # noqa: BLE001
            notes.append(f"per-layer profile on {r['device']} failed: {type(e).__name__}: {e}")
    if not done:
        notes.append("no per-layer profile: the native backend produced no timed row")
    return sections, notes


def add_parser(sub) -> None:
    p = sub.add_parser("profile", help="latency profile: backends side by side, per layer, stream; JSON/CSV/plots",
                       description="Times a model on several backends, precisions and batch sizes in one run, "
                                   "profiles the native backend per layer, optionally a whole stream, samples "
                                   "telemetry, and writes profile.json, CSV and PNG plots.")
    add_arguments(p)
    p.set_defaults(fn=run)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="profile_latency.py", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
