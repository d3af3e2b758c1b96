"""Nonces and the bridge as state (spec/state.md section 10, spec/signed.md), authorization
and nonce checks in the executor, and the pin that unsigned blocks are unchanged.

The pinned roots and receipts were computed on main before nonces existed (commit
cbf1e27), so they check that the new entry kinds change nothing for block files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from block_exec import Executor, block_from_obj, decode_json_block
from block_exec.errors import BlockSchemaError
from block_exec.genesis import Genesis, GenesisBalance, GenesisError
from block_exec.receipts_json import block_receipts_line, receipt_to_json_obj
from block_exec.signed import TxAuth
from block_exec.simulate import SimulatedMarket
from block_exec.types import Block, Cancel, Deposit, Limit, Tx, Withdraw
from state_machine import (
    CoreStateMachine,
    CorruptState,
    Side,
    changed_entries,
    describe_key,
    describe_namespace,
    machine_from_entries,
    namespace_of,
    state_entries,
)

ALICE = "0x" + "a1" * 20
BOB = "0x" + "b0" * 20
BRIDGE = "0x" + "b1" * 20
CHAIN = "coreledger-test"

# Block file of spec/vectors/blocks/09_self_trade (copied: the pin must not move with it).
SELF_TRADE_BLOCK = (
    '{"height":1,"time":1700000000001,"txs":['
    '{"op":"deposit","user":"0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","asset":0,"amount":1000},'
    '{"op":"deposit","user":"0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","asset":1,"amount":10},'
    '{"op":"deposit","user":"0xbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","asset":1,"amount":10},'
    '{"op":"limit","user":"0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","asset":1,"side":"sell",'
    '"price":10,"size":2},'
    '{"op":"limit","user":"0xbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","asset":1,"side":"sell",'
    '"price":10,"size":3},'
    '{"op":"limit","user":"0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","asset":1,"side":"sell",'
    '"price":11,"size":1},'
    '{"op":"limit","user":"0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","asset":1,"side":"buy",'
    '"price":11,"size":4},'
    '{"op":"market","user":"0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","asset":1,"side":"sell",'
    '"size":1}]}'
)


def test_unsigned_blocks_give_the_roots_and_receipts_of_before_nonces() -> None:
    executor = Executor()
    executor.apply_block(decode_json_block(SELF_TRADE_BLOCK))
    assert executor.state_root.hex() == (
        "9e0cdfca18d05d8b46697ed16739066a37a3a85e801c33acb3f334627236dcee"
    )
    executor = Executor()
    market = SimulatedMarket()
    lines = []
    for height in range(1, 201):
        block = block_from_obj(market.block(height, executor.state), "sim")
        lines.append(block_receipts_line(height, None, executor.apply_block(block).receipts))
    assert executor.state_root.hex() == (
        "5186d002753106252ab0948ff1d7018bdc3768b3694712cf3c023be2b19ccd55"
    )
    assert hashlib.sha256("\n".join(lines).encode()).hexdigest() == (
        "248467acdb83d8549a4a1d5b0a6cecc4d63515f7888a1406aa09939ca90119ad"
    )
    assert not any(key[0] == 3 for key, _ in state_entries(executor.state))


# -- entries -----------------------------------------------------------------------------

def test_nonce_and_bridge_entries_by_hand() -> None:
    machine = CoreStateMachine()
    machine.bridge = BRIDGE
    machine.nonces.use(ALICE)
    for _ in range(300):
        machine.nonces.use(BOB)
    entries = dict(state_entries(machine))
    assert entries[b"\x03" + b"\xa1" * 20] == b"\x01"
    assert entries[b"\x03" + b"\xb0" * 20] == b"\x19\x01\x2c"  # 300
    assert entries[b"\x00bridge"] == b"\x54" + b"\xb1" * 20  # 20-byte string
    assert namespace_of(b"\x03" + b"\xa1" * 20) == b"\x03"
    assert namespace_of(b"\x00bridge") == b"\x00"
    assert describe_key(b"\x03" + b"\xa1" * 20) == f"nonces/{ALICE}"
    assert describe_key(b"\x00bridge") == "globals/bridge"
    assert describe_namespace(b"\x03") == "nonces"
    restored = machine_from_entries(state_entries(machine))
    assert restored.bridge == BRIDGE
    assert restored.nonces.get(ALICE) == 1 and restored.nonces.get(BOB) == 300
    assert restored.nonces.get(BRIDGE) == 0
    restored.nonces._check()
    assert state_entries(restored) == state_entries(machine)


@pytest.mark.parametrize(("key", "value", "problem"), [
    (b"\x03" + b"\xa1" * 20, b"\x00", "nonce 0 out of range"),
    (b"\x03" + b"\xa1" * 20, cbor2.dumps(2**64 + 1), "out of range"),
    (b"\x03" + b"\xa1" * 20, cbor2.dumps("1"), "out of range"),
    (b"\x03" + b"\xa1" * 19, b"\x01", "unknown key"),
    (b"\x00bridge", cbor2.dumps(b"\x01" * 19), "want a 20-byte address"),
    (b"\x00bridge", cbor2.dumps(BRIDGE), "want a 20-byte address"),
])
def test_corrupt_nonce_and_bridge_entries_are_named(key: bytes, value: bytes,
                                                    problem: str) -> None:
    entries = sorted([*state_entries(CoreStateMachine()), (key, value)])
    with pytest.raises(CorruptState, match=problem):
        machine_from_entries(entries)


def _apply_changes(entries: dict[bytes, bytes], machine: CoreStateMachine) -> None:
    for key, value in changed_entries(machine, machine.drain_changes()):
        if value is None:
            entries.pop(key, None)
        else:
            entries[key] = value


@given(st.lists(st.tuples(st.sampled_from([ALICE, BOB, BRIDGE]), st.booleans()), max_size=30))
def test_changed_entries_track_nonces(steps: list[tuple[str, bool]]) -> None:
    machine = CoreStateMachine()
    entries = dict(state_entries(machine))
    expected: dict[str, int] = {}
    for user, drain in steps:
        assert machine.nonces.use(user) == expected.get(user, 0)
        expected[user] = expected.get(user, 0) + 1
        if drain:
            _apply_changes(entries, machine)
            assert sorted(entries.items()) == state_entries(machine)
    _apply_changes(entries, machine)
    assert sorted(entries.items()) == state_entries(machine)
    assert {u: machine.nonces.get(u) for u in expected} == expected


# -- the executor: authorization and nonces ---------------------------------------------------

def _genesis() -> Genesis:
    return Genesis(BRIDGE, (GenesisBalance(ALICE, 0, 1000), GenesisBalance(BOB, 1, 50)))


def _executor() -> Executor:
    executor = Executor()
    executor.init_chain(_genesis(), CHAIN)
    return executor


def _receipts(executor: Executor, txs: list[tuple[Tx, str, int]]) -> list[object]:
    block = Block(executor.height + 1, 1000 + executor.height, tuple(tx for tx, _, _ in txs))
    auth = [TxAuth(signer, nonce) for _, signer, nonce in txs]
    result = executor.apply_block(block, auth=auth)
    return [receipt_to_json_obj(r) for r in result.receipts]


def test_init_chain_gives_the_genesis_state_and_root() -> None:
    executor = _executor()
    assert executor.bridge == BRIDGE and executor.chain_id == CHAIN
    assert executor.state.balance(ALICE, 0) == (1000, 0)
    assert executor.state.balance(BOB, 1) == (50, 0)
    by_hand = CoreStateMachine()
    by_hand.deposit(ALICE, 0, 1000)
    by_hand.deposit(BOB, 1, 50)
    by_hand.bridge = BRIDGE
    entries = state_entries(by_hand)
    assert (b"\x00bridge", b"\x54" + b"\xb1" * 20) in entries
    root = executor.state_root
    assert root == Executor(machine_from_entries(entries)).state_root
    # Same genesis again (CometBFT after a restart at height 0): same root, no change.
    assert executor.init_chain(_genesis(), CHAIN) == root
    with pytest.raises(GenesisError, match="already holds chain"):
        executor.init_chain(_genesis(), "other")
    with pytest.raises(GenesisError, match="already holds chain"):
        executor.init_chain(Genesis(BRIDGE, ()), CHAIN)


def test_init_chain_refuses_a_used_state() -> None:
    executor = Executor()
    executor.apply_block(Block(1, 0, (Deposit(ALICE, 0, 1),)))
    with pytest.raises(GenesisError, match="not empty"):
        executor.init_chain(_genesis(), CHAIN)


def test_authorization_and_nonces() -> None:
    executor = _executor()
    receipts = _receipts(executor, [
        (Deposit(ALICE, 0, 5), ALICE, 0),          # only the bridge may deposit
        (Deposit(ALICE, 0, 5), BRIDGE, 0),         # the bridge deposits for anyone
        (Withdraw(ALICE, 0, 10), BOB, 0),          # Bob may not withdraw Alice's funds
        (Withdraw(ALICE, 0, 10), ALICE, 1),        # wrong nonce: Alice is at 0
        (Withdraw(ALICE, 0, 10), ALICE, 0),
        (Withdraw(ALICE, 0, 10**6), ALICE, 1),     # rejected, but uses nonce 1
        (Withdraw(ALICE, 0, 1), ALICE, 1),         # nonce 1 is used: bad_nonce
        (Limit(BOB, 1, Side.SELL, 10, 5), BOB, 0),
        (Cancel(BOB, 1, 1), ALICE, 2),             # not Alice's to cancel
        (Cancel(BOB, 1, 1), BOB, 1),
        (Deposit(BRIDGE, 0, 1), BRIDGE, 1),
    ])
    assert receipts == [
        {"ok": False, "error": "not_authorized"},
        {"ok": True},
        {"ok": False, "error": "not_authorized"},
        {"ok": False, "error": "bad_nonce"},
        {"ok": True},
        {"ok": False, "error": "insufficient_balance"},
        {"ok": False, "error": "bad_nonce"},
        {"ok": True, "order_id": 1, "fills": [], "resting": 5, "canceled": []},
        {"ok": False, "error": "not_authorized"},
        {"ok": True, "canceled": [1]},
        {"ok": True},
    ]
    assert executor.nonce(ALICE) == 2
    assert executor.nonce(BOB) == 2
    assert executor.nonce(BRIDGE) == 2
    assert executor.nonce("0x" + "00" * 20) == 0
    assert executor.state.balance(ALICE, 0) == (1000 + 5 - 10, 0)
    assert executor.state.next_order_id == 2
    assert dict(state_entries(executor.state))[b"\x03" + b"\xa1" * 20] == b"\x02"


def test_without_a_bridge_no_deposit_is_authorized() -> None:
    executor = Executor()
    assert _receipts(executor, [(Deposit(ALICE, 0, 5), ALICE, 0)]) == [
        {"ok": False, "error": "not_authorized"}
    ]
    assert executor.nonce(ALICE) == 0
    assert executor.state_root == Executor().state_root


def test_refused_txs_change_nothing() -> None:
    executor = _executor()
    before = state_entries(executor.state)
    _receipts(executor, [(Withdraw(ALICE, 0, 1), BOB, 0), (Withdraw(ALICE, 0, 1), ALICE, 7)])
    assert state_entries(executor.state) == before


@pytest.mark.parametrize(("auth", "problem"), [
    ([], "0 auth entries for 1 txs"),
    ([TxAuth(ALICE.upper(), 0)], 'auth "signer"'),
    ([TxAuth(ALICE, -1)], 'auth "nonce"'),
    ([TxAuth(ALICE, 2**64)], 'auth "nonce"'),
    ([(ALICE, 0)], "auth is not a TxAuth"),
])
def test_malformed_auth_refuses_the_block(auth: list[TxAuth], problem: str) -> None:
    executor = _executor()
    root = executor.state_root
    with pytest.raises(BlockSchemaError, match=problem):
        executor.apply_block(Block(1, 0, (Withdraw(ALICE, 0, 1),)), auth=auth)
    assert executor.height == 0 and executor.state_root == root


# -- persistence ------------------------------------------------------------------------------

def test_genesis_and_signed_blocks_survive_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "node")
    with Executor.open(path, checkpoint_interval=3) as executor:
        genesis_root = executor.init_chain(_genesis(), CHAIN)
    with Executor.open(path) as executor:  # no InitChain: the genesis is checkpoint 0
        assert executor.height == 0 and executor.chain_id == CHAIN
        assert executor.bridge == BRIDGE and executor.state_root == genesis_root
        assert executor.init_chain(_genesis(), CHAIN) == genesis_root  # CometBFT again
        for height in range(1, 6):  # checkpoint at 3; 4 and 5 are replayed on open
            _receipts(executor, [(Withdraw(ALICE, 0, 1), ALICE, height - 1),
                                 (Deposit(BOB, 0, 1), BRIDGE, height - 1)])
        root = executor.state_root
        entries = state_entries(executor.state)
    with Executor.open(path) as executor:
        assert executor.height == 5 and executor.state_root == root
        assert state_entries(executor.state) == entries
        assert executor.nonce(ALICE) == 5 and executor.nonce(BRIDGE) == 5
        # The replayed blocks 4 and 5 carried their auth: replayed unsigned, the bridge's
        # deposits would have been refused and Alice's nonce would be 3.


def test_a_network_chain_applies_no_unsigned_tx(tmp_path: Path) -> None:
    executor = _executor()
    with pytest.raises(BlockSchemaError, match="0 auth entries for 1 txs"):
        executor.apply_block(Block(1, 0, (Withdraw(ALICE, 0, 1),)))
    executor.apply_block(Block(1, 0, ()))  # an empty block needs no auth
    assert executor.height == 1


def test_a_block_file_store_rows_are_unchanged(tmp_path: Path) -> None:
    with Executor.open(str(tmp_path / "n")) as executor:
        executor.apply_block(Block(1, 0, (Deposit(ALICE, 0, 1),)))
        stored = executor.store.block(1) if executor.store else None
        assert stored is not None and stored.auth == b""
        assert executor.chain_id is None
