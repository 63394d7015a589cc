"""`edgevision run` and `edgevision build` (and tools/build_engine.py, the same function)."""
import importlib.util
import json
import os
import sys

import numpy as np
import pytest

from edgevision.backends import BackendUnavailableError
from edgevision.cli import main

from test_engine import cache_dir, small_models  # noqa: F401 - fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def image(tmp_path):
    import cv2

    path = str(tmp_path / "frame.png")
    cv2.imwrite(path, np.random.default_rng(0).integers(0, 256, (40, 36, 3), dtype=np.uint8))
    return path


def test_run_random_input(small_models, capsys):
    assert main(["run", small_models["dcgan"], "--backend", "onnxruntime", "--device", "cpu", "--runs", "2",
                 "--batch", "2", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["input"] == "random" and row["outputs"] == {"image": [2, 3, 32, 32]}
    assert row["latency"]["runs"] == 2 and row["latency"]["median_ms"] > 0


def test_run_classifies_images_top5(small_models, image, capsys):
    assert main(["run", small_models["cnn"], image, image, "--backend", "onnxruntime", "--device", "cpu",
                 "--runs", "1", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2 and rows[0]["top"] == rows[1]["top"]
    top = rows[0]["top"]
    assert len(top) == 5 and [t["p"] for t in top] == sorted((t["p"] for t in top), reverse=True)
    assert all(t["label"] == str(t["class"]) for t in top) and sum(t["p"] for t in top) <= 1 + 1e-6
    assert main(["run", small_models["cnn"], image, "--backend", "onnxruntime", "--device", "cpu", "--runs", "1"]) == 0
    out = capsys.readouterr().out
    assert "ms median" in out and len(out.splitlines()) == 6


def test_run_enhances_images(small_models, image, capsys):
    assert main(["run", small_models["espcn"], image, "--backend", "onnxruntime", "--device", "cpu", "--runs", "1",
                 "--input-shape", "input=1,1,40,36", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["output_shape"] == [1, 1, 80, 72]


def test_run_errors(small_models, tmp_path, capsys):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"not a png")
    assert main(["run", small_models["cnn"], str(bad), "--backend", "onnxruntime", "--device", "cpu"]) == 1
    assert "not a readable image" in capsys.readouterr().err
    with pytest.raises(ValueError, match="NAME=D0,D1"):
        main(["run", small_models["espcn"], "--backend", "onnxruntime", "--input-shape", "1,1,8,8"])


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed")
def test_build_without_tensorrt_names_the_extra(small_models, cache_dir):
    with pytest.raises(BackendUnavailableError, match=r"pip install edgevision\[tensorrt\]"):
        main(["build", small_models["cnn"], "--precision", "fp16", "--batch", "1", "--max-batch", "4"])
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        import build_engine
    finally:
        sys.path.pop(0)
    with pytest.raises(BackendUnavailableError, match=r"pip install edgevision\[tensorrt\]"):
        build_engine.main([small_models["cnn"], "--precision", "int8", "--calib", "/nonexistent"])
    with pytest.raises(SystemExit):
        build_engine.main([small_models["cnn"], "--precision", "int4"])
