"""The ``roofsim`` command: one sub-command per module in this package."""

from __future__ import annotations

import argparse
import sys

from hwmodels.errors import InputError
from roofsim.cli import (calibrate, concurrency, demo, hardware, long_context, models, predict, serve, techniques,
                         validate)

COMMANDS = [predict, serve, hardware, models, techniques, concurrency, long_context, demo, calibrate, validate]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roofsim", description="Roofline and concurrency cost models for LLM serving.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except InputError as exc:
        print(f"roofsim: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
