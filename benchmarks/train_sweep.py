"""Sweep training recipes on one GPU: several `edgevision.train` runs side by side, one JSON summary.

Sets "widths" and "longer" vary fastnet (train_classify on a CIFAR-10 folder); set "espcn" varies the x2
super-resolution network (train_sr on an SR root with T91/, Set5/, Set14/; each run is bounded by a time budget,
over which its schedule anneals, so it still ends with its Set5/Set14 figures).

A GPU machine without ../shared needs the CIFAR-10 copy carried to it, and the raw 184 MB is too large to
travel; `pack` re-encodes every image as a quality-75 4:2:0 JPEG (the quality the shared copy was decoded
from, so the round trip moves pixels by only about 0.16 grey levels) and stores one shared JPEG header plus
the scan bytes (19 MB); `unpack` writes the binary layout back.

    python benchmarks/train_sweep.py pack ../shared/data/cifar10 cifar_jpeg.npz
    python benchmarks/train_sweep.py unpack cifar_jpeg.npz /tmp/cifar10
    python benchmarks/train_sweep.py run /tmp/cifar10 --runs /tmp/runs --out sweep.json --set widths
    python benchmarks/train_sweep.py run ../shared/data/sr --runs /tmp/sr --out sr.json --set espcn

A fastnet run holds out 5,000 training images (validation, per epoch) and reports the test accuracy, single
view, of its best checkpoint. The runs share the GPU, so their wall times are not single-run timings.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time

import numpy as np

BATCHES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
WIDE, WIDER = (128, 384, 384), (192, 512, 512)
SETS = {
    "widths": {
        "w64_e10": dict(epochs=10),
        "w64_e16": dict(epochs=16),
        "w64_e30": dict(epochs=30),
        "w96_e16": dict(epochs=16, model_kwargs={"widths": (96, 384, 384)}),
        "w128_e16": dict(epochs=16, model_kwargs={"widths": WIDE}),
        "w128_e30": dict(epochs=30, model_kwargs={"widths": WIDE}),
        "w64_e16_t4": dict(epochs=16, translate=4),
    },
    "longer": {
        "w128_e50": dict(epochs=50, model_kwargs={"widths": WIDE}),
        "w192_e30": dict(epochs=30, model_kwargs={"widths": WIDER}),
        "w64_e60": dict(epochs=60),
        "w128_e30_ls1": dict(epochs=30, label_smoothing=0.1, model_kwargs={"widths": WIDE}),
    },
    "espcn": {  # train_sr keyword arguments; scale 2, Y channel, T91 with 5 images held out
        "w64_d3": dict(epochs=1000, budget_minutes=3.0),
        "w64_d5": dict(epochs=1000, depth=5, budget_minutes=3.0),
        "w64_d7": dict(epochs=1000, depth=7, budget_minutes=3.0),
        "w96_d5": dict(epochs=1000, depth=5, width=96, budget_minutes=3.0),
        "w64_d5_p32": dict(epochs=1000, depth=5, patch=32, budget_minutes=3.0),
        "w128_d4": dict(epochs=1000, depth=4, width=128, budget_minutes=3.0),
    },
}


def pack(src: str, out: str) -> None:
    from PIL import Image

    header, scans, labels = None, [], []
    for name in BATCHES:
        records = np.fromfile(os.path.join(src, name), np.uint8).reshape(-1, 3073)
        labels.append(records[:, 0])
        for image in records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1):
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, "JPEG", quality=75, subsampling=2)
            data = buf.getvalue()
            start_of_scan = data.find(b"\xff\xda")
            if header is None:
                header = data[:start_of_scan]
            if data[:start_of_scan] != header:
                raise RuntimeError("JPEG headers differ between images; cannot share one")
            scans.append(data[start_of_scan:])
    offsets = np.cumsum([0] + [len(s) for s in scans]).astype(np.int64)
    with open(os.path.join(src, "batches.meta.txt"), "rb") as f:
        meta = f.read()
    np.savez(out, header=np.frombuffer(header, np.uint8), blob=np.frombuffer(b"".join(scans), np.uint8),
             offsets=offsets, labels=np.concatenate(labels), meta=np.frombuffer(meta, np.uint8))


def unpack(src: str, dst: str) -> None:
    from PIL import Image

    z = np.load(src)
    header, blob, offsets, labels = z["header"].tobytes(), z["blob"], z["offsets"], z["labels"]
    records = np.empty((len(labels), 3073), np.uint8)
    records[:, 0] = labels
    for i in range(len(labels)):
        jpeg = header + blob[offsets[i]:offsets[i + 1]].tobytes()
        records[i, 1:] = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).transpose(2, 0, 1).reshape(-1)
    os.makedirs(dst, exist_ok=True)
    for k, name in enumerate(BATCHES):
        records[k * 10000:(k + 1) * 10000].tofile(os.path.join(dst, name))
    with open(os.path.join(dst, "batches.meta.txt"), "wb") as f:
        f.write(z["meta"].tobytes())


def run(data: str, runs: str, out: str, configs: dict, limit_s: float, task: str) -> dict:
    os.makedirs(runs, exist_ok=True)
    call = "train_classify" if task == "classify" else "train_sr"
    fixed = "model='fastnet', " if task == "classify" else ""
    procs = {}
    for name, kw in configs.items():
        code = (f"import edgevision.train.api as a; a.{call}({data!r}, {os.path.join(runs, name)!r}, "
                f"{fixed}device='cuda', threads=2, quiet=True, **{kw!r})")
        log = open(os.path.join(runs, f"{name}.log"), "w")
        procs[name] = subprocess.Popen([sys.executable, "-P", "-c", code], stdout=log, stderr=subprocess.STDOUT)
    t0 = time.time()
    while time.time() - t0 < limit_s and any(p.poll() is None for p in procs.values()):
        time.sleep(2)
    summary = {}
    for name, p in procs.items():
        if p.poll() is None:
            p.kill()
            p.wait()
        path = os.path.join(runs, name, "metrics.json")
        m = json.load(open(path)) if os.path.exists(path) else {}
        history = m.get("history", [])
        metric = "val_acc" if task == "classify" else "val_psnr"
        summary[name] = {"config": configs[name], "rc": p.returncode, "final": m.get("final"),
                         metric: [round(h[metric], 4) for h in history], "steps": m.get("steps"),
                         "train_acc_last": round(history[-1]["train_acc"], 4) if history and "train_acc" in history[-1] else None,
                         "wall_s": round(history[-1]["wall_s"], 1) if history else None}
        print(name, summary[name]["final"], summary[name][metric][-3:], summary[name]["wall_s"], "rc", p.returncode)
    with open(out, "w") as f:
        json.dump(summary, f, indent=1, default=list)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("src")
    p.add_argument("out")
    p = sub.add_parser("unpack")
    p.add_argument("src")
    p.add_argument("dst")
    p = sub.add_parser("run")
    p.add_argument("data")
    p.add_argument("--runs", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--set", choices=sorted(SETS), default="widths")
    p.add_argument("--limit-s", type=float, default=330, help="runs still going then are stopped")
    a = ap.parse_args()
    if a.cmd == "pack":
        pack(a.src, a.out)
    elif a.cmd == "unpack":
        unpack(a.src, a.dst)
    else:
        run(a.data, a.runs, a.out, SETS[a.set], a.limit_s, "sr" if a.set == "espcn" else "classify")


if __name__ == "__main__":
    main()
