"""Telemetry of edgevision.profile: the tegrastats parser on lines of several Jetson generations, nvpmodel's
output, a fake tegrastats/nvpmodel on PATH driving the sampler, NVML with the library absent, failing to start
and (a fake pynvml) working, and the /proc source.

The tegrastats lines below are written in the formats NVIDIA documents, field for field; they are not captures
from boards of ours (this project has none), and their numbers are made up:
  - field formats (RAM X/Y (lfb NxZ), SWAP X/Y (cached Z), CPU [X%@Z,...] or CPU [X%,...]@Z with "off" for a
    powered-down core, EMC_FREQ X%@Y, GR3D_FREQ X%@Y, temperatures NAME@XC): the L4T 32.5 developer guide,
    "tegrastats Utility" appendix,
    https://docs.nvidia.com/jetson/archives/l4t-archived/l4t-325/Tegra%20Linux%20Driver%20Package%20Development%20Guide/AppendixTegraStats.html
  - GR3D_FREQ X%@[Y,Y,...], one clock per GPC (Orin-era BSPs): NVIDIA DRIVE OS 6.0.9.1, "Reported Statistics",
    https://developer.nvidia.com/docs/drive/drive-os/6.0.9.1/public/drive-os-linux-sdk/common/topics/util_setup/ReportedStatistics4.html
  - Nano power rails POM_5V_IN / POM_5V_GPU / POM_5V_CPU (JetPack 4, milliwatts printed without a unit):
    L4T 32.7.3 "Power Management for Jetson Nano and Jetson TX1 Devices",
    https://docs.nvidia.com/jetson/archives/l4t-archived/l4t-3273/Tegra%20Linux%20Driver%20Package%20Development%20Guide/power_management_nano.html
  - Xavier NX rails VDD_IN / VDD_CPU_GPU_CV / VDD_SOC as tegrastats names them: L4T 32.7.5 "Power Management for
    Jetson Xavier NX Series and Jetson AGX Xavier Series Devices",
    https://docs.nvidia.com/jetson/archives/l4t-archived/l4t-3275/Tegra%20Linux%20Driver%20Package%20Development%20Guide/power_management_jetson_xavier.html
    and https://forums.developer.nvidia.com/t/interpretation-of-jetson-nx-power-rail/200883
  - Orin rails (AGX Orin: VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0; Orin NX/Nano: VDD_IN, VDD_CPU_GPU_CV, VDD_SOC, in mW)
    and lower-case sensor names: Jetson Linux r36.3, "Jetson Orin Nano Series, Jetson Orin NX Series and Jetson
    AGX Orin Series",
    https://docs.nvidia.com/jetson/archives/r36.3/DeveloperGuide/SD/PlatformPowerAndPerformance/JetsonOrinNanoSeriesJetsonOrinNxSeriesAndJetsonAgxOrinSeries.html
"""
import os
import stat
import sys
import time
import types

import pytest

from edgevision.profile import telemetry as T

NANO_JP4 = ("RAM 2448/3956MB (lfb 1x4MB) SWAP 0/1978MB (cached 0MB) CPU [12%@1479,off,7%@1479,20%@1479] "
            "EMC_FREQ 0% GR3D_FREQ 0% PLL@33C CPU@36.5C PMIC@100C GPU@34C AO@41C thermal@35.25C "
            "POM_5V_IN 2589/2589 POM_5V_GPU 0/0 POM_5V_CPU 412/412")
XAVIER_NX_JP4 = ("RAM 3412/7765MB (lfb 612x4MB) SWAP 0/3882MB (cached 0MB) "
                 "CPU [8%@1190,3%@1190,2%@1190,4%@1190,off,off] EMC_FREQ 0% GR3D_FREQ 0% AO@36.5C GPU@36C "
                 "PMIC@100C AUX@35.5C CPU@37.5C thermal@36.3C VDD_IN 4866/4866 VDD_CPU_GPU_CV 489/489 "
                 "VDD_SOC 1305/1305")
XAVIER_NX_JP5 = ("05-14-2024 10:02:11 RAM 3168/6851MB (lfb 2x4MB) SWAP 161/3426MB (cached 0MB) "
                 "CPU [23%@1397,17%@1192,16%@1190,13%@1190,23%@1190,10%@1190] EMC_FREQ 2%@204 GR3D_FREQ 41%@[510] "
                 "VIC_FREQ 115 APE 150 AUX@45C CPU@46.5C thermal@45.6C AO@45C GPU@45.5C PMIC@50C "
                 "VDD_IN 5763mW/4846mW VDD_CPU_GPU_CV 1650mW/1270mW VDD_SOC 1450mW/1311mW")
AGX_ORIN_JP5 = ("RAM 4321/62801MB (lfb 1759x4MB) SWAP 0/31400MB (cached 0MB) "
                "CPU [3%@729,0%@729,1%@729,0%@729,off,off,off,off,off,off,off,off] EMC_FREQ 0%@2133 "
                "GR3D_FREQ 0%@[305,305] VIC_FREQ 729 APE 174 CV0@-256C CPU@44.562C Tboard@32C SOC2@40.093C "
                "Tdiode@33C SOC0@41.093C CV1@-256C GPU@-256C tj@44.343C SOC1@41.25C CV2@-256C "
                "VDD_GPU_SOC 2396mW/2396mW VDD_CPU_CV 399mW/399mW VIN_SYS_5V0 3724mW/3724mW NC 0mW/0mW "
                "VDDQ_VDD2_1V8AO 301mW/301mW")
ORIN_NANO_JP6 = ("11-02-2025 09:15:32 RAM 2467/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) "
                 "CPU [62%@1510,40%@1510,35%@1510,38%@1510,20%@1510,18%@1510] EMC_FREQ 31%@2133 GR3D_FREQ 88%@[624] "
                 "NVDEC off NVJPG off NVJPG1 off VIC off OFA off APE 200 cpu@51.5C soc2@48.8C soc0@49.4C "
                 "gpu@50.2C tj@51.5C soc1@48.6C VDD_IN 9480mW/7211mW VDD_CPU_GPU_CV 3920mW/2650mW VDD_SOC 2010mW/1804mW")
# Later JetPack 6 releases print a third value (the maximum) for rails and temperatures, and drop EMC/GR3D clocks.
ORIN_NX_JP6_MAX = ("RAM 5739/15656MB (lfb 1x2MB) SWAP 0/7828MB (cached 0MB) CPU [72%@1728,75%@1728,off,off] "
                   "GR3D_FREQ 33% cpu@50C/50C soc2@47.937C/47.937C gpu@48.75C/48.75C tj@50C/50C "
                   "VDD_IN 9761mW/9000mW/9900mW VDD_CPU_GPU_CV 4238mW/4100mW/4300mW VDD_SOC 1825mW/1800mW/1900mW")
# The older CPU form, one clock after the bracket for every core (the L4T 32.5 appendix lists both forms).
OLD_CPU_FORM = "RAM 1024/3956MB (lfb 10x4MB) CPU [12%,off,7%,20%]@1479 EMC_FREQ 3%@1600 GR3D_FREQ 45%@921"


def test_nano_jetpack4():
    r = T.parse_tegrastats(NANO_JP4)
    assert (r["ram_used_mb"], r["ram_total_mb"], r["swap_total_mb"]) == (2448, 3956, 1978)
    assert r["cpu"] == [{"load_pct": 12, "mhz": 1479}, None, {"load_pct": 7, "mhz": 1479}, {"load_pct": 20, "mhz": 1479}]
    assert (r["emc_pct"], r["gr3d_pct"]) == (0, 0) and "gr3d_mhz" not in r
    assert r["temps_c"] == {"PLL": 33.0, "CPU": 36.5, "PMIC": 100.0, "GPU": 34.0, "AO": 41.0, "thermal": 35.25}
    assert r["power_mw"] == {"POM_5V_IN": {"now": 2589, "avg": 2589}, "POM_5V_GPU": {"now": 0, "avg": 0},
                             "POM_5V_CPU": {"now": 412, "avg": 412}}
    assert "date" not in r


def test_xavier_nx_jetpack4_and_5():
    r = T.parse_tegrastats(XAVIER_NX_JP4)
    assert [c and c["mhz"] for c in r["cpu"]] == [1190] * 4 + [None, None]
    assert r["power_mw"]["VDD_IN"] == {"now": 4866, "avg": 4866} and set(r["power_mw"]) == {
        "VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}
    r = T.parse_tegrastats(XAVIER_NX_JP5)
    assert r["date"] == "05-14-2024 10:02:11"
    assert (r["emc_pct"], r["emc_mhz"], r["gr3d_pct"], r["gr3d_mhz"]) == (2, 204, 41, 510)
    assert r["power_mw"]["VDD_CPU_GPU_CV"] == {"now": 1650, "avg": 1270}
    assert r["temps_c"]["AUX"] == 45.0 and r["cpu"][0] == {"load_pct": 23, "mhz": 1397}


def test_orin_jetpack5_and_6():
    r = T.parse_tegrastats(AGX_ORIN_JP5)
    assert len(r["cpu"]) == 12 and r["cpu"][4] is None and r["gr3d_mhz"] == 305 and r["emc_mhz"] == 2133
    assert set(r["power_mw"]) == {"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "NC", "VDDQ_VDD2_1V8AO"}
    assert r["power_mw"]["VIN_SYS_5V0"] == {"now": 3724, "avg": 3724}
    assert "CV0" not in r["temps_c"] and "GPU" not in r["temps_c"]  # -256C: the sensor is absent
    assert r["temps_c"]["tj"] == 44.343 and r["temps_c"]["Tboard"] == 32.0
    r = T.parse_tegrastats(ORIN_NANO_JP6)
    assert (r["gr3d_pct"], r["gr3d_mhz"], r["emc_pct"]) == (88, 624, 31)
    assert r["temps_c"]["gpu"] == 50.2 and r["power_mw"]["VDD_IN"] == {"now": 9480, "avg": 7211}
    r = T.parse_tegrastats(ORIN_NX_JP6_MAX)
    assert r["power_mw"]["VDD_IN"] == {"now": 9761, "avg": 9000, "max": 9900}
    assert r["temps_c"] == {"cpu": 50.0, "soc2": 47.937, "gpu": 48.75, "tj": 50.0}
    assert r["gr3d_pct"] == 33 and "gr3d_mhz" not in r and "emc_pct" not in r


def test_old_cpu_form_unknown_fields_and_garbage():
    r = T.parse_tegrastats(OLD_CPU_FORM)
    assert r["cpu"] == [{"load_pct": 12, "mhz": 1479}, None, {"load_pct": 7, "mhz": 1479}, {"load_pct": 20, "mhz": 1479}]
    assert (r["emc_mhz"], r["gr3d_pct"], r["gr3d_mhz"]) == (1600, 45, 921)
    # Fields a future BSP might add are ignored; the known ones around them still parse.
    r = T.parse_tegrastats(ORIN_NANO_JP6.replace("APE 200", "APE 200 NEWENG 5%@[1,2] FOO_FREQ 7 BAR@x")
                           + " NEW_RAIL 12mW/11mW\n")
    assert r["power_mw"]["NEW_RAIL"] == {"now": 12, "avg": 11} and r["gr3d_mhz"] == 624
    assert "ram_used_mb" in r and "BAR" not in r.get("temps_c", {})
    assert T.parse_tegrastats("") == {} and T.parse_tegrastats("no stats here 1/2MB") == {}
    assert T.parse_tegrastats("CPU [weird,12%@5] RAM x/yMB")["cpu"] == [None, {"load_pct": 12, "mhz": 5}]
    with pytest.raises(TypeError, match="str"):
        T.parse_tegrastats(b"RAM 1/2MB")


def test_flatten_summarizes_tegra_samples():
    samples = [{"t": 0.0, "tegra": T.parse_tegrastats(XAVIER_NX_JP5)},
               {"t": 0.2, "tegra": T.parse_tegrastats(XAVIER_NX_JP5.replace("VDD_IN 5763mW", "VDD_IN 6763mW"))}]
    s = T.summarize_samples(samples)
    assert s["tegra.power_mw.VDD_IN"] == {"min": 5763, "mean": 6263, "max": 6763, "n": 2}
    assert s["tegra.gr3d_pct"]["mean"] == 41 and s["tegra.temps_c.GPU"]["max"] == 45.5
    assert s["tegra.cpu_load_pct_mean"]["min"] == pytest.approx(17.0)


def test_nvpmodel_output():
    assert T.parse_nvpmodel("NV Power Mode: MAXN\n0\n") == {"name": "MAXN", "id": 0}
    assert T.parse_nvpmodel("NVPM WARN: fan mode is not set!\nNV Power Mode: 15W\n2") == {"name": "15W", "id": 2}
    assert T.parse_nvpmodel("garbage") == {}


def _script(folder, name, body):
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_tegrastats_and_nvpmodel_on_path_drive_the_sampler(tmp_path, monkeypatch):
    # Stand-ins for the Jetson tools: tegrastats prints the Orin line every 20 ms until terminated.
    _script(tmp_path, "tegrastats", f'while true; do echo "{ORIN_NANO_JP6}"; sleep 0.02; done\n')
    _script(tmp_path, "nvpmodel", 'echo "NV Power Mode: 15W"; echo 1\n')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setitem(sys.modules, "pynvml", None)
    tel = T.Telemetry(0.02).start()
    try:
        deadline = time.perf_counter() + 10
        while not any("tegra" in s for s in list(tel.samples)) and time.perf_counter() < deadline:
            time.sleep(0.02)
    finally:
        tel.stop()
    d = tel.as_dict()
    assert d["sources"]["tegrastats"] == "ok" and d["static"]["nvpmodel"] == {"name": "15W", "id": 1}
    assert d["summary"]["tegra.power_mw.VDD_IN"]["max"] == 9480
    source = next(s for s in d["samples"] if "tegra" in s)
    assert source["tegra"]["gr3d_mhz"] == 624


def test_nvml_library_absent_is_noted_not_an_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    monkeypatch.setattr(T.shutil, "which", lambda name: None)  # and no Jetson tools
    with T.Telemetry(0.05) as tel:
        s = tel.sample_once()
    assert tel.sources["nvml"].startswith("absent: nvidia-ml-py is not installed")
    assert "pip install edgevision[profile]" in tel.sources["nvml"]
    assert tel.sources["tegrastats"] == "absent: tegrastats is not on PATH (not a Jetson)"
    assert tel.sources["proc"] == "ok" and "gpus" not in s and "load1" in s and s["rss_mb"] > 0
    off = T.Telemetry(0.05, nvml=False, tegrastats=False).start().stop()
    assert off.sources["nvml"] == "off (not asked for)" and off.samples


class _NvmlError(Exception):
    pass


def _fake_pynvml(init_error=None):
    nv = types.ModuleType("pynvml")
    nv.NVML_CLOCK_SM, nv.NVML_CLOCK_MEM, nv.NVML_TEMPERATURE_GPU = 1, 2, 0
    calls = []

    def init():
        if init_error:
            raise init_error
        calls.append("init")

    def not_supported(h):
        raise _NvmlError("Not Supported")

    nv.nvmlInit, nv.nvmlShutdown = init, lambda: calls.append("shutdown")
    nv.nvmlDeviceGetCount = lambda: 1
    nv.nvmlDeviceGetHandleByIndex = lambda i: f"h{i}"
    nv.nvmlDeviceGetName = lambda h: b"Fake GPU"
    nv.nvmlSystemGetDriverVersion = lambda: "550.54"
    nv.nvmlDeviceGetEnforcedPowerLimit = lambda h: 300000
    nv.nvmlDeviceGetMaxClockInfo = lambda h, c: 1980
    nv.nvmlDeviceGetClockInfo = lambda h, c: {1: 1410, 2: 1593}[c]
    nv.nvmlDeviceGetPowerUsage = lambda h: 123456
    nv.nvmlDeviceGetTemperature = not_supported  # some boards: the field is left out, the rest sampled
    nv.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=97, memory=40)
    nv.nvmlDeviceGetCurrentClocksThrottleReasons = lambda h: 0x4 | 0x20 | 0x10000
    return nv, calls


def test_nvml_with_a_fake_library(monkeypatch):
    nv, calls = _fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    source = T.NvmlSource()
    assert source.static() == {"nvml_driver": "550.54", "nvml_gpus": [
        {"index": 0, "name": "Fake GPU", "power_limit_w": 300.0, "max_sm_mhz": 1980}]}
    g = source.sample()["gpus"][0]
    assert g == {"index": 0, "sm_mhz": 1410, "mem_mhz": 1593, "power_w": pytest.approx(123.456), "util_pct": 97,
                 "mem_util_pct": 40, "throttle": ["sw_power_cap", "sw_thermal_slowdown", "0x10000"]}
    source.close()
    assert calls == ["init", "shutdown"]
    summary = T.summarize_samples([{"t": 0, "gpus": [g]}, {"t": 1, "gpus": [dict(g, throttle=["gpu_idle"])]}])
    assert summary["gpu0.throttle_seen"] == ["0x10000", "gpu_idle", "sw_power_cap", "sw_thermal_slowdown"]
    assert summary["gpu0.power_w"]["mean"] == pytest.approx(123.456)


def test_nvml_without_a_driver(monkeypatch):
    nv, _ = _fake_pynvml(init_error=_NvmlError("NVML Shared Library Not Found"))
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    with pytest.raises(T.SourceUnavailable, match="NVML did not start: NVML Shared Library Not Found"):
        T.NvmlSource()


def test_throttle_reasons_and_interval_checks():
    assert T.throttle_reasons(0) == [] and T.throttle_reasons(0x1 | 0x40) == ["gpu_idle", "hw_thermal_slowdown"]
    for bad in (0, -1, 100, "0.2", True):
        with pytest.raises(ValueError, match="interval"):
            T.Telemetry(bad)
