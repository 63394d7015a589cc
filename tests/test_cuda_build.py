"""A CUDA build (edgevision._C.WITH_CUDA) on any machine: info() reports the compiled GPU
architectures and the CUDA runtime/driver, and where no GPU or driver is usable, a CUDA op raises
a clear Python error instead of crashing. Skipped in CPU-only builds."""
import re
import subprocess
import sys
import textwrap

import pytest

import edgevision
from edgevision import _C

pytestmark = pytest.mark.skipif(not getattr(_C, "WITH_CUDA", False),
                                reason="edgevision was built without CUDA")

# CMake's CUDA_ARCHITECTURES entries: 75, 90a, 87-real, 90-virtual.
ARCH = re.compile(r"^\d{2,3}[a-z]?(-real|-virtual)?$")


def test_info_reports_cuda_archs_and_versions():
    info = edgevision.info()
    b = info["build"]
    assert b["cuda"] is True
    archs = b["cuda_archs"].split(",")
    assert archs and all(ARCH.match(a) for a in archs), b["cuda_archs"]
    assert b["cuda_compiler_version"]
    assert b["cuda_runtime_version"] >= 11000  # 1000 * major + 10 * minor
    assert isinstance(b["cuda_driver_version"], int) and b["cuda_driver_version"] >= 0
    text = str(info)
    assert f"archs {b['cuda_archs']}" in text
    if info["gpus"]:
        for g in info["gpus"]:
            assert g["name"] and re.match(r"^\d+\.\d+$", g["compute_capability"])
            assert g["memory_bytes"] > 0 and g["multiprocessors"] > 0
    else:
        # No GPU: the reason comes from the CUDA runtime, and info() itself did not throw.
        assert isinstance(b["gpus_unavailable_reason"], str) and b["gpus_unavailable_reason"]
        assert "no GPU visible" in text


# Builds DLPack capsules that claim to be CUDA tensors (the data pointer is never dereferenced:
# the op must fail before any kernel launch) and runs ops on them in a child process, so a crash
# shows up as a failed test rather than taking pytest down.
_FAKE_CUDA_OPS = textwrap.dedent(r"""
    import ctypes, sys
    import edgevision
    from edgevision import ops

    class DLDevice(ctypes.Structure):
        _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]
    class DLDataType(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]
    class DLTensor(ctypes.Structure):
        _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32),
                    ("dtype", DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                    ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]
    class DLManagedTensor(ctypes.Structure):
        _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p),
                    ("deleter", ctypes.c_void_p)]

    new_capsule = ctypes.pythonapi.PyCapsule_New
    new_capsule.restype = ctypes.py_object
    new_capsule.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    keep = []

    def fake_cuda(shape, bits=32):
        dims = (ctypes.c_int64 * len(shape))(*shape)
        t = DLManagedTensor()
        t.dl_tensor.data = 1 << 20
        t.dl_tensor.device = DLDevice(2, 0)  # kDLCUDA, device 0
        t.dl_tensor.ndim = len(shape)
        t.dl_tensor.dtype = DLDataType(2, bits, 1)  # float
        t.dl_tensor.shape = dims
        keep.extend([dims, t])
        return new_capsule(ctypes.addressof(t), b"dltensor", None)

    calls = {
        "activation": lambda: ops.activation(fake_cuda([2, 3]), "relu", out=fake_cuda([2, 3])),
        "add_fp16": lambda: ops.add(fake_cuda([4], 16), fake_cuda([4], 16), out=fake_cuda([4], 16)),
        "conv2d": lambda: ops.conv2d(fake_cuda([1, 3, 8, 8]), fake_cuda([4, 3, 3, 3]),
                                     out=fake_cuda([1, 4, 6, 6])),
        "softmax": lambda: ops.softmax(fake_cuda([2, 5]), out=fake_cuda([2, 5])),
    }
    for name, call in calls.items():
        try:
            call()
        except (RuntimeError, ValueError) as e:
            print(f"{name}: {type(e).__name__}: {e}")
        else:
            print(f"{name}: no error")
            sys.exit(1)
""")


def test_cuda_op_without_gpu_raises_clear_error(tmp_path):
    if edgevision.info()["gpus"]:
        pytest.skip("a GPU is visible: fake CUDA tensors would reach a real device")
    r = subprocess.run([sys.executable, "-c", _FAKE_CUDA_OPS], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120)  # outside the source tree: the installed package
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 4, r.stdout
    for line in lines:
        assert "CUDA" in line and ("not usable" in line or "no usable" in line), line
