"""Pipeline latency: a whole stream, source to sink, profiled from the stream pipeline's own per-stage timestamps
(edgevision.stream StageTimes: wait in the slot, preprocess, infer, postprocess, render, capture-to-result, and the
overhead the pipeline adds to the model). Nothing is re-measured here: the profile drives a Pipeline, keeps each
result's StageTimes and summarises them with the same statistics as the model latency."""
from __future__ import annotations

from pathlib import Path

from .stats import summarize_ms

SAMPLE_CLIP = Path(__file__).resolve().parent.parent / "bundled" / "sample_clip.mp4"
# StageTimes attribute -> the stage's name in the report
STAGES = {"age_ms": "wait", "preprocess_ms": "preprocess", "infer_ms": "infer", "postprocess_ms": "postprocess",
          "render_ms": "render", "e2e_ms": "capture_to_result", "overhead_ms": "overhead"}


def profile_stream(model, source=None, *, frames: int | None = 150, backend: str = "auto", device: str = "auto",
                   precision: str = "fp32", policy: str = "latest", realtime: bool = True,
                   threads: int | None = None, origin: float | None = None, log=None) -> dict:
    """Run `model` on `source` (default: the bundled sample clip, paced at its frame rate like a camera) for
    `frames` results (None: until the source ends), through the model's task and a Pipeline with no sink.

    Returns the section the report keeps under "stream": what ran, the pipeline's counters (captured, processed,
    dropped, fps), statistics per stage over the results after the pipeline's warm-up, and per frame the
    capture time (t_s, on the profile's clock when `origin` is given) and stage times. threads: the engine's CPU
    threads (default: the backend's own)."""
    import time

    from ..stream import stream

    if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int) or frames < 1):
        raise ValueError(f"frames must be a positive int or None, got {frames!r}")
    log = log or (lambda msg: None)
    if source is None:
        if not SAMPLE_CLIP.is_file():
            raise FileNotFoundError(f"the bundled sample clip is missing ({SAMPLE_CLIP}); give a source")
        source = str(SAMPLE_CLIP)
    options = {"realtime": realtime} if _is_file(source) else {}
    origin = time.perf_counter() if origin is None else origin
    # threads: the engine's CPU threads, as the model rows had them (TensorRT takes none)
    task_options = {"threads": threads} if threads is not None and backend != "tensorrt" else None
    pipeline = stream(source, model, backend=backend, device=device, precision=precision, policy=policy,
                      task_options=task_options, **options)
    log(f"stream: {pipeline.task.describe()} on {', '.join(str(s) for s in pipeline.sources)}")
    per_frame = []
    with pipeline:
        for result in pipeline:
            t = result.timings
            per_frame.append({"t_s": round(t.t_capture - origin, 6), "source": result.source_id, "seq": result.seq,
                              **{name: round(getattr(t, attr), 4) for attr, name in STAGES.items()}})
            if frames is not None and len(per_frame) >= frames:
                break
    counters = pipeline.stats.as_dict()
    counters.pop("latency_ms", None)  # the stage statistics below replace these percentiles
    warmup = pipeline.stats.latency.warmup
    timed = per_frame[warmup:]
    engine = getattr(pipeline.task, "engine", None)
    out = {"source": str(source), "task": pipeline.task.describe(), "policy": policy,
           "backend": getattr(engine, "backend", backend), "device": getattr(engine, "device", device),
           "precision": precision, "warmup_results": min(warmup, len(per_frame)), "counters": counters,
           "stages": {}, "frames": per_frame}
    if timed:
        out["stages"] = {name: summarize_ms([f[name] for f in timed]) for name in STAGES.values()}
    else:
        out["note"] = f"only {len(per_frame)} results, all inside the pipeline's warm-up: no statistics"
    return out


def _is_file(source) -> bool:
    return isinstance(source, (str, Path)) and Path(str(source)).is_file()
