"""Argument checks of the core's public operations (spec/state.md section 1).

A public operation checks its arguments once, with a combined test that costs a few
comparisons when they are fine; only a failing test calls the helpers here, which name the
bad argument and raise `InvalidArgument`. A number must be an `int` itself (not a bool, an
IntEnum or a float), a side a `Side`, a tif a `Tif`, a user a canonical address: the core
refuses any other spelling rather than normalising it, so one user is one string and one
account.
"""

from __future__ import annotations

from typing import NoReturn

from state_machine.types import MAX_AMOUNT, MAX_ASSET, InvalidArgument, Side, Tif

_HEX_DIGITS = frozenset("0123456789abcdef")
# Addresses already checked canonical; bounded, and only a speed-up: whether an address is
# in it never changes a result.
_KNOWN_USERS: dict[str, None] = {}
_KNOWN_USERS_MAX = 1 << 16


def check_user(user: object) -> None:
    """Raise InvalidArgument unless `user` is a canonical address: "0x" + 40 lower-case hex.

    O(1) for an address seen before (a bounded cache), O(42) otherwise.
    """
    if type(user) is str and user in _KNOWN_USERS:
        return
    if not (
        type(user) is str
        and len(user) == 42
        and user.startswith("0x")
        and _HEX_DIGITS.issuperset(user[2:])
    ):
        raise InvalidArgument(
            f"user {user!r} is not a canonical address: want 0x + 40 lower-case hex digits"
            " (see normalize_address)"
        )
    if len(_KNOWN_USERS) >= _KNOWN_USERS_MAX:
        _KNOWN_USERS.clear()
    _KNOWN_USERS[user] = None


def check_number(name: str, value: object, low: int, high: int, domain: str) -> None:
    if type(value) is not int:
        raise InvalidArgument(f"{name} {value!r} is a {type(value).__name__}, not an int")
    if not low <= value <= high:
        raise InvalidArgument(f"{name} {value} out of range {domain}")


def check_amount(name: str, value: object) -> None:
    check_number(name, value, 1, MAX_AMOUNT, "[1, 2^64-1]")


def check_asset(value: object) -> None:
    check_number("asset", value, 0, MAX_ASSET, "[0, 2^32-1]")


def check_book_asset(value: object) -> None:
    check_number("asset", value, 1, MAX_ASSET, "[1, 2^32-1] (a book asset)")


def check_side(side: object) -> None:
    if type(side) is not Side:
        raise InvalidArgument(f"side {side!r} is not a Side")


def check_tif(tif: object) -> None:
    if type(tif) is not Tif:
        raise InvalidArgument(f"tif {tif!r} is not a Tif")


NO_PRICE = object()  # a market order's price argument to `refuse_order`


def refuse_order(
    user: object, asset: object, side: object, price: object, size: object, tif: object
) -> NoReturn:
    """Name the first bad argument of an order (the fast combined check failed)."""
    check_user(user)
    check_book_asset(asset)
    check_side(side)
    if price is not NO_PRICE:
        check_amount("price", price)
    check_amount("size", size)
    check_tif(tif)
    raise AssertionError("unreachable: the fast check failed on a valid order")


def check_cancel(user: object, asset: object, order_id: object) -> None:
    """Raise InvalidArgument naming the first of a cancel's arguments outside its domain."""
    check_user(user)
    check_book_asset(asset)
    check_amount("order_id", order_id)
