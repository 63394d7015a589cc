"""edgevision.profile statistics and timing loop: the summary against numpy on fixed data, the jitter flag,
bad input, and run_timed's order, counts and error handling with fake timers (no assertion on time)."""
import numpy as np
import pytest

from edgevision.profile.latency import parse_list, run_timed
from edgevision.profile.stats import JITTER_RATIO, summarize, summarize_ms


def test_summary_matches_numpy_on_known_data():
    x = np.random.default_rng(0).lognormal(mean=1.0, sigma=0.3, size=1000)  # ms, a right-skewed latency shape
    s = summarize_ms(x, batch=4)
    assert s["runs"] == 1000 and s["batch"] == 4
    assert s["min_ms"] == x.min() and s["max_ms"] == x.max()
    np.testing.assert_allclose([s["mean_ms"], s["median_ms"], s["p90_ms"], s["p95_ms"], s["p99_ms"]],
                               [x.mean(), np.median(x), *np.percentile(x, [90, 95, 99])], rtol=1e-12)
    np.testing.assert_allclose(s["std_ms"], x.std(ddof=1), rtol=1e-12)
    np.testing.assert_allclose(s["cv"], x.std(ddof=1) / x.mean(), rtol=1e-12)
    np.testing.assert_allclose(s["batches_per_s"], 1e3 / np.median(x), rtol=1e-12)
    np.testing.assert_allclose(s["items_per_s"], 4e3 / np.median(x), rtol=1e-12)
    np.testing.assert_allclose(s["p99_over_p50"], np.percentile(x, 99) / np.median(x), rtol=1e-12)
    assert s["jitter"] is (s["p99_over_p50"] > JITTER_RATIO)


def test_hand_computed_values_and_seconds():
    # 1..100 ms: median 50.5, p90 = 90.1, p99 = 99.01 by linear interpolation between order statistics.
    s = summarize(np.arange(1, 101) / 1e3)
    assert s["median_ms"] == pytest.approx(50.5) and s["p90_ms"] == pytest.approx(90.1)
    assert s["p95_ms"] == pytest.approx(95.05) and s["p99_ms"] == pytest.approx(99.01)
    assert s["mean_ms"] == pytest.approx(50.5) and s["std_ms"] == pytest.approx(29.011491975882016)
    one = summarize_ms([2.0])
    assert one["std_ms"] == 0 and one["cv"] == 0 and one["median_ms"] == one["p99_ms"] == 2.0 and not one["jitter"]


def test_jitter_flag():
    steady = np.full(200, 10.0)
    assert not summarize_ms(steady)["jitter"]
    spiky = steady.copy()
    spiky[-5:] = 40.0  # 2.5 % of the runs take 4x: p99 = 40, p50 = 10
    s = summarize_ms(spiky)
    assert s["p99_over_p50"] == pytest.approx(4.0) and s["jitter"]


@pytest.mark.parametrize("bad, match", [([], "no latency samples"), ([1.0, float("nan")], "finite"),
                                        ([1.0, -0.5], "non-negative")])
def test_bad_samples(bad, match):
    with pytest.raises(ValueError, match=match):
        summarize_ms(bad)
    with pytest.raises(ValueError, match="batch must be a positive int"):
        summarize_ms([1.0], batch=0)


class Counter:
    """A fake timer: records the global call order, returns a fixed phase time, fails after `fail_after` calls."""

    def __init__(self, name, log, fail_after=None):
        self.name, self.log, self.fail_after, self.calls = name, log, fail_after, 0

    def __call__(self):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError(f"{self.name} broke")
        self.log.append(self.name)
        return {"host": 0.001 * len(self.name)}


def test_run_timed_round_robin_and_sequential():
    log = []
    a, b = Counter("a", log), Counter("bb", log)
    samples, errors = run_timed([a, b], warmup=2, iterations=3, block=1)
    assert log == ["a", "bb"] * 5 and errors == [None, None]  # warm-up interleaved too
    assert [len(s) for s in samples] == [3, 3] and samples[1][0]["host"] == 0.002
    assert all(s0["t"] <= s1["t"] for s0, s1 in zip(samples[0], samples[0][1:]))
    log.clear()
    run_timed([Counter("a", log), Counter("bb", log)], warmup=1, iterations=2, order="sequential")
    assert log == ["a"] * 3 + ["bb"] * 3


def test_run_timed_turns_of_a_block_with_the_handover_call_untimed():
    log = []
    samples, _ = run_timed([Counter("a", log), Counter("bb", log)], warmup=0, iterations=4, block=3)
    # turns of 3 calls, the first of each untimed: 2 turns give each timer its 4 samples
    assert log == ["a"] * 3 + ["bb"] * 3 + ["a"] * 3 + ["bb"] * 3
    assert [len(s) for s in samples] == [4, 4]
    log.clear()
    samples, _ = run_timed([Counter("c", log)], warmup=0, iterations=4, block=3)
    assert log == ["c"] * 4 and len(samples[0]) == 4  # alone there is no handover to skip
    log.clear()
    samples, _ = run_timed([Counter("a", log), Counter("bb", log)], warmup=0, iterations=2, block=4, handover=2,
                           settle=0.001)
    assert log == ["a"] * 4 + ["bb"] * 4 and [len(s) for s in samples] == [2, 2]
    log.clear()
    samples, _ = run_timed([Counter("a", log), Counter("bb", log)], warmup=0, iterations=2, block=2, handover=5)
    assert log == ["a", "a", "bb", "bb"] * 2 and [len(s) for s in samples] == [2, 2]  # one recorded call per turn


def test_run_timed_drops_a_failing_timer_and_caps():
    log = []
    samples, errors = run_timed([Counter("a", log, fail_after=4), Counter("b", log)], warmup=1, iterations=10,
                                block=1)
    assert isinstance(errors[0], RuntimeError) and errors[1] is None
    assert len(samples[0]) == 3 and len(samples[1]) == 10
    samples, _ = run_timed([Counter("c", log)], warmup=0, iterations=1, duration=60.0, max_iterations=5)
    assert len(samples[0]) == 5  # the cap ends a duration the test would otherwise wait out


@pytest.mark.parametrize("kwargs, match", [({"order": "random"}, "order must be"), ({"warmup": -1}, "warmup"),
                                           ({"settle": -1.0}, "settle"), ({"handover": -1}, "handover"),
                                           ({"iterations": 0}, "nothing would be timed"),
                                           ({"duration": -1}, "duration"), ({"block": 0}, "block")])
def test_run_timed_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_timed([lambda: {"host": 0.0}], **kwargs)


def test_parse_list():
    assert parse_list("native, torch,native", "backends", ("native", "torch")) == ["native", "torch"]
    assert parse_list("1,8", "batch", convert=int) == [1, 8]
    with pytest.raises(ValueError, match=r"backends: unknown \['tvm'\]"):
        parse_list("native,tvm", "backends", ("native", "torch"))
    with pytest.raises(ValueError, match="comma-separated list of int"):
        parse_list("1,x", "batch", convert=int)
