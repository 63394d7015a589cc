"""edgevision.profile on real engines (a tiny ONNX model made here, and the bundled cifar10-seed): model latency
side by side with a batch sweep and skipped contenders, the native per-layer profile and its Engine API, the
stream profile from the pipeline's own stage times, and the CUDA-event timer's phase bookkeeping on a fake torch
(CUDA itself is tested only where a GPU is). Small iteration counts; nothing is asserted about time."""
import importlib.util
import sys
import types

import numpy as np
import pytest

import edgevision
from edgevision.graph.program import step_flops
from edgevision.profile.latency import CudaEventTimer, HostTimer, make_timer, profile_model
from edgevision.profile.layers import profile_layers, summarize_layers
from edgevision.profile.pipeline import profile_stream

from profile_util import HAS_ORT, tiny  # noqa: F401 - fixture


def test_profile_model_side_by_side_with_batch_sweep(tiny):
    backends = ["native", "tensorrt"] + (["onnxruntime"] if HAS_ORT else [])
    result = profile_model(tiny, backends=backends, precisions="fp32,fp16", device="cpu", batches=[1, 2],
                           warmup=1, iterations=4, threads=1)
    rows = {(r["backend"], r["precision"], r["device"], r["batch"]): r for r in result["rows"]}
    for batch in (1, 2):
        ok = rows[("native", "fp32", "cpu", batch)]
        assert ok["status"] == "ok" and ok["model"] == "tiny" and ok["device_timing"] is None
        host = ok["stats"]["host"]
        assert host["runs"] == 4 and host["batch"] == batch and host["min_ms"] <= host["median_ms"] <= host["max_ms"]
        assert len(ok["samples"]["host_ms"]) == len(ok["samples"]["t_s"]) == 4 and set(ok["stats"]) == {"host"}
        # fp16 on a CPU and TensorRT without a GPU are skipped with the reason, never fatal.
        assert "fp16 only on CUDA" in rows[("native", "fp16", "cpu", batch)]["reason"]
        assert rows[("tensorrt", "fp32", "cpu", batch)]["reason"] == "TensorRT runs on CUDA GPUs only"
        if HAS_ORT:
            assert rows[("onnxruntime", "fp32", "cpu", batch)]["status"] == "ok"
            assert rows[("onnxruntime", "fp16", "cpu", batch)]["status"] == "skipped"


def test_profile_model_rejects_bad_settings(tiny):
    with pytest.raises(ValueError, match=r"backends: unknown \['tvm'\]"):
        profile_model(tiny, backends="native,tvm")
    with pytest.raises(ValueError, match="device must be"):
        profile_model(tiny, device="gpu")
    with pytest.raises(ValueError, match="batches must be positive"):
        profile_model(tiny, batches=[0])


def test_engine_profile_layers_records(tiny):
    with edgevision.load(tiny, backend="native", device="cpu", batch=2) as engine:
        x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
        expected = engine.run(x)[0]
        records = engine.profile_layers(x, runs=3)
        program = engine._programs.first()
        steps = program.spec["steps"]
        assert [r["op"] for r in records] == [s["op"] for s in steps] and [r["index"] for r in records] == list(
            range(len(steps)))
        conv = records[0]
        assert conv["op"] == "conv2d" and conv["epilogue"] == "relu" and conv["outputs"] == [[2, 4, 8, 8]]
        assert [r["flops"] for r in records] == [step_flops(s, program.spec["values"]) for s in steps]
        assert conv["flops"] == 2 * 2 * 4 * 8 * 8 * 3 * 3 * 3
        assert all(0 <= r["min_seconds"] <= r["seconds"] for r in records)
        assert not program.plan.profiling  # switched off again: later runs are unprofiled
        np.testing.assert_array_equal(engine.run(x)[0], expected)
        with pytest.raises(ValueError, match="runs must be a positive int"):
            engine.profile_layers(x, runs=0)
        with pytest.raises(ValueError, match="expected shape"):
            engine.profile_layers(np.zeros((2, 3, 9, 9), np.float32))


def test_profile_layers_section(tiny):
    sec = profile_layers(tiny, runs=2, threads=1)
    assert (sec["backend"], sec["device"], sec["batch"], sec["runs"]) == ("native", "cpu", 1, 2)
    assert sum(s["share"] for s in sec["steps"]) == pytest.approx(1.0)
    assert sec["total_ms"] == pytest.approx(sum(s["ms"] for s in sec["steps"]))
    assert sum(g["count"] for g in sec["by_op"]) == len(sec["steps"])


def test_summarize_layers_on_known_records():
    records = [{"index": 0, "op": "conv2d", "name": "c", "outputs": [[1]], "epilogue": "relu", "flops": 4e9,
                "seconds": 0.002, "min_seconds": 0.002},
               {"index": 1, "op": "copy", "name": "o", "outputs": [[1]], "epilogue": "", "flops": 0.0,
                "seconds": 0.0, "min_seconds": 0.0},
               {"index": 2, "op": "conv2d", "name": "d", "outputs": [[1]], "epilogue": "", "flops": 2e9,
                "seconds": 0.006, "min_seconds": 0.005}]
    sec = summarize_layers(records, device="cpu")
    assert sec["total_ms"] == pytest.approx(8.0) and sec["gflop"] == pytest.approx(6.0)
    assert [s["share"] for s in sec["steps"]] == pytest.approx([0.25, 0.0, 0.75])
    assert sec["steps"][0]["gflops_per_s"] == pytest.approx(2000.0) and sec["steps"][1]["gflops_per_s"] is None
    assert sec["by_op"][0] == {"op": "conv2d", "count": 2, "ms": pytest.approx(8.0), "share": pytest.approx(1.0),
                               "gflop": pytest.approx(6.0), "gflops_per_s": pytest.approx(750.0)}


def test_profile_stream_reports_the_pipelines_stage_times():
    sec = profile_stream("cifar10-seed", "test://moving?width=64&height=48&fps=200&frames=12", frames=None,
                         backend="native", device="cpu", policy="lossless")
    # lossless: the fast synthetic source waits for the model, so every frame is processed and kept
    assert sec["counters"]["processed"] == len(sec["frames"]) == 12 and sec["backend"] == "native"
    assert sec["policy"] == "lossless" and sec["counters"]["dropped"] == 0
    assert sec["warmup_results"] == 2
    assert set(sec["stages"]) == {"wait", "preprocess", "infer", "postprocess", "render", "capture_to_result",
                                  "overhead"}
    assert sec["stages"]["infer"]["runs"] == 10
    for f in sec["frames"]:
        assert f["capture_to_result"] >= f["infer"] >= 0
    limited = profile_stream("cifar10-seed", "test://moving?width=64&height=48&fps=200&frames=50", frames=2,
                             backend="native", device="cpu", policy="lossless")
    assert len(limited["frames"]) == 2 and "note" in limited and limited["stages"] == {}
    with pytest.raises(ValueError, match="frames must be"):
        profile_stream("cifar10-seed", frames=0)


# ------------------------------------------------------------------------------------------------
# Timers: which one an engine gets, and the CUDA-event arithmetic on a fake torch
# ------------------------------------------------------------------------------------------------
class _FakeEngine(edgevision.Engine):
    backend = "fake"

    def __init__(self, device):  # no model behind it: only what the timers touch
        self.device, self.ran = device, 0

    def run(self, inputs):
        self.ran += 1
        return [np.zeros(1)]


class _FakeAsyncEngine(_FakeEngine):
    def run_async(self, inputs, stream=None):
        stream.gpu_ms += 5.0  # the "kernel" takes 5 ms of device time
        return [_FakeTensor((2, 3), "float16", stream)]

    _run_async = run_async


class _FakeTensor:
    def __init__(self, shape, dtype, stream=None):
        self.shape, self.dtype, self.stream = tuple(shape), dtype, stream

    def pin_memory(self):
        return self

    def copy_(self, other, non_blocking=False):
        _FakeTorch.current.gpu_ms += 1.0  # each copy: 1 ms on the stream


class _FakeEvent:
    def __init__(self, enable_timing=False):
        self.at = None

    def record(self, stream):
        self.at = stream.gpu_ms

    def synchronize(self):
        pass

    def elapsed_time(self, end):
        return end.at - self.at


class _FakeStream:
    def __init__(self, device=None):
        self.gpu_ms = 0.0
        self.cuda_stream = 1234

    def synchronize(self):
        pass


class _FakeTorch(types.ModuleType):
    current = None

    def __init__(self):
        super().__init__("torch")
        outer = self

        class _Ctx:
            def __init__(self, s):
                self.s = s

            def __enter__(self):
                _FakeTorch.current = self.s

            def __exit__(self, *exc):
                return False

        def new_stream(device=None):
            s = _FakeStream(device)
            _FakeTorch.current = s
            return s

        self.cuda = types.SimpleNamespace(Stream=new_stream, Event=_FakeEvent, stream=_Ctx,
                                          synchronize=lambda: None)
        self.device = lambda d: d
        self.from_numpy = lambda a: _FakeTensor(a.shape, a.dtype.name)
        self.empty = lambda shape, dtype=None, device=None, pin_memory=False: _FakeTensor(shape, dtype)
        outer.made = True


def test_cuda_event_timer_separates_copies_from_compute(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", _FakeTorch())
    engine = _FakeAsyncEngine("cuda:0")
    inputs = [np.zeros((2, 3, 8, 8), np.float16), np.zeros((2, 4), np.float16)]
    timer = CudaEventTimer(engine, inputs)
    assert timer.host_out[0].shape == (2, 3) and timer.host_out[0].dtype == "float16"
    phases = timer()
    # two inputs copied (2 x 1 ms), the engine's 5 ms, one output copied back (1 ms)
    assert (phases["h2d"], phases["compute"], phases["d2h"]) == pytest.approx((0.002, 0.005, 0.001))
    assert 0 <= phases["enqueue"] <= phases["host"]
    assert timer.device_timing == "cuda-events"


def test_make_timer_picks_by_engine():
    cpu = _FakeEngine("cpu")
    timer, note = make_timer(cpu, [np.zeros(1)])
    assert isinstance(timer, HostTimer) and note is None and set(timer()) == {"host"} and cpu.ran == 1
    if importlib.util.find_spec("torch") is not None:
        timer, note = make_timer(_FakeEngine("cuda:0"), [np.zeros(1)])
        assert isinstance(timer, HostTimer) and "no run_async" in note and timer.sync is not None
