"""The onnxruntime backend: an ONNX Runtime InferenceSession (CPUExecutionProvider, or CUDAExecutionProvider
with the CPU as fallback). Dynamic: every dim the model declares dynamic may vary in run().

fp32 runs the model as it is; int8 runs the QDQ model made by edgevision.backends.quantize from calib=IMAGE_DIR
(the file TensorRT would build), which makes the quantisation error measurable without a GPU.
"""
from __future__ import annotations

import numpy as np

from .base import BackendUnavailableError, Engine, is_torch, torch_device_of


class OnnxRuntimeEngine(Engine):
    backend = "onnxruntime"

    def __init__(self, source, *, device="cpu", precision="fp32", batch=None, input_shapes=None, threads=None,
                 calib=None, calib_images=64):
        from .base import require

        ort = require("onnxruntime", "ort", "onnxruntime")
        if precision not in ("fp32", "int8"):
            raise ValueError(f"the onnxruntime backend runs fp32, or int8 with calib=IMAGE_DIR; not {precision!r}")
        data = source.data
        if precision == "int8":
            from .quantize import quantized_model

            data = quantized_model(source, calib, num_images=calib_images, input_shapes=input_shapes)
        if device == "cpu":
            providers = ["CPUExecutionProvider"]
        else:
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendUnavailableError("this onnxruntime has no CUDAExecutionProvider: pip install "
                                              "onnxruntime-gpu (or use device='cpu')")
            index = int(device.split(":")[1]) if ":" in device else 0
            providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or 0)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(data, options, providers=providers)
        specs = source.resolve_shapes(batch, input_shapes)
        # One run on zeros gives the output shapes at the compiled sizes (and warms the session up).
        outs = self.session.run(None, {s.name: np.zeros(s.shape, s.dtype) for s in specs})
        from ..graph.ir import TensorSpec

        out_specs = [TensorSpec(o.name, tuple(y.shape), y.dtype.name) for o, y in zip(self.session.get_outputs(), outs)]
        super().__init__(source, device="cpu" if device == "cpu" else "cuda:0" if device == "cuda" else device,
                         precision=precision, input_spec=specs, output_spec=out_specs,
                         variable_dims=source.dynamic_dims())

    def _run(self, arrays):
        feed = {s.name: (a if isinstance(a, np.ndarray) else a.cpu().numpy()) for s, a in zip(self.input_spec, arrays)}
        ys = self.session.run(None, feed)
        if is_torch(arrays[0]):
            import torch

            device = torch_device_of(arrays[0])
            return [torch.from_numpy(y).to(device) for y in ys]
        return ys

    def summary(self) -> str:
        return super().summary() + f"\n  providers: {', '.join(self.session.get_providers())}"

    def _close(self):
        del self.session
