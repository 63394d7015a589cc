"""Shared test settings: devices to run on, per-dtype tolerances, seeded random data."""
import os

import numpy as np
import pytest

import edgevision
from edgevision import _C

# Tolerances, (rtol, atol), per dtype. FP32: kernels sum in a different order than the reference
# (blocked GEMM, SIMD lanes, threads), so a dot product of length K differs by about K * eps * |x|;
# 1e-4 relative with 1e-4 absolute covers K up to a few thousand on unit-scale data. FP16: storage
# rounds every input and output to 11 significant bits (eps 9.8e-4) while sums stay FP32, so the error
# is dominated by a few output roundings: 1e-2 covers it with margin.
TOL = {"float32": (1e-4, 1e-4), "float16": (1e-2, 1e-2)}


def _cuda_reason():
    if not getattr(_C, "WITH_CUDA", False):
        return "edgevision was built without CUDA"
    try:
        import torch
    except ImportError:
        return "torch is not installed (CUDA tests move data with torch)"
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    return None


CUDA_SKIP_REASON = _cuda_reason()
HAS_CUDA = CUDA_SKIP_REASON is None
cuda = pytest.mark.skipif(not HAS_CUDA, reason=f"CUDA tests skipped: {CUDA_SKIP_REASON}")

# Devices and dtypes an op test runs on: parametrize with `@pytest.mark.parametrize("target", TARGETS)`.
TARGETS = [
    pytest.param(("cpu", "float32"), id="cpu-fp32"),
    pytest.param(("cuda", "float32"), id="cuda-fp32", marks=[pytest.mark.cuda, cuda]),
    pytest.param(("cuda", "float16"), id="cuda-fp16", marks=[pytest.mark.cuda, cuda]),
]


def pytest_report_header(config):
    return [f"edgevision {edgevision.__version__}; CUDA: "
            f"{'available' if HAS_CUDA else CUDA_SKIP_REASON}"]


@pytest.fixture
def rng():
    return np.random.default_rng(int(os.environ.get("EV_TEST_SEED", "0")))
