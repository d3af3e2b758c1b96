"""spec/state.md section 1: a public operation called with a value outside its domain raises
`InvalidArgument` and changes nothing.

Hypothesis replaces one argument of a valid call by a bad value: a number that is not an
`int` (a float, a bool, an IntEnum, a string), an out-of-range integer, a side or tif that
is not the enum member, a user spelled in any non-canonical way (upper or mixed case, `0X`,
wrong length, not hex, not a string). The machine holds resting orders and funded users
(so a check that only happens to fail later, on a rejection path, would not be enough) and
must be left exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from state_machine import (
    MAX_AMOUNT,
    MAX_ASSET,
    QUOTE_ASSET,
    InvalidArgument,
    Side,
    Tif,
    state_entries,
)
from tests.named_core import NamedCore

A = "0x" + "ab" * 20
B = "0x" + "cd" * 20

floats = st.floats(allow_nan=True, allow_infinity=True)
not_ints = st.one_of(
    floats,
    st.booleans(),
    st.sampled_from([Side.BUY, Side.SELL, Tif.GTC, Tif.IOC, Tif.ALO]),
    st.integers(1, 10).map(str),
    st.none(),
    st.just(b"\x01"),
)


def out_of_range(low: int, high: int) -> st.SearchStrategy[int]:
    return st.one_of(st.integers(max_value=low - 1), st.integers(min_value=high + 1))


amounts_bad = st.one_of(not_ints, out_of_range(1, MAX_AMOUNT))
assets_bad = st.one_of(not_ints, out_of_range(0, MAX_ASSET))
book_assets_bad = st.one_of(not_ints, out_of_range(1, MAX_ASSET))
sides_bad = st.one_of(
    st.integers(0, 1), st.sampled_from(["buy", "sell", Tif.GTC, Tif.IOC, None, 0.0, False])
)
tifs_bad = st.one_of(
    st.integers(0, 2), st.sampled_from(["gtc", "ioc", "alo", Side.BUY, Side.SELL, None, True])
)


@st.composite
def users_bad(draw: st.DrawFn) -> object:
    """A non-canonical spelling of a funded user, or something that is no address at all."""
    kind = draw(st.sampled_from(["case", "prefix", "length", "digit", "type"]))
    if kind == "case":  # one or more digits a-f in upper case: the same user, respelled
        digits = list(A[2:])
        upper = draw(st.sets(st.sampled_from(range(40)), min_size=1))
        return "0x" + "".join(d.upper() if i in upper else d for i, d in enumerate(digits))
    if kind == "prefix":
        return draw(st.sampled_from(["0X", "1x", "xx", "  "])) + A[2:]
    if kind == "length":
        return "0x" + draw(st.text("0123456789abcdef", max_size=60).filter(lambda t: len(t) != 40))
    if kind == "digit":
        position = draw(st.integers(0, 39))
        bad = draw(st.sampled_from("gxz G-+_ "))
        return A[: 2 + position] + bad + A[3 + position :]
    return draw(st.sampled_from([None, 0, b"\xab" * 20, ["0x"], bytes.fromhex(A[2:])]))


def busy_machine() -> NamedCore:
    """Two funded users and resting orders on book 1 on both sides."""
    m = NamedCore()
    for user in (A, B):
        assert m.deposit(user, QUOTE_ASSET, 10**9).ok
        assert m.deposit(user, 1, 10**6).ok
    assert m.limit(A, 1, Side.BUY, 90, 10, Tif.GTC).resting == 10  # order 1
    assert m.limit(B, 1, Side.SELL, 110, 10, Tif.GTC).resting == 10  # order 2
    m.drain_changes()
    return m


# One valid call per operation, as (name, keyword arguments); each test breaks one of them.
VALID: dict[str, dict[str, Any]] = {
    "deposit": {"user": A, "asset": 1, "amount": 5},
    "withdraw": {"user": A, "asset": QUOTE_ASSET, "amount": 5},
    "limit": {"user": A, "asset": 1, "side": Side.SELL, "price": 100, "size": 5, "tif": Tif.GTC},
    "market": {"user": A, "asset": 1, "side": Side.BUY, "size": 5},
    "cancel": {"user": A, "asset": 1, "order_id": 1},
}
BAD: dict[tuple[str, str], st.SearchStrategy[Any]] = {
    ("deposit", "asset"): assets_bad,
    ("deposit", "amount"): amounts_bad,
    ("withdraw", "asset"): assets_bad,
    ("withdraw", "amount"): amounts_bad,
    ("limit", "asset"): book_assets_bad,
    ("limit", "side"): sides_bad,
    ("limit", "price"): amounts_bad,
    ("limit", "size"): amounts_bad,
    ("limit", "tif"): tifs_bad,
    ("market", "asset"): book_assets_bad,
    ("market", "side"): sides_bad,
    ("market", "size"): amounts_bad,
    ("cancel", "asset"): book_assets_bad,
    ("cancel", "order_id"): amounts_bad,
}
BAD.update({(op, "user"): users_bad() for op in VALID})


def assert_refused_without_effect(m: NamedCore, call: Callable[[], object]) -> None:
    before = state_entries(m)
    next_id = m.next_order_id
    with pytest.raises(InvalidArgument):
        call()
    assert state_entries(m) == before
    assert m.next_order_id == next_id
    changes = m.drain_changes()
    assert changes.balances == [] and changes.orders == []
    m._check()


def test_the_valid_calls_are_accepted() -> None:
    """The calls the tests below break are fine as they stand (so a raise is the bad value's)."""
    for op, arguments in VALID.items():
        assert getattr(busy_machine(), op)(**arguments).ok, op


@pytest.mark.parametrize(("op", "name"), sorted(BAD))
@given(data=st.data())
def test_an_out_of_domain_argument_raises_and_changes_nothing(
    op: str, name: str, data: st.DataObject
) -> None:
    bad = data.draw(BAD[(op, name)], label=name)
    m = busy_machine()
    arguments = dict(VALID[op], **{name: bad})
    assert_refused_without_effect(m, lambda: getattr(m, op)(**arguments))


@given(spelling=users_bad())
def test_a_respelled_address_never_makes_a_second_account(spelling: object) -> None:
    m = busy_machine()
    for call in (
        lambda: m.deposit(spelling, QUOTE_ASSET, 1),  # type: ignore[arg-type]
        lambda: m.deposit(spelling, 7, 1),  # type: ignore[arg-type]
        lambda: m.limit(spelling, 1, Side.BUY, 1, 1, Tif.GTC),  # type: ignore[arg-type]
        lambda: m.cancel(spelling, 1, 1),  # type: ignore[arg-type]
        lambda: m.cancel(spelling, 1, 2),  # type: ignore[arg-type]
    ):
        assert_refused_without_effect(m, call)
    assert sorted({user for user, _ in m.balances.accounts}) == [A, B]


def test_a_float_amount_is_not_stored() -> None:
    """The case of the issue: `deposit(user, 1, 5.0)` stored a float in a balance."""
    m = NamedCore()
    with pytest.raises(InvalidArgument, match=r"amount 5\.0 is a float"):
        m.deposit(A, 1, 5.0)  # type: ignore[arg-type]
    assert m.balance(A, 1) == (0, 0)


def test_an_unknown_side_does_not_rest() -> None:
    """The case of the issue: `limit(side=7)` rested an order."""
    m = busy_machine()
    with pytest.raises(InvalidArgument, match="side 7"):
        m.limit(A, 1, 7, 100, 1, Tif.GTC)  # type: ignore[arg-type]
    assert sorted(m.orders) == [1, 2]
