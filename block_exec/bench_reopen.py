"""The node's restart at scale: `Executor.open` on the store of `store.bench`'s reopen figure.

`store.bench` measures the store-level reopen (scan, rebuild, hash-only roots); a node
(`coreledger run`, `coreledger node`, the read-only commands) opens with `Executor.open`,
which also needs the state trees it goes on updating. This figure answers "how long does my
node take to restart": one `Executor.open` of the same store, timed whole (wall, and CPU of
this process and of the worker), and its steps timed one by one in an open taken as
`Store.restore` takes it (`store.reopen.restore` with a `store.roots.CommitmentRoots`): the
scan (the worker fed meanwhile), the rebuild, then the wait for the trees (the ones this
process builds itself, and loading the worker's).
"""

from __future__ import annotations

import resource
import time

from block_exec.bench import Figure, figure
from block_exec.executor import Executor
from store.bench import timed_restore
from store.database import Store
from store.roots import CommitmentRoots


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _steps(path: str) -> dict[str, float]:
    """The steps of an `Executor.open`'s restore, timed one by one (wall seconds)."""
    store = Store(path, read_only=True)
    try:
        latest = store.latest_checkpoint()
        expected = 0 if latest is None else latest.entry_count
        _, scan, rebuild, trees = timed_restore(store, CommitmentRoots(), expected)
    finally:
        store.close()
    return {"scan_s": round(scan, 4), "rebuild_s": round(rebuild, 4), "trees_s": round(trees, 4)}


def bench_executor_open(path: str) -> Figure:
    """`Executor.open(path)` (the node's restart, roots checked) of a store whose latest
    checkpoint holds its true roots; and its steps (see the module docstring)."""
    steps = _steps(path)
    cpu, children, started = time.process_time(), _children_cpu(), time.perf_counter()
    executor = Executor.open(path)
    seconds = time.perf_counter() - started
    cpu, children = time.process_time() - cpu, _children_cpu() - children
    orders = len(executor.state.orders)
    executor.close()
    return figure(
        "node restart: Executor.open (restore + roots + state trees, resting orders)",
        orders,
        seconds,
        cpu_s=round(cpu, 4),
        worker_cpu_s=round(children, 4),
        **steps,
        steps_note="steps timed in a second open as Executor.open takes them; trees_s: "
        "the wait for the state trees once the machine is rebuilt",
        target="<= 4 s for 1,000,000 orders (issue 16's reopen target, for the node)",
    )
