"""The core's results are plain tuples in `OpResult`'s field order (spec/state.md section 8).

Other tests read results through `tests.named_core.NamedCore`, which names these same
tuples; here the core's own results are compared, as exact tuples, with values by hand.
"""

from __future__ import annotations

import json

from state_machine import (
    INSUFFICIENT_BALANCE,
    NOT_OWNER,
    UNKNOWN_ORDER,
    WOULD_CROSS,
    Cancellation,
    CancelReason,
    CoreStateMachine,
    Fill,
    OpResult,
    Result,
    Side,
    Tif,
)

A = "0x" + "aa" * 20
B = "0x" + "bb" * 20
BUY, SELL = Side.BUY, Side.SELL


def plain(result: Result) -> Result:
    """`result`, checked to be an exact 7-tuple (not a named tuple or other subclass)."""
    assert type(result) is tuple and len(result) == 7
    return result


def funded() -> CoreStateMachine:
    m = CoreStateMachine()
    for user in (A, B):
        assert plain(m.deposit(user, 0, 1000)) == (True, None, None, (), None, (), ())
        assert plain(m.deposit(user, 1, 100)) == (True, None, None, (), None, (), ())
    return m


def test_resting_insert_and_rejections() -> None:
    m = funded()
    assert plain(m.limit(A, 1, SELL, 10, 4, Tif.GTC)) == (True, None, 1, (), 4, (), ())
    assert plain(m.limit(B, 1, BUY, 10, 1, Tif.ALO)) == (False, WOULD_CROSS, None, (), None,
                                                         (), ())
    assert plain(m.limit(B, 1, BUY, 10, 10**6, Tif.GTC)) == (
        False, INSUFFICIENT_BALANCE, None, (), None, (), ()
    )
    assert plain(m.withdraw(A, 0, 1001))[:2] == (False, INSUFFICIENT_BALANCE)
    assert plain(m.withdraw(A, 0, 1)) == (True, None, None, (), None, (), ())


def test_taker_ioc_and_market_results() -> None:
    m = funded()
    m.limit(A, 1, SELL, 10, 4, Tif.GTC)  # order 1
    fill = (1, 1, 2, A, B, 10, 3, BUY)
    r = plain(m.limit(B, 1, BUY, 11, 3, Tif.GTC))
    assert (r[0], r[1], r[2], list(r[3]), r[4], list(r[5]), list(r[6])) == (
        True, None, 2, [fill], 0, [], []
    )
    assert type(r[3][0]) is Fill
    r = plain(m.limit(B, 1, BUY, 10, 2, Tif.IOC))  # order 3: 1 filled, 1 left
    assert list(r[6]) == [(3, B, 1, BUY, 10, 1, CancelReason.IOC)]
    assert (r[2], r[4], list(r[5])) == (3, 0, [])
    r = plain(m.market(B, 1, BUY, 5))  # order 4: nothing left to take
    assert (r[0], r[2], list(r[3]), r[4], list(r[5])) == (True, 4, [], None, [])
    assert list(r[6]) == [(4, B, 1, BUY, 0, 5, CancelReason.MARKET)]


def test_cancel_result_and_its_named_view() -> None:
    m = funded()
    m.limit(A, 1, BUY, 7, 3, Tif.GTC)  # order 1
    assert plain(m.cancel(B, 1, 1)) == (False, NOT_OWNER, None, (), None, (), ())
    assert plain(m.cancel(A, 2, 1)) == (False, UNKNOWN_ORDER, None, (), None, (), ())
    r = plain(m.cancel(A, 1, 1))
    assert (r[0], r[1], r[2], list(r[3]), r[4], list(r[5])) == (True, None, None, [], None, [1])
    assert list(r[6]) == [(1, A, 1, BUY, 7, 3, CancelReason.USER)]
    assert type(r[6][0]) is Cancellation
    named = OpResult._make(r)
    assert (named.ok, named.canceled, named.cancellations) == (True, r[5], r[6])
    assert named == r


def test_a_block_results_plain_tuples_and_its_named_receipts() -> None:
    from block_exec import Executor, decode_json_block

    txs = [{"op": "deposit", "user": A, "asset": 0, "amount": 5},
           {"op": "withdraw", "user": A, "asset": 0, "amount": 9}]
    line = json.dumps({"height": 1, "time": 1, "txs": txs})
    result = Executor().apply_block(decode_json_block(line))
    assert [plain(r) for r in result.results] == [
        (True, None, None, (), None, (), ()),
        (False, INSUFFICIENT_BALANCE, None, (), None, (), ()),
    ]
    assert [(type(r), r.ok, r.error) for r in result.receipts] == [
        (OpResult, True, None), (OpResult, False, INSUFFICIENT_BALANCE)
    ]
