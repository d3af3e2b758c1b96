"""The ABCI application in process: requests built from the generated classes, handled as
CometBFT would send them, on a real LevelDB store; and the socket server's handling of
bad input (the app and its store survive it)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.protobuf.message import Message

from block_exec.abci.app import CHECK_CODES, Application
from block_exec.abci.ledger import Ledger
from block_exec.abci.metrics import Metrics
from block_exec.abci.proto.tendermint.abci import types_pb2 as abci
from block_exec.abci.server import AbciServer, parse_address
from block_exec.abci.wire import FrameDecoder, encode_frame, encode_uvarint
from block_exec.executor import Executor
from block_exec.signed import address_of, sign_tx
from block_exec.types import Deposit, Limit, Withdraw
from state_machine import Side, Tif

CHAIN = "test-chain"
BRIDGE_KEY = bytes([1]) * 32
ALICE_KEY = bytes([2]) * 32
BOB_KEY = bytes([3]) * 32
BRIDGE, ALICE, BOB = (address_of(k) for k in (BRIDGE_KEY, ALICE_KEY, BOB_KEY))
GENESIS: dict[str, Any] = {
    "bridge": BRIDGE,
    "balances": [{"user": ALICE, "asset": 0, "amount": 1000},
                 {"user": BOB, "asset": 1, "amount": 50}],
}
T0 = 1_700_000_000


def run(app: Application, kind: str, request: Message) -> Any:
    return asyncio.run(app.handle(kind, request))


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "node"


@pytest.fixture(params=[100])
def app(store_dir: Path, request: pytest.FixtureRequest) -> Iterator[Application]:
    """An initialised application; the parameter is its store's checkpoint interval (100,
    as `coreledger node` makes a store)."""
    executor = Executor.open(str(store_dir), checkpoint_interval=request.param)
    application = Application(Ledger(executor), Metrics())
    run(application, "init_chain", abci.RequestInitChain(
        chain_id=CHAIN, app_state_bytes=json.dumps(GENESIS).encode()))
    yield application
    executor.close()


def check(app: Application, raw: bytes) -> abci.ResponseCheckTx:
    response: abci.ResponseCheckTx = run(app, "check_tx", abci.RequestCheckTx(tx=raw))
    return response


def finalize(app: Application, height: int, txs: list[bytes]) -> abci.ResponseFinalizeBlock:
    request = abci.RequestFinalizeBlock(height=height, txs=txs, hash=bytes([height]) * 32)
    request.time.seconds = T0 + height
    request.time.nanos = 999_999_999  # floor to ms: ...999
    response: abci.ResponseFinalizeBlock = run(app, "finalize_block", request)
    return response


def query(app: Application, path: str, data: object) -> abci.ResponseQuery:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    response: abci.ResponseQuery = run(app, "query", abci.RequestQuery(path=path, data=raw))
    return response


def buy(nonce: int, price: int = 10, size: int = 5) -> bytes:
    return sign_tx(ALICE_KEY, CHAIN, nonce, Limit(ALICE, 1, Side.BUY, price, size, Tif.GTC))


def sell(nonce: int, price: int = 10, size: int = 5) -> bytes:
    return sign_tx(BOB_KEY, CHAIN, nonce, Limit(BOB, 1, Side.SELL, price, size, Tif.GTC))


def test_info_echo_flush_and_empty_vote_extensions(app: Application) -> None:
    info = run(app, "info", abci.RequestInfo())
    assert (info.last_block_height, info.last_block_app_hash) == (0, b"")
    assert run(app, "echo", abci.RequestEcho(message="ping")).message == "ping"
    assert run(app, "flush", abci.RequestFlush()) == abci.ResponseFlush()
    assert run(app, "extend_vote", abci.RequestExtendVote()).vote_extension == b""
    verdict = run(app, "verify_vote_extension", abci.RequestVerifyVoteExtension())
    assert verdict.status == abci.ResponseVerifyVoteExtension.ACCEPT == 1
    assert run(app, "list_snapshots", abci.RequestListSnapshots()).snapshots == []


def test_check_tx_counts_the_mempool_and_refuses_each_kind(app: Application) -> None:
    assert check(app, buy(0)).code == 0
    assert check(app, buy(1)).code == 0  # the next nonce counts the mempool
    reused = check(app, buy(1))
    assert reused.code == CHECK_CODES["bad_nonce"] == 7
    assert "nonce 1" in reused.log and "expected 2" in reused.log
    assert check(app, b"\xa0garbage").code == CHECK_CODES["malformed"]
    tampered = bytearray(buy(2))
    tampered[-70] ^= 1  # a byte of the signature
    assert check(app, bytes(tampered)).code in (CHECK_CODES["bad_signature"],
                                                CHECK_CODES["malformed"])
    other_chain = sign_tx(ALICE_KEY, "other-chain", 2, Withdraw(ALICE, 0, 1))
    refused = check(app, other_chain)
    assert refused.code == CHECK_CODES["wrong_chain"] and "other-chain" in refused.log
    forged = sign_tx(ALICE_KEY, CHAIN, 2, Deposit(ALICE, 0, 10))  # only the bridge deposits
    assert check(app, forged).code == CHECK_CODES["not_authorized"] == 6
    for response in (reused, refused):
        assert "\n" not in response.log and response.codespace == "coreledger"
    # Commit resets the count to the committed nonces; rechecks then count again.
    run(app, "commit", abci.RequestCommit())
    assert check(app, buy(0)).code == 0


def test_proposals(app: Application) -> None:
    txs = [buy(0), sell(0)]
    prepared = run(app, "prepare_proposal", abci.RequestPrepareProposal(
        txs=[*txs, b"junk"], max_tx_bytes=len(txs[0]) + len(txs[1])))
    assert list(prepared.txs) == txs
    small = run(app, "prepare_proposal", abci.RequestPrepareProposal(
        txs=txs, max_tx_bytes=len(txs[0])))
    assert list(small.txs) == txs[:1]
    accept = run(app, "process_proposal", abci.RequestProcessProposal(txs=txs, height=1))
    assert accept.status == abci.ResponseProcessProposal.ACCEPT == 1
    for bad in (b"junk", sign_tx(ALICE_KEY, "other-chain", 0, Withdraw(ALICE, 0, 1))):
        reject = run(app, "process_proposal",
                     abci.RequestProcessProposal(txs=[*txs, bad], height=1))
        assert reject.status == abci.ResponseProcessProposal.REJECT == 2
    # a bad nonce or an unauthorized signer is a receipt, not a reason to reject
    late = run(app, "process_proposal", abci.RequestProcessProposal(txs=[buy(7)], height=1))
    assert late.status == abci.ResponseProcessProposal.ACCEPT


# 100 (the node's default) and 4: the reopened store replays block 1 from its log, with the
# signers stored with it; 1: it restores block 1's checkpoint.
@pytest.mark.parametrize("app", [1, 4, 100], indirect=True)
def test_finalize_commit_query(app: Application, store_dir: Path) -> None:
    deposit = sign_tx(BRIDGE_KEY, CHAIN, 0, Deposit(BOB, 0, 7))
    forged = sign_tx(BOB_KEY, CHAIN, 0, Deposit(BOB, 0, 7))
    response = finalize(app, 1, [buy(0), sell(0, size=3), buy(0), deposit, forged, b"junk"])
    results = list(response.tx_results)
    assert len(results) == 6
    assert [r.code for r in results] == [0, 0, 7, 0, 6, 8]
    assert {r.codespace for r in results} == {"coreledger"}
    assert orjson.loads(results[0].data) == {
        "ok": True, "order_id": 1, "fills": [], "resting": 5, "canceled": []}
    assert orjson.loads(results[1].data)["fills"] == [{
        "maker_order_id": 1, "taker_order_id": 2, "maker": ALICE, "taker": BOB,
        "price": 10, "size": 3}]
    fill = results[1].events[0]
    assert fill.type == "fill"
    assert {a.key: a.value for a in fill.attributes}["size"] == "3"
    assert orjson.loads(results[2].data) == {"ok": False, "error": "bad_nonce"}
    assert orjson.loads(results[4].data) == {"ok": False, "error": "not_authorized"}
    # Before Commit: Info still reports height 0 (nothing committed).
    assert run(app, "info", abci.RequestInfo()).last_block_height == 0
    # A repeat of the same FinalizeBlock gives the same answer.
    assert finalize(app, 1, [buy(0), sell(0, size=3), buy(0), deposit, forged, b"junk"]) \
        == response
    run(app, "commit", abci.RequestCommit())
    info = run(app, "info", abci.RequestInfo())
    assert info.last_block_height == 1
    assert info.last_block_app_hash == response.app_hash == app.executor.state_root

    state = query(app, "/state", {"asset": 1})
    assert state.code == 0 and state.height == 1
    body = orjson.loads(state.value)
    assert body["books"] == {"1": {"bids": [[10, 2, 1]], "asks": []}}
    assert body["state_root"] == response.app_hash.hex()
    nonce = orjson.loads(query(app, "/nonce", {"user": ALICE.upper().replace("0X", "0x")}).value)
    assert nonce == {"user": ALICE, "nonce": 1}  # the refused reuse did not count
    history = orjson.loads(query(app, "/history", {"order": 1}).value)
    assert history["orders"][0]["filled"] == 3
    proof = orjson.loads(query(app, "/prove", {"user": BOB, "asset": 1}).value)
    assert proof["root"] == response.app_hash.hex() and proof["included"]
    assert proof["value"] == {"available": 47, "locked": 0}

    # The store holds the block once committed: a reopened node reports it.
    app.executor.close()
    with Executor.open(str(store_dir)) as reopened:
        assert reopened.height == 1
        assert reopened.state_root == response.app_hash


@pytest.mark.parametrize(("path", "data", "needle"), [
    ("/nope", {}, "unknown path"),
    ("/state", b"{bad", "bad JSON"),
    ("/state", b"[1]", "object"),
    ("/state", {"asset": "1"}, "asset"),
    ("/state", {"color": 1}, "unknown field"),
    ("/nonce", {"user": "0x12"}, "user"),
    ("/history", {}, "either"),
    ("/prove", {"order": 99}, "not in this node's history"),
])
def test_bad_queries_are_one_line_errors(
    app: Application, path: str, data: object, needle: str
) -> None:
    response = query(app, path, data)
    assert response.code != 0 and needle in response.log and "\n" not in response.log


def test_query_waits_for_commit(app: Application) -> None:
    """Between FinalizeBlock and Commit a query answers for the committed state."""

    async def scenario() -> tuple[int, int]:
        await app.handle("finalize_block", _finalize_request(1, [buy(0)]))
        pending = asyncio.ensure_future(app.handle(
            "query", abci.RequestQuery(path="/nonce", data=json.dumps({"user": ALICE}).encode())))
        await asyncio.sleep(0.01)
        assert not pending.done()
        await app.handle("commit", abci.RequestCommit())
        answer = await pending
        assert isinstance(answer, abci.ResponseQuery)
        return answer.height, orjson.loads(answer.value)["nonce"]

    assert asyncio.run(scenario()) == (1, 1)


def _finalize_request(height: int, txs: list[bytes]) -> abci.RequestFinalizeBlock:
    request = abci.RequestFinalizeBlock(height=height, txs=txs, hash=bytes([height]) * 32)
    request.time.seconds = T0 + height
    return request


def test_replay_after_a_crash_before_commit(store_dir: Path) -> None:
    """A block finalized but not committed is gone after a restart; CometBFT sends it
    again and gets the same answer."""
    executor = Executor.open(str(store_dir), checkpoint_interval=1)
    first = Application(Ledger(executor), chain_id=CHAIN)
    run(first, "init_chain", abci.RequestInitChain(
        chain_id=CHAIN, app_state_bytes=json.dumps(GENESIS).encode()))
    finalize(first, 1, [buy(0)])
    run(first, "commit", abci.RequestCommit())
    answer = finalize(first, 2, [sell(0), buy(1)])
    executor.close()  # the crash: no Commit for block 2
    with Executor.open(str(store_dir)) as executor:
        second = Application(Ledger(executor), chain_id=CHAIN)
        assert run(second, "info", abci.RequestInfo()).last_block_height == 1
        assert finalize(second, 2, [sell(0), buy(1)]) == answer


# -- the socket server ------------------------------------------------------------------------


async def _talk(port: int, data: bytes, expect: int) -> list[abci.Response]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    decoder = FrameDecoder()
    frames: list[bytes] = []
    while len(frames) < expect:
        chunk = await asyncio.wait_for(reader.read(65536), 5)
        if not chunk:
            break
        frames.extend(decoder.feed(chunk))
    writer.close()
    responses = []
    for frame in frames:
        response = abci.Response()
        response.ParseFromString(frame)
        responses.append(response)
    return responses


def _frame(request: abci.Request) -> bytes:
    return encode_frame(request.SerializeToString())


def test_server_answers_in_order_and_survives_bad_input(
    app: Application, caplog: pytest.LogCaptureFixture
) -> None:
    echo = _frame(abci.Request(echo=abci.RequestEcho(message="a")))
    info = _frame(abci.Request(info=abci.RequestInfo()))
    flush = _frame(abci.Request(flush=abci.RequestFlush()))

    async def scenario() -> None:
        server = AbciServer(parse_address("tcp://127.0.0.1:0"), app.handle)
        await server.start()
        serving = asyncio.ensure_future(server.serve())
        port = server.port
        # batched requests, answered in order, Flush answered
        got = await _talk(port, echo + info + flush, 3)
        assert [r.WhichOneof("value") for r in got] == ["echo", "info", "flush"]
        # an oversized length prefix closes that connection, nothing is answered
        assert await _talk(port, encode_uvarint(2**40), 1) == []
        # an endless prefix too
        assert await _talk(port, b"\xff" * 12, 1) == []
        # garbage that is no protobuf: an exception response, then closed
        bad = await _talk(port, encode_frame(b"\xff\xff\xff"), 2)
        assert [r.WhichOneof("value") for r in bad] == ["exception"]
        # a request of an unknown kind (field 99): an exception response, and go on
        unknown = encode_frame(b"\x9a\x06\x00")
        got = await _talk(port, unknown + echo + flush, 3)
        assert [r.WhichOneof("value") for r in got] == ["exception", "echo", "flush"]
        # a request the application refuses (FinalizeBlock out of sequence): exception
        wrong = _frame(abci.Request(finalize_block=_finalize_request(5, [])))
        got = await _talk(port, wrong + info + flush, 3)
        assert got[0].WhichOneof("value") == "exception"
        assert got[1].info.last_block_height == 0
        server.stop()
        await serving

    asyncio.run(scenario())
    warnings = [r.getMessage() for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert len(warnings) == 5 and all("\n" not in w for w in warnings)
    # the store survived: still a working application
    assert finalize(app, 1, [buy(0)]).tx_results[0].code == 0


def _accepts(path: Path) -> bool:
    import socket

    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            return False
    return True


def test_node_process_serves_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    """The real `coreledger node` on a unix socket: Info answered, garbage survived,
    SIGTERM -> exit status 0 with the store intact."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    sock = tmp_path / "abci.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "block_exec.cli", "node", "--db", str(tmp_path / "db"),
         "--abci", f"unix://{sock}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        # The socket file appears at bind, before listen: wait for a connection that is
        # accepted (refused in between, which a loaded machine made visible once).
        while not _accepts(sock):
            assert proc.poll() is None and time.monotonic() < deadline, "node did not start"
            time.sleep(0.05)

        def exchange(data: bytes) -> list[abci.Response]:
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(str(sock))
                client.sendall(data)
                client.shutdown(socket.SHUT_WR)
                received = b""
                while chunk := client.recv(65536):
                    received += chunk
            out = []
            for frame in FrameDecoder().feed(received):
                response = abci.Response()
                response.ParseFromString(frame)
                out.append(response)
            return out

        assert exchange(b"\xff" * 16) == []  # garbage: that connection is closed
        got = exchange(_frame(abci.Request(info=abci.RequestInfo()))
                       + _frame(abci.Request(flush=abci.RequestFlush())))
        assert [r.WhichOneof("value") for r in got] == ["info", "flush"]
        assert got[0].info.last_block_height == 0
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()
    assert b"bad frame" in err and b"Traceback" not in err
    assert b"heap frozen: " in err  # the opened store's objects, out of the collector's way
    # the store it made checkpoints every 100 blocks, as `run` does
    with Executor.open(str(tmp_path / "db"), read_only=True) as made:
        assert made.checkpoint_interval == 100


@pytest.mark.parametrize(("args", "needle"), [
    (["--snapshot-interval", "50"], "must be a multiple of the store's checkpoint interval 100"),
    (["--checkpoint-interval", "30"], "--snapshot-interval 100: snapshots are taken of"),
])
def test_node_refuses_a_snapshot_interval_off_the_checkpoints(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "block_exec.cli", "node", "--db", str(tmp_path / "db"),
         "--abci", f"unix://{tmp_path / 'abci.sock'}", *args],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], done.stderr
    if "--checkpoint-interval" in args:
        assert not (tmp_path / "db").exists()  # refused before a store was made with it


def test_readme_network_section_is_five_commands_the_cli_accepts() -> None:
    import re
    import shlex

    from block_exec.cli import build_parser

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Run a local 4-validator network", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^\$ (.*)$", section, re.M)
    assert 1 < len(commands) <= 5
    assert commands[0] == "scripts/build_cometbft.sh"
    for command in commands[1:]:
        words = shlex.split(command)
        assert words[0] == "coreledger"
        build_parser().parse_args(words[1:])  # raises on a usage error


def test_readme_state_sync_section_is_commands_the_cli_accepts() -> None:
    """The commands of README's "Join a node by state sync" (the network test runs the
    same `testnet join` and `testnet start --node`)."""
    import re
    import shlex

    from block_exec.cli import build_parser

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Join a node by state sync", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^\$ (.*)$", section, re.M)
    assert [shlex.split(c)[:3] for c in commands] == [
        ["coreledger", "testnet", "status"], ["coreledger", "testnet", "join"],
        ["coreledger", "testnet", "start"]]
    for command in commands:
        build_parser().parse_args(shlex.split(command)[1:])  # raises on a usage error
    joined = re.search(r'^\{"node":4,.*\}$', section, re.M)
    assert joined is not None
    assert set(json.loads(joined.group(0).replace("…", "x"))) == {
        "node", "rpc", "node_id", "trust_height", "trust_hash"}  # as `join` prints


def test_state_sync_through_the_four_snapshot_calls(tmp_path: Path) -> None:
    """A node with committed blocks serves its snapshot; a fresh node restores it through
    OfferSnapshot/ApplySnapshotChunk and then answers Info and /state as the first does;
    a corrupted chunk is refused (not accepted) and the snapshot still restores."""
    from block_exec.statesync import StateSync, Trusted

    def node(directory: Path) -> Application:
        def reopen(*, trusted: Trusted | None = None) -> Executor:
            return Executor.open(str(directory), checkpoint_interval=1, trusted=trusted)

        executor = reopen()
        return Application(Ledger(executor), chain_id=CHAIN,
                           sync=StateSync(executor, reopen, interval=1, chunk_limit=1024,
                                          chain_id=CHAIN))

    server = node(tmp_path / "server")
    extra = [{"user": "0x" + f"{n:040x}", "asset": 2, "amount": n + 1} for n in range(1, 60)]
    genesis = {**GENESIS, "balances": GENESIS["balances"] + extra}
    run(server, "init_chain", abci.RequestInitChain(
        chain_id=CHAIN, app_state_bytes=json.dumps(genesis).encode()))
    finalize(server, 1, [buy(0), sell(0, size=2)])
    run(server, "commit", abci.RequestCommit())
    finalize(server, 2, [buy(1, price=9)])
    run(server, "commit", abci.RequestCommit())
    assert server.sync is not None
    while server.sync.work():
        pass
    listed = run(server, "list_snapshots", abci.RequestListSnapshots()).snapshots
    snapshot = max(listed, key=lambda s: s.height)
    assert snapshot.height == 2 and snapshot.chunks >= 2
    info = run(server, "info", abci.RequestInfo())

    joiner = node(tmp_path / "joiner")
    offer = run(joiner, "offer_snapshot", abci.RequestOfferSnapshot(
        snapshot=snapshot, app_hash=info.last_block_app_hash))
    assert offer.result == abci.ResponseOfferSnapshot.ACCEPT
    for index in range(snapshot.chunks):
        chunk = run(server, "load_snapshot_chunk", abci.RequestLoadSnapshotChunk(
            height=snapshot.height, format=snapshot.format, chunk=index)).chunk
        if index == 0:
            bad = bytearray(chunk)
            bad[len(bad) // 2] ^= 1
            refused = run(joiner, "apply_snapshot_chunk", abci.RequestApplySnapshotChunk(
                index=0, chunk=bytes(bad), sender="mallory"))
            assert refused.result != abci.ResponseApplySnapshotChunk.ACCEPT
        applied = run(joiner, "apply_snapshot_chunk", abci.RequestApplySnapshotChunk(
            index=index, chunk=chunk, sender="honest"))
        assert applied.result == abci.ResponseApplySnapshotChunk.ACCEPT
    joined = run(joiner, "info", abci.RequestInfo())
    assert (joined.last_block_height, joined.last_block_app_hash) == (
        2, info.last_block_app_hash)
    assert query(joiner, "/state", {}).value == query(server, "/state", {}).value
    # and it goes on: the next block gives both the same app hash
    assert finalize(joiner, 3, [sell(1)]).app_hash == finalize(server, 3, [sell(1)]).app_hash
    for app in (server, joiner):
        assert app.sync is not None
        app.sync.close()
        app.sync.executor.close()
