"""The profile report and `edgevision profile`: one CLI run on a tiny model (CPU backends, per layer, a short
stream, telemetry) whose JSON validates against the documented schema, whose CSV and PNG files are readable,
whose tables print with rich and without, and which --compare matches against an edited copy; plus the errors
a user can make."""
import copy
import csv
import importlib.util
import io
import json
import os
import sys

import numpy as np
import pytest

from edgevision.cli import main
from edgevision.profile import report as R

from profile_util import HAS_ORT, tiny  # noqa: F401 - fixture

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAS_MPL = importlib.util.find_spec("matplotlib") is not None
STREAM = "test://moving?width=64&height=48&fps=200&frames=8"


@pytest.fixture(scope="module")
def run(tiny, tmp_path_factory):
    """(out folder, report, printed text) of one `edgevision profile` run."""
    out = tmp_path_factory.mktemp("prof") / "out"
    backends = "native,tensorrt" + (",onnxruntime" if HAS_ORT else "")
    argv = ["profile", tiny, "--backends", backends, "--device", "cpu", "--batch", "1,2", "--iterations", "4",
            "--warmup", "1", "--threads", "1", "--layer-runs", "2", "--stream", STREAM, "--stream-policy", "lossless",
            "--interval", "0.05", "--out", str(out), "--quiet"]
    buf = io.StringIO()
    stdout, sys.stdout = sys.stdout, buf
    try:
        assert main(argv) == 0
    finally:
        sys.stdout = stdout
    return out, json.loads((out / "profile.json").read_text()), buf.getvalue()


def test_report_validates_against_the_schema(run):
    _, report, _ = run
    R.check_report(report)
    if importlib.util.find_spec("jsonschema") is not None:  # the dev extra installs it; the full schema then
        import jsonschema

        jsonschema.validate(report, R.SCHEMA)
    assert report["schema"] == "edgevision.profile" and report["schema_version"] == R.SCHEMA_VERSION
    m = report["machine"]
    assert m["cpu"]["model"] and m["cpu"]["logical_cores"] >= 1 and "build" in m and "packages" in m
    assert report["model"]["name"] == "tiny" and len(report["model"]["sha256"]) == 64
    assert report["settings"]["batches"] == [1, 2] and report["settings"]["threads"] == 1
    ok = [r for r in report["latency"] if r["status"] == "ok"]
    assert {(r["backend"], r["batch"]) for r in ok} >= {("native", 1), ("native", 2)}
    trt = [r for r in report["latency"] if r["backend"] == "tensorrt"]
    assert trt and all(r["status"] == "skipped" and r["reason"] for r in trt)
    assert report["layers"][0]["device"] == "cpu" and report["layers"][0]["runs"] == 2
    assert report["stream"]["counters"]["processed"] == 8 and "capture_to_result" in report["stream"]["stages"]
    tel = report["telemetry"]
    assert tel["sources"]["proc"] == "ok" and tel["samples"] and "load1" in tel["summary"]


def test_schema_rejects_broken_reports(run):
    jsonschema = pytest.importorskip("jsonschema")
    _, report, _ = run
    for edit in (lambda r: r.pop("machine"), lambda r: r.update(schema_version=99),
                 lambda r: r["latency"][0].pop("backend"),
                 lambda r: next(x for x in r["latency"] if x["status"] == "ok").pop("stats"),
                 lambda r: next(x for x in r["latency"] if x["status"] != "ok").pop("reason")):
        broken = copy.deepcopy(report)
        edit(broken)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, R.SCHEMA)


def test_csv_files(run):
    out, report, _ = run
    with open(out / "latency.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(report["latency"])
    native = next(r for r in rows if r["backend"] == "native" and r["batch"] == "2")
    src = next(r for r in report["latency"] if r["backend"] == "native" and r["batch"] == 2)
    assert float(native["host_median_ms"]) == pytest.approx(src["stats"]["host"]["median_ms"])
    assert native["host_jitter"] in ("True", "False") and int(native["host_runs"]) == 4
    with open(out / "layers.csv") as f:
        layers = list(csv.DictReader(f))
    assert [r["op"] for r in layers] == [s["op"] for s in report["layers"][0]["steps"]]
    with open(out / "stream.csv") as f:
        assert len(list(csv.DictReader(f))) == 8


@pytest.mark.skipif(not HAS_MPL, reason="matplotlib is not installed (pip install edgevision[profile])")
def test_plots_are_written_and_readable(run):
    import matplotlib.image

    out, _, printed = run
    for name in ("latency_cdf.png", "timeline.png", "layers_cpu.png", "stream.png"):
        img = matplotlib.image.imread(out / name)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100 and np.ptp(img) > 0, name
        assert name in printed


def test_tables_print_with_and_without_rich(run):
    _, report, printed = run
    assert "Latency" in printed and "Per-layer" in printed and "Stream" in printed and "Telemetry" in printed
    plain = io.StringIO()
    R.print_report(report, out=plain, use_rich=False)
    text = plain.getvalue()
    assert "median ms" in text and "skipped: tensorrt fp32 cpu batch 1: TensorRT runs on CUDA GPUs only" in text
    assert "capture_to_result" in text and "┃" not in text
    if importlib.util.find_spec("rich") is not None:
        fancy = io.StringIO()
        R.print_report(report, out=fancy, use_rich=True)
        assert "┃" in fancy.getvalue()


def test_compare_ratios_and_machine_differences(run, tmp_path, capsys):
    out, report, _ = run
    b = copy.deepcopy(report)
    b["machine"]["cpu"]["model"] = "Other CPU"
    b["settings"]["threads"] = 4
    for r in b["latency"]:
        if r["status"] == "ok":
            for k in ("min_ms", "mean_ms", "median_ms", "p90_ms", "p99_ms"):
                r["stats"]["host"][k] *= 2
    b["latency"] = [r for r in b["latency"] if not (r["backend"] == "native" and r["batch"] == 2)]
    path_b = tmp_path / "b.json"
    R.write_json(b, path_b)
    result = R.compare_reports(report, R.read_report(path_b))
    assert result["rows"] and all(r["median_ms_ratio"] == pytest.approx(2.0) and r["p99_ms_ratio"] == pytest.approx(2.0)
                                  for r in result["rows"])
    assert result["machine_differences"] == [{"field": "CPU", "a": report["machine"]["cpu"]["model"], "b": "Other CPU"}]
    assert result["settings_differences"] == [{"field": "threads", "a": 1, "b": 4}]
    assert result["only_a"] == [{"model": "tiny", "backend": "native", "precision": "fp32", "device": "cpu", "batch": 2}]
    assert main(["profile", "--compare", str(out / "profile.json"), str(path_b), "--plain"]) == 0
    text = capsys.readouterr().out
    assert "the machines differ" in text and "Other CPU" in text and "2.000" in text and "settings differ: threads" in text and "only in a" in text


def test_user_errors_exit_2_with_a_message(run, tmp_path, capsys):
    out, _, _ = run
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "something else"}')
    cases = [(["profile"], "give a MODEL"),
             (["profile", "--compare", str(bad), str(out / "profile.json")], "not an edgevision profile report"),
             (["profile", "--compare", str(tmp_path / "none.json"), str(bad)], "cannot read it"),
             (["profile", "cifar10-seed", "--backends", "native,tvm"], "unknown ['tvm']"),
             (["profile", "no-such-model.onnx"], "no-such-model"),
             (["profile", "cifar10-seed", "--layer-runs", "0"], "--layer-runs must be positive")]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    wrong_version = json.loads((out / "profile.json").read_text())
    wrong_version["schema_version"] = 0
    with pytest.raises(R.ReportError, match="schema_version 0"):
        R.check_report(wrong_version)


def test_tools_wrapper_and_bundled_model_without_plots(tmp_path, capsys):
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        import profile_latency
    finally:
        sys.path.pop(0)
    out = tmp_path / "seed"
    assert profile_latency.main(["cifar10-seed", "--backends", "native", "--device", "cpu", "--iterations", "2",
                                 "--warmup", "0", "--threads", "1", "--no-layers", "--no-telemetry", "--no-plots",
                                 "--out", str(out), "--plain", "-q"]) == 0
    report = R.read_report(out / "profile.json")
    assert report["telemetry"] is None and report["layers"] == [] and not list(out.glob("*.png"))
    assert report["latency"][0]["stats"]["host"]["runs"] == 2
    assert "cifar10-seed" in capsys.readouterr().out


def test_load_note_and_profile_stays_torch_free(tiny, tmp_path):
    from edgevision.profile.commands import _load_notes

    assert _load_notes({"load1": {"min": 0.5, "mean": 1.0, "max": 1.5}}, 2) == []
    assert "load average reached 4.5 on 2 logical cores" in _load_notes({"load1": {"max": 4.5}}, 2)[0]
    # The deploy path: profiling the native backend imports neither torch nor the optional report packages
    # beyond what is asked for (no plots, plain tables).
    import subprocess

    code = ("import sys; from edgevision.cli import main; "
            f"rc = main(['profile', {tiny!r}, '--backends', 'native', '--device', 'cpu', '--iterations', '2', "
            f"'--warmup', '0', '--layer-runs', '1', '--no-plots', '--plain', '-q', '--out', {str(tmp_path)!r}]); "
            "print(rc, sorted(m for m in ('torch', 'matplotlib', 'rich', 'onnxruntime') if m in sys.modules))")
    import edgevision

    # The edgevision this test imported (the installed package in CI, the source tree in a dev build).
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(edgevision.__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                         cwd=tmp_path).stdout
    assert out.strip().splitlines()[-1] == "0 []"
