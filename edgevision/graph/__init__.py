"""ONNX -> native plan: import (onnx_import), IR (ir), graph passes (passes), arena planning (memory),
lowering and the compiled Program (program). Needs `onnx` and numpy, never torch."""
from .ir import Graph, InvalidModelError, Node, TensorSpec, UnsupportedModelError, Value
from .onnx_import import SUPPORTED_OPS, import_model, load_model
from .passes import optimize
from .program import Program, compile_onnx, compile_spec, lower

__all__ = [
    "Graph", "InvalidModelError", "Node", "Program", "SUPPORTED_OPS", "TensorSpec", "UnsupportedModelError",
    "Value", "compile_onnx", "compile_spec", "import_model", "load_model", "lower", "optimize",
]
