"""edgevision.info(): what this installation is and what it can use, for bug reports and profiles."""
from __future__ import annotations

import importlib.util
import os
import platform
import socket
from importlib import metadata

from . import _C

_OPTIONAL = ("numpy", "onnx", "opencv-python", "torch", "onnxruntime", "tensorrt")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _package_version(dist: str) -> str | None:
    # Versions from package metadata: importing torch or tensorrt here would cost seconds.
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        module = {"opencv-python": "cv2"}.get(dist, dist)
        return "installed" if importlib.util.find_spec(module) else None


def _memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _jetson() -> dict | None:
    """The Jetson module (device-tree model) and its L4T release, or None on any other machine."""
    try:
        with open("/etc/nv_tegra_release") as f:
            release = f.readline().strip()
    except OSError:
        return None
    try:
        with open("/proc/device-tree/model") as f:
            model = f.read().strip("\x00\n ")
    except OSError:
        model = None
    return {"model": model, "l4t": release}


class Info(dict):
    """A dict of facts that prints as a short report."""

    def __str__(self) -> str:
        b = self["build"]
        lines = [
            f"edgevision {self['version']} ({b['build_type']}, {b['compiler']}, CPU flags {b['cpu_arch_flags']}"
            f"{', ASan+UBSan' if b['sanitizers'] else ''})",
            f"python {self['python']} on {self['platform']} (host {self['host']}, kernel {self['kernel']})",
            f"CPU: {self['cpu']['model']}, {self['cpu']['logical_cores']} logical cores, "
            f"{self['cpu']['threads']} kernel threads",
            f"SIMD: compiled for {', '.join(b['simd_compiled']) or 'scalar'}; "
            f"CPU supports {', '.join(b['simd_cpu']) or 'unknown'}",
        ]
        if self.get("jetson"):
            lines.append(f"Jetson: {self['jetson']['model'] or 'unknown model'}, {self['jetson']['l4t']}")
        if b["cuda"]:
            lines.append(f"CUDA: compiled (nvcc {b['cuda_compiler_version']}, archs {b['cuda_archs']}, "
                         f"runtime {b['cuda_runtime_version']}, driver {b['cuda_driver_version'] or 'none'})")
            for g in self["gpus"]:
                lines.append(f"  GPU {g['index']}: {g['name']} (sm {g['compute_capability']}, "
                             f"{g['memory_bytes'] / 2**30:.1f} GiB)")
            if not self["gpus"]:
                lines.append(f"  no GPU visible: {b.get('gpus_unavailable_reason') or 'none found'}")
        else:
            lines.append("CUDA: not compiled (CPU-only build)")
        lines.append("packages: " + ", ".join(f"{k} {v or '-'}" for k, v in self["packages"].items()))
        return "\n".join(lines)


def info() -> Info:
    """Version, build options, CUDA build and visible GPUs, CPU SIMD level and thread count, the host (name,
    kernel, memory, Jetson module and L4T release) and optional packages."""
    build = _C.build_info()
    gpus = build.pop("gpus")
    return Info(
        version=_C.VERSION,
        python=platform.python_version(),
        platform=f"{platform.system()} {platform.machine()}",
        host=socket.gethostname(),
        kernel=platform.release(),
        memory_bytes=_memory_bytes(),
        jetson=_jetson(),
        cpu={"model": _cpu_model(), "logical_cores": os.cpu_count(), "threads": _C.get_num_threads()},
        build=build,
        gpus=gpus,
        packages={name: _package_version(name) for name in _OPTIONAL},
    )
