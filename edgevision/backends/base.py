"""The Engine every backend returns, its errors, the facts read once from a model file (ModelSource), and
the model's own image preprocessing from its metadata.

Torch-free: torch is imported only when a torch tensor is passed in or a CUDA engine stages numpy data.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..graph.ir import TensorSpec


@functools.lru_cache(maxsize=None)
def _np_dtype(name) -> np.dtype:
    return np.dtype(name)

log = logging.getLogger("edgevision")


class BackendUnavailableError(ImportError):
    """A backend's package (TensorRT, ONNX Runtime, torch) or device is missing; the message says what to install."""


class EngineClosedError(RuntimeError):
    """run() on an engine after close()."""


def require(module: str, extra: str, backend: str):
    """Import an optional package or raise BackendUnavailableError naming the pip extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise BackendUnavailableError(
            f"the {backend} backend needs the {module} package, which is not installed: "
            f"pip install edgevision[{extra}] ({e})") from e


# ------------------------------------------------------------------------------------------------
# The model file
# ------------------------------------------------------------------------------------------------
class ModelSource:
    """An ONNX file read once: its bytes (hashed by engine caches), the parsed proto, the decoded metadata
    and the declared inputs/outputs, dynamic dims as None."""

    def __init__(self, data: bytes, path: Path | None = None):
        import onnx

        from ..graph import InvalidModelError
        from ..model_files import decode_metadata

        self.data = bytes(data)
        self.path = path
        self.name = path.stem if path else "model"
        try:
            self.proto = onnx.load_from_string(self.data)
        except Exception as e:  # noqa: BLE001 - protobuf raises its own DecodeError types
            raise InvalidModelError(f"{path or 'model bytes'}: not a readable ONNX model ({e})") from None
        self.metadata = decode_metadata(self.proto)
        initializers = {t.name for t in self.proto.graph.initializer}
        self.inputs = [_declared(v, path) for v in self.proto.graph.input if v.name not in initializers]
        self.outputs = [_declared(v, path) for v in self.proto.graph.output]
        if not self.inputs or not self.outputs:
            raise InvalidModelError(f"{path or 'model'}: the graph has no inputs or no outputs")

    @classmethod
    def open(cls, model) -> "ModelSource":
        """A path, a bundled model's name, bytes or an onnx.ModelProto."""
        from ..model_files import resolve_model

        if isinstance(model, (bytes, bytearray, memoryview)):
            return cls(bytes(model))
        if hasattr(model, "SerializeToString"):
            return cls(model.SerializeToString())
        path = resolve_model(model)
        return cls(path.read_bytes(), path)

    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def resolve_shapes(self, batch: int | None = None, input_shapes: dict | None = None) -> list[TensorSpec]:
        """Concrete input shapes: a dynamic leading dim becomes `batch` (default 1), other dynamic dims come
        from input_shapes={"name": [...]}; a dim still unknown, or a shape contradicting the model, is a
        ValueError naming the input."""
        input_shapes = dict(input_shapes or {})
        unknown = set(input_shapes) - {s.name for s in self.inputs}
        if unknown:
            raise ValueError(f"input_shapes names {sorted(unknown)}, which the model does not have; its inputs "
                             f"are {[s.name for s in self.inputs]}")
        if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool) or batch < 1):
            raise ValueError(f"batch must be a positive int, got {batch!r}")
        specs = []
        for s in self.inputs:
            shape = list(s.shape)
            if s.name in input_shapes:
                given = [int(d) for d in input_shapes[s.name]]
                if len(given) != len(shape) or any(d is not None and d != g for d, g in zip(shape, given)):
                    raise ValueError(f"input_shapes[{s.name!r}] = {given} does not fit the model's declared "
                                     f"shape {_fmt(shape)}")
                if min(given, default=1) < 1:
                    raise ValueError(f"input_shapes[{s.name!r}] = {given}: dims must be positive")
                shape = given
            if shape and batch is not None and shape[0] != batch:
                if s.shape[0] is not None:
                    raise ValueError(f"batch={batch} but input {s.name!r} has a fixed batch of {s.shape[0]}")
                if shape[0] is not None:
                    raise ValueError(f"batch={batch} contradicts input_shapes[{s.name!r}] = {shape}")
                shape[0] = batch
            if shape and shape[0] is None:
                shape[0] = 1
            if None in shape:
                raise ValueError(f"input {s.name!r} has dynamic dims {_fmt(s.shape)}: give them with "
                                 f"input_shapes={{{s.name!r}: [...]}}")
            specs.append(TensorSpec(s.name, tuple(shape), s.dtype))
        return specs

    def dynamic_dims(self) -> list[tuple[int, ...]]:
        """Per input, the dims the model declares dynamic (which a dynamic backend lets vary in run())."""
        return [tuple(i for i, d in enumerate(s.shape) if d is None) for s in self.inputs]


def _declared(value, path) -> TensorSpec:
    import onnx

    from ..graph import InvalidModelError

    t = value.type.tensor_type
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)).name
    except (KeyError, TypeError, ValueError):
        raise InvalidModelError(f"{path or 'model'}: {value.name!r} has no tensor element type") from None
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim]
    return TensorSpec(value.name, tuple(dims), dtype)


def _fmt(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


# ------------------------------------------------------------------------------------------------
# Tensors in and out
# ------------------------------------------------------------------------------------------------
def is_torch(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def torch_device_of(x) -> str:
    """"cpu" or "cuda:N" of a torch tensor."""
    return "cpu" if x.device.type == "cpu" else f"cuda:{x.device.index or 0}"


def stage_on_device(arrays, device: str) -> list:
    """Inputs of a CUDA engine as torch tensors on `device`: those already there as they are (bound directly),
    the rest copied there; the copies are complete on return, whatever stream the engine then runs on."""
    import torch

    staged, copied = [], False
    for a in arrays:
        if is_torch(a) and torch_device_of(a) == device:
            staged.append(a)
        else:
            host = a if isinstance(a, np.ndarray) else a.cpu().numpy()
            staged.append(torch.from_numpy(np.ascontiguousarray(host)).to(device))
            copied = True
    if copied:
        torch.cuda.current_stream(torch.device(device)).synchronize()
    return staged


def hold_until_done(tensors, stream: int, device: str) -> None:
    """Tell torch's caching allocator that `stream` uses these tensors, so their memory is not handed out
    again before the work enqueued there has run."""
    import torch

    ext = torch.cuda.ExternalStream(stream, device=torch.device(device))
    for t in tensors:
        t.record_stream(ext)


def cuda_stream_handle(stream, device: str) -> int:
    """An int CUDA stream handle: given as int, torch.cuda.Stream or CuPy stream; default torch's current
    stream on `device` (0, the legacy default stream, without torch)."""
    if stream is not None:
        for attr in ("cuda_stream", "ptr"):
            if hasattr(stream, attr):
                return int(getattr(stream, attr))
        if isinstance(stream, bool) or not isinstance(stream, int):
            raise TypeError(f"stream must be an int handle, a torch.cuda.Stream or a CuPy stream, got "
                            f"{type(stream).__name__}")
        return stream
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.current_stream(torch.device(device)).cuda_stream


# ------------------------------------------------------------------------------------------------
# The Engine
# ------------------------------------------------------------------------------------------------
class Engine:
    """A compiled model: `run(inputs)` -> list of outputs in `output_spec` order.

    inputs: one array (single-input models), a list in `input_spec` order, or a dict by input name. numpy
    arrays give numpy outputs; torch tensors give torch tensors on the same device (CUDA tensors are bound
    directly on CUDA engines, copied on CPU engines). dtypes must match input_spec exactly; shapes too,
    except the dims `variable_dims` lets vary (the dynamic dims of the model on backends that accept them).

    Thread safety: run() may be called from several threads; each backend serialises what it must (the
    native Plan and the TensorRT execution context take a lock), so threads sharing one engine take turns.
    For parallel inference give each thread its own engine.
    """

    backend = ""

    def __init__(self, source: ModelSource, *, device: str, precision: str, input_spec, output_spec,
                 variable_dims=None):
        self.source = source
        self.device = device
        self.precision = precision
        self.input_spec = list(input_spec)
        self.output_spec = list(output_spec)
        self.metadata = dict(source.metadata)
        self.variable_dims = [tuple(v) for v in (variable_dims or [()] * len(self.input_spec))]
        self._closed = False

    # -- public API -------------------------------------------------------------------------------
    def run(self, inputs) -> list:
        """Run one inference; see the class docstring for what inputs may be."""
        arrays = self._check(inputs)
        return self._run(arrays)

    __call__ = run

    def run_async(self, inputs, stream=None) -> list:
        """CUDA engines: enqueue one inference on `stream` (int handle or torch/CuPy stream; default the current
        torch stream) and return the outputs without waiting; they are ready once the stream is."""
        if not self.device.startswith("cuda"):
            raise ValueError(f"run_async needs a CUDA engine; this {self.backend} engine runs on {self.device}")
        arrays = self._check(inputs)
        return self._run_async(arrays, cuda_stream_handle(stream, self.device))

    def summary(self) -> str:
        lines = [f"{self.backend} engine on {self.device}, {self.precision}" + (
            f" ({self.source.path})" if self.source.path else "")]
        lines += [f"  input  {s.name}: {list(s.shape)} {s.dtype}" for s in self.input_spec]
        lines += [f"  output {s.name}: {list(s.shape)} {s.dtype}" for s in self.output_spec]
        return "\n".join(lines)

    def close(self) -> None:
        """Release the backend's resources; later run() calls raise EngineClosedError."""
        if not self._closed:
            self._closed = True
            self._close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        state = ", closed" if self._closed else ""
        return (f"<edgevision.Engine {self.backend} {self.device} {self.precision} "
                f"inputs={[(s.name, list(s.shape)) for s in self.input_spec]}{state}>")

    def preprocess(self, image: np.ndarray):
        """A uint8 [h, w, 3] BGR image (as cv2.imread gives) -> this model's input [1, c, h, w] float32,
        through the preprocessing its metadata describes."""
        return preprocess_image(self.metadata, image, self.input_spec[0])

    # -- for backends -------------------------------------------------------------------------------
    def _run(self, arrays: list) -> list:
        raise NotImplementedError

    def _run_async(self, arrays: list, stream: int) -> list:
        raise ValueError(f"the {self.backend} backend has no asynchronous run")

    def _close(self) -> None:
        pass

    def _check(self, inputs) -> list:
        """inputs as given -> a list in input_spec order, each checked for kind, dtype and shape."""
        if self._closed:
            raise EngineClosedError(f"this {self.backend} engine is closed")
        names = [s.name for s in self.input_spec]
        if isinstance(inputs, dict):
            missing, extra = [n for n in names if n not in inputs], [k for k in inputs if k not in names]
            if missing or extra:
                raise ValueError(f"inputs dict: missing {missing}, unexpected {extra}; the model's inputs are "
                                 f"{names}")
            items = [inputs[n] for n in names]
        elif isinstance(inputs, (list, tuple)):
            items = list(inputs)
            if len(items) != len(names):
                raise ValueError(f"got {len(items)} inputs, the model takes {len(names)}: {names}")
        else:
            if len(names) != 1:
                raise ValueError(f"the model takes {len(names)} inputs {names}: pass a list or a dict")
            items = [inputs]
        return [self._check_one(x, spec, var) for x, spec, var in zip(items, self.input_spec, self.variable_dims)]

    def _check_one(self, x, spec: TensorSpec, variable):
        # Per-call path: numpy dtypes compare as objects; their names are built only for a message.
        if isinstance(x, np.ndarray):
            ok_dtype, shape = x.dtype == _np_dtype(spec.dtype), x.shape
        elif is_torch(x):
            ok_dtype = str(x.dtype).replace("torch.", "") == _np_dtype(spec.dtype).name
            shape = tuple(x.shape)
        else:
            raise TypeError(f"input {spec.name!r}: expected a numpy array or a torch tensor, got {type(x).__name__}")
        if not ok_dtype:
            got = x.dtype.name if isinstance(x, np.ndarray) else str(x.dtype).replace("torch.", "")
            raise TypeError(f"input {spec.name!r}: expected dtype {_np_dtype(spec.dtype).name}, got {got}")
        ok = len(shape) == len(spec.shape) and all(
            (d >= 1 if i in variable else d == e) for i, (d, e) in enumerate(zip(shape, spec.shape)))
        if not ok:
            expect = [("*" if i in variable else e) for i, e in enumerate(spec.shape)]
            raise ValueError(f"input {spec.name!r}: expected shape {expect} ('*' = any size), got {list(shape)}")
        if isinstance(x, np.ndarray):
            return np.ascontiguousarray(x)
        if x.requires_grad:
            x = x.detach()
        return x.contiguous()


class ProgramCache:
    """Compiled programs keyed by input shapes, compiled on first use, the `limit` most recently used kept.
    Lets fixed-shape backends (native, torch) accept every size of a model's dynamic dims."""

    def __init__(self, compile_fn, limit: int = 8):
        self._compile = compile_fn
        self._limit = limit
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, shapes: tuple):
        with self._lock:
            if shapes in self._items:
                self._items.move_to_end(shapes)
                return self._items[shapes]
        program = self._compile(shapes)  # outside the lock: compiling can take seconds
        with self._lock:
            self._items[shapes] = program
            self._items.move_to_end(shapes)
            while len(self._items) > self._limit:
                self._items.popitem(last=False)
        return program

    def first(self):
        with self._lock:
            return next(iter(self._items.values()))

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


# ------------------------------------------------------------------------------------------------
# Preprocessing from metadata
# ------------------------------------------------------------------------------------------------
def preprocess_image(metadata: dict, image: np.ndarray, spec: TensorSpec | None = None) -> np.ndarray:
    """A uint8 [h, w, 3] BGR image -> float32 [1, c, h', w'] as the model expects it (metadata of
    edgevision.export): classify models resize to input_size (or the spec's size), scale by pixel_scale,
    subtract mean, divide by std, in the model's colour order; enhance models take the image at its own size,
    RGB or the Y of YCbCr in 0..1."""
    from .. import ops

    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be a uint8 [h, w, 3] BGR array, got "
                         f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}")
    task = metadata.get("task", "classify")
    scale = float(metadata.get("pixel_scale", 1 / 255))
    color = metadata.get("color", "rgb")
    if task == "classify":
        if "input_size" in metadata:
            size = tuple(int(v) for v in metadata["input_size"])
        elif spec is not None and len(spec.shape) == 4:
            size = tuple(spec.shape[2:])
        else:
            raise ValueError("the model's metadata has no input_size and its input is not [n, 3, h, w]")
        mean = metadata.get("mean", (0.0, 0.0, 0.0))
        std = metadata.get("std", (1.0, 1.0, 1.0))
        return ops.preprocess(image, size, color="bgr", model_color=color, mean=mean, std=std, scale=scale)
    if task == "enhance":
        if str(metadata.get("channels", "RGB")).upper() == "Y":
            # BT.601 luma in 16/255 .. 235/255, the formula the SR training data uses (edgevision.data.sr).
            b, g, r = (image[..., i].astype(np.float32) / 255 for i in range(3))
            y = (16 + 65.481 * r + 128.553 * g + 24.966 * b) / 255
            return y[None, None].astype(np.float32)
        return ops.preprocess(image, image.shape[:2], color="bgr", model_color=color, scale=scale)
    raise ValueError(f"a {task!r} model takes no image input (task must be classify or enhance)")
