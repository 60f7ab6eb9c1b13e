"""The `mxfp4` command: argument parsing and dispatch only.

Each module in COMMANDS adds its subcommand through `register(subparsers)`, setting
`func(args) -> int` as the parser default.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from . import __version__

COMMANDS = (
    "mxfp4.demo",
    "mxfp4.bench.cli",
    "mxfp4.models_cli",
    "mxfp4.generate_cli",
    "mxfp4.viz.cli",
    "mxfp4.train_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mxfp4", description="MXFP4 (OCP Microscaling 4-bit float) toolkit.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mxfp4 {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error")
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
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM while an output folder is written
        if args.debug:
            raise
        signum = getattr(err, "signum", signal.SIGINT)
        where = ("after its output was complete" if getattr(err, "completed", False)
                 else "before its output was complete; any output folder is as it was before")
        print(f"mxfp4 {args.command}: interrupted ({signal.Signals(signum).name}) {where}",
              file=sys.stderr)
        return 128 + signum
    except Exception as err:  # a user error is one line; --debug shows where it came from
        if args.debug:
            raise
        known = isinstance(err, (ValueError, TypeError, OSError, RuntimeError))
        detail = "" if known else f" ({type(err).__name__}; --debug shows the traceback)"
        print(f"mxfp4 {args.command}: error: {err}{detail}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
