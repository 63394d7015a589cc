"""Sources: spec parsing for every kind, test patterns, image folders with a broken file, the real clip,
corrupted and truncated video files."""
import os

import cv2
import numpy as np
import pytest
from stream_util import VTEST, FakeEngine

from edgevision.stream import (Pipeline, ClassifyTask, SourceError, csi_pipeline, open_source)
from edgevision.stream.sources import EndOfStream


def test_spec_kinds(tmp_path):
    (tmp_path / "a.png").write_bytes(cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes())
    (tmp_path / "v.mp4").write_bytes(b"")
    (tmp_path / "s.sdp").write_text("v=0")
    cases = {
        0: ("camera", True), "1": ("camera", True), "/dev/video0": ("camera", True),
        "rtsp://user:secret@10.0.0.2/stream": ("network", True), "http://cam/mjpg": ("network", True),
        "rtp://239.0.0.1:5004": ("network", True), "udp://0.0.0.0:1234": ("network", True),
        "videotestsrc ! videoconvert ! appsink": ("gstreamer", True), "csi://1": ("csi", True),
        "test://bars?width=32&height=16": ("test", False), str(tmp_path): ("images", False),
        str(tmp_path / "*.png"): ("images", False), str(tmp_path / "a.png"): ("images", False),
        str(tmp_path / "v.mp4"): ("video", False), str(tmp_path / "s.sdp"): ("network", True),
    }
    for spec, (kind, live) in cases.items():
        s = open_source(spec)
        assert (s.kind, s.live) == (kind, live), spec
    assert "secret" not in open_source("rtsp://user:secret@10.0.0.2/stream").id
    assert open_source(str(tmp_path / "v.mp4")).realtime and not open_source(str(tmp_path / "v.mp4"), realtime=False).realtime


def test_gstreamer_and_csi_pipelines():
    s = open_source("videotestsrc ! videoconvert")
    assert s.options["device"].endswith("appsink drop=true max-buffers=1")
    p = csi_pipeline("csi://1?width=1920&height=1080&fps=60&flip=2")
    assert p.startswith("nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM),width=1920,height=1080,framerate=60/1")
    assert "flip-method=2" in p and p.endswith("appsink drop=true max-buffers=1")
    assert "width=640,height=480,framerate=15/1" in csi_pipeline("csi://0", 640, 480, 15)


@pytest.mark.parametrize("spec, error, words", [
    ("/no/such/file.mp4", SourceError, "no such file"),
    ("ftp://x/y", SourceError, "unknown scheme"),
    ("test://plaid", ValueError, "unknown test pattern"),
    ("test://bars?width=x", ValueError, "must be ints"),
    ("test://bars?colour=1", ValueError, "unknown parameters"),
    ("", ValueError, "empty"),
    (3.5, TypeError, "camera index"),
    ("csi://0?fps=fast", ValueError, "csi://N"),
])
def test_bad_specs(spec, error, words):
    with pytest.raises(error, match=words):
        open_source(spec)


def test_bad_options(tmp_path):
    with pytest.raises(ValueError, match="fourcc"):
        open_source(0, fourcc="MJPEG")
    with pytest.raises(ValueError, match="width"):
        open_source(0, width=0)
    with pytest.raises(ValueError, match="timeout"):
        open_source(0, timeout=0)
    with pytest.raises(SourceError, match="no image files"):
        open_source(str(tmp_path))


def test_patterns_are_deterministic_and_move():
    for pattern in ("moving", "bars", "gradient", "checker", "noise"):
        a = open_source(f"test://{pattern}?width=40&height=30&frames=3").open()
        b = open_source(f"test://{pattern}?width=40&height=30&frames=3").open()
        frames = [a.read()[0] for _ in range(3)]
        assert all(f.shape == (30, 40, 3) and f.dtype == np.uint8 for f in frames)
        assert all(np.array_equal(f, b.read()[0]) for f in frames)
        if pattern != "checker":
            assert not np.array_equal(frames[0], frames[1]), pattern
        with pytest.raises(EndOfStream):
            a.read()


def run(source, **kw):
    results = list(Pipeline(source, ClassifyTask(FakeEngine()), policy="lossless", **kw))
    return results


def test_image_folder_skips_a_broken_file(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((10, 12, 3), 40 * i, np.uint8))
    (tmp_path / "1b.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    p = Pipeline(str(tmp_path), ClassifyTask(FakeEngine()), policy="lossless")
    results = list(p)
    assert [r.seq for r in results] == [0, 1, 2]
    assert p.stats.total("failed") == 1 and p.stats.total("processed") == 3


def test_real_clip_frames_and_timestamps():
    if not VTEST.is_file():
        pytest.skip(f"{VTEST} is not there (../shared/data)")
    p = Pipeline(str(VTEST), ClassifyTask(FakeEngine()), policy="lossless", realtime=False)
    results = []
    for r in p:
        results.append(r)
        if len(results) == 25:
            break
    assert [r.seq for r in results] == list(range(25))
    assert results[0].frame.image.shape == (360, 480, 3)
    pts = [r.frame.pts for r in results]
    assert np.allclose(np.diff(pts), 0.1, atol=1e-3)  # 10 fps
    t = [r.frame.t_capture for r in results]
    assert all(b >= a for a, b in zip(t, t[1:]))


def _clip(path, n=60, size=(96, 64)):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, size)
    for i in range(n):
        f = np.zeros((size[1], size[0], 3), np.uint8)
        cv2.putText(f, str(i), (5, 40), 0, 1, (255, 255, 255), 2)
        f[:, (i * 3) % size[0]] = 200
        w.write(f)
    w.release()


def test_corrupted_file_skips_bad_frames_and_ends(tmp_path):
    good, bad = tmp_path / "good.mp4", tmp_path / "bad.mp4"
    _clip(good)
    data = bytearray(good.read_bytes())
    rng = np.random.default_rng(1)
    for off in range(len(data) // 3, 2 * len(data) // 3, 397):  # garbage over the middle third
        data[off:off + 40] = rng.integers(0, 256, 40, dtype=np.uint8).tobytes()
    bad.write_bytes(bytes(data))
    p = Pipeline(str(bad), ClassifyTask(FakeEngine()), policy="lossless", realtime=False)
    results = list(p)
    assert p.stats.sources[p.sources[0].id].ended
    assert 0 < len(results) < 60
    assert len(results) + p.stats.total("failed") <= 60
    assert p.stats.total("failed") >= 1, "decode failures are counted"
    seqs = [r.seq for r in results]
    assert seqs == sorted(set(seqs))


def test_truncated_and_garbage_files_fail_clearly(tmp_path):
    good = tmp_path / "good.mp4"
    _clip(good)
    (tmp_path / "trunc.mp4").write_bytes(good.read_bytes()[: os.path.getsize(good) // 2])
    (tmp_path / "junk.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    for name in ("trunc.mp4", "junk.mp4"):
        with pytest.raises(SourceError, match="cannot open"):
            run(str(tmp_path / name), realtime=False)


@pytest.mark.parametrize("spec", ["videotestsrc ! videoconvert", "csi://0", "/dev/video97", 97,
                                  "rtsp://127.0.0.1:1/none", "http://127.0.0.1:1/x.mjpg"])
def test_unopenable_live_sources_raise_source_error(spec):
    # nothing listens on port 1, no /dev/video97, and pip's OpenCV has no GStreamer: a clear error at
    # start, not a hang or a crash
    with pytest.raises(SourceError, match="cannot open|no GStreamer support"):
        list(Pipeline(spec, ClassifyTask(FakeEngine()), timeout=1.0))
