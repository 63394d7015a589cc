#!/usr/bin/env python3
"""Latency profile of a model: the same as `edgevision profile`.

    python tools/profile_latency.py cifar10-seed --backends native,onnxruntime,torch
    python tools/profile_latency.py model.onnx --batch 1,8 --duration 10 --stream --out runs/prof
    python tools/profile_latency.py --compare a/profile.json b/profile.json
"""
import sys

from edgevision.profile.commands import main

if __name__ == "__main__":
    sys.exit(main())
