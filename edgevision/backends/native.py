"""The native backend: edgevision's own runtime (edgevision.graph.compile_onnx -> one _C.Plan executed in one
C++ call, GIL released). fp32 on the CPU; fp32 or fp16 on CUDA.

Batch and other dynamic dims: a Plan has fixed shapes, so the engine keeps one compiled Program per input
shape set it has seen (compiled on first use, the 8 most recent kept); the first is compiled at load for
`batch` (default 1) and the input_shapes given.
"""
from __future__ import annotations

import numpy as np

from .base import BackendUnavailableError, Engine, ProgramCache, hold_until_done, is_torch, stage_on_device

_FLOAT32 = np.dtype(np.float32)


def cuda_available() -> bool:
    """edgevision was built with CUDA and sees a GPU."""
    from .. import _C

    return bool(getattr(_C, "WITH_CUDA", False)) and bool(_C.build_info().get("gpus"))


class NativeEngine(Engine):
    backend = "native"

    def __init__(self, source, *, device="cpu", precision="fp32", batch=None, input_shapes=None, threads=None):
        from ..graph import compile_onnx

        if precision == "int8":
            raise ValueError("the native backend has no int8 kernels; int8 runs on backend='tensorrt' "
                             "(a QDQ model calibrated with calib=IMAGE_DIR)")
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"precision must be 'fp32' or 'fp16', got {precision!r}")
        if precision == "fp16" and device == "cpu":
            raise ValueError("the native backend runs fp16 only on CUDA; use precision='fp32' on the CPU")
        if device.startswith("cuda") and not cuda_available():
            from .. import _C

            why = ("edgevision was built without CUDA" if not getattr(_C, "WITH_CUDA", False)
                   else _C.build_info().get("gpus_unavailable_reason") or "no GPU is visible")
            raise BackendUnavailableError(f"the native backend cannot run on {device}: {why}")
        self._plan_device = "cpu" if device == "cpu" else "cuda:0" if device == "cuda" else device
        specs = source.resolve_shapes(batch, input_shapes)

        def compile_shapes(shapes):
            return compile_onnx(source.proto, device=self._plan_device, precision=precision,
                                input_shapes={s.name: list(shape) for s, shape in zip(specs, shapes)},
                                batch=shapes[0][0] if shapes and shapes[0] else None, num_threads=threads or 0)

        self._programs = ProgramCache(compile_shapes)
        self._fast = None  # (input shapes, program) of the last CPU call with numpy inputs: see run()
        program = self._programs.get(tuple(tuple(s.shape) for s in specs))
        # Every float the plan exchanges has its storage dtype (float16 for fp16 on CUDA), inputs and outputs too.
        self._dtype = program.spec["dtype"]
        from ..graph.ir import TensorSpec

        super().__init__(source, device=self._plan_device, precision=precision,
                         input_spec=[TensorSpec(s.name, tuple(s.shape), self._dtype) for s in program.input_specs],
                         output_spec=[TensorSpec(s.name, tuple(s.shape), self._dtype) for s in program.output_specs],
                         variable_dims=source.dynamic_dims())

    def _program(self, arrays):
        return self._programs.get(tuple(tuple(a.shape) for a in arrays))

    def run(self, inputs) -> list:
        # The per-inference fast path: on the CPU, numpy arrays that are already what the last call's program
        # takes (float32, its shapes, C-contiguous) go straight to it. The general checks and the program
        # lookup cost ~10 us a call (epyc2), a twentieth of the seed CNN's whole inference; anything else, errors
        # included, takes the general path.
        fast = self._fast
        if fast is not None and not self._closed:
            shapes, program = fast
            items = (inputs,) if type(inputs) is np.ndarray else inputs if type(inputs) in (list, tuple) else ()
            if len(items) == len(shapes):
                for x, shape in zip(items, shapes):
                    if type(x) is not np.ndarray or x.dtype is not _FLOAT32 or x.shape != shape or \
                            not x.flags.c_contiguous:
                        break
                else:
                    return program.run_checked(list(items))
        return super().run(inputs)

    __call__ = run

    def _run(self, arrays):
        program = self._program(arrays)
        if self.device == "cpu":
            if all(type(a) is np.ndarray for a in arrays):
                self._fast = (tuple(a.shape for a in arrays), program)
                return program.run_checked(arrays)
            # torch CPU tensors become zero-copy numpy views
            ys = program.run_checked([a if isinstance(a, np.ndarray) else a.cpu().numpy() for a in arrays])
            if is_torch(arrays[0]):
                import torch

                return [torch.from_numpy(y).to(arrays[0].device) for y in ys]
            return ys
        import torch

        # On torch's current stream, so that torch's own later work on the outputs is ordered after the plan.
        stream = torch.cuda.current_stream(torch.device(self.device))
        ys = self._run_cuda(program, arrays, stream.cuda_stream)
        if isinstance(arrays[0], np.ndarray):
            return [y.cpu().numpy() for y in ys]
        stream.synchronize()
        return ys

    def _run_async(self, arrays, stream):
        return self._run_cuda(self._program(arrays), arrays, stream)

    def _run_cuda(self, program, arrays, stream):
        """CUDA tensors bound directly; numpy inputs staged through torch; outputs torch on the engine's GPU."""
        import torch

        staged = stage_on_device(arrays, self.device)
        outs = [torch.empty(tuple(s.shape), dtype=getattr(torch, self._dtype), device=self.device)
                for s in program.output_specs]
        program.plan.run(staged, outs, stream)
        hold_until_done(staged + outs, stream, self.device)
        return outs

    def profile_layers(self, inputs, runs: int = 20) -> list[dict]:
        """Time each step of the compiled plan (a fused op: conv + bias + activation + residual is one step) over
        `runs` profiled runs of these inputs. One record per step in execution order: index, op, name, outputs
        (shapes), epilogue (what was fused into it), flops, seconds (the median over the runs) and min_seconds.

        The plan's own timers measure it: C++ steady_clock around each step on the CPU, CUDA events between steps
        on the GPU, where a profiled run launches the steps one by one instead of replaying its CUDA graph (so
        the steps' sum can exceed an unprofiled run). Profiling is switched off again before this returns;
        unprofiled runs pay nothing for it. Another thread running this engine meanwhile is timed too."""
        from ..graph.program import epilogue_text, step_flops

        if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
            raise ValueError(f"runs must be a positive int, got {runs!r}")
        arrays = self._check(inputs)
        program = self._program(arrays)
        plan = program.plan
        per_run = []
        plan.set_profiling(True)
        try:
            for _ in range(runs):
                self._run(arrays)
                per_run.append(plan.step_times())
        finally:
            plan.set_profiling(False)
        times = np.asarray(per_run, dtype=np.float64)  # [runs, steps]
        values = program.spec["values"]
        return [{"index": k, "op": step["op"], "name": step["name"],
                 "outputs": [list(values[o]["shape"]) for o in step["outputs"]], "epilogue": epilogue_text(step),
                 "flops": step_flops(step, values), "seconds": float(np.median(times[:, k])),
                 "min_seconds": float(times[:, k].min())}
                for k, step in enumerate(program.spec["steps"])]

    def summary(self) -> str:
        return super().summary() + "\n" + self._programs.first().summary()

    def _close(self):
        self._fast = None
        self._programs.clear()
