"""Latency statistics: the one summary (min, mean, median, p90, p95, p99, max, standard deviation, coefficient of
variation, throughput, jitter) behind every latency figure of the profiler and the benchmarks, so two numbers
called "p99" in edgevision are always computed the same way."""
from __future__ import annotations

import math

import numpy as np

# p99 / p50 above this flags a row as jittery: one run in a hundred then takes 50 % longer than the typical run,
# which a real-time loop budgeted on the median would miss. Clean runs on an idle machine stay near 1.1; a
# descheduled thread, a clock change or a garbage collection pushes the ratio past 1.5.
JITTER_RATIO = 1.5
PERCENTILES = (50, 90, 95, 99)


def summarize_ms(values_ms, batch: int = 1) -> dict:
    """Statistics of latencies given in milliseconds.

    Percentiles interpolate linearly between order statistics (numpy's default, Hyndman & Fan type 7), so
    p99 of 100 runs lies between the two slowest; std is the sample standard deviation (ddof=1; 0 for one run);
    cv = std / mean. Throughput is from the median: batches_per_s = 1000 / median_ms and items_per_s =
    batch * batches_per_s (images per second for an image model). jitter: p99 / p50 > JITTER_RATIO.
    """
    x = np.asarray(values_ms, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("no latency samples to summarize")
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise ValueError("latency samples must be finite and non-negative")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    p50, p90, p95, p99 = (float(v) for v in np.percentile(x, PERCENTILES))
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else 0.0
    ratio = p99 / p50 if p50 > 0 else math.inf
    return {
        "runs": int(x.size), "batch": batch,
        "min_ms": float(x.min()), "mean_ms": mean, "median_ms": p50, "p90_ms": p90, "p95_ms": p95, "p99_ms": p99,
        "max_ms": float(x.max()), "std_ms": std, "cv": std / mean if mean > 0 else 0.0,
        "batches_per_s": 1e3 / p50 if p50 > 0 else None,
        "items_per_s": batch * 1e3 / p50 if p50 > 0 else None,
        "p99_over_p50": ratio if math.isfinite(ratio) else None,
        "jitter": bool(ratio > JITTER_RATIO),
    }


def summarize(seconds, batch: int = 1) -> dict:
    """summarize_ms of latencies given in seconds (what time.perf_counter differences are)."""
    return summarize_ms(np.asarray(seconds, dtype=np.float64) * 1e3, batch)
