"""Soak: 22,000 synthetic frames through capture, hand-off, the native preprocess kernel, the classify
task and a JSON-lines sink, with resident memory flat after warm-up (the issue's bound: growth under
5 MB over at least 20,000 frames). Small frames keep it quick."""
import pytest
from stream_util import FakeEngine, rss_bytes

from edgevision.stream import ClassifyTask, JsonLinesSink, Pipeline


@pytest.mark.slow
def test_soak_memory_flat():
    # 20,000+ synthetic frames through capture, hand-off, preprocess, task and a JSON sink to /dev/null:
    # resident memory after warm-up must grow by less than 5 MB.
    p = Pipeline("test://moving?width=32&height=24&fps=0&frames=22000", ClassifyTask(FakeEngine(), top_k=2),
                 [JsonLinesSink("/dev/null")], policy="lossless")
    base = None
    for r in p:
        if r.seq == 2000:
            base = rss_bytes()
    growth = rss_bytes() - base
    assert p.stats.total("processed") == 22000
    assert growth < 5 * 2**20, f"RSS grew {growth / 2**20:.2f} MB over 20,000 frames"
