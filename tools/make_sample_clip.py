#!/usr/bin/env python3
"""Make edgevision/bundled/sample_clip.mp4, the demo's default source: scikit-image's freely licensed
sample photos (see edgevision/bundled/SAMPLE_CLIP.md) filmed by a simulated hand-held camera: pan and
zoom over each photo, shake, a slight roll, sensor noise, exposure drift and an auto-exposure overshoot
after each cut. Deterministic (fixed seed).

    python tools/make_sample_clip.py [-o edgevision/bundled/sample_clip.mp4] [--size 640x360] [--fps 15]

Encodes H.264 through the ffmpeg command when it is installed (small file), else MPEG-4 part 2 through
OpenCV.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

# (scikit-image function, seconds, start and end of the view: centre x, centre y as fractions of the
# photo, zoom as the fraction of the largest 16:9 view of the photo)
SHOTS = [
    ("chelsea", 3.5, (0.50, 0.50, 0.95), (0.42, 0.45, 0.62)),
    ("coffee", 3.5, (0.35, 0.55, 0.80), (0.55, 0.50, 0.95)),
    ("rocket", 3.5, (0.50, 0.70, 0.55), (0.50, 0.40, 0.90)),
    ("astronaut", 3.5, (0.40, 0.45, 0.90), (0.52, 0.35, 0.60)),
]


def load_photo(name: str) -> np.ndarray:
    from skimage import data

    rgb = getattr(data, name)()
    return np.ascontiguousarray(rgb[..., :3][..., ::-1])  # BGR, as OpenCV frames are


def smooth_noise(rng, n: int, scale: float, smooth: int = 5) -> np.ndarray:
    """A random walk low-passed over `smooth` frames: hand tremor rather than white jitter."""
    x = np.cumsum(rng.normal(0, 1, n + smooth))
    x = np.convolve(x, np.ones(smooth) / smooth, "valid")[:n]
    x -= np.linspace(x[0], x[-1], n)  # no drift: the planned path stays in charge
    return x / (np.abs(x).max() + 1e-9) * scale


def frames(size=(640, 360), fps=15.0, seed=0):
    rng = np.random.default_rng(seed)
    w, h = size
    for name, seconds, start, end in SHOTS:
        photo = load_photo(name).astype(np.float32)
        ph, pw = photo.shape[:2]
        n = int(round(seconds * fps))
        shake_x, shake_y = smooth_noise(rng, n, 0.015), smooth_noise(rng, n, 0.012)
        roll = smooth_noise(rng, n, 1.5)  # degrees
        drift = 1.0 + 0.12 * np.sin(np.linspace(0, 2 * np.pi, n) + rng.uniform(0, np.pi))
        for i in range(n):
            t = i / max(1, n - 1)
            e = t * t * (3 - 2 * t)  # ease in and out, as an operator would move
            cx, cy, zoom = (a + (b - a) * e for a, b in zip(start, end))
            # zoom is relative to the largest 16:9 view that fits in the photo; the view stays inside it
            # (a roll and the tremor may show a few replicated edge pixels, as a stabiliser crop would).
            view_h = zoom * min(ph, pw * h / w)
            view_w = view_h * w / h
            cx = np.clip(cx * pw, view_w / 2, pw - view_w / 2) + shake_x[i] * pw
            cy = np.clip(cy * ph, view_h / 2, ph - view_h / 2) + shake_y[i] * ph
            s = h / view_h
            m = cv2.getRotationMatrix2D((cx, cy), roll[i], s)
            m[0, 2] += w / 2 - cx
            m[1, 2] += h / 2 - cy
            img = cv2.warpAffine(photo, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            # Exposure: slow drift, and after the cut the auto-exposure overshoots and settles (~0.5 s).
            gain = drift[i] * (1.0 + 0.45 * np.exp(-i / (0.15 * fps)) * np.cos(i / (0.12 * fps)))
            img = img * gain
            img += rng.normal(0, 3.0, img.shape).astype(np.float32)  # sensor noise
            yield np.clip(img, 0, 255).astype(np.uint8)


def encode(path: Path, size, fps: float, seed: int) -> str:
    w, h = size
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
               "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-c:v", "libx264", "-preset", "slow", "-crf", "28",
               "-g", str(int(fps)), "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(path)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
        for f in frames(size, fps, seed):
            proc.stdin.write(f.tobytes())
        proc.stdin.close()
        if proc.wait() != 0:
            raise RuntimeError(f"ffmpeg failed: {' '.join(cmd)}")
        return "H.264 (ffmpeg libx264, crf 28)"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}")
    for f in frames(size, fps, seed):
        writer.write(f)
    writer.release()
    return "MPEG-4 part 2 (OpenCV mp4v)"


def main(argv=None) -> int:
    default = Path(__file__).resolve().parent.parent / "edgevision" / "bundled" / "sample_clip.mp4"
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--output", type=Path, default=default)
    p.add_argument("--size", default="640x360", help="WIDTHxHEIGHT")
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    codec = encode(args.output, size, args.fps, args.seed)
    n = sum(int(round(s[1] * args.fps)) for s in SHOTS)
    print(f"{args.output}: {n} frames, {size[0]}x{size[1]} at {args.fps:g} fps, {codec}, "
          f"{args.output.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
