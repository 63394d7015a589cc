"""The pipeline's contract with a numpy engine: latest frame wins (no stale frame under a slow model),
lossless and queue policies, several sources batched, the background/callback style, reconnect after a
drop and after a stall, counters and sinks (the soak is in test_stream_soak.py)."""
import json
import threading
import time

import cv2
import numpy as np
import pytest
from stream_util import FakeEngine, ScriptedSource

import edgevision
from edgevision import ops
from edgevision.stream import (BackgroundSink, ClassifyTask, ImageSequenceSink, JsonLinesSink, Pipeline, SourceError, VideoSink)


def task(**kw):
    return ClassifyTask(FakeEngine(**kw), top_k=2)


def test_stream_is_callable_module():
    assert callable(edgevision.stream)
    p = edgevision.stream("test://bars?width=16&height=16&frames=3", model=FakeEngine(), policy="lossless")
    assert [r.output.label for r in p] and p.stats.total("processed") == 3
    with pytest.raises(TypeError, match="unexpected options"):
        edgevision.stream(0, model=FakeEngine(), colour=1)


def test_slow_consumer_never_sees_stale_frames():
    # 100 frames/s from the source, a 60 ms model: under latest-frame-wins each inference must take the
    # newest frame, so its age at inference start is at most one frame interval plus the model's time
    # (the bound the issue sets; in practice it is about one interval), and most frames are dropped.
    fps, delay = 100.0, 0.06
    p = Pipeline(f"test://moving?width=64&height=48&fps={fps:g}&frames=150", task(delay=delay))
    results = list(p)
    interval = 1 / fps
    ages = np.array([r.timings.age_ms for r in results[1:]]) / 1e3  # the first waits for nothing
    assert len(results) >= 5
    assert ages.max() <= interval + delay, f"stale frame: ages {np.round(ages * 1e3, 1)} ms"
    seqs = [r.seq for r in results]
    assert seqs == sorted(seqs) and np.diff(seqs).min() >= 1
    c = p.stats.sources[p.sources[0].id]
    assert c.dropped > 0 and c.captured == 150 and c.processed + c.dropped == c.captured
    # the frames skipped between two results are about what arrived during one inference
    assert np.median(np.diff(seqs)) >= 3


def test_lossless_keeps_every_frame_in_order():
    p = Pipeline("test://moving?width=32&height=24&fps=0&frames=200", task(delay=0.001), policy="lossless")
    assert [r.seq for r in p] == list(range(200))
    assert p.stats.total("dropped") == 0


def test_queue_policy_drops_oldest():
    p = Pipeline("test://moving?width=32&height=24&fps=400&frames=100", task(delay=0.01), policy="queue", queue_size=3)
    seqs = [r.seq for r in p]
    assert seqs == sorted(seqs) and seqs[-1] == 99
    assert p.stats.total("dropped") > 0 and len(seqs) + p.stats.total("dropped") == 100
    with pytest.raises(ValueError, match="policy"):
        Pipeline("test://bars", task(), policy="newest")
    with pytest.raises(ValueError, match="queue_size"):
        Pipeline("test://bars", task(), queue_size=0)


def test_several_sources_batched_into_one_inference():
    engine = FakeEngine(delay=0.02)
    sources = [f"test://{p}?width=40&height=30&fps=0&frames=30" for p in ("moving", "bars", "gradient")]
    p = Pipeline(sources, ClassifyTask(engine, max_batch=3), policy="lossless")
    results = list(p)
    by_source = {}
    for r in results:
        by_source.setdefault(r.source_id, []).append(r.seq)
    assert sorted(by_source) == sorted(s.id for s in p.sources)
    assert all(v == list(range(30)) for v in by_source.values())
    assert engine.max_batch == 3 and engine.calls == p.stats.batches < 90
    # each row of a batch is that frame's own preprocessing: identical to a batch of one
    one = ClassifyTask(FakeEngine(), max_batch=1)
    frame = results[-1].frame
    expect = one.batch.fill([frame.image])
    ref = ops.preprocess(frame.image, (8, 8), resize=one.batch.resize_for(frame.image.shape[:2]),
                         mean=(0.5,) * 3, std=(0.25,) * 3, scale=1 / 255)
    np.testing.assert_array_equal(expect, ref)


def test_crop_keeps_the_aspect_ratio():
    b = ClassifyTask(FakeEngine(size=(224, 224))).batch
    assert b.resize_for((720, 1280)) == (224, 398)
    assert b.resize_for((480, 360)) == (299, 224)


def test_background_start_latest_and_callback():
    seen = []
    p = Pipeline("test://moving?width=32&height=24&fps=200", task(delay=0.005))
    p.start(on_result=seen.append)
    deadline = time.monotonic() + 10
    while len(seen) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    latest = p.latest()
    assert latest is not None and latest.output.label.startswith("c")
    p.stop()
    assert p.wait(2)
    n = len(seen)
    time.sleep(0.1)
    assert len(seen) == n, "no results after stop()"
    assert all(not t.is_alive() for t in threading.enumerate() if t.name.startswith("edgevision-infer"))


def test_callback_error_stops_and_is_raised():
    def bad(result):
        raise RuntimeError("boom")
    p = Pipeline("test://moving?width=32&height=24&fps=0", task()).start(on_result=bad)
    with pytest.raises(RuntimeError, match="boom"):
        p.wait(5)


def test_reconnects_after_disconnect():
    src = ScriptedSource([(5, "disconnect"), (5, "disconnect"), (5, "end")])
    p = Pipeline(src, task(), policy="lossless", backoff=(0.01, 0.05))
    seqs = [r.seq for r in p]
    c = p.stats.sources["scripted"]
    assert seqs == list(range(15)) and c.reconnects == 2 and c.stalls == 0
    assert all(r.closed for r in src.readers)


def test_stall_is_abandoned_and_reconnected():
    # The second connection blocks in read() forever (as a dead driver can): the watchdog must abandon it
    # after the timeout and open a third one; the blocked reader is closed once its read returns.
    src = ScriptedSource([(5, "disconnect"), (3, "stall"), (4, "end")], timeout=0.2)
    p = Pipeline(src, task(), policy="lossless", backoff=(0.01, 0.05))
    seqs = [r.seq for r in p]
    c = p.stats.sources["scripted"]
    assert seqs == list(range(12)) and c.stalls == 1 and c.reconnects == 2
    src.release.set()
    time.sleep(0.1)
    assert src.readers[1].closed


def test_gives_up_after_max_reconnects():
    src = ScriptedSource([(2, "disconnect"), (0, "disconnect")])
    p = Pipeline(src, task(), backoff=(0.01, 0.02), max_reconnects=3)
    assert len(list(p)) == 2
    c = p.stats.sources["scripted"]
    assert c.reconnects == 3 and "gave up" in c.error


def test_first_open_failure_raises():
    src = ScriptedSource([(0, "disconnect")])
    src.open = lambda: (_ for _ in ()).throw(SourceError("camera unplugged"))
    with pytest.raises(SourceError, match="unplugged"):
        list(Pipeline(src, task()))


def test_unpaced_files_are_never_dropped_from():
    # read faster than the model, but on no clock: latest-wins would only throw frames away
    p = Pipeline("test://moving?width=32&height=24&frames=60", task(delay=0.003), realtime=False)
    assert [r.seq for r in p] == list(range(60)) and p.stats.total("dropped") == 0


def test_loop_restarts_a_file_source():
    p = Pipeline("test://bars?width=8&height=8&fps=0&frames=4", task(), policy="lossless", loop=True)
    seqs = [r.seq for _, r in zip(range(10), p)]
    assert seqs == list(range(10))


def test_sinks_write_and_flush(tmp_path):
    sinks = [JsonLinesSink(tmp_path / "r.jsonl"), BackgroundSink(VideoSink(tmp_path / "out.avi")),
             ImageSequenceSink(tmp_path / "frames")]
    p = Pipeline("test://moving?width=64&height=48&fps=0&frames=12", task(), sinks, policy="lossless")
    results = list(p)
    assert all(r.image is not None and r.image.shape == (48, 64, 3) for r in results)
    lines = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [x["seq"] for x in lines] == list(range(12))
    assert set(lines[0]) >= {"source", "seq", "wall_time", "label", "score", "top_k", "ms"}
    assert set(lines[0]["ms"]) == {"wait", "preprocess", "infer", "postprocess", "render", "e2e"}
    cap = cv2.VideoCapture(str(tmp_path / "out.avi"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    assert len(list((tmp_path / "frames").glob("*.jpg"))) == 12


def test_window_needs_a_display(monkeypatch):
    from edgevision.stream import WindowSink

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(RuntimeError, match="headless"):
        WindowSink()


def test_more_sources_than_the_task_was_sized_for():
    t = ClassifyTask(FakeEngine(), max_batch=1)
    p = Pipeline(["test://bars?width=8&height=8&fps=0&frames=5", "test://checker?width=8&height=8&fps=0&frames=5"],
                 t, policy="lossless")
    assert len(list(p)) == 10


def test_batches_smaller_than_the_sources_starve_none():
    # three sources that always have a frame ready, one frame per inference: each gets its turn
    specs = [f"test://bars?width=8&height=8&fps=500&seed={i}" for i in range(3)]
    p = Pipeline(specs, task(delay=0.002), max_batch=1)
    counts = {}
    for i, r in enumerate(p):
        counts[r.source_id] = counts.get(r.source_id, 0) + 1
        if i == 59:
            break
    assert len(counts) == 3 and min(counts.values()) >= 15, counts


def test_background_sink_raises_the_inner_error(tmp_path):
    class Broken(JsonLinesSink):
        def write(self, result):
            raise OSError("disk full")
    sink = BackgroundSink(Broken(tmp_path / "x.jsonl"))
    p = Pipeline("test://moving?width=16&height=16&fps=0&frames=50", task(), [sink], policy="lossless")
    with pytest.raises(OSError, match="disk full"):
        list(p)


def test_summary_and_percentiles():
    p = Pipeline("test://moving?width=32&height=24&fps=0&frames=50", task(), policy="lossless")
    stats = p.run()
    d = stats.as_dict()
    assert d["processed"] == 50 and d["fps"] > 0
    lat = d["latency_ms"]
    assert set(lat) == {"age", "preprocess", "infer", "postprocess", "render", "e2e", "overhead"}
    assert all(v["p50"] <= v["p95"] <= v["p99"] for v in lat.values())
    text = stats.summary()
    assert "processed 50" in text and "p95" in text and "end to end" in text
