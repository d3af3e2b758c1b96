"""`coreledger bench --quick` runs and reports figures in the documented JSON shape.

Speed is for the benchmark itself, never asserted here: only the shape and that the
workloads ran on what they claim (operations counted, times positive).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

REQUIRED_PREFIXES = (
    "baseline_resting_insert/",
    "baseline_cancel/",
    "resting_insert/depth=",
    "cancel/depth=",
    "memory_per_resting_order/",
    "mixed_flow/core_only",
    "mixed_flow/apply_block_in_memory",
    "mixed_flow/run_with_store",
    "node restart: Executor.open",
    "block_root/txs=1000/",
    "statesync/replay_blocks/",
    "statesync/restore_snapshot/",
    "statesync/consensus_overhead",
)


def test_bench_quick_reports_every_workload_as_json() -> None:
    exe = shutil.which("coreledger")
    command = [exe] if exe else [sys.executable, "-m", "block_exec.cli"]
    done = subprocess.run(
        [*command, "bench", "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    assert report["quick"] is True
    figures = report["figures"]
    names = [figure["name"] for figure in figures]
    assert len(names) == len(set(names)), "workload names are unique"
    for prefix in REQUIRED_PREFIXES:
        assert any(name.startswith(prefix) for name in names), f"missing workload {prefix}"
    for figure in figures:
        assert isinstance(figure["operations"], int) and figure["operations"] > 0
        assert figure["seconds"] > 0
        assert figure["ops_per_s"] > 0 and figure["us_per_op"] > 0
        for key in ("p50_us", "p99_us", "p99_9_us"):
            if key in figure:
                assert figure[key] > 0
        if "p50_us" in figure:
            assert figure["p50_us"] <= figure["p99_us"] <= figure["p99_9_us"]
    by_name = {figure["name"]: figure for figure in figures}
    stored = by_name["mixed_flow/run_with_store"]
    assert stored["baseline"] == "mixed_flow/apply_block_in_memory"
    assert stored["ratio_vs_baseline"] > 0
    # the same flow: both wrote the same receipts file (`run --receipts`)
    applied = by_name["mixed_flow/apply_block_in_memory"]
    assert stored["receipts_blake3"] == applied["receipts_blake3"]
    inserts = [figure for figure in figures if figure["name"].startswith("resting_insert/")]
    assert all("speedup_vs_baseline" in figure for figure in inserts)
    memory = next(f for f in figures if f["name"].startswith("memory_per_resting_order/"))
    parts = memory["core_bytes_per_order"] + memory["tree_bytes_per_order"]
    assert abs(memory["bytes_per_order"] - parts) <= 1  # each is floored on its own
    restore = next(f for f in figures if f["name"].startswith("statesync/restore_snapshot/"))
    assert restore["baseline"].startswith("statesync/replay_blocks/")
    assert restore["speedup_vs_baseline"] > 0 and restore["chunks"] >= 1
    overhead = by_name["statesync/consensus_overhead"]
    assert overhead["work_slices"] > 0 and overhead["snapshots_listed"]
    restart = next(f for f in figures if f["name"].startswith("node restart: Executor.open"))
    assert restart["operations"] == 100_000  # every resting order of the reopen's store
    assert restart["cpu_s"] > 0 and restart["scan_s"] > 0 and restart["rebuild_s"] > 0
    block_root = next(f for f in figures if f["name"].startswith("block_root/"))
    assert block_root["blake3_calls_per_block"] > block_root["changed_entries_per_block"]
    assert block_root["blake3_floor_ms"] > 0 and block_root["fold_median_ms"] > 0
    assert block_root["python_floor_ms"] > 0
    assert block_root["fold_median_ms"] <= block_root["median_ms"]  # a part of each block's
    # the human table goes to stderr, one row per figure
    assert all(name[:52] in done.stderr for name in names)
