"""The `edgevision` command."""
from __future__ import annotations

import argparse
import json
import sys

from .backends import commands as engine_commands
from .profile.commands import add_parser as add_profile_parser
from .stream.demo import add_parser as add_demo_parser
from .train import commands


def _info(args) -> int:
    from . import info

    report = info()
    print(json.dumps(report, indent=2) if args.json else report)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="edgevision", description="edgevision edge-vision SDK")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="version, build options, GPUs, CPU SIMD level and threads")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(fn=_info)
    commands.add_train_parser(sub)
    commands.add_export_parser(sub)
    engine_commands.add_build_parser(sub)
    engine_commands.add_run_parser(sub)
    add_demo_parser(sub)
    add_profile_parser(sub)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
