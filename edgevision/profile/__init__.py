"""Latency profiler: model latency on several backends side by side (host time; H2D / compute / D2H by CUDA events
on a GPU), the native backend per layer, a whole stream per stage, telemetry (proc, NVML, tegrastats), and the
report (terminal tables, JSON, CSV, PNG plots, comparison of two reports). `edgevision profile` is the command.

Imports nothing optional: rich, matplotlib, nvidia-ml-py and torch are imported only where used.
"""
from .latency import profile_model, run_timed
from .layers import profile_layers
from .pipeline import profile_stream
from .report import SCHEMA, SCHEMA_VERSION, build_report, compare_reports, read_report, write_csv, write_json, write_plots
from .stats import JITTER_RATIO, summarize, summarize_ms
from .telemetry import Telemetry, parse_tegrastats

__all__ = ["profile_model", "run_timed", "profile_layers", "profile_stream", "SCHEMA", "SCHEMA_VERSION",
           "build_report", "compare_reports", "read_report", "write_csv", "write_json", "write_plots", "JITTER_RATIO",
           "summarize", "summarize_ms", "Telemetry", "parse_tegrastats"]
