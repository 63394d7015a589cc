"""Build a TensorRT engine into edgevision's engine cache: the same as `edgevision build`.

    python tools/build_engine.py model.onnx --precision fp16 --batch 1 --max-batch 8
    python tools/build_engine.py model.onnx --precision int8 --calib images/
"""
from __future__ import annotations

import argparse
import sys

from edgevision.backends import commands


def main(args=None) -> int:
    parser = argparse.ArgumentParser(prog="build_engine.py", description=__doc__.split("\n")[0])
    commands.build_arguments(parser)
    return commands.run_build(parser.parse_args(args))


if __name__ == "__main__":
    sys.exit(main())
