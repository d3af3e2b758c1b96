"""What each `coreledger` subcommand does; `cli.py` only parses arguments and reports errors."""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

import cbor2

from block_exec.decode import block_from_obj, read_block_file
from block_exec.encode import block_hash
from block_exec.errors import BlockError
from block_exec.executor import Executor
from block_exec.simulate import MarketConfig, SimulatedMarket
from block_exec.types import Block
from merkle import NamespacedCommitment, verify_namespaced
from merkle.namespaced import diff_namespaced
from state_machine import (
    CoreError,
    CoreStateMachine,
    Side,
    describe_key,
    namespace_of,
    normalize_address,
)
from state_machine.entries import balance_key, order_key
from store import Store, StoreError
from store.roots import commitment_of, roots_of

READ_ONLY_KEEP = 2**32  # read-only commands never prune what `run --keep` keeps


class UsageProblem(Exception):
    """Arguments that parse but do not make sense together: exit status 2."""


class CommandFailed(Exception):
    """Refused input or a failed check: exit status 1, with this one-line message."""


def one_line(exc: BaseException) -> str:
    """An exception as one line of text, never empty."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def print_json(obj: Any) -> None:
    if sys.stdout is None:  # started with stdout closed: nowhere to write
        raise CommandFailed("standard output is closed")
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _tune_gc() -> None:
    """Fewer, cheaper collections for a long batch job.

    The engine allocates few cycles but very many long-lived containers (orders, levels,
    tree nodes); CPython's default gen-0 threshold of 700 makes it re-scan them constantly.
    Freezing what exists and raising the threshold keeps collections rare; this is a
    process setting of the CLI, not of the library (an embedding node decides its own).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 1000)


def _parse_user(text: str) -> str:
    try:
        return normalize_address(text)
    except CoreError as exc:
        raise CommandFailed(one_line(exc)) from None


def _parse_id(text: str, what: str) -> int:
    # isascii: str.isdigit() also accepts superscripts and other scripts' digits.
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 2**64 - 1:
        raise CommandFailed(f"bad {what} {text!r}: want an integer in [1, 2^64-1]")
    return int(text)


def _open_read_only(directory: str) -> Executor:
    """The node in `directory`, recovered to its last logged block; nothing is pruned."""
    if not os.path.isdir(directory):
        raise CommandFailed(f"{directory}: no such store")
    return Executor.open(directory, keep=READ_ONLY_KEEP, create=False)


def _open_store(directory: str) -> Store:
    if not os.path.isdir(directory):
        raise CommandFailed(f"{directory}: no such store")
    return Store(directory, keep=READ_ONLY_KEEP, create=False)


# -- run ------------------------------------------------------------------------------


class RunTotals:
    __slots__ = ("blocks", "checkpoints", "fills", "rejected", "skipped", "txs")

    def __init__(self) -> None:
        self.blocks = 0
        self.skipped = 0
        self.txs = 0
        self.fills = 0
        self.rejected = 0
        self.checkpoints = 0


def _simulated_blocks(executor: Executor, count: int) -> Iterator[Block]:
    market = SimulatedMarket(MarketConfig(blocks=count))
    for height in range(executor.height + 1, count + 1):
        yield block_from_obj(market.block(height, executor.state), f"simulated block {height}")


def _progress(total: int | None, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="block", file=sys.stderr, dynamic_ncols=True, leave=False)


class _StopRequests:
    """SIGINT and SIGTERM, taken between blocks rather than wherever they land.

    A KeyboardInterrupt raised inside a C extension's callback (cbor2 calls back into
    Python while encoding) can be swallowed and printed as "Exception ignored", and the
    run goes on; a flag checked at each block boundary stops cleanly, with every applied
    block stored.
    """

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequests:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._request)
        return self

    def _request(self, signum: int, frame: object) -> None:
        self.signal_name = signal.Signals(signum).name

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def cmd_run(args: argparse.Namespace) -> int:
    with _StopRequests() as stop:
        return _run(args, stop)


def _run(args: argparse.Namespace, stop: _StopRequests) -> int:
    _tune_gc()
    executor = Executor.open(
        args.db,
        checkpoint_interval=args.checkpoint_interval,
        keep=args.keep,
        sync_blocks=args.sync_blocks,
    )
    totals = RunTotals()
    receipts_file: IO[str] | None = None
    progress = None
    started = time.perf_counter()
    try:
        if args.receipts:
            receipts_file = open(args.receipts, "w", encoding="utf-8")  # noqa: SIM115
        if args.blocks:
            blocks: Iterator[Block] = read_block_file(args.blocks)
            total = None
        else:
            count = args.sim_blocks or MarketConfig().blocks
            blocks = _simulated_blocks(executor, count)
            total = max(0, count - executor.height)
        show = not args.no_progress and sys.stderr.isatty()
        progress = _progress(total, show)
        assert executor.store is not None
        store = executor.store
        for block in blocks:
            if stop.signal_name is not None:
                raise CommandFailed(
                    f"interrupted ({stop.signal_name}): stopped at height {executor.height}, "
                    "every block up to it stored; run again to resume"
                )
            if block.height <= executor.height:
                stored = store.block(block.height)
                if stored is None or stored.block_hash != block_hash(block):
                    raise CommandFailed(
                        f"block at height {block.height} differs from the stored one "
                        f"(stored {stored.block_hash.hex() if stored else None}, "
                        f"given {block_hash(block).hex()})"
                    )
                totals.skipped += 1
                if receipts_file is not None:  # one line a block, applied now or before
                    receipts_file.write(stored.receipts.decode() + "\n")
                continue
            result = executor.apply_block(block)
            totals.blocks += 1
            totals.txs += len(block.txs)
            for receipt in result.receipts:
                if receipt.ok:
                    totals.fills += len(receipt.fills)
                else:
                    totals.rejected += 1
            if result.state_root is not None:
                totals.checkpoints += 1
            if receipts_file is not None:  # the line the store has just kept
                assert result.receipts_line is not None
                receipts_file.write(result.receipts_line + "\n")
            if progress is not None:
                progress.update(1)
        seconds = time.perf_counter() - started
        summary = {
            "blocks": totals.blocks,
            "skipped": totals.skipped,
            "txs": totals.txs,
            "fills": totals.fills,
            "rejected_txs": totals.rejected,
            "seconds": round(seconds, 3),
            "tx_per_s": round(totals.txs / seconds) if seconds > 0 else None,
            "checkpoints": totals.checkpoints,
            "height": executor.height,
            "state_root": executor.state_root.hex(),
        }
    finally:
        if progress is not None:
            progress.close()
        if receipts_file is not None:
            receipts_file.close()
        executor.close()
    print(
        f"applied {summary['blocks']} blocks ({summary['skipped']} already stored), "
        f"{summary['txs']} txs, {summary['fills']} fills, {summary['rejected_txs']} rejected, "
        f"{summary['tx_per_s']} tx/s, {summary['checkpoints']} checkpoints; "
        f"height {summary['height']}, root {summary['state_root']}",
        file=sys.stderr,
    )
    print_json(summary)
    return 0


# -- verify ---------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace) -> int:
    store = _open_store(args.db)
    with store:
        heights = store.checkpoint_heights()
        if args.height is not None and args.height not in heights:
            raise CommandFailed(
                f"height {args.height} is not a kept checkpoint (kept: "
                f"{', '.join(map(str, heights)) or 'none'})"
            )
        built: list[NamespacedCommitment] = []

        def compute_roots(entries: Any) -> Any:
            commitment = commitment_of(entries)
            built.append(commitment)
            return roots_of(commitment)

        restored = store.restore(args.height, compute_roots)
        if restored.checkpoint is None:
            raise CommandFailed(f"{args.db}: no checkpoint to verify yet")
        if args.all:
            store.verify_all(compute_roots)
        machine = restored.machine
        print_json(
            {
                "ok": True,
                "height": restored.height,
                "state_root": restored.checkpoint.roots.root.hex(),
                "checked": {
                    "entries": len(restored.entries),
                    "namespaces": len(restored.checkpoint.roots.namespaces),
                    "resting_orders": len(machine.orders),
                    "books": sum(1 for book in machine.books.values() if not book.is_empty()),
                    "accounts": sum(1 for _ in machine.balances.nonzero()),
                },
                "kept_checkpoints": heights,
                "head_height": store.head_height,
                "audited": (
                    "every kept checkpoint, the block chain and the history"
                    if args.all else None
                ),
            }
        )
    return 0


# -- state ----------------------------------------------------------------------------


def _levels(machine: CoreStateMachine, asset: int) -> dict[str, list[list[int]]]:
    book = machine.books.get(asset)
    if book is None:
        return {"bids": [], "asks": []}
    return {
        "bids": [list(level) for level in book.depth(Side.BUY)],
        "asks": [list(level) for level in book.depth(Side.SELL)],
    }


def state_json(
    machine: CoreStateMachine, height: int, root: bytes, asset: int | None, user: str | None
) -> dict[str, Any]:
    if asset is None:
        assets = sorted(a for a, book in machine.books.items() if not book.is_empty())
    else:
        assets = [asset] if asset >= 1 else []
    books = {str(a): _levels(machine, a) for a in assets}
    accounts: dict[str, dict[int, dict[str, int]]] = {}
    for (owner, account_asset), account in sorted(machine.balances.nonzero()):
        if user is not None and owner != user:
            continue
        if asset is not None and account_asset != asset:
            continue
        accounts.setdefault(owner, {})[account_asset] = {
            "available": account[0],
            "locked": account[1],
        }
    balances = {
        owner: {str(a): value for a, value in sorted(per_asset.items())}
        for owner, per_asset in accounts.items()
    }
    return {"height": height, "state_root": root.hex(), "books": books, "balances": balances}


def cmd_state(args: argparse.Namespace) -> int:
    user = None if args.user is None else _parse_user(args.user)
    if args.asset is not None and args.asset > 2**32 - 1:
        raise CommandFailed(f"bad asset {args.asset}: want [0, 2^32-1]")
    with _open_read_only(args.db) as executor:
        print_json(
            state_json(executor.state, executor.height, executor.state_root, args.asset, user)
        )
    return 0


# -- history --------------------------------------------------------------------------


def cmd_history(args: argparse.Namespace) -> int:
    with _open_store(args.db) as store:
        if args.user is not None:
            page = store.user_history(_parse_user(args.user), args.limit, args.after)
        else:
            page = store.order_history(_parse_id(args.order, "order id"), args.limit, args.after)
        print_json(page.to_json())
    return 0


# -- prove / verify-proof -------------------------------------------------------------


def cmd_prove(args: argparse.Namespace) -> int:
    order_text: str | None = args.order
    user_text: str | None = args.user
    asset: int | None = args.asset
    if order_text is not None:
        if user_text is not None or asset is not None:
            raise UsageProblem("give either --order, or --user with --asset")
    elif user_text is None or asset is None:
        raise UsageProblem("give --user with --asset, or --order")
    with _open_store(args.db) as store:
        if order_text is not None:
            order_id = _parse_id(order_text, "order id")
            page = store.order_history(order_id)
            if not page.orders:
                raise CommandFailed(f"order {order_id}: not in this store's history")
            key = order_key(page.orders[0].placed.asset, order_id)
        else:
            assert user_text is not None and asset is not None
            if asset > 2**32 - 1:
                raise CommandFailed(f"bad asset {asset}: want [0, 2^32-1]")
            key = balance_key(_parse_user(user_text), asset)
        heights = store.checkpoint_heights()
        if args.height is not None and args.height not in heights:
            raise CommandFailed(f"height {args.height} is not a kept checkpoint")
        info, entries = store.state_entries_at(args.height)
        if info is None:
            raise CommandFailed(f"{args.db}: no checkpoint to prove against yet")
        commitment = commitment_of(entries)
        if commitment.root() != info.roots.root:
            raise CommandFailed(f"checkpoint {info.height}: stored root does not match its state")
        namespace = namespace_of(key)
        value = commitment.get(namespace, key)
        proof = commitment.prove(namespace, key)
    print_json(
        {
            "height": info.height,
            "root": info.roots.root.hex(),
            "key": describe_key(key),
            "key_hex": key.hex(),
            "namespace_hex": namespace.hex(),
            "value_hex": None if value is None else value.hex(),
            "value": None if value is None else _decoded_value(value),
            "included": value is not None,
            "proof_hex": proof.to_bytes().hex(),
        }
    )
    return 0


def _decoded_value(value: bytes) -> Any:
    decoded = cbor2.loads(value)
    if isinstance(decoded, list) and len(decoded) == 2:
        return {"available": decoded[0], "locked": decoded[1]}
    if isinstance(decoded, list) and len(decoded) == 4:
        side, price, size, user = decoded
        return {"side": ("buy", "sell")[side], "price": price, "size": size,
                "user": "0x" + bytes(user).hex()}
    return decoded


def _hex_field(proof: dict[str, Any], name: str, size: int | None = None) -> bytes:
    text = proof.get(name)
    if not isinstance(text, str):
        raise CommandFailed(f"proof file: field {name!r} must be a hex string")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise CommandFailed(f"proof file: field {name!r} is not hex") from None
    if size is not None and len(raw) != size:
        raise CommandFailed(f"proof file: field {name!r} must be {size} bytes")
    return raw


def cmd_verify_proof(args: argparse.Namespace) -> int:
    try:
        root = bytes.fromhex(args.root)
    except ValueError:
        root = b""
    if len(root) != 32:
        raise CommandFailed(f"bad --root {args.root!r}: want 64 hex digits")
    try:
        with open(args.proof_file, encoding="utf-8") as handle:
            proof = json.load(handle)
    except OSError as exc:
        raise CommandFailed(f"{args.proof_file}: {exc.strerror}") from None
    except ValueError as exc:
        raise CommandFailed(f"{args.proof_file}: not JSON ({one_line(exc)})") from None
    if not isinstance(proof, dict):
        raise CommandFailed(f"{args.proof_file}: want a JSON object from 'coreledger prove'")
    key = _hex_field(proof, "key_hex")
    namespace = namespace_of(key) if key else b""
    value = None if proof.get("value_hex") is None else _hex_field(proof, "value_hex")
    proof_bytes = _hex_field(proof, "proof_hex")
    valid = bool(key) and verify_namespaced(root, namespace, key, value, proof_bytes)
    print_json(
        {
            "valid": valid,
            "root": root.hex(),
            "key": describe_key(key) if key else None,
            "included": value is not None,
        }
    )
    if not valid:
        print(
            f"coreledger: error: the proof does not show {describe_key(key) if key else 'it'} "
            f"{'has this value' if value is not None else 'absent'} under root {root.hex()}",
            file=sys.stderr,
        )
        return 1
    return 0


# -- diff -----------------------------------------------------------------------------


def _level_map(machine: CoreStateMachine, asset: int) -> dict[str, list[int]]:
    book = machine.books.get(asset)
    if book is None:
        return {}
    levels: dict[str, list[int]] = {}
    for side, name in ((Side.BUY, "bids"), (Side.SELL, "asks")):
        for price, size, count in book.depth(side):
            levels[f"books/{asset}/{name}/{price}"] = [size, count]
    return levels


def _balance_value(machine: CoreStateMachine, user: str, asset: int) -> dict[str, int] | None:
    available, locked = machine.balance(user, asset)
    if not available and not locked:
        return None
    return {"available": available, "locked": locked}


def cmd_diff(args: argparse.Namespace) -> int:
    with _open_store(args.db) as mine, _open_store(args.other) as theirs:
        top = min(mine.head_height, theirs.head_height)
        if args.height is not None:
            top = min(top, args.height)
        first_divergent = None
        for height in range(1, top + 1):
            if mine.block_hash(height) != theirs.block_hash(height):
                first_divergent = height
                break
        common = sorted(set(mine.checkpoint_heights()) & set(theirs.checkpoint_heights()))
        if args.height is not None:
            if args.height not in common:
                raise CommandFailed(f"height {args.height} is not a checkpoint both stores keep")
            compared = args.height
        elif common:
            compared = common[-1]
        else:
            raise CommandFailed("the two stores keep no checkpoint at a common height")
        restored_mine = mine.restore(compared)
        restored_theirs = theirs.restore(compared)
        assert restored_mine.checkpoint is not None and restored_theirs.checkpoint is not None
        a = commitment_of(restored_mine.entries)
        b = commitment_of(restored_theirs.entries)
        differences: list[dict[str, Any]] = []
        books_to_compare: set[int] = set()
        for namespace, key, _, _ in diff_namespaced(a, b):
            if namespace[0] == 0x02:
                books_to_compare.add(int.from_bytes(namespace[1:5], "big"))
            elif namespace[0] == 0x01:
                user = "0x" + key[1:21].hex()
                asset = int.from_bytes(key[21:25], "big")
                differences.append(
                    {
                        "key": f"balances/{user}/{asset}",
                        "db": _balance_value(restored_mine.machine, user, asset),
                        "other": _balance_value(restored_theirs.machine, user, asset),
                    }
                )
        for asset in sorted(books_to_compare):
            left = _level_map(restored_mine.machine, asset)
            right = _level_map(restored_theirs.machine, asset)
            for level_key in sorted(set(left) | set(right), key=_level_sort_key):
                if left.get(level_key) != right.get(level_key):
                    differences.append(
                        {"key": level_key, "db": left.get(level_key),
                         "other": right.get(level_key)}
                    )
        differences.sort(key=lambda item: _level_sort_key(item["key"]))
        root_a, root_b = a.root(), b.root()
        blocks_equal = first_divergent is None or first_divergent > compared
        equal = blocks_equal and root_a == root_b
        print_json(
            {
                "equal": equal,
                "first_divergent_height": first_divergent,
                "compared_height": compared,
                "state_root": {"db": root_a.hex(), "other": root_b.hex()},
                "differences": differences,
            }
        )
    return 0 if equal else 1


def _level_sort_key(key: str) -> tuple[Any, ...]:
    """books/A/side/P and balances/U/A in a stable, numeric-aware order."""
    parts = key.split("/")
    if parts[0] == "books":
        return (0, int(parts[1]), parts[2], int(parts[3]))
    return (1, parts[1], int(parts[2]), "")


# -- bench ----------------------------------------------------------------------------


TABLE_EXTRAS = (
    "bytes_per_order", "bytes_per_entry", "proof_bytes", "mean_proof_bytes", "bytes",
    "store_bytes_per_block",
)


def _bench_table(figures: list[dict[str, Any]]) -> str:
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


def cmd_bench(args: argparse.Namespace) -> int:
    from block_exec import bench

    figures = bench.run_all(quick=args.quick)
    print_json({"quick": args.quick, "figures": figures})
    print(_bench_table(figures), file=sys.stderr)
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "verify": cmd_verify,
    "state": cmd_state,
    "history": cmd_history,
    "prove": cmd_prove,
    "verify-proof": cmd_verify_proof,
    "diff": cmd_diff,
    "bench": cmd_bench,
}

EXPECTED_ERRORS = (CommandFailed, BlockError, StoreError, CoreError, OSError)


def dispatch(args: argparse.Namespace) -> int:
    """Run one subcommand; expected failures become CommandFailed (exit status 1)."""
    try:
        return COMMANDS[args.command](args)
    except UsageProblem:
        raise
    except EXPECTED_ERRORS as exc:
        raise CommandFailed(one_line(exc)) from None
