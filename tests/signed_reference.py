"""An independent signer for the tests: eth-account signs, cbor2's canonical mode encodes.

Nothing here calls the project's signing or encoding code, so a test that checks
`block_exec.signed` against these bytes cannot be passed by the code checking itself.
"""

from __future__ import annotations

from typing import Any

import cbor2
from eth_account import Account
from eth_account.messages import encode_defunct

TxDict = dict[str, Any]

# Fixed test keys (never use them for anything real).
TEST_KEYS = (
    bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"),
    bytes.fromhex("0000000000000000000000000000000000000000000000000000000000000001"),
    bytes.fromhex("8da4ef21b864d2cc526dbdb2a120bd2874c36c9d0a1fb7f8c63d7f7a8b41de8f"),
)


def address(private_key: bytes) -> str:
    """The key's address as eth-account spells it (EIP-55 mixed case)."""
    return str(Account.from_key(private_key).address)


def message(chain_id: str, nonce: int, tx: TxDict) -> bytes:
    return cbor2.dumps({"chain_id": chain_id, "nonce": nonce, "tx": tx}, canonical=True)


def signature(private_key: bytes, msg: bytes) -> bytes:
    signed = Account.sign_message(encode_defunct(primitive=msg), private_key)
    return bytes(signed.signature)


def envelope(chain_id: str, nonce: int, tx: TxDict, sig: bytes) -> bytes:
    return cbor2.dumps({"chain_id": chain_id, "nonce": nonce, "tx": tx, "sig": sig},
                       canonical=True)


def signed_tx(private_key: bytes, chain_id: str, nonce: int, tx: TxDict) -> bytes:
    """The signed tx bytes of spec/signed.md, built from eth-account and cbor2 alone."""
    return envelope(chain_id, nonce, tx, signature(private_key, message(chain_id, nonce, tx)))
