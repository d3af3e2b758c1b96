"""The `coreledger` command line (contract: CLI).

Exit status: 0 success; 1 refused input, failed verification or runtime error; 2 usage.
Every error is one line on stderr; no traceback ever reaches the user. Machine output is
JSON on stdout; progress and human summaries go to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from block_exec import commands

EPILOGS = {
    "run": "example: coreledger run --db ./node --checkpoint-interval 100 --receipts r.jsonl",
    "verify": "example: coreledger verify --db ./node",
    "state": "example: coreledger state --db ./node --asset 1",
    "history": "example: coreledger history --db ./node --user 0x"
    + "00" * 19 + "2a --limit 50",
    "prove": "example: coreledger prove --db ./node --order 17 > proof.json",
    "verify-proof": "example: coreledger verify-proof --root <hex> proof.json",
    "diff": "example: coreledger diff --db ./node-a --other ./node-b",
    "bench": "example: coreledger bench --quick > figures.json",
}


class UsageError(Exception):
    """Bad command-line usage: exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and an exception, not a print-and-exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {message} (see --help)")


def _nonnegative(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def _positive(text: str) -> int:
    value = _nonnegative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="coreledger",
        description="A deterministic exchange state machine: order books, balances, a "
        "Merkle state root and a LevelDB store.",
        epilog="Run 'coreledger COMMAND --help' for one command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, epilog=EPILOGS[name])

    run = command("run", "apply blocks (a file, or the built-in simulated market) to a store")
    run.add_argument("--blocks", metavar="FILE", help="JSON Lines or CBOR sequence of blocks")
    run.add_argument("--db", metavar="DIR", default="./coreledger-data")
    run.add_argument("--checkpoint-interval", metavar="N", type=_positive, default=None,
                     help="checkpoint every N blocks (default 100; fixed when the store is made)")
    run.add_argument("--keep", metavar="K", type=_positive, default=10,
                     help="checkpoints kept (default 10)")
    run.add_argument("--receipts", metavar="FILE", help="write receipts as JSON Lines")
    run.add_argument("--sim-blocks", metavar="N", type=_positive, default=None,
                     help="blocks of the simulated market (default 3000)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--sync-blocks", action="store_true",
                     help="fsync every block batch: acknowledged blocks then survive power "
                     "loss, not only a crash of the process (checkpoints always fsync)")

    verify = command("verify", "restore a checkpoint and check it against its state root")
    verify.add_argument("--db", metavar="DIR", required=True)
    verify.add_argument("--height", metavar="H", type=_nonnegative)
    verify.add_argument("--all", action="store_true",
                        help="also check every kept checkpoint, the block chain and every "
                        "history row (an audit: reads the whole store)")

    state = command("state", "print books and balances as JSON")
    state.add_argument("--db", metavar="DIR", required=True)
    state.add_argument("--asset", metavar="A", type=_nonnegative)
    state.add_argument("--user", metavar="U")

    history = command("history", "a user's or an order's fills and orders, as JSON")
    history.add_argument("--db", metavar="DIR", required=True)
    who = history.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="U")
    who.add_argument("--order", metavar="ID")
    history.add_argument("--limit", metavar="N", type=_positive)
    history.add_argument("--after", metavar="CURSOR")

    prove = command("prove", "an inclusion or exclusion proof against a checkpoint's root")
    prove.add_argument("--db", metavar="DIR", required=True)
    prove.add_argument("--user", metavar="U")
    prove.add_argument("--asset", metavar="A", type=_nonnegative)
    prove.add_argument("--order", metavar="ID")
    prove.add_argument("--height", metavar="H", type=_nonnegative)

    verify_proof = command("verify-proof", "check a proof file against a state root")
    verify_proof.add_argument("--root", metavar="HEX", required=True)
    verify_proof.add_argument("proof_file", metavar="PROOF_FILE")

    diff = command("diff", "compare two stores: first differing block and state differences")
    diff.add_argument("--db", metavar="DIR", required=True)
    diff.add_argument("--other", metavar="DIR2", required=True)
    diff.add_argument("--height", metavar="H", type=_nonnegative)

    bench = command("bench", "benchmarks: JSON figures on stdout, a table on stderr")
    bench.add_argument("--quick", action="store_true", help="a short run (under 30 s)")
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
        return commands.dispatch(args)
    except commands.UsageProblem as exc:
        print(f"coreledger: error: {exc}", file=sys.stderr)
        return 2
    except commands.CommandFailed as exc:
        print(f"coreledger: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a runtime error for the contract's exit statuses
        print("coreledger: error: interrupted", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 1
    except Exception as exc:  # the last line of defence: never a traceback
        print(f"coreledger: error: {commands.one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
