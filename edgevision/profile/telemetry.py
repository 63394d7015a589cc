"""Telemetry sampled beside the latency numbers: a background thread reads every available source each
`interval` seconds while the profiler times.

Sources, each optional (a missing one is noted in `sources` and skipped, never an error):
  proc        any Linux machine: per-core CPU clock (cpufreq, else /proc/cpuinfo), load average, this process's
              resident memory and CPU use (/proc/self)
  nvml        desktop and server GPUs through NVML (the nvidia-ml-py package, `pip install edgevision[profile]`):
              SM and memory clocks, power, temperature, utilisation, clock-throttle reasons
  tegrastats  Jetson: a `tegrastats --interval N` subprocess whose lines (power per rail, CPU and GPU clocks and
              load, EMC, temperatures) parse_tegrastats reads; plus the nvpmodel power mode (`nvpmodel -q`) once

Every sample carries "t", seconds on the perf_counter clock since `origin`, the clock the latency samples use,
so plots can line the two up.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import threading
import time

# ------------------------------------------------------------------------------------------------
# tegrastats lines
# ------------------------------------------------------------------------------------------------
# Formats seen across Jetson generations (tests/test_profile_telemetry.py has one line of each, with sources):
#   Nano, JetPack 4:   RAM 2448/3956MB (lfb 1x4MB) SWAP 0/1978MB (cached 0MB) CPU [12%@1479,off,...] EMC_FREQ 0%
#                      GR3D_FREQ 0% PLL@33C CPU@36.5C ... POM_5V_IN 2589/2589 POM_5V_GPU 0/0 POM_5V_CPU 412/412
#   Xavier, JetPack 4: ... GR3D_FREQ 0%@114 ... VDD_IN 4866/4866 VDD_CPU_GPU_CV 1200/1200 VDD_SOC 1400/1400
#   Xavier/Orin, JetPack 5/6: a leading date, EMC_FREQ 0%@2133 GR3D_FREQ 0%@[305] or @[0,0] (one clock per GPC),
#                      engines (NVDEC off, VIC_FREQ 115, APE 200), lower-case temperatures (cpu@47.5C), rails in mW
#                      (VDD_GPU_SOC 2396mW/2396mW); newer releases add a third value (the maximum) to rails and
#                      temperatures (VDD_IN 9761mW/9761mW/9761mW, cpu@50C/50C); -256C marks an absent sensor.
#   Older CPU form:    CPU [12%,off,7%,20%]@1479 (one clock for all cores)
_DATE = re.compile(r"^\s*(\d\d-\d\d-\d{4} \d\d:\d\d:\d\d)\s+")
_MEM = re.compile(r"\b(RAM|SWAP) (\d+)/(\d+)MB")
_CPU = re.compile(r"\bCPU \[([^\]]*)\](?:@(\d+))?")
_CORE = re.compile(r"^(\d+)%(?:@(\d+))?$")
_FREQ = re.compile(r"\b(EMC_FREQ|GR3D_FREQ|GR3D2_FREQ) (\d+)%(?:@\[?([\d,]+)\]?)?")
_TEMP = re.compile(r"(?<![\w%])([A-Za-z][A-Za-z0-9_-]*)@(-?\d+(?:\.\d+)?)C(?:/-?\d+(?:\.\d+)?C)*(?=\s|$)")
# NAME now/avg[/max], in mW or bare numbers (JetPack 4). The lookahead rejects RAM 2448/3956MB and its kin.
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?:/(\d+)(?:mW)?)?(?=\s|$)")
_ABSENT_SENSOR_C = -256.0


def parse_tegrastats(line: str) -> dict:
    """One tegrastats line -> {"date", "ram_used_mb", "ram_total_mb", "swap_used_mb", "swap_total_mb",
    "cpu": [{"load_pct", "mhz"} or None for an offline core], "emc_pct", "emc_mhz", "gr3d_pct", "gr3d_mhz"
    (the highest GPC clock), "temps_c": {sensor: C}, "power_mw": {rail: {"now", "avg"[, "max"]}}}; fields the
    line lacks are absent, and fields this parser does not know are ignored."""
    if not isinstance(line, str):
        raise TypeError(f"a tegrastats line is a str, got {type(line).__name__}")
    out: dict = {}
    m = _DATE.match(line)
    if m:
        out["date"] = m.group(1)
    for name, used, total in _MEM.findall(line):
        key = name.lower()
        out[f"{key}_used_mb"], out[f"{key}_total_mb"] = int(used), int(total)
    m = _CPU.search(line)
    if m:
        shared_mhz = int(m.group(2)) if m.group(2) else None
        cores = []
        for item in m.group(1).split(","):
            core = _CORE.match(item.strip())
            if core is None:  # "off" (a powered-down core) or a form this parser does not know
                cores.append(None)
                continue
            mhz = int(core.group(2)) if core.group(2) else shared_mhz
            cores.append({"load_pct": int(core.group(1)), "mhz": mhz})
        out["cpu"] = cores
    for name, pct, clocks in _FREQ.findall(line):
        key = {"EMC_FREQ": "emc", "GR3D_FREQ": "gr3d", "GR3D2_FREQ": "gr3d2"}[name]
        out[f"{key}_pct"] = int(pct)
        if clocks:
            out[f"{key}_mhz"] = max(int(c) for c in clocks.split(",") if c)
    temps = {}
    for sensor, value in _TEMP.findall(line):
        if float(value) != _ABSENT_SENSOR_C:
            temps[sensor] = float(value)
    if temps:
        out["temps_c"] = temps
    rails = {}
    for name, now, avg, peak in _RAIL.findall(line):
        rails[name] = {"now": int(now), "avg": int(avg), **({"max": int(peak)} if peak else {})}
    if rails:
        out["power_mw"] = rails
    return out


def parse_nvpmodel(text: str) -> dict:
    """`nvpmodel -q` output ("NV Power Mode: MAXN" then the mode number) -> {"name", "id"}."""
    name, mode = None, None
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    for i, l in enumerate(lines):
        if l.lower().startswith("nv power mode"):
            name = l.split(":", 1)[1].strip() if ":" in l else None
            if i + 1 < len(lines) and lines[i + 1].isdigit():
                mode = int(lines[i + 1])
    return {k: v for k, v in (("name", name), ("id", mode)) if v is not None}


# ------------------------------------------------------------------------------------------------
# Sources
# ------------------------------------------------------------------------------------------------
class SourceUnavailable(Exception):
    """A telemetry source that this machine lacks; the message says why."""


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


class ProcSource:
    """CPU clocks, load average, this process's RSS and CPU use, from /sys and /proc."""
    name = "proc"

    def __init__(self):
        if _read("/proc/loadavg") is None:
            raise SourceUnavailable("no /proc/loadavg (not Linux)")
        self._freq_files = sorted(glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq"),
                                  key=lambda p: int(re.search(r"cpu(\d+)", p).group(1)))
        self._clk = os.sysconf("SC_CLK_TCK")
        self._last = self._cpu_time()

    def static(self) -> dict:
        return {"cpu_clock_source": "cpufreq" if self._freq_files else "/proc/cpuinfo"}

    def _cpu_time(self) -> tuple[float, float] | None:
        text = _read("/proc/self/stat")
        if text is None:
            return None
        fields = text.rsplit(")", 1)[1].split()
        return time.perf_counter(), (int(fields[11]) + int(fields[12])) / self._clk  # utime + stime

    def sample(self) -> dict:
        out: dict = {}
        if self._freq_files:
            mhz = [int(v) / 1000 for v in (_read(p) for p in self._freq_files) if v and v.strip().isdigit()]
        else:
            text = _read("/proc/cpuinfo") or ""
            mhz = [float(l.split(":")[1]) for l in text.splitlines() if l.lower().startswith("cpu mhz")]
        if mhz:
            out["cpu_mhz"] = [round(v, 1) for v in mhz]
            out["cpu_mhz_mean"] = sum(mhz) / len(mhz)
        load = (_read("/proc/loadavg") or "").split()
        if load:
            out["load1"] = float(load[0])
        for l in (_read("/proc/self/status") or "").splitlines():
            if l.startswith("VmRSS:"):
                out["rss_mb"] = int(l.split()[1]) / 1024
        now = self._cpu_time()
        if now and self._last and now[0] > self._last[0]:
            # 100 % = one core busy; a process using two cores shows 200 %.
            out["process_cpu_pct"] = 100 * (now[1] - self._last[1]) / (now[0] - self._last[0])
        self._last = now
        return out

    def close(self) -> None:
        pass


# NVML clock-event (throttle) reason bits, from nvml.h (nvmlClocksEventReason*, formerly ClocksThrottleReason*).
THROTTLE_REASONS = {
    0x1: "gpu_idle", 0x2: "applications_clocks_setting", 0x4: "sw_power_cap", 0x8: "hw_slowdown",
    0x10: "sync_boost", 0x20: "sw_thermal_slowdown", 0x40: "hw_thermal_slowdown", 0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


def throttle_reasons(mask: int) -> list[str]:
    """Names of the bits set in an NVML clock-event reason mask (unknown bits as hex)."""
    names = [name for bit, name in THROTTLE_REASONS.items() if mask & bit]
    rest = mask & ~sum(THROTTLE_REASONS)
    return names + ([hex(rest)] if rest else [])


class NvmlSource:
    """Every NVIDIA GPU NVML sees: clocks, power, temperature, utilisation and throttle reasons."""
    name = "nvml"

    def __init__(self):
        try:
            import pynvml
        except ImportError:
            raise SourceUnavailable("nvidia-ml-py is not installed (pip install edgevision[profile])") from None
        try:
            pynvml.nvmlInit()
        except Exception as e:  # noqa: BLE001 - NVMLError_LibraryNotFound, _DriverNotLoaded, ...: no usable driver
            raise SourceUnavailable(f"NVML did not start: {e}") from None
        self.nv = pynvml
        try:
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception as e:  # noqa: BLE001
            pynvml.nvmlShutdown()
            raise SourceUnavailable(f"NVML lists no GPU: {e}") from None
        if not self.handles:
            pynvml.nvmlShutdown()
            raise SourceUnavailable("NVML sees no GPU")
        # Renamed in NVML 12.x ("clock events"); older bindings have only the throttle name.
        self._reasons = getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
            getattr(pynvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None)

    def _get(self, fn, *args):
        try:
            return fn(*args)
        except Exception:  # noqa: BLE001 - NVMLError_NotSupported on many boards: the field is left out
            return None

    def static(self) -> dict:
        nv = self.nv
        gpus = []
        for i, h in enumerate(self.handles):
            name = self._get(nv.nvmlDeviceGetName, h)
            gpus.append({"index": i, "name": name.decode() if isinstance(name, bytes) else name,
                         "power_limit_w": _scaled(self._get(nv.nvmlDeviceGetEnforcedPowerLimit, h), 1e-3),
                         "max_sm_mhz": self._get(nv.nvmlDeviceGetMaxClockInfo, h, nv.NVML_CLOCK_SM)})
        driver = self._get(nv.nvmlSystemGetDriverVersion)
        return {"nvml_driver": driver.decode() if isinstance(driver, bytes) else driver, "nvml_gpus": gpus}

    def sample(self) -> dict:
        nv = self.nv
        gpus = []
        for i, h in enumerate(self.handles):
            util = self._get(nv.nvmlDeviceGetUtilizationRates, h)
            mask = self._get(self._reasons, h) if self._reasons else None
            g = {"index": i, "sm_mhz": self._get(nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_SM),
                 "mem_mhz": self._get(nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_MEM),
                 "power_w": _scaled(self._get(nv.nvmlDeviceGetPowerUsage, h), 1e-3),
                 "temp_c": self._get(nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU),
                 "util_pct": getattr(util, "gpu", None), "mem_util_pct": getattr(util, "memory", None),
                 "throttle": throttle_reasons(int(mask)) if mask is not None else None}
            gpus.append({k: v for k, v in g.items() if v is not None})
        return {"gpus": gpus}

    def close(self) -> None:
        self._get(self.nv.nvmlShutdown)


def _scaled(v, factor):
    return None if v is None else v * factor


class TegrastatsSource:
    """A `tegrastats --interval N` subprocess; sample() returns its latest line, parsed."""
    name = "tegrastats"

    def __init__(self, interval: float, binary: str | None = None):
        path = binary or shutil.which("tegrastats")
        if path is None:
            raise SourceUnavailable("tegrastats is not on PATH (not a Jetson)")
        try:
            self.proc = subprocess.Popen([path, "--interval", str(max(1, int(interval * 1000)))],
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        except OSError as e:
            raise SourceUnavailable(f"tegrastats did not start: {e}") from None
        self._latest: dict | None = None
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="edgevision-tegrastats", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            parsed = parse_tegrastats(line)
            if parsed:
                with self._lock:
                    self._latest = parsed

    def static(self) -> dict:
        path = shutil.which("nvpmodel")
        if path is None:
            return {"nvpmodel": None}
        try:
            text = subprocess.run([path, "-q"], capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            return {"nvpmodel": None}
        return {"nvpmodel": parse_nvpmodel(text) or None}

    def sample(self) -> dict:
        with self._lock:
            return {"tegra": self._latest} if self._latest else {}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


# ------------------------------------------------------------------------------------------------
# The sampler
# ------------------------------------------------------------------------------------------------
class Telemetry:
    """Samples every available source in a background thread, every `interval` seconds, from start() to
    stop() (or as a context manager). as_dict() gives the samples, each source's status, the static facts
    (power mode, driver) and per-metric min/mean/max."""

    def __init__(self, interval: float = 0.2, *, nvml: bool = True, tegrastats: bool = True,
                 origin: float | None = None):
        if not isinstance(interval, (int, float)) or isinstance(interval, bool) or not 0.01 <= interval <= 60:
            raise ValueError(f"telemetry interval must be 0.01 .. 60 seconds, got {interval!r}")
        self.interval = float(interval)
        self.origin = time.perf_counter() if origin is None else origin
        self.sources: dict[str, str] = {}
        self.static: dict = {}
        self.samples: list[dict] = []
        self._want = {"proc": True, "nvml": nvml, "tegrastats": tegrastats}
        self._live: list = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _open(self) -> None:
        makers = {"proc": ProcSource, "nvml": NvmlSource, "tegrastats": lambda: TegrastatsSource(self.interval)}
        for name, make in makers.items():
            if not self._want[name]:
                self.sources[name] = "off (not asked for)"
                continue
            try:
                source = make()
                self.static.update(source.static())
            except SourceUnavailable as e:
                self.sources[name] = f"absent: {e}"
                continue
            self.sources[name] = "ok"
            self._live.append(source)

    def start(self) -> "Telemetry":
        if self._thread is not None:
            raise RuntimeError("this Telemetry was already started")
        self._open()
        self._thread = threading.Thread(target=self._loop, name="edgevision-telemetry", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while True:
            self.sample_once()
            if self._stop.wait(self.interval):
                return

    def sample_once(self) -> dict:
        s: dict = {"t": time.perf_counter() - self.origin}
        for source in list(self._live):
            try:
                s.update(source.sample())
            except Exception as e:  # noqa: BLE001 - a source failing mid-run is noted, the others go on
                self.sources[source.name] = f"failed during the run: {type(e).__name__}: {e}"
                self._live.remove(source)
        self.samples.append(s)
        return s

    def stop(self) -> "Telemetry":
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for source in self._live:
            source.close()
        self._live.clear()
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def as_dict(self) -> dict:
        return {"interval_s": self.interval, "sources": dict(self.sources), "static": self.static,
                "summary": summarize_samples(self.samples), "samples": self.samples}


def flatten(sample: dict) -> dict[str, float]:
    """The numeric metrics of one sample under dotted names: cpu_mhz_mean, load1, rss_mb, gpu0.power_w,
    tegra.power_mw.VDD_IN, tegra.temps_c.gpu, tegra.gr3d_pct, ..."""
    out: dict[str, float] = {}
    for k in ("cpu_mhz_mean", "load1", "rss_mb", "process_cpu_pct"):
        if k in sample:
            out[k] = float(sample[k])
    for g in sample.get("gpus", []):
        for k, v in g.items():
            if k != "index" and isinstance(v, (int, float)):
                out[f"gpu{g['index']}.{k}"] = float(v)
    tegra = sample.get("tegra") or {}
    for k, v in tegra.items():
        if isinstance(v, (int, float)):
            out[f"tegra.{k}"] = float(v)
    for sensor, c in (tegra.get("temps_c") or {}).items():
        out[f"tegra.temps_c.{sensor}"] = c
    for rail, p in (tegra.get("power_mw") or {}).items():
        out[f"tegra.power_mw.{rail}"] = float(p["now"])
    cores = [c for c in tegra.get("cpu", []) if c]
    if cores:
        out["tegra.cpu_load_pct_mean"] = sum(c["load_pct"] for c in cores) / len(cores)
        clocks = [c["mhz"] for c in cores if c.get("mhz")]
        if clocks:
            out["tegra.cpu_mhz_mean"] = sum(clocks) / len(clocks)
    return out


def summarize_samples(samples: list[dict]) -> dict:
    """{metric: {"min", "mean", "max", "n"}} over the samples, plus the throttle reasons seen per GPU."""
    series: dict[str, list[float]] = {}
    throttled: dict[str, set] = {}
    for s in samples:
        for k, v in flatten(s).items():
            series.setdefault(k, []).append(v)
        for g in s.get("gpus", []):
            if g.get("throttle") is not None:
                throttled.setdefault(f"gpu{g['index']}.throttle_seen", set()).update(g["throttle"])
    out: dict = {k: {"min": min(v), "mean": sum(v) / len(v), "max": max(v), "n": len(v)} for k, v in series.items()}
    out.update({k: sorted(v) for k, v in throttled.items()})
    return out
