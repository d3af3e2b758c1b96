"""Key layout of the node database (spec/store.md, "Key layout").

Every key starts with a one-byte table prefix; integers in keys are big-endian and fixed
width, so LevelDB's bytewise order is numeric order (heights, order ids, fill sequence
numbers) and a prefix scan reads one table, one order or one user contiguously.
"""

from __future__ import annotations

META = b"\x00"
BLOCK = b"\x01"
ORDER = b"\x20"
FILL = b"\x21"
ORDER_FILL = b"\x22"
CANCEL = b"\x23"
USER_FILL = b"\x24"
USER_ORDER = b"\x25"
STATE_VERSION = b"\x10"
STATE_LATEST = b"\x11"
CHECKPOINT = b"\x12"
CHECKPOINT_CHANGES = b"\x13"

FORMAT_KEY = META + b"format"
INTERVAL_KEY = META + b"checkpoint_interval"
CHAIN_ID_KEY = META + b"chain_id"  # network mode only (spec/signed.md)
HEAD_KEY = META + b"head"
BASE_KEY = META + b"base"  # a store that starts at a snapshot (state sync)

FORMAT_VERSION = 1
U64_MAX = 2**64 - 1


def u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


def block_key(height: int) -> bytes:
    return BLOCK + height.to_bytes(8, "big")


def order_key(order_id: int) -> bytes:
    return ORDER + order_id.to_bytes(8, "big")


def fill_key(seq: int) -> bytes:
    return FILL + seq.to_bytes(8, "big")


def order_fill_key(order_id: int, seq: int) -> bytes:
    return ORDER_FILL + order_id.to_bytes(8, "big") + seq.to_bytes(8, "big")


def cancel_key(order_id: int) -> bytes:
    return CANCEL + order_id.to_bytes(8, "big")


def user_fill_key(user: bytes, seq: int) -> bytes:
    return USER_FILL + user + seq.to_bytes(8, "big")


def user_order_key(user: bytes, order_id: int) -> bytes:
    return USER_ORDER + user + order_id.to_bytes(8, "big")


def version_key(state_key: bytes, height: int) -> bytes:
    return STATE_VERSION + state_key + height.to_bytes(8, "big")


def latest_key(state_key: bytes) -> bytes:
    return STATE_LATEST + state_key


def checkpoint_key(height: int) -> bytes:
    return CHECKPOINT + height.to_bytes(8, "big")


def change_log_key(height: int, state_key: bytes) -> bytes:
    return CHECKPOINT_CHANGES + height.to_bytes(8, "big") + state_key
