"""Read-only opening (issue 12 item 5): the read-only commands never write.

A directory that is not a store is refused with one line and left byte for byte as it
was; a store opened read-only keeps every row (no checkpoint written, nothing pruned);
`verify --all` holds one checkpoint's restored state at a time.
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from block_exec import Block, Executor
from block_exec.cli import main
from store import Store, StoreError
from tests.directories import not_stores, rows, snapshot
from tests.simulated import simulated_block_list

OPENERS: list[tuple[str, Callable[[str], object]]] = [
    ("Store read_only", lambda d: Store(d, read_only=True)),
    ("Store create=False", lambda d: Store(d, create=False)),
    ("Executor read_only", lambda d: Executor.open(d, read_only=True)),
]


@pytest.mark.parametrize(("name", "opener"), OPENERS, ids=[n for n, _ in OPENERS])
def test_a_directory_that_is_not_a_store_is_refused_untouched(
    tmp_path: Path, name: str, opener: Callable[[str], object]
) -> None:
    for directory in not_stores(tmp_path):
        before = snapshot(directory)
        existed = directory.exists()
        with pytest.raises(StoreError) as refused:
            opener(str(directory))
        message = str(refused.value)
        assert "\n" not in message and str(directory) in message
        assert ("no such store" in message) or ("no store yet" in message)
        assert snapshot(directory) == before, name
        assert directory.exists() == existed


@pytest.mark.parametrize(
    "command", [["state"], ["history", "--user", "0x" + "11" * 20], ["verify"], ["verify", "--all"]]
)
def test_read_only_commands_leave_a_non_store_untouched(
    tmp_path: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    for directory in not_stores(tmp_path):
        before = snapshot(directory)
        existed = directory.exists()
        assert main([command[0], "--db", str(directory), *command[1:]]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert snapshot(directory) == before and directory.exists() == existed


def _store_missing_its_head_checkpoint(db: str, blocks: list[Block]) -> None:
    """`blocks` with interval 5, the last one (at a multiple of 5) stored without its
    checkpoint (a writer that stores checkpoints apart from blocks, killed in between)."""
    with Executor.open(db, checkpoint_interval=5) as executor:
        for block in blocks[:-1]:
            executor.apply_block(block)
        assert executor.store is not None
        store = executor.store
        append = store.append_block
        store.append_block = lambda record, checkpoint=None: append(record, None)  # type: ignore[method-assign]
        executor.apply_block(blocks[-1])
        assert store.needs_checkpoint()


def test_read_only_open_reports_a_missing_head_checkpoint_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = simulated_block_list(10)
    db = str(tmp_path / "db")
    _store_missing_its_head_checkpoint(db, blocks)
    kept = rows(Path(db))
    memory = Executor(checkpoint_interval=5)
    for block in blocks:
        memory.apply_block(block)
    with Executor.open(db, read_only=True) as reader:
        assert reader.missing_checkpoint == 10
        assert reader.height == 10 and reader.state_root == memory.state_root
        assert reader.store is not None and reader.store.checkpoint_heights() == [5]
        with pytest.raises(StoreError, match="read-only"):
            reader.apply_block(blocks[-1])
    for argv in (["verify", "--all"], ["state"], ["history", "--order", "1"]):
        assert main([argv[0], "--db", db, *argv[1:]]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[0])
    assert report["missing_checkpoint"] == 10 and report["height"] == 5
    assert rows(Path(db)) == kept  # the checkpoint was not written, nothing else either
    with Executor.open(db) as writer:  # only a writer writes it
        assert writer.missing_checkpoint is None
        assert writer.store is not None and writer.store.checkpoint_heights() == [5, 10]
    assert rows(Path(db)) != kept


def test_read_only_store_refuses_writes_and_does_not_prune(tmp_path: Path) -> None:
    blocks = simulated_block_list(12)
    db = str(tmp_path / "db")
    with Executor.open(db, checkpoint_interval=2, keep=10) as executor:
        for block in blocks:
            executor.apply_block(block)
    kept = rows(Path(db))
    with Store(db, read_only=True, keep=1) as store:
        assert store.read_only
        assert store.checkpoint_heights() == [2, 4, 6, 8, 10, 12]  # nothing pruned
        stored = store.block(12)
        assert stored is not None
        with pytest.raises(StoreError, match="read-only"):
            store.compact()
        with pytest.raises(StoreError, match="read-only"):
            store.write_checkpoint(None)  # type: ignore[arg-type]
        with pytest.raises(StoreError, match="read-only"):
            store.append_block(None)  # type: ignore[arg-type]
    assert rows(Path(db)) == kept
    with Store(db, keep=1) as store:  # a writer prunes
        assert store.checkpoint_heights() == [12]


def _peak_of(argv: list[str]) -> int:
    tracemalloc.start()
    try:
        assert main(argv) == 0
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_verify_all_holds_one_checkpoint_at_a_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = simulated_block_list(120)
    db = str(tmp_path / "db")
    with Executor.open(db, checkpoint_interval=15, keep=8) as executor:
        for block in blocks:
            executor.apply_block(block)
        assert executor.store is not None and len(executor.store.checkpoint_heights()) == 8
    one = _peak_of(["verify", "--db", db])
    every = _peak_of(["verify", "--db", db, "--all"])
    capsys.readouterr()
    # The latest checkpoint (kept for the answer) plus one being checked, not eight.
    assert every < 2.5 * one, (every, one)
