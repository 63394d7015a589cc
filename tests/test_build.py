"""The build itself: the CPU-only configuration compiles and imports, `import edgevision` needs no
torch, and info() reports what the issue asks for."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import edgevision

ROOT = Path(__file__).resolve().parents[1]


def _tool(name):
    """A build tool from this Python's environment (the dev extra installs them), else from PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def test_info_reports_build_gpus_simd_threads():
    info = edgevision.info()
    assert info["version"]
    b = info["build"]
    for key in ("build_type", "cpu_arch_flags", "simd_compiled", "simd_cpu", "cuda"):
        assert key in b
    assert isinstance(info["gpus"], list)
    assert info["cpu"]["threads"] >= 1
    assert "edgevision" in str(info)
    json.dumps(info)  # serializable for profile reports


def test_cli_info_json(tmp_path):
    # Subprocesses run outside the source tree, so they import the installed package (python puts
    # the working directory first on sys.path) as a user would.
    out = subprocess.run([sys.executable, "-m", "edgevision.cli", "info", "--json"],
                         capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert "build" in json.loads(out)


def test_import_without_torch(tmp_path):
    # torch = None in sys.modules makes every `import torch` fail, as in a venv without it.
    code = ("import sys; sys.modules['torch'] = None; sys.modules['onnxruntime'] = None; "
            "import numpy as np, edgevision; print(edgevision.info()); "
            "from edgevision import ops; "
            "y = ops.add(np.ones((2, 3), np.float32), np.ones(3, np.float32)); assert (y == 2).all()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr


@pytest.mark.slow
def test_cpu_only_build(tmp_path):
    """EDGEVISION_CUDA=OFF configures, compiles and imports even where nvcc exists."""
    cmake, ninja = _tool("cmake"), _tool("ninja")
    import pybind11

    build = tmp_path / "build"
    env = dict(os.environ, EDGEVISION_CUDA="OFF")
    gen = ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"] if ninja else []
    subprocess.run([cmake, "-S", str(ROOT), "-B", str(build), *gen,
                    f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
                    f"-DPython_EXECUTABLE={sys.executable}"], check=True, env=env,
                   capture_output=True)
    subprocess.run([cmake, "--build", str(build), "-j2"], check=True, env=env, capture_output=True)
    (so,) = build.glob("_C*.so")
    pkg = tmp_path / "pkg" / "edgevision"
    shutil.copytree(ROOT / "edgevision", pkg, ignore=shutil.ignore_patterns("_C*.so", "__pycache__"))
    shutil.copy(so, pkg)
    code = ("import edgevision, numpy as np; from edgevision import ops; "
            "assert not edgevision._C.WITH_CUDA; b = edgevision.info()['build']; assert not b['cuda']; "
            "x = np.random.rand(1, 3, 9, 9).astype(np.float32); w = np.random.rand(4, 3, 3, 3).astype(np.float32); "
            "y = ops.conv2d(x, w, padding=1); r = ops.conv2d(x, w, padding=1, reference=True); "
            "assert np.allclose(y, r, rtol=1e-4, atol=1e-4)")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(tmp_path / "pkg")))
    assert r.returncode == 0, r.stderr


def test_cuda_on_without_nvcc_fails_at_configure(tmp_path):
    """EDGEVISION_CUDA=ON with no CUDA compiler stops at configure with a clear message."""
    cmake = _tool("cmake")
    import pybind11

    # CUDACXX pointing nowhere is what check_language(CUDA) sees on a machine without nvcc.
    env = dict(os.environ, EDGEVISION_CUDA="ON", CUDACXX="/nonexistent/nvcc")
    r = subprocess.run([cmake, "-S", str(ROOT), "-B", str(tmp_path / "b"),
                        f"-Dpybind11_DIR={pybind11.get_cmake_dir()}"],
                       env=env, capture_output=True, text=True)
    assert r.returncode != 0
    assert "EDGEVISION_CUDA=ON" in r.stdout + r.stderr
