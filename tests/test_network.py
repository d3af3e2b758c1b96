"""A real network: 4 validators on 127.0.0.1, each a `coreledger node` with its CometBFT
v0.38.26, made and run by `coreledger testnet`.

A generated signed flow (>= 2,000 txs from 20 users on 3 assets, plus deposits from the
bridge) is sent to all four nodes; one validator's app and CometBFT are SIGKILLed under
load and restarted. Then: equal app hashes at every height on all four; equal /state on
all four, with books and balances equal to `coreledger run --blocks` of the committed txs;
refusals at CheckTx; a /prove answer checked offline against a header's app hash.

CometBFT comes from scripts/build_cometbft.sh. With CI set a missing cometbft is a
failure (the script builds it); elsewhere, without Go, the test skips. Every process it
started is stopped by its recorded pid, on failure too. Marked `network`: `-m "not
network"` leaves it out.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from block_exec.network.keys import read_key
from block_exec.network.rpc import CometRpc, RpcError
from block_exec.signed import check_signed_tx, sign_tx
from block_exec.types import Cancel, Deposit, Limit, Market, Tx, Withdraw
from state_machine import Side, Tif
from tests.network_statesync import INIT_ARGS, join_by_state_sync, network_env

pytestmark = pytest.mark.network

REPO = Path(__file__).resolve().parent.parent
USERS = 20
TXS_PER_USER = 100
BRIDGE_DEPOSITS = 120
ASSETS = (1, 2, 3)
KILLED = 3  # the validator killed under load
DEADLINE = 330.0  # seconds for the whole test (CI budget: 6 minutes)


def cometbft_binary() -> str:
    script = REPO / "scripts" / "build_cometbft.sh"
    if not os.environ.get("CI") and shutil.which("go") is None:
        built = REPO / ".tools" / "cometbft-v0.38.26" / "bin" / "cometbft"
        if not built.is_file() and not os.environ.get("COMETBFT"):
            pytest.skip("no cometbft and no Go to build it (scripts/build_cometbft.sh)")
        return os.environ.get("COMETBFT") or str(built)
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"scripts/build_cometbft.sh failed: {done.stderr[-2000:]}"
    return done.stdout.strip().splitlines()[-1]


def free_base_port() -> int:
    for base in range(29000 + (os.getpid() % 40) * 50, 60000, 50):
        try:
            for port in range(base, base + 40):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free ports")


def cli(*args: str, check: bool = True, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "block_exec.cli", *args], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=timeout)
    if check:
        assert done.returncode == 0, f"coreledger {args[0]}: {done.stderr}"
    return done


class Network:
    """The running testnet; `kill_all` stops every recorded process by its pid."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.dir = directory
        self.env = env
        self.manifest: dict[str, Any] = json.loads((directory / "testnet.json").read_text())
        self.rpcs = [CometRpc(node["rpc"], timeout=20) for node in self.manifest["nodes"]]
        self.chain_id: str = self.manifest["chain_id"]

    def pids(self, index: int) -> dict[str, int]:
        home = Path(self.manifest["nodes"][index]["home"])
        found = {}
        for name in ("supervisor", "app", "cometbft"):
            with contextlib.suppress(OSError, ValueError):
                found[name] = int((home / f"{name}.pid").read_text())
        return found

    def kill_all(self) -> None:
        cli("testnet", "stop", str(self.dir), check=False, env=self.env)
        for index in range(len(self.rpcs)):
            for pid in self.pids(index).values():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def heights(self) -> list[int]:
        out = []
        for rpc in self.rpcs:
            try:
                out.append(rpc.height())
            except RpcError:
                out.append(-1)
        return out

    def wait_heights(self, at_least: int, nodes: list[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            heights = self.heights()
            if all(heights[i] >= at_least for i in nodes):
                return
            time.sleep(0.2)
        raise AssertionError(f"nodes {nodes} did not reach height {at_least}: {self.heights()}")


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    binary = cometbft_binary()
    directory = tmp_path / "net"
    env = {**os.environ, "COMETBFT": binary, **network_env(directory)}  # + state-sync switches
    cli("testnet", "init", "--validators", "4", "--dir", str(directory),
        "--base-port", str(free_base_port()), *INIT_ARGS, env=env)
    net = Network(directory, env)
    try:
        cli("testnet", "start", str(directory), env=env)
        yield net
    finally:
        net.kill_all()
        for index in range(len(net.rpcs)):  # every recorded process is gone
            for pid in net.pids(index).values():
                assert not _alive(pid), f"process {pid} survived the stop"


def _log_tail(net: Network, index: int) -> str:
    home = Path(net.manifest["nodes"][index]["home"])
    with contextlib.suppress(OSError):
        return (home / "supervisor.log").read_text()[-2000:]
    return "(no supervisor.log)"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == 0
    except ChildProcessError:
        return Path(f"/proc/{pid}").exists() and "Z" not in _proc_state(pid)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return "Z"


# -- the generated flow ----------------------------------------------------------------------


def user_flow(rng: random.Random, user: str, count: int) -> list[Tx]:
    txs: list[Tx] = []
    for _ in range(count):
        asset = rng.choice(ASSETS)
        side = rng.choice((Side.BUY, Side.SELL))
        mid = 1000 * asset
        roll = rng.random()
        if roll < 0.55:
            tif = rng.choice((Tif.GTC, Tif.GTC, Tif.GTC, Tif.IOC, Tif.ALO))
            offset = rng.randint(-15, 15)
            txs.append(Limit(user, asset, side, mid + offset, rng.randint(1, 40), tif))
        elif roll < 0.70:
            txs.append(Market(user, asset, side, rng.randint(1, 20)))
        elif roll < 0.88:
            txs.append(Cancel(user, asset, rng.randint(1, 1500)))
        else:
            txs.append(Withdraw(user, rng.choice((0, *ASSETS)), rng.randint(1, 1000)))
    return txs


class Sender:
    """Signs and sends each user's txs in nonce order to the user's node."""

    def __init__(self, net: Network) -> None:
        self.net = net
        manifest = net.manifest
        self.keys = {
            account["address"]: read_key(account["key"])[0]
            for account in manifest["accounts"][:USERS]
        }
        self.bridge_key, self.bridge = read_key(manifest["bridge"]["key"])
        self.nonces: dict[str, int] = dict.fromkeys([*self.keys, self.bridge], 0)
        self.sent = 0
        self.lock = threading.Lock()
        self.failures: list[str] = []

    def send(self, node: int, signer: str, txs: list[Tx]) -> None:
        key = self.bridge_key if signer == self.bridge else self.keys[signer]
        rpc = CometRpc(self.net.manifest["nodes"][node]["rpc"], timeout=20)
        for tx in txs:
            raw = sign_tx(key, self.net.chain_id, self.nonces[signer], tx)
            result = rpc.broadcast(raw)
            if result["code"] != 0:
                self.failures.append(f"node {node} {signer} nonce {self.nonces[signer]}: "
                                     f"{result.get('log')}")
                return
            self.nonces[signer] += 1
            with self.lock:
                self.sent += 1

    def run(self, jobs: list[tuple[int, str, list[Tx]]]) -> None:
        """Send every job (node, signer, txs) concurrently, one thread per signer."""
        threads = [threading.Thread(target=self.send, args=job) for job in jobs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not self.failures, self.failures[:3]

    def wait_committed(self, node: int, timeout: float) -> None:
        rpc = self.net.rpcs[node]
        deadline = time.monotonic() + timeout
        pending = dict(self.nonces)
        while pending and time.monotonic() < deadline:
            for signer, want in list(pending.items()):
                answer = rpc.abci_query("/nonce", {"user": signer})
                if json.loads(answer["value"])["nonce"] >= want:
                    del pending[signer]
            time.sleep(0.2)
        assert not pending, f"not committed by node {node}: {len(pending)} signers behind"


def node_of(number: int) -> int:
    return number % 4


# -- checks ----------------------------------------------------------------------------------


def headers(rpc: CometRpc, top: int) -> dict[int, dict[str, Any]]:
    """The block metas (header, num_txs) of heights 1..top, 20 per call."""
    out: dict[int, dict[str, Any]] = {}
    low = 1
    while low <= top:
        high = min(top, low + 19)
        metas = rpc.call("blockchain", minHeight=low, maxHeight=high)["block_metas"]
        for meta in metas:
            out[int(meta["header"]["height"])] = meta
        low = high + 1
    return out


def committed_blocks(rpc: CometRpc, metas: dict[int, dict[str, Any]], chain_id: str) -> list[
        dict[str, Any]]:
    """The network's blocks with txs, as block-file blocks of their inner txs."""
    blocks = []
    for height in sorted(metas):
        if int(metas[height]["num_txs"]) == 0:
            continue
        block = rpc.block(height)["block"]
        txs = []
        for item in block["data"]["txs"]:
            signed, _ = check_signed_tx(base64.b64decode(item), chain_id)
            txs.append(_tx_json(signed.tx))
        stamp = block["header"]["time"]
        blocks.append({"network_height": height, "time": _ms(stamp), "txs": txs})
    return blocks


def _ms(stamp: str) -> int:
    """RFC 3339 with nanoseconds -> ms since the epoch (floor), without floats."""
    import calendar

    date, _, rest = stamp.partition("T")
    clock, _, frac = rest.rstrip("Z").partition(".")
    year, month, day = (int(x) for x in date.split("-"))
    hour, minute, second = (int(x) for x in clock.split(":"))
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    return seconds * 1000 + int((frac + "000")[:3])


def _tx_json(tx: Tx) -> dict[str, Any]:
    obj: dict[str, Any] = {"op": type(tx).__name__.lower(), "user": tx.user, "asset": tx.asset}
    if isinstance(tx, Deposit | Withdraw):
        obj["amount"] = tx.amount
    elif isinstance(tx, Limit):
        obj.update(side=tx.side.name.lower(), price=tx.price, size=tx.size,
                   tif=tx.tif.name.lower())
    elif isinstance(tx, Market):
        obj.update(side=tx.side.name.lower(), size=tx.size)
    else:
        obj["order_id"] = tx.order_id
    return obj


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in {url}")


def test_four_validators(network: Network, tmp_path: Path) -> None:
    started = time.monotonic()
    net = network
    net.wait_heights(2, [0, 1, 2, 3], 90)
    sender = Sender(net)
    rpc0 = net.rpcs[0]

    # -- refused at CheckTx -------------------------------------------------------------------
    users = list(sender.keys)
    alice = users[0]
    key = sender.keys[alice]
    good = Withdraw(alice, 0, 1)
    assert rpc0.broadcast(b"\xa1\x01\x02")["code"] == 10  # malformed
    tampered = bytearray(sign_tx(key, net.chain_id, 0, good))
    tampered[tampered.index(b"csig") + 6] ^= 0xFF  # inside r: recovers another key or none
    answer = rpc0.broadcast(bytes(tampered))
    assert answer["code"] in (6, 11), answer  # bad signature, or a stranger not authorized
    assert rpc0.broadcast(sign_tx(key, "another-chain", 0, good))["code"] == 12
    assert rpc0.broadcast(sign_tx(key, net.chain_id, 5, good))["code"] == 7  # future nonce
    sender.send(0, alice, [good])
    reused = rpc0.broadcast(sign_tx(key, net.chain_id, 0, Withdraw(alice, 0, 2)))
    assert reused["code"] == 7 and "nonce 0" in reused["log"]  # a reused nonce

    # -- the flow, phase 1: everyone, to their own node -------------------------------------
    rng = random.Random(14)
    flows = {user: user_flow(rng, user, TXS_PER_USER) for user in users}
    deposits: list[Tx] = [
        Deposit(rng.choice(users), rng.choice((0, *ASSETS)), rng.randint(1, 10**6))
        for _ in range(BRIDGE_DEPOSITS)
    ]
    load_started = time.monotonic()
    sender.run([(node_of(n), u, flows[u][:40]) for n, u in enumerate(users)]
               + [(0, sender.bridge, deposits[:60])])
    sender.wait_committed(0, 90)
    phase1 = (sender.sent - 1, time.monotonic() - load_started)  # txs, seconds to commit

    # -- phase 2: under load, kill validator 3 (app and CometBFT) with SIGKILL -------------
    jobs = [(node_of(n), u, flows[u][40:75]) for n, u in enumerate(users)
            if node_of(n) != KILLED]
    def kill_validator() -> None:  # its app and its CometBFT; the supervisor sees them go
        for name, pid in net.pids(KILLED).items():
            if name != "supervisor":
                os.kill(pid, signal.SIGKILL)

    killer = threading.Timer(1.0, kill_validator)
    killer.start()
    sender.run(jobs)
    killer.join()
    sender.wait_committed(0, 90)
    assert net.heights()[KILLED] == -1  # it is down
    supervisor = net.pids(KILLED)["supervisor"]  # it stops the pair when one dies, then exits
    deadline = time.monotonic() + 30
    while _alive(supervisor) and time.monotonic() < deadline:
        time.sleep(0.2)
    restarted = json.loads(cli("testnet", "start", str(net.dir), "--node", str(KILLED),
                               env=net.env).stdout)
    assert restarted["started"] == [KILLED], (restarted, _log_tail(net, KILLED))
    top = max(net.heights())
    net.wait_heights(top, [KILLED], 120)

    # -- phase 3: everyone again, node 3's users included -----------------------------------
    sender.run([(node_of(n), u, flows[u][40 if node_of(n) == KILLED else 75:])
                for n, u in enumerate(users)] + [(0, sender.bridge, deposits[60:])])
    sender.wait_committed(0, 120)
    total = sender.sent
    assert total >= 2000

    # -- every node at one height; equal app hashes at every height -------------------------
    final = max(net.heights()) + 2
    net.wait_heights(final, [0, 1, 2, 3], 60)
    metas = [headers(rpc, final) for rpc in net.rpcs]
    for height in range(1, final + 1):
        hashes = {m[height]["header"]["app_hash"] for m in metas}
        assert len(hashes) == 1, f"height {height}: app hashes differ: {hashes}"
    assert sum(int(m["num_txs"]) for m in metas[0].values()) == total

    # -- equal /state everywhere, and equal to `coreledger run --blocks` of the same txs ----
    states = []
    for rpc in net.rpcs:
        state = json.loads(rpc.abci_query("/state", {})["value"])
        state.pop("height")
        states.append(state)
    assert all(state == states[0] for state in states[1:])
    genesis = json.loads((Path(net.manifest["nodes"][0]["home"]) / "config" / "genesis.json")
                         .read_text())["app_state"]
    blocks = committed_blocks(rpc0, metas[0], net.chain_id)
    first_time = blocks[0]["time"] if blocks else 0
    lines = [json.dumps({"height": 1, "time": first_time, "txs": [
        {"op": "deposit", **item} for item in genesis["balances"]]})]
    lines += [json.dumps({"height": n + 2, "time": b["time"], "txs": b["txs"]})
              for n, b in enumerate(blocks)]
    block_file = tmp_path / "committed.jsonl"
    block_file.write_text("\n".join(lines) + "\n")
    replay = tmp_path / "replay"
    cli("run", "--blocks", str(block_file), "--db", str(replay), "--no-progress", timeout=300)
    local = json.loads(cli("state", "--db", str(replay)).stdout)
    assert local["books"] == states[0]["books"]
    assert local["balances"] == states[0]["balances"]
    assert any(book["bids"] or book["asks"] for book in local["books"].values())

    # -- a /prove answer checked offline against the app hash in header height+1 -----------
    answer = rpc0.abci_query("/prove", {"user": users[1], "asset": 1})
    proof = json.loads(answer["value"])
    assert proof["included"] and proof["height"] == int(answer["height"])
    net.wait_heights(proof["height"] + 1, [0], 30)
    app_hash = rpc0.app_hash_of_header(proof["height"] + 1)
    assert bytes.fromhex(proof["root"]) == app_hash
    proof_file = tmp_path / "proof.json"
    proof_file.write_text(json.dumps(proof))
    checked = cli("verify-proof", "--root", app_hash.hex(), str(proof_file), check=False)
    assert checked.returncode == 0, checked.stderr
    expected = states[0]["balances"][users[1]]["1"]
    assert proof["value"] == expected

    # -- the killed validator recovered from its store: the latest checkpoint (one every
    # 100 blocks, so the genesis one here), then the logged blocks replayed with their
    # signers; equal app hashes above say it reached the same states.
    app_log = (Path(net.manifest["nodes"][KILLED]["home"]) / "app.log").read_text()
    opened = [int(h) for h in re.findall(r" store \S+ at height (\d+), root", app_log)]
    assert len(opened) == 2 and opened[0] == 0, opened  # made at 0, reopened after the kill
    recovered_at = opened[1]

    # -- a 5th node (not a validator) joins by state sync (tests/network_statesync.py) ------
    statesync = join_by_state_sync(net)

    # -- figures ------------------------------------------------------------------------------
    times = [_ms(metas[0][h]["header"]["time"]) for h in range(2, final + 1)]
    block_ms = (times[-1] - times[0]) / (len(times) - 1)
    metrics_url = f"http://127.0.0.1:{net.manifest['nodes'][0]['ports']['metrics']}/metrics"
    check_count = metric(metrics_url, "coreledger_check_tx_seconds_count")
    check_sum = metric(metrics_url, "coreledger_check_tx_seconds_sum")
    figures = {
        "txs": total,
        "committed_tx_per_s": round(phase1[0] / phase1[1]),
        "block_ms_mean": round(block_ms),
        "check_tx_us": round(1e6 * check_sum / check_count),
        "check_tx_calls_node0": int(check_count),
        "heights": final,
        "seconds": round(time.monotonic() - started),
        "killed_recovered_at_height": recovered_at,
        "statesync": statesync,
    }
    print("network figures:", json.dumps(figures))
    out = os.environ.get("NETWORK_FIGURES")
    if out:
        Path(out).write_text(json.dumps(figures) + "\n")
    assert time.monotonic() - started < DEADLINE
