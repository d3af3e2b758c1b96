"""`coreledger bench`: the benchmark suite, JSON figures on stdout and a table on stderr."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from block_exec.commands.base import Command, print_json

TABLE_EXTRAS = (
    "bytes_per_order", "bytes_per_entry", "proof_bytes", "mean_proof_bytes", "bytes",
    "store_bytes_per_block",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a short run (under 30 s)")


def bench_table(figures: list[dict[str, Any]]) -> str:
    """The figures as a fixed-width table for a person (stderr); JSON is for machines."""
    lines = [
        f"{'workload':<52} {'ops':>9} {'ops/s':>11} {'us/op':>8} {'p50':>7} {'p99':>7}"
        f"  {'vs baseline':<12} other"
    ]
    for item in figures:
        ratio = item.get("speedup_vs_baseline") or item.get("ratio_vs_baseline")
        ops_per_s = item.get("ops_per_s") or 0
        extras = ", ".join(f"{key}={item[key]}" for key in TABLE_EXTRAS if key in item)
        lines.append(
            f"{item['name'][:52]:<52} {item['operations']:>9} {round(ops_per_s):>11,} "
            f"{item.get('us_per_op') or 0:>8.2f} {item.get('p50_us', ''):>7} "
            f"{item.get('p99_us', ''):>7}  {'' if ratio is None else f'x{ratio}':<12} {extras}"
        )
    return "\n".join(lines)


def handle(args: argparse.Namespace) -> int:
    from block_exec import bench  # imported here: only `bench` needs the benchmark code

    figures = bench.run_all(quick=args.quick)
    print_json({"quick": args.quick, "figures": figures})
    print(bench_table(figures), file=sys.stderr)
    return 0


COMMAND = Command(
    name="bench",
    help="benchmarks: JSON figures on stdout, a table on stderr",
    example="coreledger bench --quick > figures.json",
    add_arguments=add_arguments,
    handle=handle,
)
