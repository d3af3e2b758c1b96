"""The read-only commands never write (issue 12 item 5), tried as a user would: the real
`coreledger` console script in a subprocess, on real LevelDB stores and on directories
that are not stores.

`state`, `history`, `verify`, `prove`, `verify-proof` and `diff`: nothing is created in a
directory that is not a store (compared file by file: names, bytes and mtimes), no row of
a store changes, and a head checkpoint a writer has not written yet is reported, never
written (only `run` writes it).
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from block_exec import Executor
from store import Store
from tests.directories import not_stores, rows, snapshot
from tests.simulated import simulated_block_list

pytestmark = pytest.mark.skipif(
    "read_only" not in inspect.signature(Store).parameters,
    reason="the store's read-only mode (the store side of issue 12 item 5) is not here yet",
)

_SCRIPT = shutil.which("coreledger")
CLI: list[str] = [_SCRIPT] if _SCRIPT else [sys.executable, "-m", "block_exec.cli"]
USER = "0x" + "00" * 19 + "0a"


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL, cwd=cwd)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def read_only_commands(db: Path, other: Path, proof: Path) -> list[list[str | Path]]:
    return [
        ["state", "--db", db],
        ["state", "--db", db, "--user", USER],
        ["history", "--db", db, "--user", USER],
        ["history", "--db", db, "--order", "1"],
        ["verify", "--db", db],
        ["verify", "--db", db, "--all"],
        ["prove", "--db", db, "--user", USER, "--asset", "0"],
        ["prove", "--db", db, "--order", "1"],
        ["diff", "--db", db, "--other", other],
        ["diff", "--db", other, "--other", db],
        ["verify-proof", "--root", "00" * 32, proof],
    ]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("ro") / "db"
    with Executor.open(str(db), checkpoint_interval=5) as executor:
        for block in simulated_block_list(12):
            executor.apply_block(block)
    return db


def test_nothing_is_created_in_a_directory_that_is_not_a_store(
    tmp_path: Path, store: Path
) -> None:
    proof = tmp_path / "proof.json"
    proof.write_text(json.dumps(json.loads(run_cli("prove", "--db", store, "--order", "1"
                                                   ).stdout)))
    for directory in not_stores(tmp_path):
        for argv in read_only_commands(directory, store, proof):
            if argv[0] == "verify-proof":
                argv = ["verify-proof", "--root", "00" * 32, directory / "proof.json"]
            before, store_before = snapshot(directory), rows(store)
            proc = run_cli(*argv, cwd=tmp_path)
            assert proc.returncode == 1, (argv, proc.stderr)
            assert len(proc.stderr.splitlines()) == 1, proc.stderr
            assert snapshot(directory) == before, argv  # not even a lock file
            assert not (directory / "coreledger.lock").exists()
            assert rows(store) == store_before


def test_a_store_is_read_not_written(tmp_path: Path, store: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(store, other)
    proof = tmp_path / "proof.json"
    proof.write_text(run_cli("prove", "--db", store, "--user", USER, "--asset", "0").stdout)
    want_rows = rows(store)
    # LevelDB's own housekeeping files (its LOG, a fresh write-ahead log) change on any
    # open; what is the project's must not: every row, and the files beside the database.
    outside = [item for item in snapshot(store) if not item[0].startswith("leveldb")]
    for argv in read_only_commands(store, other, proof):
        proc = run_cli(*argv)
        assert proc.returncode in (0, 1), (argv, proc.stderr)
        assert rows(store) == want_rows, argv
        assert [item for item in snapshot(store) if not item[0].startswith("leveldb")
                ] == outside, argv


def test_a_missing_head_checkpoint_is_reported_not_written(tmp_path: Path) -> None:
    db = tmp_path / "db"
    blocks = simulated_block_list(10)
    with Executor.open(str(db), checkpoint_interval=5) as executor:
        for block in blocks[:-1]:
            executor.apply_block(block)
        assert executor.store is not None
        # Block 10 stored without its checkpoint: a writer that writes checkpoints apart
        # from blocks, killed in between.
        store = executor.store
        append = store.append_block
        store.append_block = (  # type: ignore[method-assign]
            lambda record, checkpoint=None: append(record, None))
        executor.apply_block(blocks[-1])
    want_rows = rows(db)
    verify = json.loads(run_cli("verify", "--db", db).stdout)
    assert verify["height"] == 5 and verify["missing_checkpoint"] == 10
    state = json.loads(run_cli("state", "--db", db).stdout)
    memory = Executor()
    for block in blocks:
        memory.apply_block(block)
    assert (state["height"], state["state_root"]) == (10, memory.state_root.hex())
    commands: list[list[str | Path]] = [
        ["history", "--db", db, "--order", "1"], ["prove", "--db", db, "--order", "1"],
        ["verify", "--db", db, "--all"]]
    for argv in commands:
        assert run_cli(*argv).returncode == 0, argv
    assert rows(db) == want_rows  # no checkpoint written by any of them
    # Only `run` writes it (here with no blocks to add).
    empty = tmp_path / "none.jsonl"
    empty.write_text("")
    assert run_cli("run", "--db", db, "--blocks", empty, "--no-progress").returncode == 0
    verify = json.loads(run_cli("verify", "--db", db).stdout)
    assert verify["height"] == 10 and verify["missing_checkpoint"] is None
    assert os.path.isdir(db)
