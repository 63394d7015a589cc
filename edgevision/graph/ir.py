"""The graph IR between ONNX import and the plan: values with static shapes (constants hold their
numpy data), nodes whose op and attrs are already those of the plan (csrc/runtime/plan.h) plus a
few IR-only ops that the passes remove or lower, and the import error classes.

IR-only ops:
  identity  y = x (ONNX Identity / Dropout); removed by passes.remove_identity
  reshape   y = x with another shape (Reshape, Flatten, Squeeze, Unsqueeze); lowered to an alias
  onnx      an ONNX op kept only so that constant folding or a pattern (Erf in GELU) can consume
            it; attrs: "op_type" plus the ONNX attributes. One left after the passes is unsupported.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Ops the plan executes (section 2 of the runtime contract).
PLAN_OPS = frozenset({
    "conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "global_avg_pool", "global_max_pool",
    "gemm", "matmul", "pixel_shuffle", "resize", "softmax", "binary", "activation", "batch_norm",
    "concat", "strided_copy", "pad", "lrn", "reduce", "copy", "conv2d_dw_pw",
})
# Ops whose epilogue takes a fused activation ("act", "alpha", "beta").
EPILOGUE_OPS = frozenset({"conv2d", "conv_transpose2d", "gemm", "binary", "batch_norm"})
# The epilogue attrs every op with an activation carries (activation itself included).
NO_ACT = {"act": "none", "alpha": 0.0, "beta": 0.0, "residual_after_act": False}


def act_attrs(act: str, alpha: float = 0.0, beta: float = 0.0) -> dict:
    return {"act": act, "alpha": float(alpha), "beta": float(beta), "residual_after_act": False}


class UnsupportedModelError(ValueError):
    """A valid ONNX model that uses an op, attribute value or dtype the native runtime lacks."""


class InvalidModelError(ValueError):
    """A malformed ONNX model: unreadable bytes, failed checks, missing tensors, bad shapes."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, static shape and dtype of one model input or output."""
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass
class Value:
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    data: np.ndarray | None = None  # set for constants

    @property
    def is_const(self) -> bool:
        return self.data is not None


@dataclass
class Node:
    op: str
    name: str          # the ONNX node's name (or a name derived from it), for messages and summaries
    inputs: list[str]  # value names; "" marks an absent optional input
    outputs: list[str]
    attrs: dict = field(default_factory=dict)
    onnx_op: str = ""  # the ONNX op type this node came from, for messages

    def describe(self) -> str:
        return f"{self.onnx_op or self.op} node {self.name!r}"


class Graph:
    """Values by name, nodes in a topological order, graph inputs and outputs by value name."""

    def __init__(self):
        self.values: dict[str, Value] = {}
        self.nodes: list[Node] = []
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.opset = 0
        self.metadata: dict = {}
        self._counter = 0

    def unique_name(self, base: str) -> str:
        while True:
            self._counter += 1
            name = f"{base}#{self._counter}"
            if name not in self.values:
                return name

    def add_value(self, name: str, shape, dtype: str = "float32", data: np.ndarray | None = None) -> Value:
        v = Value(name, tuple(int(d) for d in shape), dtype, data)
        self.values[name] = v
        return v

    def add_const(self, base: str, data: np.ndarray) -> str:
        name = self.unique_name(base)
        data = np.asarray(data, order="C")
        self.add_value(name, data.shape, str(data.dtype), data)
        return name

    def const(self, name: str) -> np.ndarray | None:
        v = self.values.get(name) if name else None
        return None if v is None else v.data

    def producers(self) -> dict[str, Node]:
        return {o: n for n in self.nodes for o in n.outputs}

    def consumers(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {}
        for n in self.nodes:
            for i in n.inputs:
                if i:
                    out.setdefault(i, []).append(n)
        return out

    def replace_uses(self, old: str, new: str) -> None:
        """Every node reading `old` reads `new` instead (graph outputs are left alone)."""
        for n in self.nodes:
            n.inputs = [new if i == old else i for i in n.inputs]

    def prune_values(self) -> None:
        """Drop values that no node or graph input/output mentions."""
        used = set(self.inputs) | set(self.outputs)
        for n in self.nodes:
            used.update(i for i in n.inputs if i)
            used.update(n.outputs)
        self.values = {k: v for k, v in self.values.items() if k in used}

    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec(n, self.values[n].shape, self.values[n].dtype) for n in self.inputs]

    def output_specs(self) -> list[TensorSpec]:
        return [TensorSpec(n, self.values[n].shape, self.values[n].dtype) for n in self.outputs]

    def __repr__(self) -> str:
        lines = [f"Graph(inputs={self.inputs}, outputs={self.outputs})"]
        for n in self.nodes:
            shapes = [self.values[o].shape for o in n.outputs]
            lines.append(f"  {n.op:16s} {n.name}: {n.inputs} -> {n.outputs} {shapes} {n.attrs}")
        return "\n".join(lines)
