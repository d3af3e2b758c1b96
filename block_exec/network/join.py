"""`coreledger testnet join DIR`: add a node (not a validator) to a running testnet that
joins by CometBFT state sync instead of replaying the chain (spec/store.md, "State sync").

The new node I gets its CometBFT home `DIR/nodeI` (its own keys, the testnet's genesis,
ports P+10I.., every validator as a persistent peer) with `[statesync]` enabled: two
validators' RPC servers for the light client, and a trust height and hash read now from
validator 0 (block 1: the light client verifies forward from it to the snapshot).
`coreledger testnet start DIR --node I` then starts it: its empty store takes the newest
snapshot the validators serve, checks every chunk and the restored root against the
light-client-verified app hash, and blocksyncs from there.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

from block_exec.network.rpc import CometRpc, RpcError
from block_exec.network.testnet import (
    NodeInfo,
    NodePorts,
    TestnetError,
    _node_config,
    load,
    rewrite_toml,
)

STATESYNC_TUNING = {
    "discovery_time": '"5s"',  # CometBFT's minimum: ask peers for snapshots, then pick
    "chunk_request_timeout": '"10s"',
    "chunk_fetchers": '"4"',
    "trust_period": '"168h0m0s"',
}


def _trust_point(rpc_url: str, height: int = 1) -> tuple[int, str]:
    """A block of a validator to trust: its height and (header) hash. Block 1 by default:
    the light client then verifies forward to any snapshot height."""
    try:
        rpc = CometRpc(rpc_url, timeout=10)
        block_id = rpc.call("block", height=str(height))["block_id"]
    except (RpcError, KeyError, ValueError) as exc:
        raise TestnetError(f"no trust point from {rpc_url}: {exc}") from None
    return height, str(block_id["hash"])


def join(directory: str) -> dict[str, Any]:
    """Create the next node of the testnet in `directory`, configured for state sync."""
    manifest = load(directory)
    nodes: list[dict[str, Any]] = manifest["nodes"]
    validators = [entry for entry in nodes if entry.get("validator", True)]
    if len(validators) < 2:
        raise TestnetError("state sync needs two validators' RPC servers")
    index = len(nodes)
    base = int(nodes[0]["ports"]["p2p"])
    ports = NodePorts(*(base + 10 * index + offset for offset in range(4)))
    root = Path(directory)
    home = root / f"node{index}"
    cometbft = manifest["cometbft"]
    made = subprocess.run([cometbft, "init", "--home", str(home)], capture_output=True,
                          text=True)
    if made.returncode != 0:
        raise TestnetError(f"cometbft init failed: {' '.join(made.stderr.split())}")
    shutil.copyfile(Path(nodes[0]["home"]) / "config" / "genesis.json",
                    home / "config" / "genesis.json")
    node_id = subprocess.run([cometbft, "show_node_id", "--home", str(home)],
                             capture_output=True, text=True, check=True).stdout.strip()
    node = NodeInfo(index, str(home.resolve()), str((home / "app").resolve()), node_id, ports)
    peers = ",".join(f"{entry['node_id']}@127.0.0.1:{entry['ports']['p2p']}"
                     for entry in validators)
    height, block_hash = _trust_point(validators[0]["rpc"])
    values = _node_config(node, peers)
    values.update({
        ("statesync", "enable"): "true",
        ("statesync", "rpc_servers"): f'"{validators[0]["rpc"]},{validators[1]["rpc"]}"',
        ("statesync", "trust_height"): str(height),
        ("statesync", "trust_hash"): f'"{block_hash}"',
    })
    values.update({("statesync", key): value for key, value in STATESYNC_TUNING.items()})
    config = home / "config" / "config.toml"
    config.write_text(rewrite_toml(config.read_text(), values))
    nodes.append({**asdict(node), "rpc": node.rpc_url, "validator": False})
    (root / "testnet.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return {"node": index, "rpc": node.rpc_url, "node_id": node_id,
            "trust_height": height, "trust_hash": block_hash}
