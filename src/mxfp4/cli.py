"""The `mxfp4` command: argument parsing and dispatch only.

Each module in COMMANDS adds its subcommand through `register(subparsers)`, setting
`func(args) -> int` as the parser default.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

COMMANDS = (
    "mxfp4.demo",
    "mxfp4.bench.cli",
    "mxfp4.models_cli",
    "mxfp4.viz.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mxfp4", description="MXFP4 (OCP Microscaling 4-bit float) toolkit.")
    parser.add_argument("--version", action="version", version=f"mxfp4 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as err:
        print(f"mxfp4 {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
