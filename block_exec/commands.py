"""What each `coreledger` subcommand does; `cli.py` only parses arguments and reports errors."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any


class UsageProblem(Exception):
    """Arguments that parse but do not make sense together: exit status 2."""


def one_line(exc: BaseException) -> str:
    """An exception as one line of text, never empty."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


# -- bench ----------------------------------------------------------------------------


def _bench_table(figures: list[dict[str, Any]]) -> str:
    lines = [f"{'workload':<44} {'ops':>9} {'ops/s':>11} {'us/op':>9} {'p50':>8} {'p99':>8}  vs"]
    for item in figures:
        ratio = item.get("speedup_vs_baseline") or item.get("ratio_vs_baseline")
        lines.append(
            f"{item['name']:<44} {item['operations']:>9} {item.get('ops_per_s') or 0:>11,} "
            f"{item.get('us_per_op') or 0:>9.2f} {item.get('p50_us', ''):>8} "
            f"{item.get('p99_us', ''):>8}  {'' if ratio is None else f'x{ratio}'}"
        )
    return "\n".join(lines)


def cmd_bench(args: argparse.Namespace) -> int:
    from block_exec import bench

    figures = bench.run_all(quick=args.quick)
    print_json({"quick": args.quick, "figures": figures})
    print(_bench_table(figures), file=sys.stderr)
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "bench": cmd_bench,
}


def dispatch(args: argparse.Namespace) -> int:
    handler = COMMANDS.get(args.command)
    if handler is None:
        raise UsageProblem(f"command {args.command!r} is not available yet")
    return handler(args)
