"""Genesis of a network chain (spec/signed.md, "Genesis"): CometBFT's `app_state` JSON.

`{"bridge": ADDRESS, "balances": [{"user": U, "asset": A, "amount": N}, ...]}`, integers
as JSON numbers, `N` in [1, 2^64-1], at most one item per (user, asset). `parse_app_state`
checks all of it and names the first bad field in one line; `genesis_state` builds the
initial state (the bridge kept in the state, so it is committed and restored with it).
"""

from __future__ import annotations

from dataclasses import dataclass

from block_exec.blockobj import _keys_problem, _normalize_user, _show
from block_exec.decode import _parse_strict
from block_exec.errors import BlockDecodeError, BlockError
from state_machine import MAX_AMOUNT, MAX_ASSET, Address, CoreStateMachine

_TOP_KEYS = frozenset(("bridge", "balances"))
_ITEM_KEYS = frozenset(("user", "asset", "amount"))
_WHERE = "genesis app_state"


class GenesisError(BlockError):
    """An `app_state` that is not a valid genesis (one line naming the field)."""


@dataclass(frozen=True, slots=True)
class GenesisBalance:
    user: Address
    asset: int
    amount: int


@dataclass(frozen=True, slots=True)
class Genesis:
    bridge: Address  # the only signer whose deposits are authorized
    balances: tuple[GenesisBalance, ...]  # in the order given


def _fail(problem: str) -> GenesisError:
    return GenesisError(f"{_WHERE}: {problem}")


def _int(value: object, low: int, high: int, high_text: str, where: str) -> int:
    if type(value) is not int or not low <= value <= high:
        shown = value if type(value) is int else _show(value)
        raise _fail(f"{where}: expected an integer in [{low}, {high_text}], got {shown}")
    return value


def _user(value: object, where: str) -> Address:
    user = _normalize_user(value)
    if user is None:
        raise _fail(f'{where}: expected "0x" + 40 hex digits, got {_show(value)}')
    return user


def parse_app_state(data: bytes | str) -> Genesis:
    """Parse and check the `app_state` JSON; raise GenesisError naming the first bad field.

    Checked in this order: JSON (UTF-8, no duplicate key, no float), an object, its keys
    (missing, then unknown), `bridge`, then each balance in order: an object, its keys,
    `user`, `asset`, `amount`, and that its (user, asset) was not listed before.
    """
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _fail(f"bad JSON: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    else:
        text = data
    if not text.strip():
        raise _fail('empty (want {"bridge": ADDRESS, "balances": [...]})')
    try:
        obj = _parse_strict(text, _WHERE)
    except BlockDecodeError as exc:
        raise GenesisError(str(exc)) from None
    if type(obj) is not dict:
        raise _fail(f"expected an object, got {_show(obj)}")
    if obj.keys() != _TOP_KEYS:
        raise _fail(_keys_problem(obj, _TOP_KEYS, frozenset()))
    bridge = _user(obj["bridge"], 'field "bridge"')
    items = obj["balances"]
    if type(items) is not list:
        raise _fail(f'field "balances": expected an array, got {_show(items)}')
    balances: list[GenesisBalance] = []
    seen: dict[tuple[Address, int], int] = {}
    for index, item in enumerate(items):
        where = f"balances[{index}]"
        if type(item) is not dict:
            raise _fail(f"{where}: expected an object, got {_show(item)}")
        if item.keys() != _ITEM_KEYS:
            raise _fail(f"{where}: {_keys_problem(item, _ITEM_KEYS, frozenset())}")
        user = _user(item["user"], f'{where}: field "user"')
        asset = _int(item["asset"], 0, MAX_ASSET, "2^32-1", f'{where}: field "asset"')
        amount = _int(item["amount"], 1, MAX_AMOUNT, "2^64-1", f'{where}: field "amount"')
        first = seen.get((user, asset))
        if first is not None:
            raise _fail(f"{where}: user {user} asset {asset} already listed at balances[{first}]")
        seen[(user, asset)] = index
        balances.append(GenesisBalance(user, asset, amount))
    return Genesis(bridge, tuple(balances))


def genesis_balances_state(genesis: Genesis) -> CoreStateMachine:
    """A state holding the genesis balances (each credited as `available`)."""
    machine = CoreStateMachine()
    for item in genesis.balances:
        ok, *_ = machine.deposit(item.user, item.asset, item.amount)
        if not ok:  # pragma: no cover - 2^192 items of 2^64-1 would be needed
            raise _fail(f"supply of asset {item.asset} overflows")
    return machine
