"""Arguments and actions of `edgevision build ...` (a TensorRT engine into the cache) and `edgevision run ...`
(classify images, or run random input, printing top-5 or output shapes and latency).

Kept free of torch and of the backends' packages at import, so that `edgevision --help` stays fast; each
action imports what it runs.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np


def _input_shape(text: str) -> tuple[str, list[int]]:
    try:
        name, dims = text.split("=", 1)
        return name, [int(d) for d in dims.replace("x", ",").split(",")]
    except ValueError:
        raise ValueError(f"--input-shape takes NAME=D0,D1,... (e.g. input=1,1,256,256), got {text!r}") from None


def _shapes(args) -> dict | None:
    return dict(_input_shape(t) for t in args.input_shape) if args.input_shape else None


def build_arguments(p) -> None:
    """The options of `edgevision build` (also tools/build_engine.py)."""
    p.add_argument("model", help="ONNX file or bundled model name")
    p.add_argument("--precision", default="fp16", choices=["fp32", "fp16", "int8"])
    p.add_argument("--batch", type=int, default=1, help="batch size the engine is optimised for")
    p.add_argument("--max-batch", type=int, default=None, help="largest batch the engine accepts (default --batch)")
    p.add_argument("--calib", default=None, help="int8: folder of calibration images (the model's preprocessing applies)")
    p.add_argument("--calib-images", type=int, default=64, help="int8: calibration images used at most")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,..",
                   help="fixes a dynamic input dim other than the batch (repeatable)")
    p.add_argument("--workspace", type=int, default=None, help="TensorRT builder workspace in bytes")
    p.add_argument("--device", default="cuda", help="cuda or cuda:N")


def run_build(args) -> int:
    import logging

    from .tensorrt import build

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = build(args.model, precision=args.precision, batch=args.batch, max_batch=args.max_batch, calib=args.calib,
                   input_shapes=_shapes(args), device=args.device, workspace=args.workspace)
    print(report.pop("summary"), file=sys.stderr)
    print(json.dumps(report))
    return 0


def add_build_parser(sub) -> None:
    p = sub.add_parser("build", help="build a TensorRT engine into the engine cache (needs pip install edgevision[tensorrt])")
    build_arguments(p)
    p.set_defaults(fn=run_build)


def add_run_parser(sub) -> None:
    p = sub.add_parser("run", help="run a model on images (top-5 / output shapes) or on random input, with latency")
    p.add_argument("model", help="ONNX file or bundled model name")
    p.add_argument("images", nargs="*", help="image files (classify, enhance models); none: random input")
    p.add_argument("--backend", default="auto", choices=["auto", "native", "tensorrt", "onnxruntime", "torch"])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"])
    p.add_argument("--batch", type=int, default=None, help="random input: batch size")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,..",
                   help="fixes a dynamic input dim other than the batch (repeatable)")
    p.add_argument("--calib", default=None, help="int8: folder of calibration images")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (native, onnxruntime, torch)")
    p.add_argument("--runs", type=int, default=20, help="timed runs per input after 2 warm-up runs")
    p.add_argument("--top", type=int, default=5, help="classes printed per image")
    p.add_argument("--json", action="store_true", help="one JSON object per input instead of text")
    p.set_defaults(fn=run_run)


def _latency(engine, inputs, runs: int) -> dict:
    for _ in range(2):
        engine.run(inputs)
    times = []
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        engine.run(inputs)
        times.append(time.perf_counter() - t0)
    from ..profile.stats import summarize  # the profiler's statistics: one meaning of p90 across the SDK

    return {k: v for k, v in summarize(times).items() if k in ("median_ms", "p90_ms", "p99_ms", "min_ms", "runs")}


def _random_inputs(engine) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for s in engine.input_spec:
        if s.name == "class_onehot":  # generators: a valid one-hot class
            x = np.zeros(s.shape, s.dtype)
            x[:, 0] = 1
        else:
            x = rng.standard_normal(s.shape).astype(s.dtype)
        out.append(x)
    return out


def run_run(args) -> int:
    import edgevision

    options = {k: v for k, v in (("input_shapes", _shapes(args)), ("threads", args.threads), ("calib", args.calib))
               if v is not None}
    engine = edgevision.load(args.model, backend=args.backend, device=args.device, precision=args.precision,
                             batch=args.batch, **options)
    print(engine.summary().splitlines()[0], file=sys.stderr)
    labels = engine.metadata.get("labels")
    if not args.images:
        inputs = _random_inputs(engine)
        outputs = engine.run(inputs)
        row = {"input": "random", "outputs": {s.name: list(y.shape) for s, y in zip(engine.output_spec, outputs)},
               "latency": _latency(engine, inputs, args.runs)}
        print(json.dumps(row) if args.json else
              f"random input: outputs {row['outputs']}; latency median {row['latency']['median_ms']:.3f} ms, "
              f"p90 {row['latency']['p90_ms']:.3f} ms")
        return 0
    import cv2

    for path in args.images:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            print(f"{path}: not a readable image", file=sys.stderr)
            return 1
        x = engine.preprocess(image)
        (y,) = engine.run(x)[:1]
        row = {"image": path, "latency": _latency(engine, x, args.runs)}
        if engine.metadata.get("task", "classify") == "classify":
            logits = np.asarray(y[0], np.float64)
            p = np.exp(logits - logits.max())
            p /= p.sum()
            top = np.argsort(-p)[:args.top]
            row["top"] = [{"class": int(i), "label": labels[i] if labels and i < len(labels) else str(i),
                           "p": float(p[i])} for i in top]
        else:
            row["output_shape"] = list(y.shape)
        if args.json:
            print(json.dumps(row))
            continue
        lat = row["latency"]
        print(f"{path}: {lat['median_ms']:.3f} ms median, {lat['p90_ms']:.3f} ms p90")
        for t in row.get("top", []):
            print(f"  {t['p']:6.3f}  {t['label']}")
        if "output_shape" in row:
            print(f"  output {row['output_shape']}")
    return 0
