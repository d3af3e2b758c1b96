"""The state-sync part of the network test (issue 15), called by tests/test_network.py on
its running network: a 5th node, not a validator, joins by state sync.

The validators run with the test-only switches of `block_exec.statesync` (set by
`network_env` before they start): chunks cut at 256 bytes, so that even the test's small
state makes dozens of chunks, and validator 1 serving every chunk corrupted. The joining
node must restore a snapshot (not replay from block 1), detect validator 1's chunks
(RETRY, naming it as the sender to reject) and still finish from the other three, reach
the validators' app hashes and /state, and its store must pass `coreledger verify` (and
`--all`) once stopped.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from block_exec.network.rpc import CometRpc, RpcError
from block_exec.statesync import CHUNK_LIMIT_ENV, CORRUPT_CHUNKS_ENV

REPO = Path(__file__).resolve().parent.parent
CORRUPT_NODE = 1
CHECKPOINT_INTERVAL = 100  # `coreledger node`'s default for a new store
SNAPSHOT_INTERVAL = 200  # every other checkpoint: see `_snapshot_window`
WINDOW = 20  # blocks past a snapshot height in which the 5th node is started
CHUNK_LIMIT = 256


INIT_ARGS = ("--snapshot-interval", str(SNAPSHOT_INTERVAL))
"""`coreledger testnet init` arguments: snapshots every 200 blocks (the checkpoint interval
is the node's default, 100)."""


def network_env(directory: Path) -> dict[str, str]:
    """The test switches for every node of the testnet to be made in `directory`."""
    return {
        CHUNK_LIMIT_ENV: str(CHUNK_LIMIT),
        CORRUPT_CHUNKS_ENV: str(directory / f"node{CORRUPT_NODE}" / "app"),
    }


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "block_exec.cli", *args], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=180)
    assert done.returncode == 0, f"coreledger {' '.join(args)}: {done.stderr[-2000:]}"
    return done.stdout


def _state(rpc: CometRpc) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(rpc.abci_query("/state", {})["value"])
    state.pop("height")
    return state


def _snapshot_window(net: Any, timeout: float) -> int:
    """Wait until every validator serves the snapshot of the latest multiple H of the
    interval and the chain is at most WINDOW blocks past it; return H.

    A joining node's CometBFT asks each peer for its snapshots once, when it connects,
    and takes the newest one offered: joined right after H, a validator still cutting
    snapshot H (in background slices after Commit H) would offer only the one before,
    and the newest would come from the others alone, so validator 1's corrupted chunks
    might never be tried. And the next snapshot must not exist yet when it connects:
    with one every 200 blocks, the node has 180 blocks (18 s at ~100 ms a block) to
    start and connect; 100 (the default) left too little on a loaded machine."""
    deadline = time.monotonic() + timeout
    validators = [node for node in net.manifest["nodes"] if node.get("validator", True)]
    while True:
        height: int = net.rpcs[0].height()
        snap = height - height % SNAPSHOT_INTERVAL
        if snap and height - snap <= WINDOW and all(
            (Path(node["db"]) / "snapshots" / str(snap) / "metadata").is_file()
            for node in validators
        ):
            return snap
        assert time.monotonic() < deadline, f"no snapshot window (height {height})"
        time.sleep(0.2)


def join_by_state_sync(net: Any, timeout: float = 120.0) -> dict[str, Any]:
    """Join a 5th node to `net` (tests/test_network.py's Network) by state sync and check
    it; return figures. The node is added to `net` so that its cleanup stops it too."""
    expected = _snapshot_window(net, 120.0)
    started = time.monotonic()
    env = net.env
    joined = json.loads(_cli(env, "testnet", "join", str(net.dir)))
    index = joined["node"]
    net.manifest = json.loads((net.dir / "testnet.json").read_text())
    net.rpcs.append(CometRpc(joined["rpc"], timeout=20))
    _cli(env, "testnet", "start", str(net.dir), "--node", str(index))
    rpc = net.rpcs[index]
    validator = net.rpcs[0]
    deadline = time.monotonic() + timeout
    while True:
        try:
            sync = rpc.status()["sync_info"]
            if not sync["catching_up"] and int(sync["latest_block_height"]) >= validator.height():
                break
        except RpcError:
            pass
        assert time.monotonic() < deadline, "the 5th node did not catch up by state sync"
        time.sleep(0.5)
    joined_seconds = time.monotonic() - started

    home = Path(net.manifest["nodes"][index]["home"])
    log = (home / "app.log").read_text()
    restored = re.search(r"restoring the snapshot at height (\d+) \((\d+) chunks\)", log)
    assert restored, "the 5th node restored no snapshot"
    height, chunks = int(restored.group(1)), int(restored.group(2))
    # The snapshot of the window, or a later one when the node took longer than the window
    # to start and connect (seen once at a load average of 12 on 2 cores): either way one
    # every validator offered when the node asked.
    assert height >= expected and height % SNAPSHOT_INTERVAL == 0 and chunks >= 10, (
        height, expected)
    assert f"restored height {height}," in log
    assert log.count("heap frozen: ") == 2  # once opened (empty), once restored
    corrupt_id = net.manifest["nodes"][CORRUPT_NODE]["node_id"]
    assert re.search(rf"chunk \d+ from {corrupt_id} does not match its hash", log), (
        "validator 1's corrupted chunks were not detected")
    # The same app hash as the validators at the heights it applied itself.
    top = rpc.height()
    for at in (height + 1, height + 2, top):
        assert rpc.app_hash_of_header(at) == validator.app_hash_of_header(at), at
    # The same state (the flow is over: books and balances no longer move).
    assert _state(rpc) == _state(validator)
    # Stopped, its store verifies like a replayed one.
    _cli(env, "testnet", "stop", str(net.dir), "--node", str(index))
    db = net.manifest["nodes"][index]["db"]
    verified = json.loads(_cli(env, "verify", "--db", db, "--all"))
    assert verified["ok"] and verified["head_height"] > height
    # Its checkpoints: the snapshot's, then its own at the default interval.
    kept = verified["kept_checkpoints"]
    assert kept[0] == height and all(h % CHECKPOINT_INTERVAL == 0 for h in kept), kept
    return {"snapshot_height": height, "snapshot_chunks": chunks,
            "join_seconds": round(joined_seconds, 1), "joined_at_height": top}
