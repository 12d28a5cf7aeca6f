"""Command line: `wavemix-profile list | profile | compare | max-batch | report`.

Bad input ends with one line on stderr naming what was wrong and what is accepted, exit code 2.
"""
from __future__ import annotations

import argparse
import sys

from . import __version__


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's multi-line usage dump becomes one line
        raise UsageError(f"{self.prog}: {message}")


EPILOG_LIST = "example:\n  wavemix-profile list --models 'WaveMix-*'"


def _cmd_list(args) -> int:
    from .commands.listing import run_list
    return run_list(args)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="wavemix-profile", description=__doc__.splitlines()[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"wavemix-profile {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    p = sub.add_parser("list", help="the model registry with family, params and the paper's figures",
                       epilog=EPILOG_LIST, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["*"], metavar="NAME",
                   help="registry names or globs (default: all)")
    p.add_argument("--num-classes", type=int, default=100, help="classes for the parameter count (default 100, as Table 1)")
    p.set_defaults(func=_cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return args.func(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (KeyError, ValueError) as exc:
        from .errors import is_user_error
        if not is_user_error(exc):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
