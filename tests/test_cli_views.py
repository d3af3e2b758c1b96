"""The JSON views of state entries (block_exec/views): names and values written by hand
from spec/state.md's key layout, and `diff` over every kind of entry, known or not."""

from __future__ import annotations

from block_exec.views.diff import natural_order, state_differences
from block_exec.views.entries import entry_name, entry_value
from merkle import NamespacedCommitment
from state_machine import CoreStateMachine

USER = bytes.fromhex("00" * 19 + "0a")
U = "0x" + USER.hex()


def test_entry_views_by_hand() -> None:
    balance = b"\x01" + USER + (7).to_bytes(4, "big")
    assert entry_name(balance) == f"balances/{U}/7"
    assert entry_value(balance, bytes([0x82, 0x05, 0x00])) == {"available": 5, "locked": 0}
    order = b"\x02" + (3).to_bytes(4, "big") + (12).to_bytes(8, "big")
    assert entry_name(order) == "books/3/orders/12"
    # [1 (sell), 40, 5, bstr(20)] in canonical CBOR: 84 01 18 28 05 54 <20 bytes>
    value = bytes([0x84, 0x01, 0x18, 0x28, 0x05, 0x54]) + USER
    assert entry_value(order, value) == {"user": U, "side": "sell", "price": 40, "size": 5}
    assert entry_name(b"\x00next_order_id") == "next_order_id"
    assert entry_value(b"\x00next_order_id", bytes([0x18, 0x64])) == 100
    assert entry_name(b"\x03" + USER) == f"nonces/{U}"
    assert entry_value(b"\x03" + USER, b"\x02") == 2
    assert entry_name(b"\x00bridge") == "bridge"
    assert entry_value(b"\x00bridge", b"\x54" + USER) == U
    assert entry_value(balance, None) is None


def test_unknown_kind_is_shown_generically() -> None:
    key = b"\x07\xab\xcd"
    assert entry_name(key) == "key/07abcd"
    assert entry_value(key, b"\x01\x02") == "0102"


def _commitment(entries: dict[bytes, bytes]) -> NamespacedCommitment:
    # The namespace is chosen here, not by state_machine: diff must not care.
    return NamespacedCommitment((key[:1], key, value) for key, value in entries.items())


def test_diff_lists_every_differing_entry_of_any_kind() -> None:
    same = {b"\x01" + USER + b"\x00\x00\x00\x00": bytes([0x82, 0x05, 0x00])}
    mine = {**same, b"\x00next_order_id": b"\x01", b"\x07\x01": b"\xaa",
            b"\x03" + USER: b"\x01"}
    theirs = {**same, b"\x00next_order_id": b"\x02", b"\x07\x02": b"\xbb"}
    empty = CoreStateMachine()
    got = state_differences(_commitment(mine), _commitment(theirs), empty, empty)
    assert got == [
        {"key": "key/0701", "db": "aa", "other": None},
        {"key": "key/0702", "db": None, "other": "bb"},
        {"key": "next_order_id", "db": 1, "other": 2},
        {"key": f"nonces/{U}", "db": 1, "other": None},
    ]
    assert state_differences(_commitment(mine), _commitment(mine), empty, empty) == []


def test_natural_order() -> None:
    names = ["books/10/bids/5", "books/2/bids/40", "books/2/bids/5", "balances/0xb/1"]
    assert sorted(names, key=natural_order) == [
        "balances/0xb/1", "books/2/bids/5", "books/2/bids/40", "books/10/bids/5"]
