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

__all__ = ["__version__", "info", "ops", "stream"]


def __getattr__(name):
    # edgevision.stream (callable: edgevision.stream(source, model=...)) pulls in OpenCV, so it loads on
    # first use rather than with the package.
    if name == "stream":
        import importlib

        return importlib.import_module(".stream", __name__)
    raise AttributeError(f"module 'edgevision' has no attribute {name!r}")
