"""edgevision: an edge-deployment SDK for real-time camera-stream classification and generation.

Imports nothing optional: the deploy path works without torch, onnxruntime or TensorRT.
"""
from importlib import metadata as _metadata

from . import _C, ops
from ._info import info

try:
    __version__ = _metadata.version("edgevision")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = _C.VERSION

__all__ = ["__version__", "info", "ops", "load", "Engine", "stream"]


def __getattr__(name):
    # load/Engine come from edgevision.backends on first use: importing edgevision stays cheap (no onnx).
    if name in ("load", "Engine"):
        from . import backends

        return getattr(backends, name)
    # edgevision.stream (callable: edgevision.stream(source, model=...)) is a subpackage loaded on first use.
    if name == "stream":
        import importlib

        return importlib.import_module(".stream", __name__)
    raise AttributeError(f"module 'edgevision' has no attribute {name!r}")
