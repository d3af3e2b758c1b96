"""Genesis app_state parsing (spec/signed.md, "Genesis"): good input, and one test per bad
field, each a one-line error naming it."""

from __future__ import annotations

import json

import pytest

from block_exec.genesis import (
    Genesis,
    GenesisBalance,
    GenesisError,
    genesis_balances_state,
    parse_app_state,
)

BRIDGE = "0x" + "b1" * 20
ALICE = "0x" + "a1" * 20


def test_a_good_app_state() -> None:
    text = json.dumps({
        "bridge": "0x" + "B1" * 20,
        "balances": [
            {"user": ALICE.upper().replace("0X", "0x"), "asset": 0, "amount": 2**64 - 1},
            {"user": ALICE, "asset": 2**32 - 1, "amount": 1},
            {"amount": 5, "asset": 0, "user": BRIDGE},
        ],
    })
    genesis = parse_app_state(text.encode())
    assert genesis == Genesis(BRIDGE, (
        GenesisBalance(ALICE, 0, 2**64 - 1),
        GenesisBalance(ALICE, 2**32 - 1, 1),
        GenesisBalance(BRIDGE, 0, 5),
    ))
    assert parse_app_state(text) == genesis
    machine = genesis_balances_state(genesis)
    assert machine.balance(ALICE, 0) == (2**64 - 1, 0)
    assert machine.balance(ALICE, 2**32 - 1) == (1, 0)
    assert machine.balance(BRIDGE, 0) == (5, 0)


def test_no_balances_is_fine() -> None:
    assert parse_app_state(f'{{"bridge":"{BRIDGE}","balances":[]}}') == Genesis(BRIDGE, ())


def _item(**changes: object) -> dict[str, object]:
    item: dict[str, object] = {"user": ALICE, "asset": 1, "amount": 10}
    item.update(changes)
    return item


def _state(**changes: object) -> str:
    obj: dict[str, object] = {"bridge": BRIDGE, "balances": [_item()]}
    obj.update(changes)
    return json.dumps(obj)


BAD: list[tuple[str, str | bytes, str]] = [
    ("empty", "", "empty"),
    ("blank", b"  \n", "empty"),
    ("not UTF-8", b'{"bridge":"\xff"}', "bad JSON: not UTF-8"),
    ("not JSON", "{bridge", "bad JSON"),
    ("duplicate key", f'{{"bridge":"{BRIDGE}","bridge":"{BRIDGE}","balances":[]}}',
     'duplicate key "bridge"'),
    ("float", _state(balances=[_item(amount=1.5)]), "bad JSON: number 1.5"),
    ("not an object", "[]", "expected an object, got an array"),
    ("missing bridge", json.dumps({"balances": []}), 'missing field "bridge"'),
    ("missing balances", json.dumps({"bridge": BRIDGE}), 'missing field "balances"'),
    ("unknown field", _state(chain="x"), 'unknown field "chain"'),
    ("bad bridge", _state(bridge="0x12"), 'field "bridge": expected "0x" + 40 hex digits'),
    ("bridge a number", _state(bridge=5), 'field "bridge": expected "0x" + 40 hex digits, got 5'),
    ("balances not an array", _state(balances={}), 'field "balances": expected an array'),
    ("item not an object", _state(balances=[3]), "balances[0]: expected an object, got 3"),
    ("item missing field", _state(balances=[{"user": ALICE, "asset": 1}]),
     'balances[0]: missing field "amount"'),
    ("item unknown field", _state(balances=[_item(locked=1)]),
     'balances[0]: unknown field "locked"'),
    ("bad user", _state(balances=[_item(), _item(user="alice")]),
     'balances[1]: field "user": expected "0x" + 40 hex digits, got "alice"'),
    ("asset negative", _state(balances=[_item(asset=-1)]),
     'balances[0]: field "asset": expected an integer in [0, 2^32-1], got -1'),
    ("asset too big", _state(balances=[_item(asset=2**32)]), 'field "asset"'),
    ("asset text", _state(balances=[_item(asset="1")]),
     'field "asset": expected an integer in [0, 2^32-1], got "1"'),
    ("asset boolean", _state(balances=[_item(asset=True)]), 'got true'),
    ("amount zero", _state(balances=[_item(amount=0)]),
     'balances[0]: field "amount": expected an integer in [1, 2^64-1], got 0'),
    ("amount too big", _state(balances=[_item(amount=2**64)]), 'field "amount"'),
    ("amount null", _state(balances=[_item(amount=None)]), "got null"),
    ("duplicate (user, asset)",
     _state(balances=[_item(), _item(asset=2), _item(user=ALICE.replace("a1", "A1"))]),
     f"balances[2]: user {ALICE} asset 1 already listed at balances[0]"),
]


@pytest.mark.parametrize(("name", "text", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_app_state_is_one_line_naming_the_field(name: str, text: str | bytes,
                                                    expected: str) -> None:
    with pytest.raises(GenesisError) as info:
        parse_app_state(text)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("genesis app_state: ")
    assert expected in message, message
