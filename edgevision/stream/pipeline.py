"""The stream pipeline: capture threads (one per source, with reconnect and stall watchdog) hand frames to
one inference loop through per-source slots (latest frame wins, a bounded queue, or lossless), which
batches the sources, runs the task and feeds the sinks, timing every stage.

    for result in Pipeline(["rtsp://cam1/x", 0], ClassifyTask("imagenet-efficientnet-lite0")):
        print(result.source_id, result.output.label, result.timings.e2e_ms)

or, without blocking a control loop: pipeline.start(on_result=callback); ...; pipeline.latest(); pipeline.stop().
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .. import ops
from .sources import DecodeError, Disconnected, EndOfStream, Frame, Source, SourceError, open_source, wait_until

log = logging.getLogger("edgevision")

POLICIES = ("latest", "queue", "lossless")
STAGES = ("age", "preprocess", "infer", "postprocess", "render", "e2e", "overhead")


@dataclass
class StageTimes:
    """Per-result stage times in milliseconds on the perf_counter clock. age: capture -> picked up by the
    inference loop (time spent waiting in the slot); e2e: capture -> result delivered (after the sinks);
    overhead: e2e minus infer, i.e. what the pipeline adds to the model."""
    t_capture: float
    age_ms: float = 0.0
    preprocess_ms: float = 0.0
    infer_ms: float = 0.0
    postprocess_ms: float = 0.0
    render_ms: float = 0.0
    e2e_ms: float = 0.0

    @property
    def overhead_ms(self) -> float:
        return self.e2e_ms - self.infer_ms


@dataclass
class StreamResult:
    """One processed frame: the task's output dataclass, the frame it came from and the stage times.
    `image` is the rendered view (overlay) when a sink or the caller asked for one, else None."""
    source_id: str
    seq: int
    frame: Frame
    output: object
    timings: StageTimes
    image: np.ndarray | None = None


@dataclass
class SourceCounters:
    captured: int = 0
    processed: int = 0
    dropped: int = 0
    failed: int = 0
    reconnects: int = 0
    stalls: int = 0
    ended: bool = False
    error: str = ""


class LatencyLog:
    """Stage times of the last `capacity` results in a fixed array: memory stays flat however long the
    stream runs."""

    def __init__(self, capacity: int = 16384, warmup: int = 2):
        self.data = np.empty((capacity, len(STAGES)), np.float64)
        self.data.fill(0.0)  # commit every page now, or RSS would creep up as the log first fills
        self.n = 0
        self.warmup = warmup
        self.seen = 0

    def add(self, t: StageTimes) -> None:
        self.seen += 1
        if self.seen <= self.warmup:  # the first batches include engine compilation and cache warm-up
            return
        row = self.data[self.n % len(self.data)]
        row[:] = (t.age_ms, t.preprocess_ms, t.infer_ms, t.postprocess_ms, t.render_ms, t.e2e_ms, t.overhead_ms)
        self.n += 1

    def percentiles(self, qs=(50, 95, 99)) -> dict[str, dict[str, float]]:
        rows = self.data[:min(self.n, len(self.data))]
        if not len(rows):
            return {}
        p = np.percentile(rows, qs, axis=0)
        out = {s: {f"p{q}": float(p[i, j]) for i, q in enumerate(qs)} for j, s in enumerate(STAGES)}
        for j, s in enumerate(STAGES):
            out[s]["mean"] = float(rows[:, j].mean())
        return out


@dataclass
class StreamStats:
    sources: dict[str, SourceCounters] = field(default_factory=dict)
    latency: LatencyLog = field(default_factory=LatencyLog)
    t_start: float = 0.0
    t_end: float | None = None
    batches: int = 0

    def total(self, name: str) -> int:
        return sum(getattr(c, name) for c in self.sources.values())

    @property
    def elapsed(self) -> float:
        end = self.t_end if self.t_end is not None else time.perf_counter()
        return max(1e-9, end - self.t_start) if self.t_start else 0.0

    @property
    def fps(self) -> float:
        return self.total("processed") / self.elapsed if self.t_start else 0.0

    def as_dict(self) -> dict:
        return {"elapsed_s": self.elapsed, "fps": self.fps, "batches": self.batches,
                **{k: self.total(k) for k in ("captured", "processed", "dropped", "failed", "reconnects", "stalls")},
                "sources": {k: vars(v).copy() for k, v in self.sources.items()},
                "latency_ms": self.latency.percentiles()}

    def summary(self) -> str:
        lines = [f"frames: captured {self.total('captured')}, processed {self.total('processed')}, dropped "
                 f"{self.total('dropped')}, failed {self.total('failed')}, reconnects {self.total('reconnects')}, "
                 f"stalls {self.total('stalls')} in {self.elapsed:.1f} s ({self.fps:.1f} frames/s)"]
        for sid, c in self.sources.items():
            if len(self.sources) > 1 or c.error:
                lines.append(f"  {sid}: captured {c.captured}, processed {c.processed}, dropped {c.dropped}, "
                             f"failed {c.failed}, reconnects {c.reconnects}" + (f", error: {c.error}" if c.error else ""))
        pct = self.latency.percentiles()
        if pct:
            lines.append(f"latency ms over {min(self.latency.n, len(self.latency.data))} results (first "
                         f"{self.latency.warmup} left out as warm-up; wait = capture to inference start, "
                         f"overhead = end to end - infer):")
            lines.append(f"  {'stage':<12}{'p50':>9}{'p95':>9}{'p99':>9}{'mean':>9}")
            names = {"age": "wait", "overhead": "overhead", "e2e": "end to end"}
            for s in STAGES:
                v = pct[s]
                lines.append(f"  {names.get(s, s):<12}{v['p50']:>9.2f}{v['p95']:>9.2f}{v['p99']:>9.2f}{v['mean']:>9.2f}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Hand-off from capture threads to the inference loop
# ------------------------------------------------------------------------------------------------
class _Hub:
    """Per-source frame slots under one condition variable, so the inference loop waits for any source."""

    def __init__(self, ids: list[str], policy: str, size: int, stats: StreamStats):
        self.cond = threading.Condition()
        self.slots = {i: deque() for i in ids}
        self.ended = {i: False for i in ids}
        self.policy, self.size, self.stats = policy, (1 if policy == "latest" else size), stats
        self.turn = 0  # where the next batch starts, so that max_batch < sources starves none

    def put(self, sid: str, frame: Frame, stop: threading.Event, wait: bool = False) -> None:
        """wait: block while the slot is full instead of dropping (lossless, or a source on no clock)."""
        with self.cond:
            slot = self.slots[sid]
            if self.policy == "lossless" or wait:
                while len(slot) >= self.size and not stop.is_set():
                    self.cond.wait(0.1)
            elif len(slot) >= self.size:
                slot.popleft()
                self.stats.sources[sid].dropped += 1
            slot.append(frame)
            self.stats.sources[sid].captured += 1
            self.cond.notify_all()

    def end(self, sid: str) -> None:
        with self.cond:
            self.ended[sid] = True
            self.cond.notify_all()

    def take(self, max_batch: int, stop: threading.Event, timeout: float | None) -> list[Frame] | None:
        """The oldest waiting frame of each source that has one (up to max_batch); None when every source
        has ended and drained, or on stop; [] on timeout."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        with self.cond:
            while True:
                if stop.is_set():
                    return None
                slots = list(self.slots.values())
                ready = [s for s in slots[self.turn:] + slots[:self.turn] if s]
                if ready:
                    self.turn = (self.turn + 1) % len(slots)
                    frames = [s.popleft() for s in ready[:max_batch]]
                    self.cond.notify_all()  # lossless producers wait for room
                    return frames
                if all(self.ended.values()):
                    return None
                left = None if deadline is None else deadline - time.perf_counter()
                if left is not None and left <= 0:
                    return []
                # Short waits keep the loop responsive to stop() and to Ctrl-C on the main thread.
                self.cond.wait(0.05 if left is None else min(0.05, left))


class _Capture:
    """Reads one source on its own threads. A supervisor thread runs one connection thread at a time; a
    live connection that sits in open() or read() longer than the source's timeout is abandoned (its
    thread releases the reader whenever the blocked call returns) and a new one is opened with
    exponential backoff, so no backend's blocking call can hang the stream."""

    def __init__(self, source: Source, hub: _Hub, counters: SourceCounters, stop: threading.Event,
                 backoff: tuple[float, float] = (0.1, 5.0), max_reconnects: int | None = None):
        self.source, self.hub, self.counters, self.stop = source, hub, counters, stop
        self.backoff, self.max_reconnects = backoff, max_reconnects
        self.timeout = float(source.options.get("timeout", 5.0))
        self.seq = 0
        self.first_open = threading.Event()
        self.open_error: BaseException | None = None
        self.thread = threading.Thread(target=self._supervise, name=f"edgevision-capture-{source.id}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _supervise(self) -> None:
        delay = self.backoff[0]
        # Backends that honour the timeout themselves (FFmpeg) fail a little after it; the watchdog is the
        # backstop for those that would block forever, so it gives them some slack.
        watchdog = 1.5 * self.timeout + 0.5 if self.source.live else None
        try:
            while not self.stop.is_set():
                conn = _Connection(self)
                conn.thread.start()
                outcome = conn.watch(watchdog)
                if not self.first_open.is_set():  # the very first connection never opened
                    self.open_error = conn.error or SourceError(
                        f"{self.source}: opening it took longer than {watchdog:.1f} s")
                    return
                if self.stop.is_set() or outcome in ("end", "stopped"):
                    return
                if outcome == "loop":
                    continue
                if not self.source.live:
                    self.counters.error = f"{type(conn.error).__name__}: {conn.error}" if conn.error else outcome
                    return
                # A live source that dropped, stalled or failed to reopen comes back by reopening after a pause.
                if outcome == "stalled":
                    self.counters.stalls += 1
                if outcome in ("frames", "stalled"):
                    delay = self.backoff[0]  # it worked for a while: start the backoff over
                if self.max_reconnects is not None and self.counters.reconnects >= self.max_reconnects:
                    self.counters.error = f"gave up after {self.counters.reconnects} reconnects"
                    return
                log.warning("edgevision: %s %s; reconnecting in %.1f s", self.source,
                            {"frames": "disconnected", "stalled": f"stalled (no frame for {watchdog:.1f} s)",
                             "open-failed": "did not reopen"}.get(outcome, outcome), delay)
                self.stop.wait(delay)
                delay = min(self.backoff[1], delay * 2)
                self.counters.reconnects += 1
        except BaseException as e:  # noqa: BLE001 - reported through counters, never kills the process
            self.counters.error = f"{type(e).__name__}: {e}"
            log.error("edgevision: capture of %s failed: %s", self.source, e)
        finally:
            self.first_open.set()
            self.counters.ended = True
            self.hub.end(self.source.id)


class _Connection:
    """One Reader's life on its own thread; watch() is called by the supervisor."""

    def __init__(self, cap: _Capture):
        self.cap = cap
        self.abandoned = False
        self.busy_since: float | None = time.perf_counter()  # in open() or read(); None while idle
        self.outcome = ""
        self.error: BaseException | None = None
        self.got_frames = False
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"edgevision-reader-{cap.source.id}", daemon=True)

    def watch(self, timeout: float | None) -> str:
        while not self.done.wait(0.05):
            if self.cap.stop.is_set():
                return "stopped"
            busy = self.busy_since
            if timeout is not None and busy is not None and time.perf_counter() - busy > timeout:
                self.abandoned = True
                return "stalled" if self.got_frames else "open-failed"
        return self.outcome

    def _run(self) -> None:
        cap, src = self.cap, self.cap.source
        reader = None
        try:
            try:
                reader = src.open()
            except SourceError as e:
                self.error, self.outcome = e, "open-failed"
                return
            cap.first_open.set()
            pace = src.realtime and not src.live and reader.fps > 0
            # A file or image list read as fast as it decodes has no clock to keep up with: dropping its
            # frames would lose them for nothing, so it waits for the model instead, whatever the policy.
            wait = not src.live and not pace
            t0, n = time.perf_counter(), 0
            failed_seen = 0
            while not cap.stop.is_set() and not self.abandoned:
                if pace:
                    wait_until(t0 + n / reader.fps, cap.stop)
                self.busy_since = time.perf_counter()
                try:
                    image, pts = reader.read()
                except DecodeError as e:
                    cap.counters.failed += 1
                    log.debug("edgevision: %s", e)
                    n += 1
                    continue
                finally:
                    self.busy_since = None
                if self.abandoned:
                    return
                if reader.failed != failed_seen:
                    cap.counters.failed += reader.failed - failed_seen
                    failed_seen = reader.failed
                t = time.perf_counter()
                frame = Frame(image, cap.seq, t, src.id, time.time(), pts)
                cap.seq += 1
                n += 1
                self.got_frames = True
                cap.hub.put(src.id, frame, cap.stop, wait)
            self.outcome = "stopped"
        except EndOfStream:
            self.outcome = "loop" if src.loop and self.got_frames else "end"
        except Disconnected:
            self.outcome = "frames" if self.got_frames else "open-failed"
        except Exception as e:  # noqa: BLE001 - an unexpected reader error is a disconnect, logged
            self.error = e
            log.warning("edgevision: %s: %s: %s", src, type(e).__name__, e)
            self.outcome = "frames" if self.got_frames else "open-failed"
        finally:
            if reader is not None:
                try:
                    reader.close()
                except Exception:  # noqa: BLE001
                    pass
            self.done.set()


# ------------------------------------------------------------------------------------------------
# The pipeline
# ------------------------------------------------------------------------------------------------
class Pipeline:
    """Sources -> task -> sinks. Iterate it (results in the caller's thread) or start() it in the
    background with a callback. Context manager; close() stops the capture threads and flushes the sinks.

    policy: "latest" (default: each source keeps only its newest frame, older ones are dropped and
    counted, so a slow model never sees a stale frame), "queue" (a bounded queue of `queue_size` frames,
    the oldest dropped when full) or "lossless" (every frame; capture waits for the model; for offline
    video). The policy matters for frames that arrive on a clock (cameras, network streams, files paced at
    their frame rate, the default for video files); a file or image folder read as fast as it decodes
    (realtime=False, or images) is never dropped from. max_batch: frames of different sources run in one
    inference (default: the number of sources).
    render: draw the overlay into result.image even without an image sink. preprocess_threads: OpenMP
    threads of the preprocess kernels (set for the inference thread only, restored after each call;
    None: OpenMP's default). One by default: a frame takes about a millisecond on one core, and a team of
    threads waits for its slowest member, which on a loaded edge CPU (decoder threads, the model's own
    threads, other processes) costs far more than it saves.
    """

    def __init__(self, sources, task, sinks=(), *, policy: str = "latest", queue_size: int = 4,
                 max_batch: int | None = None, render: bool = False, max_reconnects: int | None = None,
                 backoff: tuple[float, float] = (0.1, 5.0), preprocess_threads: int | None = 1, **source_options):
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"queue_size must be a positive int, got {queue_size!r}")
        if not isinstance(sources, (list, tuple)):
            sources = [sources]
        if not sources:
            raise ValueError("sources is empty: give at least one camera, file, URL or test:// pattern")
        self.sources = [s if isinstance(s, Source) else open_source(s, **source_options) for s in sources]
        ids = [s.id for s in self.sources]
        for i, s in enumerate(self.sources):
            if ids.count(s.id) > 1:
                s.id = f"{s.id}#{i}"
        self.task = task
        self.sinks = list(sinks)
        self.policy, self.queue_size = policy, queue_size
        self.max_batch = max_batch or len(self.sources)
        if isinstance(self.max_batch, bool) or not isinstance(self.max_batch, int) or self.max_batch < 1:
            raise ValueError(f"max_batch must be a positive int, got {max_batch!r}")
        self.render = render
        if preprocess_threads is not None and (isinstance(preprocess_threads, bool) or
                                               not isinstance(preprocess_threads, int) or preprocess_threads < 1):
            raise ValueError(f"preprocess_threads must be a positive int or None, got {preprocess_threads!r}")
        self.preprocess_threads = preprocess_threads
        self.max_reconnects, self.backoff = max_reconnects, backoff
        self.stats = StreamStats(sources={s.id: SourceCounters() for s in self.sources})
        self._stop = threading.Event()
        self._started = False
        self._closed = False
        self._captures: list[_Capture] = []
        self._latest: StreamResult | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._hub = _Hub([s.id for s in self.sources], policy, queue_size, self.stats)

    # -- lifecycle --------------------------------------------------------------------------------
    def _start_capture(self) -> None:
        if self._started:
            return
        if self._closed:
            raise RuntimeError("this pipeline is closed; make a new one")
        self._started = True
        self.stats.t_start = time.perf_counter()
        for s in self.sources:
            cap = _Capture(s, self._hub, self.stats.sources[s.id], self._stop, self.backoff, self.max_reconnects)
            self._captures.append(cap)
            cap.start()
        errors = []
        for cap in self._captures:
            while not cap.first_open.wait(0.05):
                pass
            if cap.open_error is not None:
                errors.append(cap.open_error)
        if errors:
            self.close()
            raise errors[0] if len(errors) == 1 else SourceError("; ".join(str(e) for e in errors))

    def close(self) -> None:
        """Stop capturing and inferring, flush and close the sinks. Safe to call twice and from any thread."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        # A capture thread blocked in a driver call is a daemon and is left behind: the stop must stay quick.
        deadline = time.perf_counter() + 0.5
        for cap in self._captures:
            cap.thread.join(timeout=max(0.0, deadline - time.perf_counter()))
        if self._closed:
            return
        self._closed = True
        if self.stats.t_start and self.stats.t_end is None:
            self.stats.t_end = time.perf_counter()
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as e:  # noqa: BLE001 - one failing sink must not keep the others unflushed
                log.error("edgevision: closing %s failed: %s", type(sink).__name__, e)
        self.task.close()

    stop = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def running(self) -> bool:
        return self._started and not self._stop.is_set()

    # -- results in the caller's thread -------------------------------------------------------------
    def __iter__(self):
        if self._thread is not None:
            raise RuntimeError("this pipeline runs in the background (start()); use latest() or its callback")
        try:
            self._start_capture()
            while True:
                frames = self._hub.take(self.max_batch, self._stop, None)
                if not frames:
                    break
                yield from self._process(frames)
        finally:
            self.close()

    def run(self, limit: int | None = None) -> StreamStats:
        """Process until the sources end (or `limit` results, or stop()); returns the stats."""
        for i, _ in enumerate(self, 1):
            if limit is not None and i >= limit:
                break
        return self.stats

    # -- results in the background ---------------------------------------------------------------
    def start(self, on_result=None) -> "Pipeline":
        """Run in a background thread and return at once. on_result(result) is called on that thread for
        each result (keep it short; it delays the next inference). latest() gives the newest result from
        any thread without blocking: what a control loop polls."""
        if self._thread is not None:
            raise RuntimeError("start() was already called")
        self._start_capture()

        def loop():
            try:
                while True:
                    frames = self._hub.take(self.max_batch, self._stop, None)
                    if not frames:
                        break
                    for result in self._process(frames):
                        if on_result is not None:
                            on_result(result)
            except BaseException as e:  # noqa: BLE001 - handed to wait()/the caller
                self._error = e
                log.error("edgevision: stream stopped: %s: %s", type(e).__name__, e)
            finally:
                self._stop.set()

        self._thread = threading.Thread(target=loop, name="edgevision-infer", daemon=True)
        self._thread.start()
        return self

    def latest(self) -> StreamResult | None:
        return self._latest

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background pipeline to end (sources ended or stop()); re-raises its error. True if
        it ended."""
        if self._thread is None:
            raise RuntimeError("wait() is for a pipeline started with start()")
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        self.close()
        if self._error is not None:
            raise self._error
        return True

    # -- one batch ------------------------------------------------------------------------------------
    def _process(self, frames: list[Frame]):
        t0 = time.perf_counter()
        if self.preprocess_threads is None:
            prepared = self.task.preprocess(frames)
        else:
            saved = ops.get_num_threads()
            ops.set_num_threads(self.preprocess_threads)
            try:
                prepared = self.task.preprocess(frames)
            finally:
                ops.set_num_threads(saved)
        t1 = time.perf_counter()
        raw = self.task.infer(prepared)
        t2 = time.perf_counter()
        outputs = self.task.postprocess(raw, frames)
        t3 = time.perf_counter()
        self.stats.batches += 1
        want_image = self.render or any(getattr(s, "needs_image", False) for s in self.sinks)
        for frame, output in zip(frames, outputs):
            times = StageTimes(frame.t_capture, age_ms=(t0 - frame.t_capture) * 1e3,
                               preprocess_ms=(t1 - t0) * 1e3, infer_ms=(t2 - t1) * 1e3,
                               postprocess_ms=(t3 - t2) * 1e3)
            result = StreamResult(frame.source_id, frame.seq, frame, output, times)
            t4 = time.perf_counter()
            if want_image:
                result.image = self.task.render(result, self.stats)
            for sink in self.sinks:
                if sink.write(result) is False:  # a window closed by the user
                    self._stop.set()
            t5 = time.perf_counter()
            times.render_ms = (t5 - t4) * 1e3
            times.e2e_ms = (t5 - frame.t_capture) * 1e3
            self.stats.sources[frame.source_id].processed += 1
            self.stats.latency.add(times)
            self._latest = result
            yield result
