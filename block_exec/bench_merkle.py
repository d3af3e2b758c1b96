"""Benchmarks of the sparse Merkle tree: `python -m block_exec.bench_merkle [--quick]` prints JSON.

Full run: 1,000,000 entries (about 60 s, most of it the second build, under tracemalloc);
`--quick`: 100,000 entries (memory measured at 50,000), under 10 s. Keys are 8-byte
big-endian counters and values 32 bytes, both created before any timer or memory trace
starts, so "bytes_per_entry" is what the tree adds on top of the caller's key and value
objects.

Measured on the 2-core development VM while other engineers' test suites kept the load
average at 2-2.7 (so wall times vary by +-30 %; rows of batch updates also give process CPU
time), Python 3.11.7, blake3 1.0.11 (one blake3 call: ~0.27 us with a reused hasher, ~0.4 us
with a new one):

| figure | 1,000,000 entries | 100,000 entries (`--quick`) |
| --- | --- | --- |
| build from items (bulk path) | 4.3-4.7 s (CPU; 3.6-3.8 s of it the tree) | 0.4-0.5 s |
| NamespacedCommitment(changes), 20 namespaces | 4.8-5.1 s (CPU; was 9-10 s wall) | 0.35 s |
| 10,000 value updates, then root() | best 179-202 ms (CPU), median 214-230 ms | best ~105 ms |
| 10,000 mixed (1/3 insert, update, delete), then root() | best 192-199 ms | best 120-130 ms |
| prove (inclusion) | 14-15 us | 9.5-10.7 us |
| verify inclusion / exclusion (decoded proof) | 15-29 us / 15 us | 12.8 / 11.2 us |
| Proof.from_bytes | 11 us | 7.4 us |
| proof bytes, mean inclusion / exclusion, max | 655 / 677, 807 | 549 / 574, 710 |
| diff naming 1,000 changed keys | 11-23 ms | 5 ms |
| tree memory per entry (tracemalloc) | 251 B | 261 B (measured at 50,000 entries) |

The state's commitment keeps no values (`keep_values=False`, `store.roots.commitment_of`): at
1,000,000 resting orders its trees cost 216 B per entry by tracemalloc (key 46, branch tuple 72,
preimage 98; `coreledger bench`'s memory_per_resting_order), 361 B when they kept the values,
a dict of them and a node id per branch.

`block_root/txs=1000/...` (`bench_block_root`) is network mode's app hash: a 1,000-tx block
(45% cancels, 45% resting limits, 10% crossing) changes about 1,950 entries (one order and
one balance per tx, with 1,000 users), folded into the commitment and hashed. Over
1,005,001 entries (4 books of ~250,000 orders): 92 ms median on a nearly idle machine
(the 30 ms target needs a third of that). Where it goes (CPU, one run under load, median
block 71 ms): the fold (changed entries encoded by the core, grouped) 16 ms; the trees'
batch updates 55 ms, of which the spec's ~19,800 blake3 calls (about 10 per change: the
path below the shared top levels plus the leaf) are 8.4 ms when timed alone
(`blake3_floor_ms`, 0.3-0.4 us per call from Python). The rest is CPython work per node of
each changed path: reading the branch tuple and its preimage bytes (a cache miss each in a
700 MB heap), building the new 65-byte preimage and the new tuple, three hasher calls, and
freeing the old tuple and bytes. Counted by callgrind (10 captured such blocks over
105,000 entries, `merkle.batch`'s merges only): 120.9 M instructions per block (132.6 M
before the side of a branch was read from the key hash bytes and join's common case was
inlined), ~6,100 per hash: the blake3 binding and compression 35.9 M (~1,800 per hash:
update, digest and reset through pyo3's argument and buffer handling, the compression pair
~700), the bytecode loop 37.4 M, allocation and freeing 7.9 M, bytes slices and
concatenations 6.6 M, int work 6.2 M, the rest calls, dicts, frames. A level-by-level batch
(every changed path one level at a time through C-level map/zip) costs more per node (8.8k
vs 6.3k instructions on the same paths), so the loop stays per change; a
worker process per half of the namespaces would at best halve the tree part (2 cores).
Counted again at 1,005,001 entries (10 captured blocks of 1,980 changes, 19,668 hashes each;
the merkle part alone, update and root): 145.9 M instructions per block: blake3 37.8 M, the
bytecode loop 45.5 M, calls, frames, tuples and lists 19.8 M, bytes 11.2 M, allocation 9.9 M,
ints 8.1 M, the rest 13.6 M. The least CPython does for the same hashes (`python_floor_ms`'s
skeleton: each hash in its cheapest form, one preimage and tuple per inner node, no tree
read) is 80.8 M (blake3 38.1 M, bytes 11.1 M, the loop 13.6 M); reading each change's path
adds ~1 k instructions per level walked (about 10 levels per change below the shared top).
So a Python merge is at best ~0.6 of this one in instructions, and more in time, since its
reads and frees miss the cache in a 700 MB heap where the skeleton's stay in L1.
Beyond that needs the batch merge compiled (C or Rust over a flat node array: the same
~19,800 compressions at ~750 instructions and ~50 of bookkeeping per node, ~15 M
instructions instead of 121 M, ~3-5 ms per block with the cache misses).

Of a 1,000,000-entry build, ~1.1 s is the 4,000,000 blake3 calls the spec requires (key,
value and leaf hash per entry, ~1.4 inner nodes per entry), ~0.4 s the sort, ~0.4 s the
random-order gather of keys and leaf hashes, ~1.5 s the one-pass stack loop creating the
nodes. The batch update misses the 120 ms target at 1,000,000 entries: it costs ~110,000
blake3 calls (~30 ms) plus ~20 levels of pointer chasing per changed key through a 250 MB
heap (the same batch costs ~105 ms over 100,000 entries, so cache misses are most of the gap).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import sys
import time
import tracemalloc
from collections.abc import Callable

from blake3 import blake3

from block_exec.decode import block_from_obj
from block_exec.executor import Executor
from block_exec.simulate import SplitMix64, user_address
from merkle.diff import diff
from merkle.hashing import LEAF_PREFIX, NODE_PREFIX
from merkle.namespaced import NamespacedCommitment, verify_namespaced
from merkle.proof import Proof, verify
from merkle.tree import SparseMerkleTree
from state_machine import CoreStateMachine, Side, Tif

Row = dict[str, object]


def _entries(n: int, salt: bytes = b"") -> list[tuple[bytes, bytes]]:
    return [(i.to_bytes(8, "big"), blake3(salt + i.to_bytes(8, "big")).digest()) for i in range(n)]


def _row(name: str, operations: int, seconds: float, **extra: object) -> Row:
    row: Row = {
        "name": name,
        "operations": operations,
        "seconds": round(seconds, 6),
        "ops_per_s": round(operations / seconds, 1) if seconds > 0 else None,
        "us_per_op": round(seconds * 1e6 / operations, 3),
    }
    row.update(extra)
    return row


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _best(repeats: int, fn: Callable[[], object]) -> float:
    return min(_timed(fn) for _ in range(repeats))


def bench_build(n: int) -> tuple[SparseMerkleTree, Row]:
    items = _entries(n)
    gc.collect()
    t0 = time.perf_counter()
    tree = SparseMerkleTree.from_items(items)
    tree.root()
    seconds = time.perf_counter() - t0
    return tree, _row("build_from_items", n, seconds, entries=n)


def bench_memory(n: int) -> Row:
    items = _entries(n)
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    tree = SparseMerkleTree.from_items(items)
    tree.root()
    seconds = time.perf_counter() - t0
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del tree
    return _row(
        "memory_per_entry (build under tracemalloc)",
        n,
        seconds,
        entries=n,
        bytes_per_entry=round(current / n, 1),
        peak_bytes_per_entry_while_building=round(peak / n, 1),
    )


def bench_batch_update(tree: SparseMerkleTree, k: int, mode: str, repeats: int) -> Row:
    """k changes (mode "update": existing keys get new values; "mixed": a third each of value
    updates, inserts and deletes), then root(); best of `repeats` fresh batches."""
    n = len(tree)
    times: list[float] = []
    cpu: list[float] = []  # process CPU time: shows when other processes share the cores
    for r in range(repeats):
        salt = f"{mode}{r}".encode()
        changes: dict[bytes, bytes | None] = {}
        step = max(1, n // k)
        for j in range(k):
            i = (j * step + r) % n
            key = i.to_bytes(8, "big")
            if mode == "mixed" and j % 3 == 1:
                key = (n + r * k + j).to_bytes(8, "big")  # insert
            if mode == "mixed" and j % 3 == 2:
                changes[key] = None  # delete
            else:
                changes[key] = blake3(salt + key).digest()
        gc.collect()
        c0 = time.process_time()
        t0 = time.perf_counter()
        tree.update(changes)
        tree.root()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return _row(
        f"batch_{mode}_{k}_then_root",
        k,
        min(times),
        entries=n,
        median_s=round(sorted(times)[len(times) // 2], 6),
        min_cpu_s=round(min(cpu), 6),
    )


def bench_proofs(tree: SparseMerkleTree, count: int) -> list[Row]:
    n = len(tree)
    root = tree.root()
    present = [((i * 7919) % n).to_bytes(8, "big") for i in range(count)]
    absent = [(n * 4 + i).to_bytes(8, "big") for i in range(count)]
    t_prove = _best(3, lambda: [tree.prove(key) for key in present])
    proofs = [tree.prove(key) for key in present]
    values = [tree.get(key) for key in present]
    t_verify = _best(
        3, lambda: [verify(root, k, v, p) for k, v, p in zip(present, values, proofs, strict=True)]
    )
    assert all(verify(root, k, v, p) for k, v, p in zip(present, values, proofs, strict=True))
    encoded = [p.to_bytes() for p in proofs]
    t_decode = _best(3, lambda: [Proof.from_bytes(b) for b in encoded])
    absent_proofs = [tree.prove(key) for key in absent]
    absent_sizes = [len(p.to_bytes()) for p in absent_proofs]
    t_verify_abs = _best(
        3, lambda: [verify(root, k, None, p) for k, p in zip(absent, absent_proofs, strict=True)]
    )
    sizes = sorted(len(b) for b in encoded)
    return [
        _row("prove_inclusion", count, t_prove, entries=n),
        _row(
            "verify_inclusion",
            count,
            t_verify,
            entries=n,
            proof_bytes_mean=round(sum(sizes) / count, 1),
            proof_bytes_max=sizes[-1],
        ),
        _row("proof_from_bytes", count, t_decode, entries=n),
        _row(
            "verify_exclusion",
            count,
            t_verify_abs,
            entries=n,
            proof_bytes_mean=round(sum(absent_sizes) / count, 1),
            proof_bytes_max=max(absent_sizes),
        ),
    ]


def bench_diff(tree: SparseMerkleTree, d: int) -> Row:
    other = tree.copy()
    n = len(tree)
    other.update({((i * 104729) % n).to_bytes(8, "big"): b"changed" for i in range(d)})
    other.root()
    # A structurally independent copy, so the diff cannot skip subtrees by identity.
    fresh = SparseMerkleTree.from_items(other.items()) if n <= 200_000 else other
    t = _best(3, lambda: diff(tree, fresh))
    assert len(diff(tree, fresh)) == d
    return _row(f"diff_{d}", d, t, entries=n, independent_trees=fresh is not other)


def bench_namespaced(n: int) -> list[Row]:
    namespaces = [b"balances" + bytes([a]) for a in range(8)] + [
        b"book" + bytes([a]) for a in range(8)
    ]
    changes = [
        (
            namespaces[i % len(namespaces)],
            i.to_bytes(8, "big"),
            blake3(i.to_bytes(8, "big")).digest(),
        )
        for i in range(n)
    ]
    nc = NamespacedCommitment()

    def build() -> None:
        nc.update(changes)
        nc.root()

    t_build = _timed(build)
    root = nc.root()
    keys = [
        (namespaces[i % len(namespaces)], i.to_bytes(8, "big"))
        for i in range(0, n, max(1, n // 1000))
    ]
    proofs = [nc.prove(ns, k) for ns, k in keys]
    values = [nc.get(ns, k) for ns, k in keys]
    t_verify = _best(
        3,
        lambda: [
            verify_namespaced(root, ns, k, v, p)
            for (ns, k), v, p in zip(keys, values, proofs, strict=True)
        ],
    )
    sizes = [len(p.to_bytes()) for p in proofs]
    return [
        _row("namespaced_build", n, t_build, namespaces=len(namespaces)),
        _row(
            "namespaced_verify",
            len(keys),
            t_verify,
            entries=n,
            proof_bytes_mean=round(sum(sizes) / len(sizes), 1),
        ),
    ]


_BLOCK_ASSETS = (1, 2, 3, 4)
_BLOCK_MIDS = (10_000_000, 2_500_000, 400_000, 50_000_000)


def _resting_market(orders: int, users: int, rng: SplitMix64) -> tuple[CoreStateMachine, list[str]]:
    """A funded market of `orders` non-crossing resting orders over four books."""
    machine = CoreStateMachine()
    addresses = [user_address(0x7000 + i) for i in range(users)]
    for user in addresses:
        for asset in (0, *_BLOCK_ASSETS):
            machine.deposit(user, asset, 10**19)
    for _ in range(orders):
        book = rng.below(len(_BLOCK_ASSETS))
        offset = 1 + rng.below(50_000)
        user = addresses[rng.below(users)]
        side, price = (
            (Side.BUY, _BLOCK_MIDS[book] - offset)
            if rng.below(2)
            else (Side.SELL, _BLOCK_MIDS[book] + offset)
        )
        machine.limit(user, _BLOCK_ASSETS[book], side, price, 1 + rng.below(100), Tif.GTC)
    return machine, addresses


def _market_block(
    height: int, txs: int, machine: CoreStateMachine, users: list[str], rng: SplitMix64,
    resting: list[int],
) -> dict[str, object]:
    """`txs` txs: 45% cancels of random resting orders, 45% new resting limits, 10% limits
    crossing the touch (each fills a few makers, any rest rests)."""
    out: list[dict[str, object]] = []
    orders = machine.orders
    for _ in range(txs):
        kind = rng.below(100)
        if kind < 45 and resting:
            at = rng.below(len(resting))
            order_id = resting[at]
            resting[at] = resting[-1]
            resting.pop()
            order = orders.get(order_id)
            if order is not None:
                out.append(
                    {"op": "cancel", "user": order.user, "asset": order.asset,
                     "order_id": order_id}
                )
                continue
        book = rng.below(len(_BLOCK_ASSETS))
        buy = rng.below(2) == 0
        offset = 1 + rng.below(50_000)
        if kind >= 90:
            offset = -rng.below(20)  # through the touch
        mid = _BLOCK_MIDS[book]
        out.append(
            {"op": "limit", "user": users[rng.below(len(users))], "asset": _BLOCK_ASSETS[book],
             "side": "buy" if buy else "sell", "price": mid - offset if buy else mid + offset,
             "size": 1 + rng.below(100), "tif": "gtc"}
        )
    return {"height": height, "time": height, "txs": out}


def bench_block_root(orders: int, txs: int, blocks: int) -> Row:
    """Network mode's app hash: after each `txs`-tx block over a state of about `orders`
    resting orders, the executor folds the block's changed entries into the commitment and
    computes the state root (`Executor.state_root`). Timed: that step alone, per block;
    the block itself is applied untimed. Target: <= 30 ms for 1,000 txs over 1,000,000."""
    rng = SplitMix64(orders + txs)
    machine, users = _resting_market(orders, 1000, rng)
    executor = Executor(machine)
    executor.state_root  # noqa: B018  # the first root builds the whole tree (as on opening)
    resting = list(machine.orders)
    entries = len(executor.commitment)
    gc.collect()
    gc.freeze()  # as `coreledger run` does after loading: the big state is never rescanned
    times: list[float] = []
    folds: list[float] = []
    changed: list[int] = []
    for height in range(1, blocks + 1):
        block = block_from_obj(
            _market_block(height, txs, machine, users, rng, resting), "bench block"
        )
        first_id = machine.next_order_id
        executor.apply_block(block)
        live = machine.orders
        resting.extend(i for i in range(first_id, machine.next_order_id) if i in live)
        changed.append(len(machine.balances.dirty) + len(machine.dirty_orders))
        t0 = time.perf_counter()
        executor._fold_changes()  # the first half of `state_root`: the changed entries
        t1 = time.perf_counter()
        executor.state_root  # noqa: B018  # (now only the trees' batch updates)
        t2 = time.perf_counter()
        times.append(t2 - t0)
        folds.append(t1 - t0)
    calls, keys, values = _hashes_of_one_root(
        executor, machine, users, rng, resting, blocks + 1, txs
    )
    gc.unfreeze()
    ordered = sorted(times)
    return _row(
        f"block_root/txs={txs}/entries={entries}",
        blocks,
        sum(times),
        entries=entries,
        txs_per_block=txs,
        changed_entries_per_block=sum(changed) // blocks,
        median_ms=round(ordered[len(ordered) // 2] * 1000, 3),
        max_ms=round(ordered[-1] * 1000, 3),
        fold_median_ms=round(sorted(folds)[len(folds) // 2] * 1000, 3),
        blake3_calls_per_block=calls,
        blake3_floor_ms=round(_blake3_floor(calls) * 1000, 3),
        python_floor_ms=round(_best(5, lambda: _python_floor(keys, values, calls)) * 1000, 3),
        target_ms=30,
        note="fold: the changed entries encoded and grouped (in median_ms); blake3_floor_ms: "
        "that many 65-byte blake3 calls alone, the spec's hashes with no tree work; "
        "python_floor_ms: those hashes with the fewest bytecodes around each (the keys' and "
        "values' hashes, then per inner node one preimage, hash and tuple), no tree read",
    )


def _hashes_of_one_root(
    executor: Executor, machine: CoreStateMachine, users: list[str], rng: SplitMix64,
    resting: list[int], height: int, txs: int,
) -> tuple[int, list[bytes], list[bytes]]:
    """The blake3 digests one more block's root takes (counted by a profile, untimed), and
    the keys it changed and the new values among them (read from the trees' pending
    changes after the fold)."""
    executor.apply_block(
        block_from_obj(_market_block(height, txs, machine, users, rng, resting), "bench block")
    )
    executor._fold_changes()
    pending = [tree._pending for tree in executor.commitment._trees.values()]
    keys = [key for changes in pending for key in changes]
    values = [value for changes in pending for value in changes.values() if value is not None]
    profile = cProfile.Profile()
    profile.runcall(lambda: executor.state_root)
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    digest = "'digest' of 'blake3.blake3.blake3' objects>"
    calls = sum(row[1] for (_, _, name), row in stats.items() if name.endswith(digest))
    return calls, keys, values


def _python_floor(keys: list[bytes], values: list[bytes], calls: int) -> None:
    """The least CPython does for a block root of `calls` hashes with blake3 1.0.11: each
    key's hash, each new value's hash and leaf hash, then per remaining (inner) hash one
    65-byte preimage by two concatenations, the hash and the node's 4-tuple (the tuple and
    preimage before it freed, as a replaced node is). No tree is read: no walk, sort or
    recursion, no cache misses; a lower bound of any Python batch merge."""
    hasher = blake3()
    up, rs = hasher.update, hasher.reset
    kd = left = right = bytes(32)
    for key in keys:
        kd = up(key).digest()
        rs()
    for value in values:
        vh = up(value).digest()
        rs()
        right = up(LEAF_PREFIX + kd + vh).digest()
        rs()
    node: tuple[int, bytes, bytes, bytes] | None = None
    for _ in range(calls - len(keys) - 2 * len(values)):
        pre = NODE_PREFIX + left + right
        left = up(pre).digest()
        rs()
        node = (7, left, right, pre)
    del node


def _blake3_floor(calls: int) -> float:
    """Best of 5 timings of `calls` blake3 hashes of 65 bytes with one reused hasher."""
    data = bytes(65)
    hasher = blake3()
    update, digest, reset = hasher.update, hasher.digest, hasher.reset

    def run() -> None:
        for _ in range(calls):
            update(data)
            digest()
            reset()

    return _best(5, run)


def run_benchmarks(quick: bool) -> list[dict[str, object]]:
    n = 100_000 if quick else 1_000_000
    rows: list[Row] = []
    tree, row = bench_build(n)
    rows.append(row)
    rows.append(bench_batch_update(tree, 10_000, "update", 3 if quick else 5))
    rows.append(bench_batch_update(tree, 10_000, "mixed", 3 if quick else 5))
    rows.extend(bench_proofs(tree, 2_000))
    rows.append(bench_diff(tree, 1_000))
    del tree
    gc.collect()
    rows.append(bench_memory(n // 2 if quick else n))  # tracemalloc slows the build ~8x
    rows.extend(bench_namespaced(n // 10))
    rows.append(bench_block_root(n, 1000, 3 if quick else 10))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100,000 entries instead of 1,000,000")
    args = parser.parse_args(argv)
    json.dump(run_benchmarks(args.quick), sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
