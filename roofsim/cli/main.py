"""The ``roofsim`` command: one sub-command per module in this package."""

from __future__ import annotations

import argparse
import sys
from importlib import metadata

from hwmodels.errors import InputError
from roofsim.cli import (calibrate, concurrency, demo, hardware, long_context, models, plan, plan_train, predict,
                         serve, techniques, train, validate)

COMMANDS = [predict, serve, plan, train, plan_train, hardware, models, techniques, concurrency, long_context, demo,
            calibrate, validate]


def version() -> str:
    """The installed package's version (pyproject.toml), or the source tree's when not installed."""
    try:
        return metadata.version("roofsim")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roofsim",
                                     description="Roofline and concurrency cost models for LLM serving and training.")
    parser.add_argument("--version", action="version", version=f"roofsim {version()}")
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
