"""Canonical CBOR, JSON round trips, block hash and events, checked against independent
encoders (cbor2's canonical mode, json) and hand-written expectations."""

from __future__ import annotations

import dataclasses
import json

import blake3
import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from block_exec import (
    Block,
    Cancel,
    Deposit,
    Executor,
    Limit,
    Market,
    OrderPlaced,
    Tx,
    Withdraw,
    block_hash,
    decode_cbor_block,
    decode_json_block,
    encode_block,
    iter_blocks,
)
from state_machine import Cancellation, CancelReason, Fill, OrderType, Side, Tif

U64 = 2**64 - 1
users = st.text("0123456789abcdef", min_size=40, max_size=40).map(lambda h: "0x" + h)
# The uint heads' boundaries (1, 2, 4 and 8 bytes after the head) drawn on purpose: the
# decoder writes some of them inline.
amounts = st.one_of(st.integers(1, 30), st.integers(1, U64),
                    st.sampled_from([23, 24, 255, 256, 2**16 - 1, 2**16, 2**32 - 1, 2**32, U64]))
book_assets = st.one_of(st.integers(1, 3), st.integers(1, 2**32 - 1))
sides = st.sampled_from([Side.BUY, Side.SELL])
txs: st.SearchStrategy[Tx] = st.one_of(
    st.builds(Deposit, users, st.integers(0, 2**32 - 1), amounts),
    st.builds(Withdraw, users, st.integers(0, 2**32 - 1), amounts),
    st.builds(Limit, users, book_assets, sides, amounts, amounts, st.sampled_from(list(Tif))),
    st.builds(Market, users, book_assets, sides, amounts),
    st.builds(Cancel, users, book_assets, amounts),
)
blocks = st.builds(
    Block, st.integers(1, U64), st.integers(0, U64), st.lists(txs, max_size=8).map(tuple)
)

SIDE = {Side.BUY: "buy", Side.SELL: "sell"}
TIF = {Tif.GTC: "gtc", Tif.IOC: "ioc", Tif.ALO: "alo"}


def _tx_obj(tx: Tx) -> dict[str, object]:
    """The contract's JSON object of a tx, written independently of block_exec."""
    if isinstance(tx, Limit):
        return {"op": "limit", "user": tx.user, "asset": tx.asset, "side": SIDE[tx.side],
                "price": tx.price, "size": tx.size, "tif": TIF[tx.tif]}
    if isinstance(tx, Market):
        return {"op": "market", "user": tx.user, "asset": tx.asset, "side": SIDE[tx.side],
                "size": tx.size}
    if isinstance(tx, Cancel):
        return {"op": "cancel", "user": tx.user, "asset": tx.asset, "order_id": tx.order_id}
    op = "deposit" if isinstance(tx, Deposit) else "withdraw"
    return {"op": op, "user": tx.user, "asset": tx.asset, "amount": tx.amount}


def _block_obj(block: Block) -> dict[str, object]:
    return {"height": block.height, "time": block.time, "txs": [_tx_obj(t) for t in block.txs]}


def _map_keys_bytewise_sorted(data: bytes) -> bool:
    """RFC 8949 §4.2.1 order, checked by re-encoding each key on its own."""
    def walk(value: object) -> bool:
        if isinstance(value, dict):
            keys = [cbor2.dumps(k) for k in value]
            return keys == sorted(keys) and all(walk(v) for v in value.values())
        if isinstance(value, list):
            return all(walk(v) for v in value)
        return True
    return walk(cbor2.loads(data))


@settings(max_examples=150, deadline=None)
@given(blocks)
def test_canonical_cbor_matches_cbor2_and_rfc8949(block: Block) -> None:
    data = encode_block(block)
    assert data == cbor2.dumps(_block_obj(block), canonical=True)
    assert _map_keys_bytewise_sorted(data)
    assert decode_cbor_block(data) == block
    assert list(iter_blocks(data + data)) == [block, block]
    assert block_hash(block) == blake3.blake3(data).digest()


@settings(max_examples=150, deadline=None)
@given(blocks, st.booleans())
def test_json_round_trip(block: Block, upper: bool) -> None:
    obj = _block_obj(block)
    for tx in obj["txs"]:  # type: ignore[attr-defined]
        if upper:
            tx["user"] = "0X" + tx["user"][2:].upper()
        if tx.get("tif") == "gtc" and upper:
            del tx["tif"]  # omitted tif means gtc
    line = json.dumps(obj)
    assert decode_json_block(line) == block
    assert decode_json_block(line.encode()) == block
    # The block hash does not depend on the JSON spelling.
    assert block_hash(decode_json_block(line)) == block_hash(block)
    # The CBOR the decoder builds as it checks (what apply hashes) is cbor2's canonical
    # encoding of the contract's object, and a CBOR block carries its own bytes.
    canonical = cbor2.dumps(_block_obj(block), canonical=True)
    assert decode_json_block(line).cbor == canonical
    assert decode_cbor_block(canonical).cbor == canonical


def test_only_the_decoder_attaches_cbor() -> None:
    """A constructed block, or one replaced from a decoded one, carries no bytes: they are
    computed (and the block checked) from its fields."""
    user = "0x" + "ab" * 20
    decoded = decode_json_block(
        f'{{"height":3,"time":9,"txs":[{{"op":"deposit","user":"{user}","asset":0,'
        f'"amount":5}}]}}'
    )
    assert decoded.cbor == encode_block(Block(3, 9, decoded.txs)) != b""
    assert Block(3, 9, decoded.txs).cbor == b""
    later = dataclasses.replace(decoded, time=10)
    assert later.cbor == b""
    assert block_hash(later) == block_hash(Block(3, 10, decoded.txs)) != block_hash(decoded)


def test_known_encoding() -> None:
    """A byte-exact vector, written out by hand from spec/blocks.md."""
    user = "0x" + "ab" * 20
    block = Block(7, 1000, (Limit(user, 1, Side.SELL, 300, 24, Tif.IOC),))
    want = (
        b"\xa3" + b"\x63txs" + b"\x81"
        + b"\xa7" + b"\x62op" + b"\x65limit" + b"\x63tif" + b"\x63ioc"
        + b"\x64side" + b"\x64sell" + b"\x64size" + b"\x18\x18"
        + b"\x64user" + b"\x78\x2a" + user.encode()
        + b"\x65asset" + b"\x01" + b"\x65price" + b"\x19\x01\x2c"
        + b"\x64time" + b"\x19\x03\xe8" + b"\x66height" + b"\x07"
    )
    assert encode_block(block) == want
    assert block_hash(block).hex() == blake3.blake3(want).hexdigest()


def test_events_in_execution_order() -> None:
    a, b = "0x" + "a" * 40, "0x" + "b" * 40
    ex = Executor()
    ex.apply_block(Block(1, 0, (
        Deposit(a, 0, 1000), Deposit(a, 1, 10), Deposit(b, 1, 10),
        Limit(a, 1, Side.SELL, 10, 2), Limit(b, 1, Side.SELL, 10, 3),
    )))
    taker = Limit(a, 1, Side.BUY, 11, 4, Tif.IOC)
    result = ex.apply_block(Block(2, 5, (taker, Cancel(b, 1, 2), Market(b, 1, Side.SELL, 1))))
    assert result.height == 2 and result.time == 5
    assert result.events == (
        OrderPlaced(3, taker),
        Fill(1, 2, 3, b, a, 10, 3, Side.BUY),
        Cancellation(1, a, 1, Side.SELL, 10, 2, CancelReason.SELF_TRADE),
        Cancellation(3, a, 1, Side.BUY, 11, 1, CancelReason.IOC),
        # cancel of id 2: fully filled already -> rejected, no event
        OrderPlaced(4, Market(b, 1, Side.SELL, 1)),
        Cancellation(4, b, 1, Side.SELL, 0, 1, CancelReason.MARKET),
    )
    placed = result.events[0]
    assert isinstance(placed, OrderPlaced)
    assert (placed.user, placed.asset, placed.side, placed.type, placed.tif, placed.price,
            placed.size) == (a, 1, Side.BUY, OrderType.LIMIT, Tif.IOC, 11, 4)
    market = result.events[4]
    assert isinstance(market, OrderPlaced)
    assert (market.type, market.tif, market.price) == (OrderType.MARKET, None, None)
    assert [r.ok for r in result.receipts] == [True, False, True]
    assert ex.last_block_hash == result.block_hash == block_hash(
        Block(2, 5, (taker, Cancel(b, 1, 2), Market(b, 1, Side.SELL, 1)))
    )


def test_receipts_line_is_what_the_json_module_writes() -> None:
    """orjson writes receipts; they must be the bytes `json` would write (compact)."""
    import json as json_module

    from block_exec import Executor, block_receipts_line, block_receipts_obj, decode_json_block
    from block_exec.simulate import MarketConfig, SimulatedMarket

    market = SimulatedMarket(MarketConfig(blocks=30))
    executor = Executor(checkpoint_interval=7)
    for height in range(1, 31):
        line = json_module.dumps(market.block(height, executor.state))
        result = executor.apply_block(decode_json_block(line))
        root = None if result.state_root is None else result.state_root.hex()
        expected = json_module.dumps(
            block_receipts_obj(height, root, result.receipts), separators=(",", ":")
        )
        assert block_receipts_line(height, root, result.receipts) == expected
