"""Drawing on frames: the label panel (top-k with score bars), the status line (FPS and per-stage
latency) and the layouts of the enhance and generate views. Everything draws in place with OpenCV and
scales with the frame size."""
from __future__ import annotations

import numpy as np

FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX


def _cv2():
    import cv2

    return cv2


def _scale(image: np.ndarray) -> float:
    return max(0.35, min(image.shape[:2]) / 720.0 * 1.2)


def _text(image, text, org, scale, color=(255, 255, 255), thickness=1, background=(0, 0, 0)):
    cv2 = _cv2()
    (w, h), base = cv2.getTextSize(text, FONT, scale, thickness)
    x, y = org
    if background is not None:
        x1, y1 = min(image.shape[1], x + w + 4), min(image.shape[0], y + base + 2)
        roi = image[max(0, y - h - 4):y1, max(0, x - 2):x1]
        roi[:] = (roi * 0.4 + np.array(background, np.float32) * 0.6).astype(np.uint8)  # translucent panel
    cv2.putText(image, text, (x, y), FONT, scale, color, thickness, cv2.LINE_AA)
    return h + base + 6


def draw_classification(image: np.ndarray, output, max_rows: int = 3) -> None:
    """Label and score on top, then up to max_rows of the top-k with score bars."""
    s = _scale(image)
    y = int(30 * s)
    y += _text(image, f"{output.label}  {output.score:.0%}", (8, y), 0.8 * s, (80, 255, 80), max(1, round(2 * s)))
    rows = getattr(output, "top_k", [])[1:max_rows]
    bar_w = int(120 * s)
    for label, score in rows:
        h = _text(image, f"{label[:28]} {score:.0%}", (8 + bar_w + 6, y), 0.5 * s, (230, 230, 230))
        _cv2().rectangle(image, (8, y - int(10 * s)), (8 + int(bar_w * score), y), (80, 200, 80), -1)
        y += h


def draw_status(image: np.ndarray, result, stats) -> None:
    """FPS and the stage times of this result along the bottom edge."""
    t = result.timings
    fps = stats.fps if stats is not None else 0.0
    name = result.source_id.rstrip("/").rsplit("/", 1)[-1] if "://" not in result.source_id else result.source_id
    line = (f"{fps:4.1f} fps | wait {t.age_ms:.1f}  pre {t.preprocess_ms:.1f}  infer {t.infer_ms:.1f}  "
            f"post {t.postprocess_ms:.1f} ms | {name} #{result.seq}")
    s = _scale(image)
    _text(image, line, (8, image.shape[0] - int(10 * s)), max(0.4, 0.5 * s), (255, 255, 255))


def beside(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two images side by side, the right one scaled to the left one's height."""
    cv2 = _cv2()
    h = left.shape[0]
    if right.shape[0] != h:
        w = max(1, round(right.shape[1] * h / right.shape[0]))
        right = cv2.resize(right, (w, h), interpolation=cv2.INTER_NEAREST)
    return np.concatenate([left, right], axis=1)


def side_by_side(images: list[np.ndarray], titles: list[str]) -> np.ndarray:
    view = images[0]
    for im in images[1:]:
        view = beside(view, im)
    x = 0
    s = _scale(view)
    for im, title in zip(images, titles):
        _text(view, title, (x + 8, int(24 * s)), 0.6 * s, (255, 255, 255))
        x += im.shape[1] * view.shape[0] // im.shape[0] if im.shape[0] != view.shape[0] else im.shape[1]
    return view


def grid(images: np.ndarray, height: int) -> np.ndarray:
    """[n, h, w, 3] tiles -> a near-square grid scaled (nearest neighbour: GAN pixels stay crisp) to
    `height`."""
    cv2 = _cv2()
    n, h, w = images.shape[:3]
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    canvas = np.zeros((rows * h, cols * w, 3), np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        canvas[r * h:(r + 1) * h, c * w:(c + 1) * w] = images[i]
    width = max(1, round(canvas.shape[1] * height / canvas.shape[0]))
    return cv2.resize(canvas, (width, height), interpolation=cv2.INTER_NEAREST)
