"""`coreledger testnet init|start|stop|status`: a local network of N validators on
127.0.0.1, each a `coreledger node` and its CometBFT, supervised as a pair.

Layout of DIR:
- `testnet.json`      the chain id, and per node its home, store, ports and RPC URL
- `keys/`             the bridge's and the funded test accounts' key files
- `nodeI/`            node I's CometBFT home (config/, data/), its store `app/`, its logs
                      `app.log`, `cometbft.log`, `supervisor.log` and pid files `*.pid`

Ports of node I (P = --base-port, default 26600): p2p P+10I, RPC P+10I+1, ABCI P+10I+2,
app metrics P+10I+3. Every address is on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from block_exec.network import DEFAULT_BASE_PORT
from block_exec.network.keys import write_key
from block_exec.network.rpc import CometRpc, RpcError
from block_exec.signed import address_of

COMETBFT_VERSION = "v0.38.26"
CHAIN_ID = "coreledger-testnet"
TEST_ACCOUNTS = 24
TEST_ASSETS = (0, 1, 2, 3)
TEST_AMOUNT = 10**15
DEFAULT_INTERVAL = 100  # `coreledger node`'s default checkpoint and snapshot intervals

# ~100 ms blocks with 4 validators (design-notes: peer_gossip_sleep_duration matters as
# much as timeout_commit).
CONSENSUS_TUNING = {
    "timeout_commit": '"50ms"',
    "peer_gossip_sleep_duration": '"10ms"',
    "timeout_propose": '"1s"',
}


class TestnetError(Exception):
    """A testnet command that cannot be carried out (one line)."""


@dataclass(frozen=True, slots=True)
class NodePorts:
    p2p: int
    rpc: int
    abci: int
    metrics: int


@dataclass(frozen=True, slots=True)
class NodeInfo:
    index: int
    home: str
    db: str
    node_id: str
    ports: NodePorts

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.rpc}"


def find_cometbft() -> str:
    """$COMETBFT, else cometbft on PATH, else the one scripts/build_cometbft.sh built."""
    explicit = os.environ.get("COMETBFT")
    if explicit:
        return explicit
    built = (Path(__file__).resolve().parents[2] / ".tools" / f"cometbft-{COMETBFT_VERSION}"
             / "bin" / "cometbft")
    if built.is_file():
        return str(built)
    found = shutil.which("cometbft")
    if found:
        return found
    raise TestnetError(
        "cometbft not found: run scripts/build_cometbft.sh (needs Go) or set COMETBFT"
    )


def _ports(base: int, index: int) -> NodePorts:
    first = base + 10 * index
    return NodePorts(first, first + 1, first + 2, first + 3)


def rewrite_toml(text: str, values: dict[tuple[str, str], str]) -> str:
    """`text` with `key = value` replaced for each (section, key) in `values` ("" is the
    top level); every key must be found."""
    section = ""
    seen: set[tuple[str, str]] = set()
    lines = []
    for line in text.splitlines():
        header = re.match(r"^\[([A-Za-z0-9_.]+)\]\s*$", line)
        if header:
            section = header.group(1)
        else:
            item = re.match(r"^([A-Za-z0-9_]+)\s*=", line)
            if item and (section, item.group(1)) in values:
                key = (section, item.group(1))
                line = f"{key[1]} = {values[key]}"
                seen.add(key)
        lines.append(line)
    missing = sorted(set(values) - seen)
    if missing:
        raise TestnetError(f"config.toml: no {missing[0][1]!r} in section [{missing[0][0]}]")
    return "\n".join(lines) + "\n"


def _node_config(node: NodeInfo, peers: str) -> dict[tuple[str, str], str]:
    values = {
        ("", "proxy_app"): f'"tcp://127.0.0.1:{node.ports.abci}"',
        ("", "moniker"): f'"node{node.index}"',
        ("rpc", "laddr"): f'"tcp://127.0.0.1:{node.ports.rpc}"',
        ("p2p", "laddr"): f'"tcp://127.0.0.1:{node.ports.p2p}"',
        ("p2p", "persistent_peers"): f'"{peers}"',
        ("p2p", "addr_book_strict"): "false",
        ("p2p", "allow_duplicate_ip"): "true",
        ("p2p", "flush_throttle_timeout"): '"10ms"',
        ("p2p", "pex"): "false",
    }
    values.update({("consensus", key): value for key, value in CONSENSUS_TUNING.items()})
    return values


def _check_intervals(checkpoint: int | None, snapshot: int | None) -> None:
    """Snapshots are taken of checkpoints: the snapshot interval must be a multiple of the
    checkpoint interval (as `coreledger node` checks), so refuse it here already."""
    checkpoint = DEFAULT_INTERVAL if checkpoint is None else checkpoint
    snapshot = DEFAULT_INTERVAL if snapshot is None else snapshot
    if checkpoint < 1:
        raise TestnetError(f"--checkpoint-interval {checkpoint}: must be at least 1")
    if snapshot % checkpoint:
        raise TestnetError(f"--snapshot-interval {snapshot}: must be a multiple of the "
                           f"checkpoint interval {checkpoint} (or 0: no snapshots)")


def init(directory: str, validators: int, base_port: int = DEFAULT_BASE_PORT, *,
         checkpoint_interval: int | None = None,
         snapshot_interval: int | None = None) -> dict[str, Any]:
    """Create the testnet in `directory` (which must not exist or be empty). The
    intervals (None: the node's defaults) are passed to every node's `coreledger node`."""
    if validators < 1:
        raise TestnetError("--validators must be at least 1")
    _check_intervals(checkpoint_interval, snapshot_interval)
    if not 1024 <= base_port <= 65535 - 10 * validators:
        raise TestnetError(f"--base-port {base_port}: the ports would leave [1024, 65535]")
    root = Path(directory)
    if root.exists() and any(root.iterdir()):
        raise TestnetError(f"{directory}: exists and is not empty")
    cometbft = find_cometbft()
    root.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(
        [cometbft, "testnet", "--v", str(validators), "--o", str(root),
         "--starting-ip-address", "127.0.0.1"],
        capture_output=True, text=True,
    )
    if made.returncode != 0:
        raise TestnetError(f"cometbft testnet failed: {' '.join(made.stderr.split())}")
    nodes = []
    for index in range(validators):
        home = root / f"node{index}"
        node_id = subprocess.run(
            [cometbft, "show_node_id", "--home", str(home)],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        nodes.append(NodeInfo(index, str(home.resolve()), str((home / "app").resolve()),
                              node_id, _ports(base_port, index)))
    keys = root / "keys"
    keys.mkdir()
    bridge_key = secrets.token_bytes(32)
    write_key(keys / "bridge.json", bridge_key)
    balances: list[dict[str, Any]] = []
    accounts: list[dict[str, str]] = []
    for number in range(TEST_ACCOUNTS):
        key = secrets.token_bytes(32)
        path = keys / f"user{number:02d}.json"
        write_key(path, key)
        address = address_of(key)
        accounts.append({"address": address, "key": str(path.resolve())})
        balances.extend({"user": address, "asset": asset, "amount": TEST_AMOUNT}
                        for asset in TEST_ASSETS)
    app_state = {"bridge": address_of(bridge_key), "balances": balances}
    for node in nodes:
        home = Path(node.home)
        genesis_path = home / "config" / "genesis.json"
        genesis = json.loads(genesis_path.read_text())
        genesis["chain_id"] = CHAIN_ID
        genesis["app_state"] = app_state
        genesis_path.write_text(json.dumps(genesis, indent=2) + "\n")
        peers = ",".join(f"{other.node_id}@127.0.0.1:{other.ports.p2p}"
                         for other in nodes if other.index != node.index)
        config = home / "config" / "config.toml"
        config.write_text(rewrite_toml(config.read_text(), _node_config(node, peers)))
    manifest: dict[str, Any] = {
        "chain_id": CHAIN_ID,
        "cometbft": cometbft,
        "bridge": {"address": app_state["bridge"], "key": str((keys / "bridge.json").resolve())},
        "accounts": accounts,
        "nodes": [{**asdict(node), "rpc": node.rpc_url} for node in nodes],
    }
    if checkpoint_interval is not None:
        manifest["checkpoint_interval"] = checkpoint_interval
    if snapshot_interval is not None:
        manifest["snapshot_interval"] = snapshot_interval
    (root / "testnet.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return {"dir": str(root.resolve()), "chain_id": CHAIN_ID, "validators": validators,
            "rpc": [node.rpc_url for node in nodes], "bridge": app_state["bridge"],
            "accounts": len(accounts)}


# -- running it ------------------------------------------------------------------------------


def load(directory: str) -> dict[str, Any]:
    path = Path(directory) / "testnet.json"
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise TestnetError(f"{directory}: no testnet.json (run coreledger testnet init)") from None
    return manifest


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """An exited process nobody has reaped yet (e.g. an orphaned supervisor where the
    container's init does not reap): it answers kill(pid, 0) but runs nothing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _selected(manifest: dict[str, Any], node: int | None) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = manifest["nodes"]
    if node is None:
        return nodes
    if not 0 <= node < len(nodes):
        raise TestnetError(f"--node {node}: the testnet has nodes 0 to {len(nodes) - 1}")
    return [nodes[node]]


def start(directory: str, node: int | None = None, wait: float = 90.0) -> dict[str, Any]:
    """Start a supervisor per node (each starts its app, then its CometBFT), then wait up
    to `wait` seconds for every started node to answer on RPC; return `status`."""
    manifest = load(directory)
    started: list[int] = []
    for entry in _selected(manifest, node):
        home = Path(entry["home"])
        if alive(_pid(home / "supervisor.pid")):
            continue
        with open(home / "supervisor.log", "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "block_exec.network.supervise", str(Path(directory)),
                 str(entry["index"])],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )
        (home / "supervisor.pid").write_text(f"{process.pid}\n")
        started.append(entry["index"])
    deadline = time.monotonic() + wait
    for index in started:
        rpc = CometRpc(manifest["nodes"][index]["rpc"], timeout=2)
        while True:
            try:
                rpc.status()
                break
            except RpcError:
                if time.monotonic() > deadline:
                    raise TestnetError(
                        f"node {index} did not start: see {manifest['nodes'][index]['home']}"
                        "/supervisor.log, app.log, cometbft.log"
                    ) from None
                time.sleep(0.2)
    return {"started": started, **status(directory)}


def stop(directory: str, node: int | None = None, timeout: float = 20.0) -> dict[str, Any]:
    """SIGTERM each supervisor (it stops CometBFT, then the app), by its recorded pid;
    SIGKILL whatever recorded pid is still alive after `timeout` seconds."""
    manifest = load(directory)
    homes = [Path(entry["home"]) for entry in _selected(manifest, node)]
    pids = [pid for home in homes for name in ("supervisor", "cometbft", "app")
            if (pid := _pid(home / f"{name}.pid")) is not None and alive(pid)]
    for home in homes:
        pid = _pid(home / "supervisor.pid")
        if alive(pid):
            assert pid is not None
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.1)
    killed = [pid for pid in pids if pid is not None and alive(pid)]
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    return {"stopped": [int(home.name[4:]) for home in homes], "killed": killed}


def status(directory: str) -> dict[str, Any]:
    manifest = load(directory)
    nodes = []
    for entry in manifest["nodes"]:
        home = Path(entry["home"])
        item: dict[str, Any] = {
            "node": entry["index"],
            "rpc": entry["rpc"],
            **{name: alive(_pid(home / f"{name}.pid"))
               for name in ("supervisor", "app", "cometbft")},
        }
        try:
            sync = CometRpc(entry["rpc"], timeout=2).status()["sync_info"]
            item["height"] = int(sync["latest_block_height"])
            item["app_hash"] = sync["latest_app_hash"].lower()
            item["catching_up"] = sync["catching_up"]
        except RpcError:
            item["height"] = None
        nodes.append(item)
    return {"chain_id": manifest["chain_id"], "nodes": nodes}


def wait_for_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False
