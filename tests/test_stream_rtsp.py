"""An RTSP camera on 127.0.0.1: Debian's rtsp-server-perl as the server, ffmpeg publishing a clip to it,
OpenCV reading it over UDP (the server does not interleave over TCP). The server is killed mid-stream
and started again; the pipeline must reconnect by itself and go on. Needs the rtsp-server-perl and
ffmpeg commands (.ci/run installs both); skipped, saying so, where they are missing."""
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest
from stream_util import VTEST, FakeEngine

from edgevision.stream import ClassifyTask, Pipeline

pytestmark = pytest.mark.skipif(not (shutil.which("rtsp-server-perl") and shutil.which("ffmpeg")),
                                reason="needs the rtsp-server-perl and ffmpeg commands (apt-get install "
                                       "rtsp-server-perl ffmpeg)")


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def wait_stream(port: int, path: str = "cam", timeout: float = 15.0) -> None:
    """Until the server answers DESCRIBE with 200, i.e. the publisher has announced the stream."""
    deadline = time.monotonic() + timeout
    request = f"DESCRIBE rtsp://127.0.0.1:{port}/{path} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n"
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5) as s:
                s.sendall(request.encode())
                s.settimeout(0.5)
                if s.recv(64).startswith(b"RTSP/1.0 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the RTSP stream on port {port} was not announced within {timeout} s")


def make_clip(path) -> None:
    """A short H.264 clip with a keyframe every second (so a new client starts decoding at once): the
    real vtest.avi where it is present, else ffmpeg's test source."""
    src = ["-i", str(VTEST), "-t", "12"] if VTEST.is_file() else ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=10:duration=12"]
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *src, "-an", "-vf", "scale=320:240",
                    "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "10", "-bf", "0",
                    "-r", "10", str(path)], check=True, timeout=60)


class Camera:
    """rtsp-server-perl + an ffmpeg publisher looping a clip to it."""

    def __init__(self, clip, tmp):
        self.clip, self.tmp = clip, tmp
        self.client_port, self.source_port = free_port(), free_port()
        self.rtp_port = 30000 + os.getpid() % 20000
        self.procs = []

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.client_port}/cam"

    def start(self) -> None:
        log = open(self.tmp / "server.log", "ab")
        self.server = subprocess.Popen(
            ["rtsp-server-perl", "--clientport", str(self.client_port), "--serverport", str(self.source_port),
             "--client_listen_address", "127.0.0.1", "--source_listen_address", "127.0.0.1",
             "--rtp_start_port", str(self.rtp_port), "--loglevel", "1"], stdout=log, stderr=log)
        wait_port(self.source_port)
        wait_port(self.client_port)
        self.publisher = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(self.clip),
             "-an", "-c", "copy", "-f", "rtsp", f"rtsp://127.0.0.1:{self.source_port}/cam"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.procs += [self.server, self.publisher]
        wait_stream(self.client_port)

    def kill(self) -> None:
        for p in (self.publisher, self.server):
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.wait(5)


@pytest.fixture
def camera(tmp_path, monkeypatch):
    # UDP transport (the server's only one); a short probe so a (re)connect takes well under a second.
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;udp|analyzeduration;300000|probesize;200000")
    clip = tmp_path / "clip.mp4"
    make_clip(clip)
    cam = Camera(clip, tmp_path)
    cam.start()
    yield cam
    for p in cam.procs:
        if p.poll() is None:
            p.kill()
            p.wait(5)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def test_rtsp_camera_killed_and_restarted(camera, tmp_path):
    results = []
    p = Pipeline(camera.url, ClassifyTask(FakeEngine()), timeout=1.5, backoff=(0.2, 1.0))
    assert p.sources[0].kind == "network" and p.sources[0].live
    p.start(on_result=results.append)
    try:
        wait_for(lambda: len(results) >= 10, 30, "10 frames from the RTSP camera")
        assert results[0].frame.image.shape == (240, 320, 3)
        camera.kill()                          # the camera goes away mid-stream
        before = len(results)
        time.sleep(3.0)                        # longer than the timeout: the pipeline notices
        c = p.stats.sources[p.sources[0].id]
        assert c.reconnects >= 1, "no reconnect attempt while the camera was down"
        assert len(results) - before <= 25     # at most what was buffered in flight, no new frames
        camera.start()                         # and comes back on the same address
        wait_for(lambda: len(results) >= before + 20, 40, "frames after the camera came back")
        assert p.running, "the pipeline kept running through the outage"
    finally:
        p.stop()
    seqs = [r.seq for r in results]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # seq numbers go on across the reconnect
    assert results[-1].frame.image.shape == (240, 320, 3)
    assert p.stats.sources[p.sources[0].id].error == ""
