"""The insert and cancel figures run at the depth they name (block_exec.bench_timing).

Speed is never asserted: only that the harness times what it says (every operation once,
in rounds of `chunk`, each round restored before the next) and that the book stays between
`depth` and `depth_max` orders while it is timed.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

import pytest

from block_exec import bench, bench_timing
from block_exec.bench_timing import chunk_for, time_rounds


def test_chunk_is_a_tenth_of_the_depth_within_half_the_operations() -> None:
    assert chunk_for(1_000, 100_000) == 100
    assert chunk_for(100_000, 100_000) == 10_000
    assert chunk_for(1_000_000, 100_000) == 50_000
    assert chunk_for(5, 100) == 1


def test_time_rounds_runs_each_operation_once_and_restores_each_round() -> None:
    calls: list[tuple[str, int, int]] = []
    ops: list[int] = []
    mean, cpu_mean, samples = time_rounds(
        ops.append,
        23,
        lambda start, stop: calls.append(("batch", start, stop)),
        4,
        lambda start, stop: calls.append(("restore", start, stop)),
    )
    assert calls == [
        ("batch", 0, 4), ("restore", 0, 4),
        ("batch", 4, 8), ("restore", 4, 8),
        ("batch", 8, 11), ("restore", 8, 11),
        ("restore", 11, 15), ("restore", 15, 19), ("restore", 19, 23),
    ]
    assert ops == list(range(11, 23)) and len(samples) == 12
    assert mean >= 0 and cpu_mean >= 0 and gc.isenabled()


def _depths_seen(monkeypatch: pytest.MonkeyPatch, run: Callable[[], object]) -> list[int]:
    """The number of resting orders at the start and end of every timed round of `run`."""
    seen: list[int] = []
    original = bench_timing.time_rounds

    def spy(
        operation: Callable[[int], object], count: int, run_batch: Callable[[int, int], object],
        chunk: int, restore: Callable[[int, int], object],
    ) -> tuple[float, float, list[int]]:
        # The batch closes over the machine's bound `limit` or `cancel`: its machine.
        cells = run_batch.__closure__ or ()
        core = next(c.cell_contents.__self__ for c in cells if hasattr(c.cell_contents, "__self__"))

        def batch(start: int, stop: int) -> None:
            seen.append(len(core.orders))
            run_batch(start, stop)
            seen.append(len(core.orders))

        return original(operation, count, batch, chunk, restore)

    monkeypatch.setattr(bench, "time_rounds", spy)
    run()
    return seen


def test_inserts_run_between_depth_and_depth_max(monkeypatch: pytest.MonkeyPatch) -> None:
    figures: list[dict[str, object]] = []
    seen = _depths_seen(monkeypatch, lambda: figures.append(bench.bench_resting_inserts(200, 300)))
    (figure,) = figures
    assert figure["depth"] == 200 and figure["depth_max"] == 220
    assert len(seen) == 2 * 8  # 150 timed in rounds of 20: 7 full and one of 10
    assert min(seen) == 200 and max(seen) == 220
    assert seen[::2] == [200] * 8  # each round starts on the book of `depth` orders


def test_cancels_run_between_depth_max_and_depth(monkeypatch: pytest.MonkeyPatch) -> None:
    figures: list[dict[str, object]] = []
    seen = _depths_seen(monkeypatch, lambda: figures.append(bench.bench_cancels(200, 300)))
    (figure,) = figures
    assert figure["depth"] == 200 and figure["depth_max"] == 220
    assert min(seen) == 200 and max(seen) == 220
    assert seen[::2] == [220] * 8  # each round starts on the refilled book
