"""Helpers of the stream tests: engines (edgevision.load, and a plain ONNX Runtime session behind the same
interface as an independent reference), a numpy engine with a chosen delay, scripted sources, RSS."""
from __future__ import annotations

import os
import threading
import time
from collections import namedtuple
from pathlib import Path

import numpy as np

import edgevision
from edgevision.model_files import read_metadata, resolve_model
from edgevision.stream.sources import Disconnected, EndOfStream, Reader, Source

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
if not DATA.is_dir():  # a git worktree one level deeper than the clone
    DATA = Path("/work/shared/data")
VTEST = DATA / "video" / "vtest.avi"
SAMPLE_CLIP = Path(edgevision.__file__).resolve().parent / "bundled" / "sample_clip.mp4"

Spec = namedtuple("Spec", "name shape dtype")


class OrtEngine:
    """The Engine interface over a plain onnxruntime.InferenceSession: the reference the SDK's engines are
    checked against."""

    def __init__(self, model, threads: int = 1):
        import onnxruntime as ort

        path = str(resolve_model(model))
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads sleep, not spin
        self.session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.metadata = read_metadata(path)
        self.input_spec = [Spec(i.name, tuple(d if isinstance(d, int) else 1 for d in i.shape), "float32")
                           for i in self.session.get_inputs()]
        self.device = "cpu"
        self.calls = 0

    def run(self, inputs):
        if isinstance(inputs, dict):
            inputs = [inputs[s.name] for s in self.input_spec]
        if not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        self.calls += 1
        return self.session.run(None, {s.name: np.ascontiguousarray(x) for s, x in zip(self.input_spec, inputs)})

    def close(self):
        pass


def engine(model, backend: str = "onnxruntime", **options):
    """The SDK's CPU engine for `model`."""
    return edgevision.load(model, backend=backend, device="cpu", **options)


class FakeEngine:
    """A classifier engine in numpy: logits = per-channel means of the input (so the output depends on
    the frame), after sleeping `delay` seconds (a slow model). Records the largest batch it saw."""

    def __init__(self, size=(8, 8), classes=4, delay=0.0):
        self.metadata = {"task": "classify", "labels": [f"c{i}" for i in range(classes)], "input_size": list(size),
                         "color": "rgb", "mean": [0.5] * 3, "std": [0.25] * 3, "pixel_scale": 1 / 255}
        self.input_spec = [Spec("input", (1, 3) + tuple(size), "float32")]
        self.device = "cpu"
        self.classes, self.delay = classes, delay
        self.max_batch = self.calls = 0

    def run(self, x):
        if self.delay:
            time.sleep(self.delay)
        self.max_batch = max(self.max_batch, len(x))
        self.calls += 1
        m = x.mean(axis=(2, 3))
        return [np.concatenate([m, np.zeros((len(x), self.classes - 3), np.float32)], 1)]

    def close(self):
        pass


class ScriptedReader(Reader):
    """Frames from a script: after `frames` frames, `then` happens: 'end', 'disconnect' or 'stall'
    (read blocks until `release` is set, as a dead camera driver would)."""

    def __init__(self, frames, then, release: threading.Event, size=(16, 16)):
        self.frames, self.then, self.release, self.size, self.n = frames, then, release, size, 0
        self.fps = 0.0
        self.closed = False

    def read(self):
        if self.n < self.frames:
            self.n += 1
            time.sleep(0.002)
            return np.full(self.size + (3,), self.n % 255, np.uint8), None
        if self.then == "stall":
            self.release.wait(30)
            raise Disconnected("released")
        if self.then == "disconnect":
            raise Disconnected("scripted drop")
        raise EndOfStream("scripted")

    def close(self):
        self.closed = True


class ScriptedSource(Source):
    """A live source whose successive connections follow `plan`, a list of (frames, then); the last entry
    repeats. Records every reader it opened."""

    def __init__(self, plan, timeout=0.3, live=True):
        super().__init__("scripted://", "test", "scripted", live, {"timeout": timeout})
        self.plan, self.readers, self.release = list(plan), [], threading.Event()

    def open(self):
        frames, then = self.plan[min(len(self.readers), len(self.plan) - 1)]
        reader = ScriptedReader(frames, then, self.release)
        self.readers.append(reader)
        return reader


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
