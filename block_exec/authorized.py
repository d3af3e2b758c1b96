"""Applying a network block: authorization and nonces before each tx (spec/signed.md).

A network block carries, beside each tx, who signed it and with which nonce (`TxAuth`,
from `signed.check_signed_tx`). Each tx is checked in order against the state as the
previous txs left it:
1. authorization: a deposit only from the genesis bridge, any other op only from its
   `user`; otherwise the receipt is `not_authorized`;
2. the nonce must equal the signer's current nonce; otherwise `bad_nonce`.
Such a tx changes nothing and uses no nonce. A tx that passes both uses its nonce (the
signer's nonce goes up by one) and is then applied as in a block file, whatever its
receipt.
"""

from __future__ import annotations

from collections.abc import Sequence

import blake3

from block_exec.encode import MAX_U64, encode_block_checked
from block_exec.errors import BlockSchemaError
from block_exec.signed import BAD_NONCE, NOT_AUTHORIZED, TxAuth, is_authorized
from block_exec.types import (
    Block,
    BlockResult,
    Cancel,
    Deposit,
    Limit,
    Market,
    Receipt,
    Tx,
    Withdraw,
)
from state_machine import CoreStateMachine, rejected

_HEX = frozenset("0123456789abcdef")
_NOT_AUTHORIZED = rejected(NOT_AUTHORIZED)
_BAD_NONCE = rejected(BAD_NONCE)


def check_auth(block: Block, auth: Sequence[TxAuth]) -> None:
    """Raise BlockSchemaError unless `auth` holds one well-formed TxAuth per tx."""
    where = f"block (height {block.height})"
    if len(auth) != len(block.txs):
        raise BlockSchemaError(f"{where}: {len(auth)} auth entries for {len(block.txs)} txs")
    for index, item in enumerate(auth):
        if type(item) is not TxAuth:
            raise BlockSchemaError(f"{where}: tx {index}: auth is not a TxAuth")
        signer = item.signer
        if (type(signer) is not str or len(signer) != 42 or signer[:2] != "0x"
                or not _HEX.issuperset(signer[2:])):
            raise BlockSchemaError(
                f'{where}: tx {index}: auth "signer": expected "0x" + 40 lower-case hex '
                f"digits, got {signer!r}"
            )
        if type(item.nonce) is not int or not 0 <= item.nonce <= MAX_U64:
            raise BlockSchemaError(
                f'{where}: tx {index}: auth "nonce": expected an integer in [0, 2^64-1], '
                f"got {item.nonce!r}"
            )


def _apply_tx(state: CoreStateMachine, tx: Tx) -> Receipt:
    t = type(tx)
    if t is Limit:
        assert isinstance(tx, Limit)
        return state.limit(tx.user, tx.asset, tx.side, tx.price, tx.size, tx.tif)
    if t is Cancel:
        assert isinstance(tx, Cancel)
        return state.cancel(tx.user, tx.asset, tx.order_id)
    if t is Market:
        assert isinstance(tx, Market)
        return state.market(tx.user, tx.asset, tx.side, tx.size)
    if t is Deposit:
        assert isinstance(tx, Deposit)
        return state.deposit(tx.user, tx.asset, tx.amount)
    assert isinstance(tx, Withdraw)
    return state.withdraw(tx.user, tx.asset, tx.amount)


def apply_authorized_block(
    state: CoreStateMachine,
    block: Block,
    auth: Sequence[TxAuth],
    *,
    block_bytes: bytes | None = None,
) -> BlockResult:
    """Apply a network block whose tx i was signed as `auth[i]`.

    Raises BlockSchemaError (state untouched) if the block or `auth` is malformed. The
    result is shaped as `apply_block`'s (no state root: the executor adds it).
    """
    if block_bytes is None:  # else checked by the caller (validate.checked_block_bytes)
        block_bytes = encode_block_checked(block)
    check_auth(block, auth)
    block_hash = blake3.blake3(block_bytes).digest()
    nonces = state.nonces
    bridge = state.bridge
    receipts: list[Receipt] = []
    for tx, item in zip(block.txs, auth, strict=True):
        if not is_authorized(tx, item.signer, bridge):
            receipts.append(_NOT_AUTHORIZED)
        elif item.nonce != nonces.get(item.signer):
            receipts.append(_BAD_NONCE)
        else:
            nonces.use(item.signer)
            receipts.append(_apply_tx(state, tx))
    return BlockResult(
        block.height, block.time, block_hash, tuple(receipts), block.txs, None, block_bytes
    )


def encode_auth(auth: Sequence[TxAuth]) -> bytes:
    """The stored form of a block's auth: per tx, signer (20 bytes) then nonce (u64 BE)."""
    return b"".join(bytes.fromhex(a.signer[2:]) + a.nonce.to_bytes(8, "big") for a in auth)


def decode_auth(data: bytes, where: str) -> list[TxAuth]:
    """The auth `encode_auth` wrote; BlockSchemaError naming `where` if not 28 bytes a tx."""
    if len(data) % 28:
        raise BlockSchemaError(f"{where}: auth of {len(data)} bytes is not 28 bytes per tx")
    return [
        TxAuth("0x" + data[i : i + 20].hex(), int.from_bytes(data[i + 20 : i + 28], "big"))
        for i in range(0, len(data), 28)
    ]
