"""The `coreledger` command line (contract: CLI): the parser, and errors turned into exit
statuses. What each command does is in `block_exec/commands/`, one module a command.

Exit status: 0 success; 1 refused input, failed verification or runtime error; 2 usage.
Every error is one line on stderr; no traceback ever reaches the user. Machine output is
JSON on stdout; progress and human summaries go to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from block_exec.commands import COMMANDS, CommandFailed, UsageProblem, dispatch, one_line


class UsageError(Exception):
    """Bad command-line usage: exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and an exception, not a print-and-exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="coreledger",
        description="A deterministic exchange state machine: order books, balances, a "
        "Merkle state root and a LevelDB store.",
        epilog="Run 'coreledger COMMAND --help' for one command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for command in COMMANDS:
        command.add_arguments(
            sub.add_parser(command.name, help=command.help, description=command.help,
                           epilog=f"example: {command.example}")
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help and --version exit 0 through argparse
        return int(exc.code or 0)
    try:
        return dispatch(args)
    except UsageProblem as exc:
        print(f"coreledger: error: {exc}", file=sys.stderr)
        return 2
    except CommandFailed as exc:
        print(f"coreledger: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a runtime error for the contract's exit statuses
        print("coreledger: error: interrupted", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 1
    except Exception as exc:  # the last line of defence: never a traceback
        print(f"coreledger: error: {one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
