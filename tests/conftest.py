"""Hypothesis profiles for the whole suite, and the fixtures shared by several modules.

`ci` (loaded when the CI environment variable is set): reproducible (derandomized, no
example database) and without deadlines, since CI machines are shared and slow.
`dev` (the default): random exploration with the local example database, no deadlines.
Tests that need more examples than the profile's default set `max_examples` themselves.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import store.checkpoints as checkpoints_module
from store.bench import resting_state
from store.database import Store
from store.records import BlockRecord, Checkpoint, Entry
from store.roots import compute_roots

settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


# A store whose latest checkpoint holds a resting state of 600 orders (books of 64-entry
# scan chunks), for the reopen tests of the store (test_reopen_feed) and of the node's
# restart (test_reopen_trees).
@pytest.fixture
def resting_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[Entry]]:
    monkeypatch.setattr(checkpoints_module, "SCAN_CHUNK", 64)
    entries = resting_state(600, users=20, assets=4)
    path = tmp_path / "node"
    with Store(str(path), checkpoint_interval=1) as store:
        store.append_block(BlockRecord(1, 1, b"\x01" * 32, b"", b"", [], [], []))
        store.write_checkpoint(Checkpoint(1, entries, compute_roots(entries)))
    return path, entries
