"""Where results go: an OpenCV window, a video file, an image sequence, JSON lines. Each sink has
write(result) (False from a window means the user closed it), flush() and close(); close() flushes, and
the pipeline closes every sink when it stops, Ctrl-C included. BackgroundSink(sink) moves a slow sink
(video encoding) off the inference thread."""
from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path

import numpy as np


def _cv2():
    import cv2

    return cv2


def display_available() -> bool:
    """Whether a window can be shown: on Linux an X11 or Wayland display must be set."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "source"


class Sink:
    needs_image = False

    def write(self, result):
        raise NotImplementedError

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.flush()


class BackgroundSink(Sink):
    """Runs another sink on its own thread, so that encoding (a video file, JPEGs) does not delay the next
    inference. Nothing is dropped: when `depth` results wait, write() waits too. An error in the inner
    sink is raised by the next write() or by close()."""

    def __init__(self, sink: Sink, depth: int = 8):
        import queue
        import threading

        self.sink, self.needs_image = sink, sink.needs_image
        self.queue: "queue.Queue" = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"edgevision-sink-{type(sink).__name__}", daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            result = self.queue.get()
            if result is None:
                return
            if self.error is None:
                try:
                    self.sink.write(result)
                except BaseException as e:  # noqa: BLE001 - handed to the pipeline's thread
                    self.error = e

    def _raise(self):
        if self.error is not None:
            e, self.error = self.error, None
            raise e

    def write(self, result):
        self._raise()
        self.queue.put(result)
        return True

    def close(self):
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        self.sink.close()
        self._raise()


class WindowSink(Sink):
    """One OpenCV window per source; q or Esc (or closing the window) stops the stream."""
    needs_image = True

    def __init__(self, title: str = "edgevision"):
        if not display_available():
            raise RuntimeError("no display (DISPLAY / WAYLAND_DISPLAY unset): run headless (--headless) or write "
                               "a video with --output")
        self.title = title
        self.windows: set[str] = set()

    def write(self, result):
        cv2 = _cv2()
        name = self.title if not self.windows or result.source_id in self.windows and len(self.windows) == 1 \
            else f"{self.title} - {result.source_id}"
        if name not in self.windows:
            cv2.namedWindow(name, cv2.WINDOW_NORMAL)
            self.windows.add(name)
        cv2.imshow(name, result.image)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            return False
        if cv2.getWindowProperty(name, cv2.WND_PROP_VISIBLE) < 1:
            return False
        return True

    def close(self):
        if self.windows:
            _cv2().destroyAllWindows()
            _cv2().waitKey(1)
            self.windows.clear()


class VideoSink(Sink):
    """The rendered view to a video file (mp4v for .mp4/.mov, MJPG for .avi, else mp4v). Several sources:
    put {source} in the path for one file each; otherwise the first source's results are written. fps:
    default the rate the stream is processed at, measured over the first frames (so that playback speed
    matches what was seen), else 30."""
    needs_image = True

    def __init__(self, path, fps: float | None = None, fourcc: str | None = None):
        self.path = str(path)
        if fps is not None and not fps > 0:
            raise ValueError(f"fps must be positive, got {fps!r}")
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        ext = Path(self.path).suffix.lower()
        self.fourcc = fourcc or {".avi": "MJPG", ".mkv": "MJPG"}.get(ext, "mp4v")
        self.fps = fps
        self.writers: dict[str, tuple] = {}
        self.pending: dict[str, list] = {}
        self.frames = 0
        self.owner: str | None = None

    def _path(self, sid: str) -> str | None:
        if "{source}" in self.path:
            return self.path.replace("{source}", _safe(sid))
        if self.owner is None:
            self.owner = sid
        return self.path if sid == self.owner else None

    def write(self, result):
        sid = result.source_id
        if sid not in self.writers:
            path = self._path(sid)
            if path is None:
                return True
            if self.fps is None:
                # Hold a few frames to measure the processing rate, then open the writer at that rate.
                buf = self.pending.setdefault(sid, [])
                buf.append((result.frame.t_capture, result.image))
                if len(buf) < 8:
                    return True
                self._open(sid, path, self._rate(buf), buf[0][1].shape)
                for _, image in self.pending.pop(sid):
                    self._put(sid, image)
                return True
            self._open(sid, path, self.fps, result.image.shape)
        self._put(sid, result.image)
        return True

    @staticmethod
    def _rate(buf) -> float:
        span = buf[-1][0] - buf[0][0]
        return max(1.0, min(120.0, (len(buf) - 1) / span)) if span > 0 else 30.0

    def _open(self, sid, path, fps, shape):
        cv2 = _cv2()
        h, w = shape[:2]
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*self.fourcc), float(fps), (w, h))
        if not writer.isOpened():
            raise RuntimeError(f"cannot write video {path!r} with codec {self.fourcc}")
        self.writers[sid] = (writer, (w, h))

    def _put(self, sid, image):
        writer, (w, h) = self.writers[sid]
        if image.shape[1] != w or image.shape[0] != h:
            image = _cv2().resize(image, (w, h))
        writer.write(image)
        self.frames += 1

    def close(self):
        for sid, buf in list(self.pending.items()):  # fewer frames than the rate needs: write them anyway
            if buf:
                self._open(sid, self._path(sid) or self.path, self.fps or self._rate(buf), buf[0][1].shape)
                for _, image in buf:
                    self._put(sid, image)
        self.pending.clear()
        for writer, _ in self.writers.values():
            writer.release()
        self.writers.clear()


class ImageSequenceSink(Sink):
    """Each rendered view as an image file: directory/<source>_<seq>.jpg, or a printf-style pattern with
    {source} and {seq} fields such as out/frame_{seq:06d}.png."""
    needs_image = True

    def __init__(self, target, quality: int = 90):
        target = str(target)
        if "{" in target:
            self.pattern = target
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        else:
            Path(target).mkdir(parents=True, exist_ok=True)
            self.pattern = os.path.join(target, "{source}_{seq:06d}.jpg")
        self.quality = int(quality)
        self.count = 0

    def write(self, result):
        cv2 = _cv2()
        path = self.pattern.format(source=_safe(result.source_id), seq=result.seq)
        if not cv2.imwrite(path, result.image, [cv2.IMWRITE_JPEG_QUALITY, self.quality]):
            raise RuntimeError(f"cannot write image {path!r}")
        self.count += 1
        return True


def result_record(result) -> dict:
    """A result as a JSON-ready dict: source, seq, times, the output's type and fields (arrays left out)."""
    out = result.output
    fields = asdict(out) if is_dataclass(out) else {"value": out}
    fields = {k: v for k, v in fields.items() if not isinstance(v, np.ndarray)}
    if "top_k" in fields:
        fields["top_k"] = [[label, round(score, 6)] for label, score in fields["top_k"]]
    if "score" in fields:
        fields["score"] = round(fields["score"], 6)
    t = result.timings
    return {"source": result.source_id, "seq": result.seq, "type": type(out).__name__, "wall_time": result.frame.wall_time,
            "pts": result.frame.pts, **fields,
            "ms": {k: round(v, 3) for k, v in (("wait", t.age_ms), ("preprocess", t.preprocess_ms),
                                               ("infer", t.infer_ms), ("postprocess", t.postprocess_ms),
                                               ("render", t.render_ms), ("e2e", t.e2e_ms))}}


class JsonLinesSink(Sink):
    """One JSON object per result (result_record) per line, to a file or "-" (stdout). Lines are buffered
    and flushed at least every `flush_every` seconds, and on close."""

    def __init__(self, target, flush_every: float = 0.5):
        if target == "-":
            self.file, self.own = sys.stdout, False
        else:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            self.file, self.own = open(target, "w", encoding="utf-8"), True
        self.flush_every = float(flush_every)
        self._last = time.monotonic()
        self.count = 0

    def write(self, result):
        self.file.write(json.dumps(result_record(result), separators=(",", ":")) + "\n")
        self.count += 1
        now = time.monotonic()
        if now - self._last >= self.flush_every:
            self.flush()
            self._last = now
        return True

    def flush(self):
        if not self.file.closed:
            self.file.flush()

    def close(self):
        self.flush()
        if self.own and not self.file.closed:
            self.file.close()
