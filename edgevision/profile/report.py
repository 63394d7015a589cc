"""The profile report: one JSON document (schema below, documented in docs/profiling.md), printed as terminal
tables (rich when installed, plain text otherwise), written as JSON, CSV and PNG plots (matplotlib, optional),
and compared with another report (`edgevision profile --compare a.json b.json`)."""
from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
import time
from pathlib import Path

SCHEMA_NAME = "edgevision.profile"
SCHEMA_VERSION = 1
ROW_KEY = ("model", "backend", "precision", "device", "batch")
STAT_KEYS = ("runs", "min_ms", "mean_ms", "median_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "std_ms", "cv",
             "items_per_s", "p99_over_p50", "jitter")

_NUM = {"type": "number"}
_NUM_OR_NULL = {"type": ["number", "null"]}
_STATS = {"type": "object", "required": list(STAT_KEYS),
          "properties": {**{k: _NUM for k in STAT_KEYS if k not in ("runs", "jitter", "items_per_s", "p99_over_p50")},
                         "runs": {"type": "integer", "minimum": 1}, "items_per_s": _NUM_OR_NULL,
                         "p99_over_p50": _NUM_OR_NULL, "jitter": {"type": "boolean"}}}
# JSON Schema (draft 2020-12) of a report: what --compare relies on and docs/profiling.md describes. Sections
# other than "latency" are optional; unknown keys are allowed so that later versions can add fields.
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["schema", "schema_version", "created", "machine", "model", "settings", "latency", "notes"],
    "properties": {
        "schema": {"const": SCHEMA_NAME},
        "schema_version": {"const": SCHEMA_VERSION},
        "created": {"type": "string"},
        "command": {"type": ["array", "null"], "items": {"type": "string"}},
        "machine": {"type": "object", "required": ["version", "cpu", "build", "gpus", "packages"]},
        "model": {"type": "object", "required": ["name", "sha256", "inputs"]},
        "settings": {"type": "object"},
        "notes": {"type": "array", "items": {"type": "string"}},
        "latency": {"type": "array", "items": {
            "type": "object",
            "required": [*ROW_KEY, "status"],
            "properties": {
                "model": {"type": "string"}, "backend": {"type": "string"}, "precision": {"type": "string"},
                "device": {"type": "string"}, "batch": {"type": "integer", "minimum": 1},
                "status": {"enum": ["ok", "skipped", "failed"]}, "reason": {"type": "string"},
                "device_timing": {"type": ["string", "null"]},
                "stats": {"type": "object", "required": ["host"],
                          "additionalProperties": _STATS, "properties": {"host": _STATS}},
                "samples": {"type": "object", "required": ["t_s", "host_ms"],
                            "additionalProperties": {"type": "array", "items": _NUM}},
            },
            "if": {"properties": {"status": {"const": "ok"}}},
            "then": {"required": ["stats", "samples"]},
            "else": {"required": ["reason"]},
        }},
        "layers": {"type": "array", "items": {"type": "object", "required": ["device", "total_ms", "steps", "by_op"]}},
        "stream": {"type": ["object", "null"], "required": ["source", "stages", "counters", "frames"]},
        "telemetry": {"type": ["object", "null"], "required": ["interval_s", "sources", "summary", "samples"]},
    },
}


class ReportError(ValueError):
    """A file that is not a readable edgevision profile report of a schema version this code reads."""


# ------------------------------------------------------------------------------------------------
# Building, checking, reading
# ------------------------------------------------------------------------------------------------
def machine(telemetry_static: dict | None = None) -> dict:
    """edgevision.info() (CPU, cores, build, CUDA build and driver, GPUs, package versions, host, Jetson) plus
    what the run's GPU libraries report: torch's CUDA and cuDNN and its GPUs (when torch was imported for the
    run), TensorRT's version, the NVML driver, the Jetson power mode."""
    from .. import info

    m = dict(info())
    torch = sys.modules.get("torch")
    if torch is not None:
        gpu = torch.cuda.is_available()
        m["torch_runtime"] = {
            "version": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if gpu else None,
            "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if gpu else []}
    trt = sys.modules.get("tensorrt")
    if trt is not None:
        m["tensorrt"] = getattr(trt, "__version__", "installed")
    m.update(telemetry_static or {})
    return m


def model_info(model) -> dict:
    from ..backends.base import ModelSource

    source = ModelSource.open(model)
    return {"name": source.name, "path": str(source.path) if source.path else None, "sha256": source.sha256(),
            "task": source.metadata.get("task"),
            "inputs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in source.inputs]}


def build_report(*, model: dict, latency: dict, settings: dict, layers=None, stream=None, telemetry=None,
                 command=None, notes=()) -> dict:
    return {
        "schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": list(command) if command is not None else None,
        "machine": machine((telemetry or {}).get("static")), "model": model, "settings": settings,
        "latency": latency["rows"], "layers": list(layers or []), "stream": stream, "telemetry": telemetry,
        "notes": list(latency.get("notes", [])) + list(notes),
    }


def check_report(report, where: str = "report") -> dict:
    """The report if it has the fields --compare reads, else ReportError naming what is wrong. (The full
    SCHEMA is for validators; this checks without the jsonschema package.)"""
    if not isinstance(report, dict) or report.get("schema") != SCHEMA_NAME:
        raise ReportError(f"{where}: not an edgevision profile report (no \"schema\": \"{SCHEMA_NAME}\")")
    if report.get("schema_version") != SCHEMA_VERSION:
        raise ReportError(f"{where}: schema_version {report.get('schema_version')!r}; this edgevision reads "
                          f"version {SCHEMA_VERSION}")
    for key in SCHEMA["required"]:
        if key not in report:
            raise ReportError(f"{where}: the key {key!r} is missing")
    if not isinstance(report["latency"], list):
        raise ReportError(f"{where}: \"latency\" must be a list of rows")
    for i, row in enumerate(report["latency"]):
        missing = [k for k in (*ROW_KEY, "status") if k not in row]
        if missing:
            raise ReportError(f"{where}: latency row {i} lacks {missing}")
        if row["status"] == "ok" and "host" not in row.get("stats", {}):
            raise ReportError(f"{where}: latency row {i} is ok but has no host statistics")
    return report


def read_report(path) -> dict:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ReportError(f"{path}: cannot read it ({e.strerror or e})") from None
    try:
        report = json.loads(text)
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not JSON ({e})") from None
    return check_report(report, str(path))


# ------------------------------------------------------------------------------------------------
# Files: JSON, CSV
# ------------------------------------------------------------------------------------------------
def write_json(report: dict, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=_json_default))
    return path


def _json_default(v):
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    if isinstance(v, (set, tuple)):
        return list(v)
    return str(v)


def write_csv(report: dict, folder) -> list[Path]:
    """latency.csv (one row per contender and batch: the key, status, then <phase>_<stat> for every phase
    timed), layers.csv and stream.csv when the report has those sections."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    phases = []
    for row in report["latency"]:
        for p in row.get("stats", {}):
            if p not in phases:
                phases.append(p)
    header = [*ROW_KEY, "status", "reason", "device_timing"] + [f"{p}_{k}" for p in phases for k in STAT_KEYS]
    written = [_write_rows(folder / "latency.csv", header, (
        [row.get(k, "") for k in (*ROW_KEY, "status", "reason", "device_timing")]
        + [row.get("stats", {}).get(p, {}).get(k, "") for p in phases for k in STAT_KEYS]
        for row in report["latency"]))]
    if report.get("layers"):
        cols = ["device", "precision", "batch", "index", "op", "name", "outputs", "epilogue", "flops", "ms", "share",
                "gflops_per_s"]
        written.append(_write_rows(folder / "layers.csv", cols, (
            [sec.get("device"), sec.get("precision"), sec.get("batch"), s["index"], s["op"], s["name"],
             " ".join("x".join(map(str, o)) for o in s["outputs"]), s["epilogue"], s["flops"], s["ms"], s["share"],
             s["gflops_per_s"] if s["gflops_per_s"] is not None else ""]
            for sec in report["layers"] for s in sec["steps"])))
    if report.get("stream") and report["stream"].get("frames"):
        frames = report["stream"]["frames"]
        cols = list(frames[0])
        written.append(_write_rows(folder / "stream.csv", cols, ([f.get(c, "") for c in cols] for f in frames)))
    return written


def _write_rows(path: Path, header, rows) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


# ------------------------------------------------------------------------------------------------
# Terminal tables
# ------------------------------------------------------------------------------------------------
class _Table:
    """Columns and rows printed by rich when it is installed, as aligned plain text otherwise."""

    def __init__(self, title: str, columns: list[str]):
        self.title, self.columns, self.rows = title, columns, []

    def add(self, *cells) -> None:
        self.rows.append([("" if c is None else str(c)) for c in cells])

    def render(self, out, use_rich: bool) -> None:
        if use_rich:
            from rich.console import Console
            from rich.table import Table

            t = Table(title=self.title, title_justify="left", header_style="bold")
            for i, c in enumerate(self.columns):
                t.add_column(c, justify="left" if i < 4 and not c.endswith(("ms", "/s", "%")) else "right")
            for r in self.rows:
                t.add_row(*r)
            Console(file=out, width=max(100, _terminal_width(out))).print(t)
            return
        widths = [max(len(c), *(len(r[i]) for r in self.rows)) if self.rows else len(c)
                  for i, c in enumerate(self.columns)]
        print(self.title, file=out)
        print("  ".join(c.ljust(w) for c, w in zip(self.columns, widths)).rstrip(), file=out)
        for r in self.rows:
            print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip(), file=out)
        print(file=out)


def _terminal_width(out) -> int:
    import shutil

    return shutil.get_terminal_size((160, 24)).columns if out in (sys.stdout, sys.stderr) else 200


def _ms(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.3f}" if v < 10 else f"{v:.2f}" if v < 1000 else f"{v:.0f}"


def rich_available() -> bool:
    return importlib.util.find_spec("rich") is not None


def print_report(report: dict, out=None, use_rich: bool | None = None, top_layers: int = 15) -> None:
    """The report's latency table, per-layer tables, stream stages, telemetry summary and notes."""
    out = out or sys.stdout
    use_rich = rich_available() if use_rich is None else use_rich
    m = report["machine"]
    gpu_names = [g.get("name") for g in m.get("gpus", [])] or (m.get("torch_runtime") or {}).get("gpus") or []
    print(f"{report['model']['name']} on {m['cpu']['model']} ({m['cpu']['logical_cores']} logical cores)"
          + (f", GPU {', '.join(gpu_names)}" if gpu_names else "") + f"; edgevision {m['version']}", file=out)
    s = report["settings"]
    print(f"warm-up {s.get('warmup')}, iterations {s.get('iterations')}, duration {s.get('duration_s')} s, "
          f"order {s.get('order')}, threads {s.get('threads')}", file=out)
    rows = [r for r in report["latency"] if r["status"] == "ok"]
    device_cols = any("compute" in r["stats"] for r in rows)
    cols = ["backend", "precision", "device", "batch", "median ms", "mean ms", "p90 ms", "p95 ms", "p99 ms",
            "max ms", "min ms", "std ms", "CV %", "items/s", "p99/p50"]
    if device_cols:
        cols += ["H2D ms", "compute ms", "D2H ms", "enqueue ms"]
    t = _Table("Latency (host: numpy in, numpy out; device columns: CUDA events, medians)", cols)
    for r in rows:
        h = r["stats"]["host"]
        ratio = "-" if h["p99_over_p50"] is None else f"{h['p99_over_p50']:.2f}" + (" JITTER" if h["jitter"] else "")
        cells = [r["backend"], r["precision"], r["device"], r["batch"], _ms(h["median_ms"]), _ms(h["mean_ms"]),
                 _ms(h["p90_ms"]), _ms(h["p95_ms"]), _ms(h["p99_ms"]), _ms(h["max_ms"]), _ms(h["min_ms"]),
                 _ms(h["std_ms"]), f"{100 * h['cv']:.1f}", "-" if h["items_per_s"] is None else f"{h['items_per_s']:.1f}",
                 ratio]
        if device_cols:
            cells += [_ms(r["stats"][p]["median_ms"]) if p in r["stats"] else "-"
                      for p in ("h2d", "compute", "d2h", "enqueue")]
        t.add(*cells)
    t.render(out, use_rich)
    for r in report["latency"]:
        if r["status"] != "ok":
            print(f"{r['status']}: {r['backend']} {r['precision']} {r['device']} batch {r['batch']}: {r['reason']}",
                  file=out)
        elif r.get("device_timing_note"):
            print(f"note: {r['backend']} {r['device']}: {r['device_timing_note']}", file=out)
    for sec in report.get("layers") or []:
        _print_layers(sec, out, use_rich, top_layers)
    if report.get("stream"):
        _print_stream(report["stream"], out, use_rich)
    if report.get("telemetry"):
        _print_telemetry(report["telemetry"], out)
    for n in report.get("notes", []):
        print(f"note: {n}", file=out)


def _print_layers(sec: dict, out, use_rich: bool, top: int) -> None:
    steps = sorted(sec["steps"], key=lambda s: -s["ms"])[:top]
    t = _Table(f"Per-layer, native {sec['device']} {sec['precision']} batch {sec['batch']}: {len(sec['steps'])} "
               f"steps, {sec['total_ms']:.3f} ms, {sec['gflop']:.3f} GFLOP, median of {sec['runs']} profiled runs "
               f"(slowest {len(steps)})",
               ["#", "op", "name", "output", "fused", "ms", "share %", "MFLOP", "GFLOP/s"])
    for s in steps:
        t.add(s["index"], s["op"], s["name"][:40], " ".join("x".join(map(str, o)) for o in s["outputs"]),
              s["epilogue"] or "-", _ms(s["ms"]), f"{100 * s['share']:.1f}", f"{s['flops'] / 1e6:.2f}",
              "-" if s["gflops_per_s"] is None else f"{s['gflops_per_s']:.1f}")
    t.render(out, use_rich)
    t = _Table("Per op type", ["op", "steps", "ms", "share %", "GFLOP", "GFLOP/s"])
    for g in sec["by_op"]:
        t.add(g["op"], g["count"], _ms(g["ms"]), f"{100 * g['share']:.1f}", f"{g['gflop']:.4f}",
              "-" if g["gflops_per_s"] is None else f"{g['gflops_per_s']:.1f}")
    t.render(out, use_rich)


def _print_stream(sec: dict, out, use_rich: bool) -> None:
    c = sec["counters"]
    title = (f"Stream: {sec['task']} on {Path(sec['source']).name}, {sec['backend']} {sec['device']}, policy "
             f"{sec['policy']}: {c.get('processed')} processed, {c.get('dropped')} dropped, {c.get('fps', 0):.1f} "
             f"frames/s (first {sec['warmup_results']} results left out as warm-up)")
    t = _Table(title, ["stage", "p50 ms", "p90 ms", "p95 ms", "p99 ms", "max ms", "mean ms"])
    for name, st in sec["stages"].items():
        t.add(name, _ms(st["median_ms"]), _ms(st["p90_ms"]), _ms(st["p95_ms"]), _ms(st["p99_ms"]), _ms(st["max_ms"]),
              _ms(st["mean_ms"]))
    t.render(out, use_rich)
    if sec.get("note"):
        print(f"note: {sec['note']}", file=out)


# The telemetry metrics worth a line in the terminal (all of them are in the JSON).
_SHOWN = ("cpu_mhz_mean", "load1", "rss_mb", "process_cpu_pct")


def _print_telemetry(tel: dict, out) -> None:
    print("Telemetry (" + ", ".join(f"{k}: {v}" for k, v in tel["sources"].items()) + ")", file=out)
    summary = tel["summary"]
    for k, v in summary.items():
        shown = k in _SHOWN or k.startswith(("gpu", "tegra.power_mw", "tegra.gr3d", "tegra.emc", "tegra.temps_c"))
        if isinstance(v, dict) and shown:
            print(f"  {k:28s} min {v['min']:10.1f}  mean {v['mean']:10.1f}  max {v['max']:10.1f}", file=out)
        elif isinstance(v, list):
            print(f"  {k:28s} {', '.join(v) or 'none'}", file=out)
    static = tel.get("static") or {}
    if static.get("nvpmodel"):
        print(f"  nvpmodel power mode: {static['nvpmodel']}", file=out)
    print(file=out)


# ------------------------------------------------------------------------------------------------
# Plots
# ------------------------------------------------------------------------------------------------
def plots_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _label(r: dict) -> str:
    return f"{r['backend']} {r['precision']} {r['device']} b{r['batch']}"


def write_plots(report: dict, folder) -> list[Path]:
    """latency_cdf.png (host latency CDF per contender), timeline.png (latency per iteration over time, with the
    telemetry below), layers.png (per-layer bars) and stream.png (per-frame stage times) where the report has
    the data. Needs matplotlib (pip install edgevision[profile])."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, none opened
    import matplotlib.pyplot as plt
    import numpy as np

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    rows = [r for r in report["latency"] if r["status"] == "ok"]
    if rows:
        fig, ax = plt.subplots(figsize=(8, 5))
        for r in rows:
            x = np.sort(np.asarray(r["samples"]["host_ms"]))
            ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", label=_label(r))
        ax.set_xscale("log")
        ax.set_xlabel("host latency (ms, log scale)")
        ax.set_ylabel("fraction of iterations")
        ax.axhline(0.99, color="grey", lw=0.5, ls="--")
        ax.set_title(f"{report['model']['name']}: latency CDF")
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
        written.append(_save(fig, folder / "latency_cdf.png", plt))

        tel = (report.get("telemetry") or {}).get("samples") or []
        series = _telemetry_series(tel)
        fig, axes = plt.subplots(2 if series else 1, 1, figsize=(10, 7 if series else 4.5), sharex=True, squeeze=False)
        ax = axes[0][0]
        for r in rows:
            ax.plot(r["samples"]["t_s"], r["samples"]["host_ms"], ".", ms=2, label=_label(r))
        ax.set_yscale("log")
        ax.set_ylabel("host latency (ms)")
        ax.set_title(f"{report['model']['name']}: per-iteration latency")
        ax.legend(fontsize=7, markerscale=4)
        if series:
            tax = axes[1][0]
            for name, (t, v) in series.items():
                peak = max(abs(x) for x in v) or 1.0
                tax.plot(t, [x / peak for x in v], label=f"{name} (max {peak:.0f})")
            tax.set_ylabel("telemetry / its max")
            tax.legend(fontsize=7)
        axes[-1][0].set_xlabel("time (s)")
        written.append(_save(fig, folder / "timeline.png", plt))
    for sec in report.get("layers") or []:
        steps = sorted(sec["steps"], key=lambda s: -s["ms"])[:20][::-1]
        fig, ax = plt.subplots(figsize=(9, 0.35 * len(steps) + 1.5))
        ax.barh([f"{s['index']} {s['op']} {s['name'][:28]}" for s in steps], [s["ms"] for s in steps])
        for i, s in enumerate(steps):
            ax.text(s["ms"], i, f" {100 * s['share']:.1f}%", va="center", fontsize=7)
        ax.set_xlabel("ms per run (median)")
        ax.set_title(f"per-layer time, native {sec['device']} batch {sec['batch']}")
        ax.tick_params(axis="y", labelsize=7)
        written.append(_save(fig, folder / f"layers_{sec['device'].replace(':', '')}.png", plt))
    stream = report.get("stream") or {}
    if stream.get("frames"):
        frames = stream["frames"]
        t = [f["t_s"] for f in frames]
        fig, ax = plt.subplots(figsize=(10, 4.5))
        bottom = np.zeros(len(frames))
        for stage in ("wait", "preprocess", "infer", "postprocess", "render"):
            v = np.asarray([f[stage] for f in frames])
            ax.bar(t, v, bottom=bottom, width=0.8 * (np.median(np.diff(t)) if len(t) > 1 else 0.03), label=stage)
            bottom += v
        ax.plot(t, [f["capture_to_result"] for f in frames], "k.", ms=3, label="capture to result")
        ax.set_xlabel("capture time (s)")
        ax.set_ylabel("ms")
        ax.set_title(f"stream: {stream['task']}, per frame")
        ax.legend(fontsize=7)
        written.append(_save(fig, folder / "stream.png", plt))
    return written


def _telemetry_series(samples: list[dict]) -> dict:
    from .telemetry import flatten

    wanted = ("cpu_mhz_mean", "load1", "process_cpu_pct")
    series: dict = {}
    for s in samples:
        for k, v in flatten(s).items():
            if k in wanted or k.endswith((".sm_mhz", ".power_w", ".temp_c")) or k.startswith(
                    ("tegra.power_mw.", "tegra.gr3d_pct")):
                t, vals = series.setdefault(k, ([], []))
                t.append(s["t"])
                vals.append(v)
    return {k: v for k, v in series.items() if len(v[0]) > 1}


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------
# Comparing two reports
# ------------------------------------------------------------------------------------------------
_MACHINE_FIELDS = {
    "CPU": lambda m: m.get("cpu", {}).get("model"),
    "logical cores": lambda m: m.get("cpu", {}).get("logical_cores"),
    "GPUs": lambda m: [g.get("name") for g in m.get("gpus", [])] or (m.get("torch_runtime") or {}).get("gpus"),
    "CUDA driver": lambda m: m.get("build", {}).get("cuda_driver_version") or m.get("nvml_driver"),
    "CUDA runtime": lambda m: m.get("build", {}).get("cuda_runtime_version") or (m.get("torch_runtime") or {}).get("cuda"),
    "TensorRT": lambda m: m.get("packages", {}).get("tensorrt"),
    "edgevision": lambda m: m.get("version"),
    "edgevision build": lambda m: (m.get("build", {}).get("build_type"), m.get("build", {}).get("cpu_arch_flags")),
    "Jetson": lambda m: m.get("jetson"),
    "power mode": lambda m: m.get("nvpmodel"),
    "host": lambda m: m.get("host"),
}
_COMPARED = ("median_ms", "mean_ms", "p90_ms", "p99_ms", "min_ms")


def compare_reports(a: dict, b: dict) -> dict:
    """Rows of the two reports matched by (model, backend, precision, device, batch): for each pair of ok rows
    the ratio b / a of the host median, mean, p90, p99 and min (> 1: b is slower) and of the device compute
    median when both have it; the machine facts and timing settings that differ; the rows only one side has."""
    check_report(a, "report a")
    check_report(b, "report b")
    key = lambda r: tuple(r[k] for k in ROW_KEY)  # noqa: E731
    ra = {key(r): r for r in a["latency"] if r["status"] == "ok"}
    rb = {key(r): r for r in b["latency"] if r["status"] == "ok"}
    rows = []
    for k in [k for k in ra if k in rb]:
        ha, hb = ra[k]["stats"]["host"], rb[k]["stats"]["host"]
        row = dict(zip(ROW_KEY, k))
        for s in _COMPARED:
            row[f"a_{s}"], row[f"b_{s}"] = ha[s], hb[s]
            row[f"{s}_ratio"] = hb[s] / ha[s] if ha[s] else None
        ca, cb = ra[k]["stats"].get("compute"), rb[k]["stats"].get("compute")
        if ca and cb:
            row["compute_median_ratio"] = cb["median_ms"] / ca["median_ms"] if ca["median_ms"] else None
        rows.append(row)
    differ = []
    for name, get in _MACHINE_FIELDS.items():
        va, vb = get(a["machine"]), get(b["machine"])
        if va != vb:
            differ.append({"field": name, "a": va, "b": vb})
    settings = [{"field": k, "a": a["settings"].get(k), "b": b["settings"].get(k)}
                for k in ("threads", "order", "block", "warmup", "iterations", "duration_s")
                if a["settings"].get(k) != b["settings"].get(k)]
    return {"rows": rows, "machine_differences": differ, "settings_differences": settings,
            "only_a": [dict(zip(ROW_KEY, k)) for k in ra if k not in rb],
            "only_b": [dict(zip(ROW_KEY, k)) for k in rb if k not in ra]}


def print_comparison(result: dict, name_a: str, name_b: str, out=None, use_rich: bool | None = None) -> None:
    out = out or sys.stdout
    use_rich = rich_available() if use_rich is None else use_rich
    print(f"a = {name_a}\nb = {name_b}\nratios are b / a: above 1, b is slower", file=out)
    if result["machine_differences"]:
        print("the machines differ:", file=out)
        for d in result["machine_differences"]:
            print(f"  {d['field']}: a {d['a']}, b {d['b']}", file=out)
    else:
        print("same machine facts (CPU, GPUs, driver, CUDA, TensorRT, edgevision build, host)", file=out)
    for d in result.get("settings_differences", []):
        print(f"settings differ: {d['field']}: a {d['a']}, b {d['b']}", file=out)
    cols = ["model", "backend", "precision", "device", "batch", "a median ms", "b median ms", "median", "mean", "p90",
            "p99", "min", "compute"]
    t = _Table("Comparison (host latency; compute: device compute median)", cols)
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for r in result["rows"]:
        t.add(*(r[k] for k in ROW_KEY), _ms(r["a_median_ms"]), _ms(r["b_median_ms"]),
              *(fmt(r[f"{s}_ratio"]) for s in _COMPARED), fmt(r.get("compute_median_ratio")))
    t.render(out, use_rich)
    for side, rows in (("a", result["only_a"]), ("b", result["only_b"])):
        for r in rows:
            print(f"only in {side}: " + " ".join(str(r[k]) for k in ROW_KEY), file=out)
    if not result["rows"]:
        print("no row of a matches a row of b by (model, backend, precision, device, batch)", file=out)
