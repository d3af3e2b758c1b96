"""The receipts JSON written from fixed text equals what the `json` module writes."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from block_exec.receipts_json import block_receipts_line, receipt_json, receipt_to_json_obj
from state_machine import ERROR_CODES, Fill, OpResult, Side

USER = "0x" + "12" * 20
ids = st.integers(1, 2**64 - 1)
fills = st.lists(
    st.builds(Fill, st.just(1), ids, ids, st.just(USER), st.just("0x" + "ab" * 20), ids, ids,
              st.sampled_from(Side)),
    max_size=3,
)
receipts = st.one_of(
    st.sampled_from([*ERROR_CODES, "bad_nonce"]).map(lambda code: OpResult(False, code)),
    st.just(OpResult(True)),  # a transfer
    st.tuples(  # a limit (resting set) or a market (resting None)
        ids, fills, st.one_of(st.none(), st.integers(0, 2**64 - 1)), st.lists(ids, max_size=3)
    ).map(lambda t: OpResult(True, None, t[0], t[1], t[2], t[3])),
    st.lists(ids, max_size=2).map(  # a cancel
        lambda canceled: OpResult(True, None, None, (), None, canceled)
    ),
)


def _reference(receipt: OpResult) -> str:
    return json.dumps(receipt_to_json_obj(receipt), separators=(",", ":"))


@given(receipts)
def test_receipt_json_is_the_json_modules_text(receipt: OpResult) -> None:
    assert receipt_json(receipt) == _reference(receipt)


@given(st.integers(1, 2**64 - 1), st.one_of(st.none(), st.binary(min_size=32, max_size=32)),
       st.lists(receipts, max_size=5))
def test_block_receipts_line_is_the_json_modules_text(
    height: int, root: bytes | None, items: list[OpResult]
) -> None:
    root_hex = None if root is None else root.hex()
    obj = {"height": height, "state_root": root_hex,
           "receipts": [receipt_to_json_obj(r) for r in items]}
    expected = json.dumps(obj, separators=(",", ":"))
    assert block_receipts_line(height, root_hex, items) == expected


def test_the_fixed_shapes_by_hand() -> None:
    assert receipt_json(OpResult(True, None, 5, (), 7, ())) == (
        '{"ok":true,"order_id":5,"fills":[],"resting":7,"canceled":[]}'
    )
    assert receipt_json(OpResult(True, None, None, (), None, [9])) == '{"ok":true,"canceled":[9]}'
    assert receipt_json(OpResult(False, "would_cross")) == '{"ok":false,"error":"would_cross"}'
    assert receipt_json(OpResult(True)) == '{"ok":true}'


def test_the_decoders_tx_builders_make_ordinary_equal_instances() -> None:
    import dataclasses

    import pytest

    from block_exec.types import (
        Cancel,
        Deposit,
        Limit,
        Market,
        Withdraw,
        new_cancel,
        new_deposit,
        new_limit,
        new_market,
        new_withdraw,
    )
    from state_machine import Tif

    built = [
        (new_limit(USER, 1, Side.SELL, 7, 9, Tif.IOC), Limit(USER, 1, Side.SELL, 7, 9, Tif.IOC)),
        (new_market(USER, 2, Side.BUY, 3), Market(USER, 2, Side.BUY, 3)),
        (new_cancel(USER, 1, 44), Cancel(USER, 1, 44)),
        (new_deposit(USER, 0, 5), Deposit(USER, 0, 5)),
        (new_withdraw(USER, 0, 5), Withdraw(USER, 0, 5)),
    ]
    for fast, reference in built:
        assert type(fast) is type(reference) and fast == reference
        assert hash(fast) == hash(reference) and repr(fast) == repr(reference)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(fast, "user", "x")  # noqa: B010 - what a caller might do
    deposit: object = new_deposit(USER, 0, 5)
    assert deposit != new_withdraw(USER, 0, 5)
