"""The camera demo behind `edgevision demo` and tools/camera_demo.py: a source (default: the bundled sample
clip), a task, a window when a display exists (or headless), optional video / JSON-lines / image outputs,
and a latency summary at exit, Ctrl-C included."""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

SAMPLE_CLIP = Path(__file__).resolve().parent.parent / "bundled" / "sample_clip.mp4"
DEFAULT_MODELS = {"classify": "imagenet-efficientnet-lite0", "enhance": "espcn-x2", "generate": "cifar10-dcgan"}
DEFAULT_HEADLESS_OUTPUT = "edgevision-demo.mp4"  # the labelled sample clip, when there is no window to show it in


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", default=None,
                   help="camera index (0), /dev/videoN, video file, image folder/glob, rtsp:// / http:// URL, "
                        "GStreamer pipeline, csi://N or test://moving (default: the bundled sample clip)")
    p.add_argument("--task", choices=("classify", "enhance", "generate"), default=None,
                   help="default: the model's task (classify for the default model)")
    p.add_argument("--model", default=None, help="bundled model name or ONNX file (default per task: "
                   + ", ".join(f"{k} {v}" for k, v in DEFAULT_MODELS.items()) + ")")
    p.add_argument("--classifier", default=None, help="generate task: the classifier that picks the class "
                   "(default: the bundled cifar10-fastnet, else cifar10-seed)")
    p.add_argument("--backend", default="auto", help="auto, native, onnxruntime, torch, tensorrt")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"))
    p.add_argument("--output", "-o", default=None, help="write the rendered view to a video file (.mp4, .avi)")
    p.add_argument("--json", default=None, metavar="PATH", help="write one JSON line per result (- for stdout)")
    p.add_argument("--images", default=None, metavar="DIR", help="write every rendered view as an image")
    p.add_argument("--headless", action="store_true", help="no window (automatic when no display is available)")
    p.add_argument("--policy", choices=("latest", "queue", "lossless"), default="latest",
                   help="latest frame wins (default), a bounded queue, or every frame")
    p.add_argument("--loop", action="store_true", help="restart a file source at its end")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many results")
    p.add_argument("--width", type=int, default=None, help="requested camera width")
    p.add_argument("--height", type=int, default=None, help="requested camera height")
    p.add_argument("--fps", type=float, default=None, help="requested camera frame rate")
    p.add_argument("--fourcc", default=None, help="requested camera pixel format, e.g. MJPG")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--smoothing", type=float, default=0.5,
                   help="classify/generate: EMA factor of the class probabilities over frames, 0 (off) .. <1")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds without a frame before reconnecting")
    p.add_argument("--summary-json", default=None, metavar="PATH", help="write the exit summary as JSON too")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the summary")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run(args) -> int:
    import edgevision
    from . import _task_of
    from . import sinks as S

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    source = args.source
    if source is None:
        if not SAMPLE_CLIP.is_file():
            print(f"the bundled sample clip is missing ({SAMPLE_CLIP}); give --source", file=sys.stderr)
            return 2
        source = str(SAMPLE_CLIP)
    task = args.task
    model = args.model or DEFAULT_MODELS.get(task or "classify")
    headless = args.headless or not S.display_available()
    if headless and args.source is None and not (args.output or args.images or args.json):
        # With nothing to show the sample clip on, write the labelled clip so the demo still has a visible result
        # (only for the bounded sample clip: a live camera would grow a file without end).
        args.output = DEFAULT_HEADLESS_OUTPUT
    outputs = []
    if args.output:
        outputs.append(S.BackgroundSink(S.VideoSink(args.output)))
    if args.images:
        outputs.append(S.BackgroundSink(S.ImageSequenceSink(args.images)))
    if args.json:
        outputs.append(S.JsonLinesSink(args.json))
    if not headless:
        outputs.append(S.WindowSink("edgevision demo"))
    task_options = {}
    try:
        name = task or _task_of(model)
        if name == "classify":
            task_options = {"top_k": args.top_k, "smoothing": args.smoothing}
        elif name == "generate":
            task_options = {"classifier": args.classifier, "smoothing": args.smoothing}
        pipeline = edgevision.stream(source, model, task=name, sinks=outputs, policy=args.policy,
                                     backend=args.backend, device=args.device, precision=args.precision,
                                     task_options=task_options, loop=args.loop, width=args.width, height=args.height,
                                     fps=args.fps, fourcc=args.fourcc, timeout=args.timeout)
    except (FileNotFoundError, ValueError, TypeError, RuntimeError, ImportError) as e:
        for sink in outputs:
            sink.close()
        print(f"edgevision demo: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        where = "headless" if headless else "window (q or Esc quits)"
        print(f"edgevision demo: {pipeline.task.describe()} on {', '.join(str(s) for s in pipeline.sources)}, "
              f"{where}; Ctrl-C stops", flush=True)
    # SIGTERM (e.g. from a service manager) stops as cleanly as Ctrl-C.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    interrupted = False
    last_label = None
    try:
        for i, result in enumerate(pipeline, 1):
            label = getattr(result.output, "label", None)
            if not args.quiet and label is not None and label != last_label:
                name = result.source_id if "://" in result.source_id else Path(result.source_id).name
                print(f"[{name} #{result.seq}] {label} ({result.output.score:.0%})", flush=True)
                last_label = label
            if args.max_frames is not None and i >= args.max_frames:
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        pipeline.close()
        signal.signal(signal.SIGTERM, previous)
    print(("stopped by signal; " if interrupted else "") + "summary:")
    print(pipeline.stats.summary(), flush=True)
    if args.output:
        print(f"video written to {args.output}")
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(pipeline.stats.as_dict(), indent=2))
    errors = [c.error for c in pipeline.stats.sources.values() if c.error]
    if errors:
        print("source errors: " + "; ".join(errors), file=sys.stderr)
    return 130 if interrupted else (1 if errors and not pipeline.stats.total("processed") else 0)


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="camera demo: classify / enhance / generate on a live or recorded stream",
                       description="Runs with no arguments on the bundled EfficientNet-Lite0 and the bundled "
                                   "sample clip; prints a latency summary at exit.")
    add_arguments(p)
    p.set_defaults(fn=run)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="camera_demo", description="edgevision camera demo")
    add_arguments(parser)
    return run(parser.parse_args(argv))
