"""Canonical CBOR of blocks and the block hash (spec/blocks.md); the receipts JSON is
`block_exec.receipts_json`.

The encoder is written out by hand rather than calling `cbor2.dumps(canonical=True)`:
it runs once per tx on the apply path (the block hash), where a generic encoder costs
several microseconds per map. Every map key is a text string shorter than 24 bytes, so
the fixed key orders below (length first, then bytewise) are exactly RFC 8949's core
deterministic order; tests compare this encoder with cbor2's canonical mode.

`encode_block_checked` also checks every field on the way (the schema of a constructed
`Block`), so applying a block validates and hashes it in one pass.
"""

from __future__ import annotations

import blake3

from block_exec.errors import BlockSchemaError, field_named
from block_exec.types import Block, Cancel, Deposit, Limit, Market, Tx, Withdraw
from state_machine import MAX_AMOUNT, MAX_ASSET, Side, Tif
from state_machine.types import SIDE_NAMES, TIF_NAMES
from state_machine.values import cbor_head

MAX_U64 = 2**64 - 1

_HEX = frozenset("0123456789abcdef")
# Addresses already seen well-formed; bounded so a flood of distinct users cannot grow it
# without limit. Only a speed-up: the result never depends on what it holds.
_GOOD_USERS: dict[str, None] = {}
_GOOD_USERS_MAX = 1 << 16


_UINT_TABLE = tuple(cbor_head(0, n) for n in range(1 << 16))


def cbor_uint(n: int) -> bytes:
    """The shortest CBOR head of major type 0 for 0 <= n <= 2^64-1."""
    if n < 0x10000:
        return _UINT_TABLE[n]
    if n < 0x100000000:
        return b"\x1a" + n.to_bytes(4, "big")
    return b"\x1b" + n.to_bytes(8, "big")


def _text(s: str) -> bytes:
    raw = s.encode()
    assert len(raw) < 24
    return bytes((0x60 + len(raw),)) + raw


_SIDE = {Side.BUY: _text("buy"), Side.SELL: _text("sell")}
_TIF = {Tif.GTC: _text("gtc"), Tif.IOC: _text("ioc"), Tif.ALO: _text("alo")}
_K_OP = _text("op")
_USER = _text("user") + b"\x78\x2a"  # a 42-byte text string follows
_ASSET = _text("asset")
_AMOUNT = _text("amount")
_SIDE_K = _text("side")
_SIZE = _text("size")
_PRICE = _text("price")
_ORDER_ID = _text("order_id")
# Map heads with the op pair, for each op: keys sorted by (length, bytes).
_DEPOSIT = b"\xa4" + _K_OP + _text("deposit") + _USER
_WITHDRAW = b"\xa4" + _K_OP + _text("withdraw") + _USER
_CANCEL = b"\xa4" + _K_OP + _text("cancel") + _USER
_MARKET = b"\xa5" + _K_OP + _text("market") + _SIDE_K
_LIMIT = b"\xa7" + _K_OP + _text("limit") + _text("tif")
_BLOCK = b"\xa3" + _text("txs")
_TIME = _text("time")
_HEIGHT = _text("height")


# The pieces the decoder builds a block's CBOR from while it checks the block (see
# `blockobj.block_from_obj`): per tx, a head up to the first varying field, then the
# fields, with the user's piece `USER_KEY + user + ASSET_KEY` cached per user.
LIMIT_HEADS = tuple(
    tuple(_LIMIT + _TIF[tif] + _SIDE_K + _SIDE[side] + _SIZE for side in Side) for tif in Tif
)  # [tif][side], then uint(size), user piece, uint(asset), PRICE_KEY, uint(price)
MARKET_HEADS = tuple(_MARKET + _SIDE[side] + _SIZE for side in Side)
# [side], then uint(size), user piece, uint(asset)
CANCEL_HEAD = b"\xa4" + _K_OP + _text("cancel")  # user piece, uint(asset), ORDER_ID_KEY, uint
DEPOSIT_HEAD = b"\xa4" + _K_OP + _text("deposit")  # user piece, uint(asset), AMOUNT_KEY, uint
WITHDRAW_HEAD = b"\xa4" + _K_OP + _text("withdraw")
PRICE_KEY, ORDER_ID_KEY, AMOUNT_KEY = _PRICE, _ORDER_ID, _AMOUNT
BLOCK_HEAD = _BLOCK  # then the txs' array head, the txs, TIME_KEY, uint(time), HEIGHT_KEY, ...
TIME_KEY, HEIGHT_KEY = _TIME, _HEIGHT
UINT_TABLE = _UINT_TABLE  # cbor_uint(n) for n < 2^16


def user_piece(user: str) -> bytes:
    """`USER_KEY + user + ASSET_KEY`: the bytes around a normalised user in every tx."""
    return _USER + user.encode() + _ASSET


def _array_head(n: int) -> bytes:
    return cbor_head(4, n)


def encode_tx(tx: Tx) -> bytes:
    """Canonical CBOR of one tx, assumed schema-valid (see `encode_block_checked`)."""
    t = type(tx)
    if t is Limit:
        assert isinstance(tx, Limit)
        return b"".join((
            _LIMIT, _TIF[tx.tif], _SIDE_K, _SIDE[tx.side], _SIZE, cbor_uint(tx.size),
            _USER, tx.user.encode(), _ASSET, cbor_uint(tx.asset), _PRICE, cbor_uint(tx.price),
        ))
    if t is Market:
        assert isinstance(tx, Market)
        return b"".join((
            _MARKET, _SIDE[tx.side], _SIZE, cbor_uint(tx.size), _USER, tx.user.encode(),
            _ASSET, cbor_uint(tx.asset),
        ))
    if t is Cancel:
        assert isinstance(tx, Cancel)
        return b"".join((
            _CANCEL, tx.user.encode(), _ASSET, cbor_uint(tx.asset), _ORDER_ID,
            cbor_uint(tx.order_id),
        ))
    assert isinstance(tx, Deposit | Withdraw)
    return b"".join((
        _DEPOSIT if t is Deposit else _WITHDRAW, tx.user.encode(), _ASSET, cbor_uint(tx.asset),
        _AMOUNT, cbor_uint(tx.amount),
    ))


def array_head(n: int) -> bytes:
    """The CBOR head of an array of n items."""
    return _array_head(n)


def encode_block(block: Block) -> bytes:
    """Canonical CBOR of a block assumed schema-valid (use `encode_block_checked` if not)."""
    if block.cbor:
        return block.cbor  # the decoder's, built as it checked the block
    parts = [_BLOCK, _array_head(len(block.txs))]
    parts.extend(map(encode_tx, block.txs))
    parts += (_TIME, cbor_uint(block.time), _HEIGHT, cbor_uint(block.height))
    return b"".join(parts)


def _good_user(user: object) -> bool:
    if type(user) is not str:
        return False
    if user in _GOOD_USERS:
        return True
    if len(user) != 42 or user[:2] != "0x" or not _HEX.issuperset(user[2:]):
        return False
    if len(_GOOD_USERS) >= _GOOD_USERS_MAX:
        _GOOD_USERS.clear()
    _GOOD_USERS[user] = None
    return True


def _is_int(value: object, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def tx_schema_error(tx: object) -> str | None:
    """Why a constructed tx is outside the schema ('field "x": ...'), or None if it is not."""
    t = type(tx)
    if t not in (Deposit, Withdraw, Limit, Market, Cancel):
        return f"not a transaction: {type(tx).__name__}"
    if not _good_user(getattr(tx, "user")):  # noqa: B009 - tx is still `object` here
        return f'field "user": expected "0x" + 40 lower-case hex digits, got {tx.user!r}'  # type: ignore[attr-defined]
    asset = getattr(tx, "asset")  # noqa: B009
    if t is Deposit or t is Withdraw:
        if not _is_int(asset, 0, MAX_ASSET):
            return f'field "asset": expected an integer in [0, 2^32-1], got {asset!r}'
    elif not _is_int(asset, 1, MAX_ASSET):
        return f'field "asset": expected an integer in [1, 2^32-1], got {asset!r}'
    fields: tuple[str, ...]
    if t is Limit:
        fields = ("side", "price", "size", "tif")
    elif t is Market:
        fields = ("side", "size")
    elif t is Cancel:
        fields = ("order_id",)
    else:
        fields = ("amount",)
    for name in fields:
        value = getattr(tx, name)
        if name == "side":
            if type(value) is not Side:
                return f'field "side": expected a Side, got {value!r}'
        elif name == "tif":
            if type(value) is not Tif:
                return f'field "tif": expected a Tif, got {value!r}'
        elif not _is_int(value, 1, MAX_AMOUNT):
            return f'field "{name}": expected an integer in [1, 2^64-1], got {value!r}'
    return None


def block_schema_error(block: object) -> str | None:
    """Why a constructed block is outside the schema (one line), or None if it is not."""
    error = _block_schema_exception(block)
    return None if error is None else str(error)


def _block_schema_exception(block: object) -> BlockSchemaError | None:
    """The BlockSchemaError for `block` (message, height, tx index, field), or None."""
    if type(block) is not Block:
        return BlockSchemaError(f"not a Block: {type(block).__name__}")
    height = block.height
    if not _is_int(height, 1, MAX_U64):
        return BlockSchemaError(
            f'block: field "height": expected an integer in [1, 2^64-1], got {height!r}',
            field="height",
        )
    where = f"block (height {height})"
    if not _is_int(block.time, 0, MAX_U64):
        return BlockSchemaError(
            f'{where}: field "time": expected an integer in [0, 2^64-1], got {block.time!r}',
            height=height, field="time",
        )
    if type(block.txs) is not tuple:
        return BlockSchemaError(
            f'{where}: field "txs": expected a tuple, got {type(block.txs).__name__}',
            height=height, field="txs",
        )
    for index, tx in enumerate(block.txs):
        problem = tx_schema_error(tx)
        if problem is not None:
            return BlockSchemaError(f"{where}: tx {index}: {problem}", height=height,
                                    tx_index=index, field=field_named(problem))
    return None


def encode_block_checked(block: Block) -> bytes:
    """Check a constructed block against the schema and return its canonical CBOR.

    Raises BlockSchemaError (one line naming height, tx index and field). A decoded
    block carries both already checked (`Block.cbor`): O(1) then.
    """
    if type(block) is Block and block.cbor:
        return block.cbor
    try:
        if type(block) is Block and _is_int(block.height, 1, MAX_U64) and _is_int(
            block.time, 0, MAX_U64
        ) and type(block.txs) is tuple:
            good = _GOOD_USERS
            for tx in block.txs:
                # Fast path: the common, valid case in one expression per type.
                t = type(tx)
                if t is Limit:
                    assert isinstance(tx, Limit)
                    price = tx.price
                    size = tx.size
                    asset = tx.asset
                    ok = (
                        type(price) is int and 0 < price <= MAX_AMOUNT
                        and type(size) is int and 0 < size <= MAX_AMOUNT
                        and type(asset) is int and 0 < asset <= MAX_ASSET
                        and type(tx.side) is Side and type(tx.tif) is Tif
                    )
                elif t is Market:
                    assert isinstance(tx, Market)
                    size = tx.size
                    asset = tx.asset
                    ok = (
                        type(size) is int and 0 < size <= MAX_AMOUNT
                        and type(asset) is int and 0 < asset <= MAX_ASSET
                        and type(tx.side) is Side
                    )
                elif t is Cancel:
                    assert isinstance(tx, Cancel)
                    oid = tx.order_id
                    asset = tx.asset
                    ok = (
                        type(oid) is int and 0 < oid <= MAX_AMOUNT
                        and type(asset) is int and 0 < asset <= MAX_ASSET
                    )
                elif t is Deposit or t is Withdraw:
                    assert isinstance(tx, Deposit | Withdraw)
                    amount = tx.amount
                    asset = tx.asset
                    ok = (
                        type(amount) is int and 0 < amount <= MAX_AMOUNT
                        and type(asset) is int and 0 <= asset <= MAX_ASSET
                    )
                else:
                    ok = False
                if not ok or (tx.user not in good and not _good_user(tx.user)):
                    break
            else:
                return encode_block(block)
    except TypeError:  # e.g. an unhashable value where an enum was expected
        pass
    raise _block_schema_exception(block) or BlockSchemaError("block: malformed")


def block_hash(block: Block) -> bytes:
    """blake3-256 of the block's canonical CBOR (checks the schema first)."""
    return blake3.blake3(encode_block_checked(block)).digest()


__all__ = [
    "MAX_U64",
    "SIDE_NAMES",
    "TIF_NAMES",
    "block_hash",
    "block_schema_error",
    "cbor_uint",
    "encode_block",
    "encode_block_checked",
    "encode_tx",
    "tx_schema_error",
]
