"""Frame sources: one string or int -> a Source that opens Readers of uint8 BGR frames.

    open_source(0)                          webcam index (V4L2 on Linux, default API elsewhere)
    open_source("/dev/video0", width=1280, height=720, fps=30, fourcc="MJPG")
    open_source("clip.mp4")                 video file (ends at EOF, or loops with loop=True)
    open_source("photos/"), ("img/*.jpg"), ("cat.png")   image folder, glob or single image
    open_source("rtsp://host/path")         RTSP / RTP / HTTP(S) / UDP / RTMP URLs through FFmpeg
    open_source("session.sdp")              RTP described by an SDP file (FFmpeg needs
                                            OPENCV_FFMPEG_CAPTURE_OPTIONS="protocol_whitelist;file,rtp,udp")
    open_source("videotestsrc ! videoconvert ! appsink")   a raw GStreamer pipeline
    open_source("csi://0?width=1280&height=720&fps=30")    Jetson MIPI camera (nvarguscamerasrc)
    open_source("test://moving?width=640&height=480&fps=30&frames=300")   synthetic patterns

A Source only describes what to open; each connection is a Reader, so a reconnect opens a fresh Reader
and an abandoned (stalled) one can be dropped by the thread that owns it. Readers raise EndOfStream,
DecodeError (one frame lost; the stream goes on) or Disconnected (reconnect); open() raises SourceError.
"""
from __future__ import annotations

import glob as _glob
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm")
NETWORK_SCHEMES = ("rtsp", "rtsps", "rtp", "rtmp", "http", "https", "udp", "tcp", "srt")
TEST_PATTERNS = ("moving", "bars", "gradient", "checker", "noise")


class SourceError(RuntimeError):
    """A source cannot be opened (bad spec, missing file, no device, unsupported by this OpenCV build)."""


class EndOfStream(Exception):
    """The source has no more frames (end of a file or of an image list)."""


class DecodeError(Exception):
    """One frame could not be decoded; the stream goes on with the next one."""


class Disconnected(Exception):
    """A live source stopped delivering (network drop, unplugged camera); reconnecting may help."""


@dataclass
class Frame:
    """One captured frame. t_capture is time.perf_counter() when the frame left the decoder (every stage
    time is on that clock); wall_time is time.time() then, for logs; pts is the media time in seconds
    where the source has one (files)."""
    image: np.ndarray
    seq: int
    t_capture: float
    source_id: str
    wall_time: float = 0.0
    pts: float | None = None


class Reader:
    """One open connection to a source. read() -> (image, pts); close() releases it. Only the thread that
    opened a Reader touches it."""
    fps: float = 0.0
    failed: int = 0  # frames lost to decode errors so far (the capture loop reads the increments)

    def read(self) -> tuple[np.ndarray, float | None]:
        raise NotImplementedError

    def close(self) -> None:
        pass


@dataclass
class Source:
    """What to open. kind: camera | video | images | network | gstreamer | csi | test. live: frames come in
    real time, so a failure means reconnect (not end); realtime: a file/test source is paced at its fps
    (as a camera would deliver it) instead of read as fast as possible."""
    spec: str
    kind: str
    id: str
    live: bool
    options: dict = field(default_factory=dict)
    loop: bool = False
    realtime: bool = False

    def open(self) -> Reader:
        if self.kind == "test":
            return TestPatternReader(**self.options)
        if self.kind == "images":
            return ImageReader(self.options["paths"])
        return CaptureReader(self)

    def __str__(self) -> str:
        return f"{self.kind} source {self.id!r}"


def open_source(spec, *, source_id: str | None = None, width: int | None = None, height: int | None = None,
                fps: float | None = None, fourcc: str | None = None, loop: bool = False,
                realtime: bool | None = None, timeout: float = 5.0) -> Source:
    """Parse a source spec (see the module docstring) into a Source; nothing is opened yet, but files and
    folders must exist. width/height/fps/fourcc are requested from cameras (V4L2, webcam, CSI); timeout (s)
    bounds opening a network stream and waiting for one frame before the connection counts as stalled.
    realtime defaults to True for files and test patterns (paced like a camera) and is ignored for live
    sources."""
    if isinstance(spec, bool) or not isinstance(spec, (int, str, os.PathLike)):
        raise TypeError(f"source must be a camera index, a path, a URL or a pipeline string, got {type(spec).__name__}")
    if timeout is None or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    cam = {"width": width, "height": height, "fps": fps, "fourcc": fourcc, "timeout": float(timeout)}
    if fourcc is not None and (not isinstance(fourcc, str) or len(fourcc) != 4):
        raise ValueError(f"fourcc must be a 4-character code such as 'MJPG' or 'YUYV', got {fourcc!r}")
    for name in ("width", "height"):
        v = cam[name]
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if fps is not None and not (isinstance(fps, (int, float)) and fps > 0):
        raise ValueError(f"fps must be positive, got {fps!r}")

    def make(kind, sid, live, options, default_realtime=False):
        return Source(str(spec), kind, source_id or sid, live, options, loop=bool(loop),
                      realtime=default_realtime if realtime is None else bool(realtime))

    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        index = int(spec)
        return make("camera", f"camera{index}", True, dict(cam, device=index))
    s = os.fspath(spec).strip()
    if not s:
        raise ValueError("source is an empty string")
    scheme = urlsplit(s).scheme.lower() if "://" in s else ""
    if scheme == "test":
        return make("test", s, False, _test_options(s, width, height, fps), default_realtime=True)
    if scheme == "csi":
        pipeline = csi_pipeline(s, width, height, fps)
        return make("csi", s, True, dict(cam, device=pipeline, api="gstreamer"))
    if scheme in NETWORK_SCHEMES:
        return make("network", _redact(s), True, dict(cam, device=s, api="ffmpeg"))
    if scheme == "file":
        s = urlsplit(s).path
    elif scheme:
        raise SourceError(f"source {s!r}: unknown scheme {scheme!r}; expected one of "
                          f"{('test', 'csi', 'file') + NETWORK_SCHEMES}")
    if "!" in s:
        pipeline = s if "appsink" in s else s + " ! videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1"
        return make("gstreamer", "gstreamer", True, dict(cam, device=pipeline, api="gstreamer"))
    if s.startswith("/dev/video"):
        return make("camera", s, True, dict(cam, device=s, api="v4l2"))
    if any(c in s for c in "*?["):
        paths = sorted(p for p in _glob.glob(s) if p.lower().endswith(IMAGE_EXTENSIONS))
        if not paths:
            raise SourceError(f"source {s!r}: the glob matches no image files ({', '.join(IMAGE_EXTENSIONS)})")
        return make("images", s, False, {"paths": paths})
    path = Path(s)
    if path.is_dir():
        paths = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not paths:
            raise SourceError(f"source {s!r}: the folder holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
        return make("images", s, False, {"paths": paths})
    if not path.exists():
        raise SourceError(f"source {s!r}: no such file, folder or device (expected a camera index, a path, "
                          f"a URL, a GStreamer pipeline, csi://N or test://PATTERN)")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return make("images", s, False, {"paths": [s]})
    if path.suffix.lower() == ".sdp":  # an RTP session description: a live network stream
        return make("network", s, True, dict(cam, device=s, api="ffmpeg"))
    return make("video", s, False, dict(cam, device=s, api="ffmpeg"), default_realtime=True)


def _redact(url: str) -> str:
    """A URL without its password, for ids and logs."""
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)


def csi_pipeline(spec: str, width=None, height=None, fps=None) -> str:
    """csi://N[?width=&height=&fps=&flip=] -> the nvarguscamerasrc pipeline of NVIDIA's Jetson camera guide
    (NV12 in NVMM memory, converted to BGR for appsink)."""
    parts = urlsplit(spec)
    query = dict(parse_qsl(parts.query))
    try:
        sensor = int(parts.netloc or parts.path.strip("/") or 0)
        w = int(query.get("width", width or 1280))
        h = int(query.get("height", height or 720))
        rate = float(query.get("fps", fps or 30))
        flip = int(query.get("flip", 0))
    except ValueError:
        raise ValueError(f"source {spec!r}: expected csi://N?width=W&height=H&fps=F&flip=0..7 with numbers") from None
    num, den = (int(round(rate)), 1) if float(rate).is_integer() else (int(round(rate * 1000)), 1000)
    return (f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM),width={w},height={h},"
            f"framerate={num}/{den},format=NV12 ! nvvidconv flip-method={flip} ! video/x-raw,format=BGRx ! "
            f"videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1")


def _test_options(spec: str, width, height, fps) -> dict:
    parts = urlsplit(spec)
    pattern = (parts.netloc or parts.path.strip("/") or "moving").lower()
    if pattern not in TEST_PATTERNS:
        raise ValueError(f"source {spec!r}: unknown test pattern {pattern!r}; expected one of {TEST_PATTERNS}")
    query = dict(parse_qsl(parts.query))
    unknown = set(query) - {"width", "height", "fps", "frames", "seed"}
    if unknown:
        raise ValueError(f"source {spec!r}: unknown parameters {sorted(unknown)} (width, height, fps, frames, seed)")
    try:
        opts = {"pattern": pattern, "width": int(query.get("width", width or 640)),
                "height": int(query.get("height", height or 480)), "fps": float(query.get("fps", fps or 30)),
                "frames": int(query["frames"]) if "frames" in query else None, "seed": int(query.get("seed", 0))}
    except ValueError:
        raise ValueError(f"source {spec!r}: width, height, frames and seed must be ints, fps a number") from None
    if opts["width"] < 1 or opts["height"] < 1 or opts["fps"] < 0 or (opts["frames"] is not None and opts["frames"] < 0):
        raise ValueError(f"source {spec!r}: width and height must be positive, fps and frames not negative")
    return opts


# ------------------------------------------------------------------------------------------------
# Readers
# ------------------------------------------------------------------------------------------------
def _cv2():
    import cv2

    return cv2


def _has_gstreamer(cv2) -> bool:
    return bool(re.search(r"GStreamer:\s+YES", cv2.getBuildInformation()))


class CaptureReader(Reader):
    """cv2.VideoCapture over a camera, file, URL or GStreamer pipeline."""

    def __init__(self, source: Source):
        cv2 = _cv2()
        o = source.options
        api = {"ffmpeg": cv2.CAP_FFMPEG, "gstreamer": cv2.CAP_GSTREAMER, "v4l2": cv2.CAP_V4L2}.get(
            o.get("api"), cv2.CAP_V4L2 if os.name == "posix" and os.uname().sysname == "Linux" else cv2.CAP_ANY)
        if api == cv2.CAP_GSTREAMER and not _has_gstreamer(cv2):
            raise SourceError(f"{source}: this OpenCV build has no GStreamer support (cv2.getBuildInformation() "
                              f"says GStreamer: NO); build OpenCV with GStreamer or use JetPack's OpenCV")
        ms = int(o["timeout"] * 1000)
        self.live, self.source = source.live, source
        # FFmpeg honours both timeouts (its interrupt callback), so a dead network peer turns into a failed
        # read instead of a hang; other backends ignore what they do not support.
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        cap = cv2.VideoCapture(o["device"], api, params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{source}: cannot open {_redact(str(o['device']))} (no such device, unreachable "
                              f"URL, or a file that is not a readable video)")
        if source.kind == "camera":
            if o.get("fourcc"):
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*o["fourcc"]))
            if o.get("width"):
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, o["width"])
            if o.get("height"):
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, o["height"])
            if o.get("fps"):
                cap.set(cv2.CAP_PROP_FPS, o["fps"])
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the driver from queueing old frames
        self.cap = cap
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and math.isfinite(fps) and 0 < fps < 1000 else 0.0
        self.frame_count = cap.get(cv2.CAP_PROP_FRAME_COUNT) if source.kind == "video" else -1
        self._fail_pos = None
        self._cv2 = cv2

    def read(self):
        cv2 = self._cv2
        for _ in range(64):  # bounded: a file that fails this often in a row is treated as ended
            ok, image = self.cap.read()
            if ok and image is not None:
                if self._fail_pos is not None:  # the failure before this success lost a frame
                    self.failed += 1
                    self._fail_pos = None
                if image.ndim == 2:
                    image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
                elif image.shape[2] == 4:
                    image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
                pts = self.cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0 if not self.live else None
                return image, pts
            if self.live:
                raise Disconnected(f"{self.source}: no frame (stream ended, dropped or timed out)")
            # Files: FFmpeg reports a corrupt packet as a failed read and goes on with the next one; at the
            # end the position stops moving. A failure at an unchanged position is the end.
            pos = self.cap.get(cv2.CAP_PROP_POS_FRAMES)
            if pos == self._fail_pos:
                break
            self._fail_pos = pos
        self._fail_pos = None
        raise EndOfStream(str(self.source))

    def close(self):
        self.cap.release()


class ImageReader(Reader):
    """Image files in order; an unreadable one is a DecodeError (counted and skipped)."""

    def __init__(self, paths: list[str]):
        self.paths, self.index = list(paths), 0

    def read(self):
        cv2 = _cv2()
        if self.index >= len(self.paths):
            raise EndOfStream("images")
        path = self.paths[self.index]
        self.index += 1
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise DecodeError(f"{path}: not a readable image")
        return image, None


class TestPatternReader(Reader):
    """Synthetic frames for machines without a camera. Deterministic (seeded); `frames` ends the stream."""

    def __init__(self, pattern="moving", width=640, height=480, fps=30.0, frames=None, seed=0):
        self.pattern, self.w, self.h, self.fps, self.frames = pattern, width, height, fps, frames
        self.n = 0
        self.rng = np.random.default_rng(seed)
        x = np.linspace(0, 255, width, dtype=np.float32)
        y = np.linspace(0, 255, height, dtype=np.float32)
        if pattern == "bars":
            colors = np.array([[255, 255, 255], [0, 255, 255], [255, 255, 0], [0, 255, 0], [255, 0, 255],
                               [0, 0, 255], [255, 0, 0], [0, 0, 0]], np.uint8)
            self.base = np.ascontiguousarray(colors[(np.arange(width) * 8 // width)][None].repeat(height, 0))
        elif pattern == "checker":
            cell = max(1, min(width, height) // 8)
            board = ((np.arange(height)[:, None] // cell + np.arange(width)[None] // cell) % 2).astype(np.uint8) * 255
            self.base = np.ascontiguousarray(np.repeat(board[..., None], 3, 2))
        else:
            self.base = np.stack(np.broadcast_arrays(x[None, :], y[:, None], (x[None, :] + y[:, None]) / 2),
                                 -1).astype(np.uint8)

    def read(self):
        if self.frames is not None and self.n >= self.frames:
            raise EndOfStream("test pattern")
        n = self.n
        self.n += 1
        if self.pattern == "noise":
            return self.rng.integers(0, 256, (self.h, self.w, 3), dtype=np.uint8), None
        image = np.empty_like(self.base)
        k = 0 if self.pattern == "checker" else (n * max(1, self.w // 100)) % self.w
        image[:, k:] = self.base[:, :self.w - k]  # the pattern scrolls right (two copies, cheaper than np.roll)
        image[:, :k] = self.base[:, self.w - k:]
        if self.pattern == "moving":
            # A box that crosses the frame and a frame counter stripe: frames are distinguishable.
            side = max(1, min(self.w, self.h) // 5)
            x0 = (n * 7) % max(1, self.w - side)
            y0 = (n * 3) % max(1, self.h - side)
            image[y0:y0 + side, x0:x0 + side] = (0, 0, 255)
            bits = np.unpackbits(np.array([n], ">u4").view(np.uint8))[:min(32, self.w)] * 255
            image[:min(4, self.h), :len(bits)] = bits[None, :, None]
        return image, (n / self.fps if self.fps else None)


def wait_until(deadline: float, stop) -> None:
    """Sleep until perf_counter() >= deadline or stop (a threading.Event) is set."""
    delay = deadline - time.perf_counter()
    if delay > 0:
        stop.wait(delay)
