"""Tasks on a stream: classify, enhance (super-resolution beside bicubic) and generate (the conditional GAN
drawing the class a classifier sees). Each turns a batch of frames into plain result dataclasses through
an Engine (edgevision.load), with the model's preprocessing taken from its metadata and run by the native
preprocess kernel (on the GPU when the engine is, given torch to hold the device buffers).

A task is preprocess(frames) -> infer(prepared) -> postprocess(raw, frames) -> outputs, plus render(),
which draws the result for the window/video sinks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import ops
from . import overlay

TASKS = ("classify", "enhance", "generate")


@dataclass
class Classification:
    label: str
    score: float
    class_id: int
    top_k: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class Enhancement:
    """image: the model's output (uint8 BGR, scale x the model input); bicubic: the same input upscaled
    bicubically, for comparison; input_size: the (h, w) the model saw."""
    image: np.ndarray
    bicubic: np.ndarray
    scale: int
    input_size: tuple[int, int]


@dataclass
class Generation:
    """images: uint8 BGR [n, h, w, 3] samples of the class the classifier sees in the frame."""
    label: str
    score: float
    class_id: int
    images: np.ndarray


def load_engine(model, **load_options):
    """An Engine (anything with run() and metadata is used as given) or a model name/path loaded with
    edgevision.load. Returns (engine, owned): owned engines are closed with the task."""
    if hasattr(model, "run") and hasattr(model, "metadata"):
        return model, False
    from .. import load

    return load(model, **{k: v for k, v in load_options.items() if v is not None}), True


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _on_cuda(engine) -> bool:
    return str(getattr(engine, "device", "cpu")).startswith("cuda")


class ImageBatch:
    """A preallocated [max_batch, 3, h, w] input buffer that the preprocess kernel writes straight into
    (no allocation per frame); on a CUDA engine it is a torch CUDA tensor and the kernel runs there."""

    def __init__(self, engine, size, meta, max_batch: int, fit: str = "crop", crop: float | None = None):
        if fit not in ("crop", "stretch"):
            raise ValueError(f"fit must be 'crop' (keep the aspect ratio, centre crop) or 'stretch', got {fit!r}")
        self.size = tuple(int(v) for v in size)
        self.fit = fit
        # "resize 256, crop 224"-style models record the crop fraction; others see the centre square.
        self.crop = float(crop if crop is not None else meta.get("crop_fraction", 1.0))
        if not 0 < self.crop <= 1:
            raise ValueError(f"crop fraction must be in (0, 1], got {self.crop}")
        self.kw = dict(color="bgr", model_color=str(meta.get("color", "rgb")).lower(),
                       mean=tuple(meta.get("mean", (0.0, 0.0, 0.0))), std=tuple(meta.get("std", (1.0, 1.0, 1.0))),
                       scale=float(meta.get("pixel_scale", 1 / 255)))
        self.cuda = _on_cuda(engine)
        shape = (max_batch, 3) + self.size
        if self.cuda:
            import torch

            self.torch = torch
            self.device = torch.device(engine.device)
            self.buf = torch.empty(shape, dtype=torch.float32, device=self.device)
        else:
            self.buf = np.empty(shape, np.float32)
        self._resize_cache: dict = {}

    def resize_for(self, hw) -> tuple[int, int] | None:
        if self.fit == "stretch" and self.crop == 1.0:
            return None
        key = tuple(hw)
        if key not in self._resize_cache:
            h, w = key
            th, tw = self.size
            if self.fit == "stretch":
                r = (math.ceil(th / self.crop), math.ceil(tw / self.crop))
            else:  # scale the short side so that the target fits, keep the aspect ratio
                s = max(th / h, tw / w) / self.crop
                r = (max(th, round(h * s)), max(tw, round(w * s)))
            self._resize_cache[key] = r
        return self._resize_cache[key]

    def fill(self, images: list[np.ndarray]):
        """The first len(images) rows, preprocessed; returns that view (numpy or torch)."""
        n = len(images)
        if n > len(self.buf):  # more streams than the buffer was made for: grow once
            self.buf = (self.torch.empty((n,) + tuple(self.buf.shape[1:]), dtype=self.buf.dtype, device=self.device)
                        if self.cuda else np.empty((n,) + self.buf.shape[1:], np.float32))
        for i, image in enumerate(images):
            src = image
            if self.cuda:
                src = self.torch.from_numpy(image).to(self.device, non_blocking=True)
            ops.preprocess(src, self.size, resize=self.resize_for(image.shape[:2]), out=self.buf[i:i + 1], **self.kw)
        return self.buf[:n]


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    return x.detach().cpu().numpy()


class Task:
    name = ""

    def __init__(self):
        self._owned: list = []

    def _engine(self, model, load_options):
        engine, owned = load_engine(model, **load_options)
        if owned:
            self._owned.append(engine)
        return engine

    def preprocess(self, frames):
        raise NotImplementedError

    def infer(self, prepared):
        raise NotImplementedError

    def postprocess(self, raw, frames) -> list:
        raise NotImplementedError

    def render(self, result, stats) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    def close(self) -> None:
        for engine in self._owned:
            engine.close()
        self._owned.clear()


class ClassifyTask(Task):
    """Top-k labels and scores. smoothing in [0, 1): exponential moving average of the class
    probabilities per source (0 = off; 0.8 averages over about five frames) to steady the label on a
    live view."""
    name = "classify"

    def __init__(self, model="imagenet-efficientnet-lite0", *, top_k: int = 5, smoothing: float = 0.0,
                 fit: str = "crop", max_batch: int = 1, backend="auto", device="auto", precision="fp32", **load_options):
        super().__init__()
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive int, got {top_k!r}")
        if not (isinstance(smoothing, (int, float)) and 0 <= smoothing < 1):
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
        self.engine = self._engine(model, dict(backend=backend, device=device, precision=precision, **load_options))
        meta = self.engine.metadata
        if meta.get("task", "classify") != "classify":
            raise ValueError(f"the classify task needs a classify model; this one's task is {meta.get('task')!r}")
        spec = self.engine.input_spec[0]
        size = meta.get("input_size") or spec.shape[2:]
        self.labels = [str(v) for v in meta.get("labels", [])]
        self.top_k, self.smoothing = top_k, float(smoothing)
        self.batch = ImageBatch(self.engine, size, meta, max_batch, fit)
        self._ema: dict[str, np.ndarray] = {}

    def describe(self) -> str:
        return f"classify ({self.engine.metadata.get('name') or 'model'}, {len(self.labels)} classes)"

    def preprocess(self, frames):
        return self.batch.fill([f.image for f in frames])

    def infer(self, x):
        return _to_numpy(self.engine.run(x)[0])

    def classify(self, logits: np.ndarray, source_ids) -> list[Classification]:
        probs = _softmax(logits.reshape(len(logits), -1).astype(np.float32, copy=False))
        out = []
        for sid, p in zip(source_ids, probs):
            if self.smoothing:
                prev = self._ema.get(sid)
                p = p if prev is None else self.smoothing * prev + (1 - self.smoothing) * p
                self._ema[sid] = p
            k = min(self.top_k, len(p))
            top = np.argpartition(-p, k - 1)[:k]
            top = top[np.argsort(-p[top])]
            pairs = [(self._label(i), float(p[i])) for i in top]
            out.append(Classification(pairs[0][0], pairs[0][1], int(top[0]), pairs))
        return out

    def _label(self, i: int) -> str:
        return self.labels[i] if i < len(self.labels) else str(i)

    def postprocess(self, logits, frames):
        return self.classify(logits, [f.source_id for f in frames])

    def render(self, result, stats):
        view = result.frame.image.copy()
        overlay.draw_classification(view, result.output)
        overlay.draw_status(view, result, stats)
        return view


class EnhanceTask(Task):
    """Super-resolution: the model (metadata sr_scale; RGB or the Y of YCbCr) upscales a frame, shown beside
    bicubic. input_size (h, w): what the model sees; default: the frame downscaled by the model's scale
    (so that its output has the frame's size and shows what SR recovers), at most max_input_width wide to
    stay real-time. upscale_input=True feeds the frame at its own size instead (a low-resolution camera)."""
    name = "enhance"

    def __init__(self, model="espcn-x2", *, input_size=None, max_input_width: int = 320, upscale_input: bool = False,
                 backend="auto", device="auto", precision="fp32", **load_options):
        super().__init__()
        self.model, self.input_size = model, None if input_size is None else tuple(int(v) for v in input_size)
        self.max_input_width, self.upscale_input = int(max_input_width), bool(upscale_input)
        self.load_options = dict(backend=backend, device=device, precision=precision, **load_options)
        self.engine = None
        if hasattr(model, "run"):
            self._bind(self._engine(model, self.load_options))
        else:  # read the metadata now, so that a wrong model fails before the stream starts
            from ..model_files import read_metadata

            self._check_meta(read_metadata(model))

    @staticmethod
    def _check_meta(meta):
        if meta.get("task") != "enhance":
            raise ValueError(f"the enhance task needs an enhance (super-resolution) model; this one's task is "
                             f"{meta.get('task')!r}")
        return meta

    def _bind(self, engine):
        self.engine = engine
        meta = self._check_meta(engine.metadata)
        self.scale = int(meta.get("sr_scale", 2))
        self.y_only = str(meta.get("channels", "RGB")).upper() == "Y"
        self.pixel_scale = float(meta.get("pixel_scale", 1 / 255))
        self.color = str(meta.get("color", "rgb")).lower()

    def _lr_size(self, hw) -> tuple[int, int]:
        if self.input_size:
            return self.input_size
        h, w = hw
        if not self.upscale_input:
            h, w = h // self.scale, w // self.scale
        if w > self.max_input_width:
            h, w = round(h * self.max_input_width / w), self.max_input_width
        return max(1, h), max(1, w)

    def preprocess(self, frames):
        if self.engine is None:
            from ..model_files import read_metadata

            meta = read_metadata(self.model)
            self.scale = int(meta.get("sr_scale", 2))
            size = self._lr_size(frames[0].image.shape[:2])
            channels = 1 if str(meta.get("channels", "RGB")).upper() == "Y" else 3
            self._bind(self._engine(self.model, dict(self.load_options, batch=None,
                                                     input_shapes={"input": [1, channels, *size]})))
        return [self._prepare(f.image) for f in frames]

    def _prepare(self, image):
        # RGB in 0..1 at the model's input size, from the native kernel (resize + colour + scale in one pass).
        rgb = ops.preprocess(image, self._lr_size(image.shape[:2]), color="bgr", model_color="rgb",
                             scale=self.pixel_scale)
        if not self.y_only:
            return (rgb if self.color == "rgb" else np.ascontiguousarray(rgb[:, ::-1])), rgb
        ycc = _rgb_to_ycbcr(rgb)
        return np.ascontiguousarray(ycc[:, :1]), ycc

    def infer(self, prepared):
        # One frame per run: frames of different sources may differ in size, and SR is heavy enough that
        # batching saves little.
        outs = []
        for x, lr in prepared:
            if _on_cuda(self.engine):
                import torch

                x = torch.from_numpy(x).to(self.engine.device)
            outs.append((_to_numpy(self.engine.run(x)[0]), lr))
        return outs

    def postprocess(self, raw, frames):
        cv2 = _cv2()
        results = []
        for out, lr in raw:
            h, w = lr.shape[2:]
            H, W = out.shape[2:]
            up = np.stack([cv2.resize(c, (W, H), interpolation=cv2.INTER_CUBIC) for c in lr[0]])[None]
            if self.y_only:
                sr = up.copy()
                sr[0, 0] = out[0, 0]
                sr_rgb, up_rgb = _ycbcr_to_rgb(sr), _ycbcr_to_rgb(up)
            else:
                sr_rgb = out if self.color == "rgb" else out[:, ::-1]
                up_rgb = up
            sr_img = ops.postprocess_image(np.ascontiguousarray(sr_rgb, np.float32), color="bgr", model_color="rgb")
            up_img = ops.postprocess_image(np.ascontiguousarray(up_rgb, np.float32), color="bgr", model_color="rgb")
            results.append(Enhancement(sr_img, up_img, H // h, (h, w)))
        return results

    def render(self, result, stats):
        view = overlay.side_by_side([result.output.bicubic, result.output.image],
                                    [f"bicubic x{result.output.scale}", f"model x{result.output.scale}"])
        overlay.draw_status(view, result, stats)
        return view


def _cv2():
    import cv2

    return cv2


# BT.601 studio range (16..235), as the SR models are trained (edgevision.data.sr), on RGB in 0..1.
_YCC = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]], np.float32) / 255
_YCC_OFF = np.array([16, 128, 128], np.float32) / 255


def _rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    return (np.einsum("ij,njhw->nihw", _YCC, rgb) + _YCC_OFF[None, :, None, None]).astype(np.float32)


_RGB = np.linalg.inv(_YCC).astype(np.float32)


def _ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    return np.einsum("ij,njhw->nihw", _RGB, ycc - _YCC_OFF[None, :, None, None]).astype(np.float32)


class GenerateTask(Task):
    """The conditional generator draws `samples` images of the class that the classifier currently sees in
    the frame (default classifier: the bundled cifar10-fastnet, else cifar10-seed). Latents walk smoothly
    (spherical interpolation between random points, `motion` per frame) so the samples morph instead of
    flickering. The classifier's labels must name the generator's classes (both CIFAR-10 by default)."""
    name = "generate"

    def __init__(self, model="cifar10-dcgan", *, classifier=None, samples: int = 4, motion: float = 0.05,
                 smoothing: float = 0.6, seed: int = 0, backend="auto", device="auto", precision="fp32",
                 max_batch: int = 1, **load_options):
        super().__init__()
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be a positive int, got {samples!r}")
        opts = dict(backend=backend, device=device, precision=precision, **load_options)
        self.generator = self._engine(model, opts)
        meta = self.generator.metadata
        if meta.get("task") != "generate":
            raise ValueError(f"the generate task needs a generate (GAN) model; this one's task is {meta.get('task')!r}")
        names = [s.name for s in self.generator.input_spec]
        if names != ["z", "class_onehot"]:
            raise ValueError(f"the generator's inputs must be ['z', 'class_onehot'] (edgevision.export), got {names}")
        self.latent = int(meta.get("latent_size", self.generator.input_spec[0].shape[1]))
        self.num_classes = int(meta.get("num_classes", self.generator.input_spec[1].shape[1]))
        self.classifier = ClassifyTask(classifier or _default_cifar10_classifier(), top_k=1, smoothing=smoothing, max_batch=max_batch, **opts)
        gen_labels = [str(v) for v in meta.get("labels", [])]
        self.class_map = _class_map(self.classifier.labels, gen_labels, self.num_classes)
        self.labels = gen_labels or [str(i) for i in range(self.num_classes)]
        self.samples, self.motion = samples, float(motion)
        self.rng = np.random.default_rng(seed)
        self._a = self.rng.standard_normal((samples, self.latent)).astype(np.float32)
        self._b = self.rng.standard_normal((samples, self.latent)).astype(np.float32)
        self._t = 0.0
        self._onehot = np.zeros((samples, self.num_classes), np.float32)

    def describe(self) -> str:
        return f"generate ({self.generator.metadata.get('name') or 'generator'} from {self.classifier.describe()})"

    def _latents(self) -> np.ndarray:
        self._t += self.motion
        if self._t >= 1.0:
            self._a, self._b, self._t = self._b, self.rng.standard_normal(self._a.shape).astype(np.float32), 0.0
        a, b, t = self._a, self._b, self._t
        dot = np.sum(a * b, 1, keepdims=True) / (np.linalg.norm(a, axis=1, keepdims=True) * np.linalg.norm(b, axis=1, keepdims=True))
        omega = np.arccos(np.clip(dot, -1, 1))
        so = np.sin(omega)
        so = np.where(so < 1e-6, 1.0, so)
        return (np.sin((1 - t) * omega) / so * a + np.sin(t * omega) / so * b).astype(np.float32)

    def preprocess(self, frames):
        return self.classifier.preprocess(frames), [f.source_id for f in frames]

    def infer(self, prepared):
        x, source_ids = prepared
        classes = self.classifier.classify(self.classifier.infer(x), source_ids)
        images = []
        for c in classes:
            self._onehot[:] = 0
            self._onehot[:, self.class_map[c.class_id]] = 1
            z, onehot = self._latents(), self._onehot
            if _on_cuda(self.generator):
                import torch

                z, onehot = (torch.from_numpy(v).to(self.generator.device) for v in (z, onehot))
            images.append(_to_numpy(self.generator.run([z, onehot])[0]))
        return classes, images

    def postprocess(self, raw, frames):
        classes, images = raw
        out = []
        for c, imgs in zip(classes, images):
            # Tanh output in [-1, 1]: (x * 0.5 + 0.5) * 255
            tiles = np.stack([ops.postprocess_image(np.ascontiguousarray(im[None]), mean=(0.5,) * 3, std=(0.5,) * 3,
                                                    color="bgr", model_color="rgb") for im in imgs])
            gid = self.class_map[c.class_id]
            out.append(Generation(self.labels[gid], c.score, gid, tiles))
        return out

    def render(self, result, stats):
        view = overlay.beside(result.frame.image, overlay.grid(result.output.images, result.frame.image.shape[0]))
        overlay.draw_classification(view, result.output)
        overlay.draw_status(view, result, stats)
        return view

    def close(self) -> None:
        self.classifier.close()
        super().close()


def _default_cifar10_classifier() -> str:
    """The most accurate bundled CIFAR-10 classifier (fastnet, else the seed CNN)."""
    from ..model_files import bundled_models

    bundled = bundled_models()
    return next((n for n in ("cifar10-fastnet", "cifar10-seed") if n in bundled), "cifar10-fastnet")


def _class_map(classifier_labels: list[str], generator_labels: list[str], num_classes: int) -> list[int]:
    """Classifier class index -> generator class index: by label name, or by index where labels are missing."""
    if classifier_labels and generator_labels:
        index = {name.lower(): i for i, name in enumerate(generator_labels)}
        missing = [n for n in classifier_labels if n.lower() not in index]
        if missing:
            raise ValueError(f"the classifier's classes {missing[:5]} are not among the generator's "
                             f"{generator_labels[:10]}: give a classifier trained on the generator's classes")
        return [index[n.lower()] for n in classifier_labels]
    n = len(classifier_labels) or num_classes
    if n != num_classes:
        raise ValueError(f"the classifier has {n} classes, the generator {num_classes}; without labels they must match")
    return list(range(num_classes))


def make_task(task: str | None, model=None, **options) -> Task:
    """A task by name; task None takes it from the model's metadata (a classify, enhance or generate
    model). Options go to the task (and the load options to edgevision.load)."""
    if task is None:
        if model is None:
            task = "classify"
        else:
            if hasattr(model, "metadata"):
                meta = model.metadata
            else:
                from ..model_files import read_metadata

                meta = read_metadata(model)
            task = meta.get("task", "classify")
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    cls = {"classify": ClassifyTask, "enhance": EnhanceTask, "generate": GenerateTask}[task]
    return cls(model, **options) if model is not None else cls(**options)
