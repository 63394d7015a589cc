"""Real-time camera streams: sources, the latest-frame-wins pipeline, tasks, overlay and sinks.

    import edgevision
    for r in edgevision.stream(0, model="imagenet-efficientnet-lite0"):
        print(r.output.label, r.output.score, r.timings.e2e_ms)

    s = edgevision.stream("rtsp://cam/live", on_result=print)   # background thread, returns at once
    ...; latest = s.latest(); ...; s.stop()

The package object itself is callable (edgevision.stream(...) is stream() below), so the function and
the subpackage share one name.
"""
from __future__ import annotations

import sys
import types

from .pipeline import POLICIES, Pipeline, SourceCounters, StageTimes, StreamResult, StreamStats
from .sinks import BackgroundSink, ImageSequenceSink, JsonLinesSink, Sink, VideoSink, WindowSink, display_available
from .sources import (DecodeError, Disconnected, EndOfStream, Frame, Source, SourceError, csi_pipeline,
                      open_source)
from .tasks import (TASKS, Classification, ClassifyTask, Enhancement, EnhanceTask, GenerateTask, Generation, Task,
                    make_task)

_SOURCE_OPTIONS = ("source_id", "width", "height", "fps", "fourcc", "loop", "realtime", "timeout")


def stream(source, model=None, *, task: str | None = None, sinks=(), policy: str = "latest",
           on_result=None, backend: str = "auto", device: str = "auto", precision: str = "fp32",
           render: bool = False, max_batch: int | None = None, queue_size: int = 4, max_reconnects=None,
           preprocess_threads: int | None = 1, task_options: dict | None = None, **source_options) -> Pipeline:
    """A Pipeline over `source` (one spec or a list: several streams are batched into one inference).

    model: a bundled model's name, an ONNX path or a loaded Engine; default: the bundled ImageNet
    classifier. task: classify | enhance | generate (default: the model's metadata). on_result: run in a
    background thread and call on_result(result) per result (returns the started pipeline); without it,
    iterate the returned pipeline. Source options: width, height, fps, fourcc (cameras), loop (files),
    realtime (pace files at their frame rate), timeout (s, stall/reconnect), source_id. task_options go to
    the task (top_k, smoothing, classifier=, samples=, input_size=, ...).
    """
    unknown = set(source_options) - set(_SOURCE_OPTIONS)
    if unknown:
        raise TypeError(f"stream() got unexpected options {sorted(unknown)}; source options are {_SOURCE_OPTIONS}")
    sources = source if isinstance(source, (list, tuple)) else [source]
    opened = [s if isinstance(s, Source) else open_source(s, **source_options) for s in sources]
    options = dict(task_options or {})
    name = task or _task_of(model)
    if name in ("classify", "generate"):
        options.setdefault("max_batch", max_batch or len(opened))
    task_obj = make_task(name, model, backend=backend, device=device, precision=precision, **options)
    pipeline = Pipeline(opened, task_obj, sinks, policy=policy, queue_size=queue_size, max_batch=max_batch,
                        render=render, max_reconnects=max_reconnects, preprocess_threads=preprocess_threads)
    if on_result is not None:
        pipeline.start(on_result)
    return pipeline


def _task_of(model) -> str:
    if model is None:
        return "classify"
    if hasattr(model, "metadata"):
        return model.metadata.get("task", "classify")
    from ..model_files import read_metadata

    return read_metadata(model).get("task", "classify")


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs) -> Pipeline:
        return stream(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["stream", "Pipeline", "StreamResult", "StreamStats", "StageTimes", "SourceCounters", "POLICIES",
           "Source", "Frame", "open_source", "csi_pipeline", "SourceError", "EndOfStream", "DecodeError",
           "Disconnected", "Task", "ClassifyTask", "EnhanceTask", "GenerateTask", "make_task", "TASKS",
           "Classification", "Enhancement", "Generation", "Sink", "BackgroundSink", "WindowSink", "VideoSink", "ImageSequenceSink",
           "JsonLinesSink", "display_available"]
