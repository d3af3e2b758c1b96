"""Malformed blocks: one per kind of Bad input in the contract. Each is refused with a
one-line message naming the problem, and the state does not change."""

from __future__ import annotations

import json

import cbor2
import pytest

from block_exec import (
    Block,
    BlockDecodeError,
    BlockError,
    BlockSchemaError,
    BlockSequenceError,
    Deposit,
    Executor,
    Limit,
    decode_cbor_block,
    decode_json_block,
    encode_block,
    iter_blocks,
)
from state_machine import Side, Tif, state_entries

A = "0x" + "a" * 40
B = "0x" + "b" * 40
T1 = 1_700_000_000_000


def _good_tx() -> dict[str, object]:
    return {"op": "limit", "user": A, "asset": 1, "side": "buy", "price": 10, "size": 2,
            "tif": "gtc"}


def _block2(*txs: object, **fields: object) -> str:
    block: dict[str, object] = {"height": 2, "time": T1 + 5, "txs": list(txs)}
    block.update(fields)
    return json.dumps(block)


def _tx(**changes: object) -> dict[str, object]:
    tx = _good_tx()
    for key, value in changes.items():
        if value is _DROP:
            del tx[key]
        else:
            tx[key] = value
    return tx


_DROP = object()
BIG = 2**64

# (name, JSON line of block 2, substring the message must contain)
JSON_CASES: list[tuple[str, str, str]] = [
    ("bad json", '{"height": 2, "time": 1,', "bad JSON"),
    ("not utf8", '{"height": 2, "time": 1, "txs": ["\udcff"]}', "bad JSON"),
    ("not an object", "[1, 2]", "expected an object, got an array"),
    ("duplicate block key", '{"height": 2, "height": 2, "time": 5, "txs": []}',
     'duplicate key "height"'),
    ("duplicate tx key", '{"height": 2, "time": 5, "txs": [{"op": "deposit", "user": "'
     + A + '", "asset": 0, "amount": 1, "amount": 2}]}', 'duplicate key "amount"'),
    ("duplicate escaped key", _block2(_tx()).replace('"size": 2', '"size": 2, "siz\\u0065": 2'),
     'duplicate key "size"'),
    ("float height", '{"height": 2.0, "time": 5, "txs": []}', "floats are not allowed"),
    ("float 1.0", _block2(_tx(price=1.0)), "floats are not allowed"),
    ("float 1e3", _block2(_tx()).replace('"price": 10', '"price": 1e3'),
     "floats are not allowed"),
    ("NaN", _block2(_tx()).replace('"price": 10', '"price": NaN'), "NaN is not allowed"),
    ("Infinity", _block2(_tx()).replace('"size": 2', '"size": Infinity'),
     "Infinity is not allowed"),
    ("-Infinity", _block2(_tx()).replace('"size": 2', '"size": -Infinity'),
     "-Infinity is not allowed"),
    ("bool for number", _block2(_tx(size=True)), 'field "size": expected an integer'),
    ("string for number", _block2(_tx(price="10")), 'field "price": expected an integer'),
    ("null for number", _block2(_tx(price=None)), "got null"),
    ("string height", _block2(height="2"), 'field "height"'),
    ("bool time", _block2(time=False), 'field "time"'),
    ("zero size", _block2(_tx(size=0)),
     'tx 0: field "size": expected an integer in [1, 2^64-1], got 0'),
    ("negative price", _block2(_tx(price=-5)), 'field "price"'),
    ("price 2^64", _block2(_tx(price=BIG)), 'field "price"'),
    ("zero amount", _block2({"op": "deposit", "user": A, "asset": 0, "amount": 0}),
     'field "amount"'),
    ("negative amount", _block2({"op": "withdraw", "user": A, "asset": 0, "amount": -1}),
     'field "amount"'),
    ("order id 0", _block2({"op": "cancel", "user": A, "asset": 1, "order_id": 0}),
     'field "order_id"'),
    ("order id 2^64", _block2({"op": "cancel", "user": A, "asset": 1, "order_id": BIG}),
     'field "order_id"'),
    ("asset 2^32", _block2({"op": "deposit", "user": A, "asset": 2**32, "amount": 1}),
     'field "asset"'),
    ("asset -1", _block2({"op": "deposit", "user": A, "asset": -1, "amount": 1}),
     'field "asset"'),
    ("asset 0 limit", _block2(_tx(asset=0)), "asset 0 is the quote asset"),
    ("asset 0 market", _block2({"op": "market", "user": A, "asset": 0, "side": "buy",
                                "size": 1}), "asset 0 is the quote asset"),
    ("asset 0 cancel", _block2({"op": "cancel", "user": A, "asset": 0, "order_id": 1}),
     "asset 0 is the quote asset"),
    ("address short", _block2(_tx(user="0x1234")), 'field "user"'),
    ("address no 0x", _block2(_tx(user="a" * 42)), 'field "user"'),
    ("address not hex", _block2(_tx(user="0x" + "g" * 40)), 'field "user"'),
    ("address number", _block2(_tx(user=5)), 'field "user"'),
    ("unknown op", _block2(_tx(op="swap")), 'unknown op "swap"'),
    ("op not text", _block2(_tx(op=["limit"])), "unknown op an array"),
    ("missing op", _block2(_tx(op=_DROP)), 'missing field "op"'),
    ("missing field", _block2(_tx(price=_DROP)), 'missing field "price"'),
    ("unknown tx field", _block2(_tx(memo="hi")), 'unknown field "memo"'),
    ("missing block field", json.dumps({"height": 2, "txs": []}), 'missing field "time"'),
    ("unknown block field", _block2(extra=1), 'unknown field "extra"'),
    ("unknown side", _block2(_tx(side="bid")), 'field "side"'),
    ("side unhashable", _block2(_tx(side=["buy"])), 'field "side"'),
    ("unknown tif", _block2(_tx(tif="fok")), 'field "tif"'),
    ("tif null", _block2(_tx(tif=None)), 'field "tif"'),
    ("txs not array", _block2(txs={}), 'field "txs": expected an array'),
    ("tx not object", _block2(5), "tx 0: expected an object"),
    ("second tx bad", _block2(_good_tx(), _tx(size=0)), "tx 1:"),
    ("height zero", _block2(height=0), 'field "height"'),
]

SEQUENCE_CASES: list[tuple[str, str, str]] = [
    ("height not next", _block2(height=3), "height is not the next one (want 2)"),
    ("height repeated", _block2(height=1), "height is not the next one (want 2)"),
    ("time backwards", _block2(time=T1 - 1), "time goes backwards"),
]


def _executor() -> Executor:
    ex = Executor()
    good = decode_json_block(json.dumps({"height": 1, "time": T1, "txs": [
        {"op": "deposit", "user": A, "asset": 0, "amount": 1000},
        {"op": "deposit", "user": B, "asset": 1, "amount": 10},
        {"op": "limit", "user": A, "asset": 1, "side": "buy", "price": 3, "size": 4},
        {"op": "limit", "user": B, "asset": 1, "side": "sell", "price": 9, "size": 1},
    ]}))
    ex.apply_block(good)
    return ex


def _refuse(ex: Executor, line: str | bytes) -> str:
    before = state_entries(ex.state)
    with pytest.raises(BlockError) as info:
        ex.apply_block(decode_json_block(line, "block at line 2"))
    assert state_entries(ex.state) == before
    assert ex.height == 1
    message = str(info.value)
    assert "\n" not in message and message
    return message


@pytest.mark.parametrize(("name", "line", "want"), JSON_CASES, ids=[c[0] for c in JSON_CASES])
def test_json_schema_errors(name: str, line: str, want: str) -> None:
    ex = _executor()
    data: str | bytes = line
    if name == "not utf8":
        data = line.encode("utf-8", "surrogateescape")
    message = _refuse(ex, data)
    assert want in message
    assert message.startswith("block at line 2")


@pytest.mark.parametrize(
    ("name", "line", "want"), SEQUENCE_CASES, ids=[c[0] for c in SEQUENCE_CASES]
)
def test_sequence_errors(name: str, line: str, want: str) -> None:
    ex = _executor()
    with pytest.raises(BlockSequenceError, match=r"time goes|height is not"):
        ex.validate(decode_json_block(line))
    assert want in _refuse(ex, line)


def test_message_names_block_tx_and_field() -> None:
    line = _block2(_good_tx(), _tx(price=0))
    with pytest.raises(BlockDecodeError) as info:
        decode_json_block(line, "block at line 3")
    assert str(info.value) == (
        'block at line 3 (height 2): tx 1: field "price": expected an integer in '
        "[1, 2^64-1], got 0"
    )


def test_big_json_integers_are_exact() -> None:
    block = decode_json_block(_block2(_tx(price=2**64 - 1, size=2**64 - 1)))
    tx = block.txs[0]
    assert isinstance(tx, Limit) and tx.price == tx.size == 2**64 - 1
    with pytest.raises(BlockDecodeError, match="bad JSON"):
        decode_json_block(_block2(_tx()).replace('"price": 10', '"price": ' + "9" * 5000))


def test_tif_defaults_to_gtc_and_user_is_lowered() -> None:
    block = decode_json_block(_block2(_tx(tif=_DROP, user="0X" + "AbC" * 13 + "d")))
    assert block.txs[0] == Limit("0x" + "abc" * 13 + "d", 1, Side.BUY, 10, 2, Tif.GTC)


# -- CBOR --------------------------------------------------------------------------

def _cbor_block() -> Block:
    return Block(2, T1 + 5, (Limit(A, 1, Side.BUY, 10, 2, Tif.GTC), Deposit(B, 0, 300)))


def _cbor_refused(data: bytes, want: str) -> None:
    ex = _executor()
    before = state_entries(ex.state)
    with pytest.raises(BlockDecodeError) as info:
        for block in iter_blocks(data):
            ex.apply_block(block)
    assert state_entries(ex.state) == before and ex.height == 1
    assert "\n" not in str(info.value)
    assert want in str(info.value)


def test_cbor_roundtrip_and_good_sequence() -> None:
    data = encode_block(_cbor_block())
    assert decode_cbor_block(data) == _cbor_block()
    ex = _executor()
    for block in iter_blocks(data):
        ex.apply_block(block)
    assert ex.height == 2


def _as_obj() -> dict[str, object]:
    obj = cbor2.loads(encode_block(_cbor_block()))
    assert isinstance(obj, dict)
    return obj


def test_cbor_truncated() -> None:
    _cbor_refused(encode_block(_cbor_block())[:-1], "bad CBOR")


def test_cbor_non_minimal_integer() -> None:
    data = encode_block(_cbor_block())
    good = b"\x66height\x02"
    assert data.endswith(good)
    _cbor_refused(data[: -len(good)] + b"\x66height\x18\x02", "non-canonical CBOR")


def test_cbor_unsorted_keys() -> None:
    obj = _as_obj()
    data = cbor2.dumps({"height": obj["height"], "time": obj["time"], "txs": obj["txs"]})
    _cbor_refused(data, "non-canonical CBOR")


def test_cbor_indefinite_length() -> None:
    data = encode_block(Block(2, T1 + 5, ()))
    assert data.startswith(b"\xa3\x63txs\x80")
    _cbor_refused(b"\xa3\x63txs\x9f\xff" + data[6:], "bad CBOR")


def test_cbor_duplicate_key() -> None:
    data = b"\xa4\x63txs\x80\x64time\x01\x66height\x02\x66height\x02"
    _cbor_refused(data, "bad CBOR")


def test_cbor_float() -> None:
    obj = _as_obj()
    obj["time"] = 5.0
    _cbor_refused(cbor2.dumps(obj, canonical=True), 'field "time": expected an integer')


def test_cbor_tag() -> None:
    obj = _as_obj()
    obj["time"] = cbor2.CBORTag(1234, 5)
    _cbor_refused(cbor2.dumps(obj, canonical=True), 'field "time"')
    # A bignum tag for a small number decodes to an int but is not canonical.
    data = encode_block(Block(2, 7, ()))
    assert data.endswith(b"\x64time\x07\x66height\x02")
    _cbor_refused(data[:-9] + b"\xc2\x41\x07" + data[-8:], "non-canonical CBOR")


def test_cbor_limit_without_tif() -> None:
    obj = _as_obj()
    txs = obj["txs"]
    assert isinstance(txs, list)
    del txs[0]["tif"]
    _cbor_refused(cbor2.dumps(obj, canonical=True), 'missing field "tif" (required in CBOR)')


def test_cbor_schema_error_names_block() -> None:
    obj = _as_obj()
    txs = obj["txs"]
    assert isinstance(txs, list)
    txs[1]["amount"] = 0
    with pytest.raises(BlockDecodeError) as info:
        list(iter_blocks(cbor2.dumps(obj, canonical=True)))
    assert str(info.value) == (
        'block 1 at byte 0 (height 2): tx 1: field "amount": expected an integer in '
        "[1, 2^64-1], got 0"
    )


def test_cbor_trailing_bytes() -> None:
    with pytest.raises(BlockDecodeError, match="1 trailing bytes"):
        decode_cbor_block(encode_block(_cbor_block()) + b"\x00")
    # In a sequence, the trailing byte is the start of a next (bad) item; the good block
    # before it is still delivered.
    blocks = iter_blocks(encode_block(_cbor_block()) + b"\x00")
    assert next(blocks) == _cbor_block()
    with pytest.raises(BlockDecodeError, match=r"block 2 at byte \d+: expected an object, got 0"):
        next(blocks)


def test_empty_file_has_no_blocks() -> None:
    assert list(iter_blocks(b"")) == []
    assert list(iter_blocks(b"\n \n")) == []


# -- constructed blocks (node code building Blocks directly) -------------------------

BAD_CONSTRUCTED: list[tuple[str, Block, str]] = [
    ("bool size", Block(2, T1 + 9, (Limit(A, 1, Side.BUY, 1, True, Tif.GTC),)), 'field "size"'),
    ("upper-case user", Block(2, T1 + 9, (Deposit("0x" + "A" * 40, 0, 1),)), 'field "user"'),
    ("int side", Block(2, T1 + 9, (Limit(A, 1, 0, 1, 1, Tif.GTC),)), 'field "side"'),  # type: ignore[arg-type]
    ("str tif", Block(2, T1 + 9, (Limit(A, 1, Side.BUY, 1, 1, "gtc"),)), 'field "tif"'),  # type: ignore[arg-type]
    ("asset 0 limit", Block(2, T1 + 9, (Limit(A, 0, Side.BUY, 1, 1, Tif.GTC),)), 'field "asset"'),
    ("txs list", Block(2, T1 + 9, [Deposit(A, 0, 1)]), 'field "txs"'),  # type: ignore[arg-type]
    ("not a tx", Block(2, T1 + 9, ("deposit",)), "not a transaction"),  # type: ignore[arg-type]
    ("zero height", Block(0, T1 + 9, ()), "height"),
    ("float time", Block(2, float(T1 + 9), ()), 'field "time"'),  # type: ignore[arg-type]
    ("unhashable user", Block(2, T1 + 9, (Deposit([], 0, 1),)), 'field "user"'),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(
    ("name", "block", "want"), BAD_CONSTRUCTED, ids=[c[0] for c in BAD_CONSTRUCTED]
)
def test_constructed_blocks_are_checked(name: str, block: Block, want: str) -> None:
    ex = _executor()
    before = state_entries(ex.state)
    with pytest.raises(BlockError) as info:
        ex.apply_block(block)
    assert isinstance(info.value, BlockSchemaError | BlockSequenceError)
    assert want in str(info.value) and "\n" not in str(info.value)
    assert state_entries(ex.state) == before and ex.height == 1
