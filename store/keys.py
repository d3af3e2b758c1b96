"""Key layout of the node database (spec/store.md, "Key layout"): the only place a key is
built or taken apart.

Every key starts with a one-byte table prefix; integers in keys are big-endian and fixed
width (8 bytes), so LevelDB's bytewise order is numeric order (heights, order ids, fill
sequence numbers) and a prefix scan reads one table, one order or one user contiguously.
Users in keys are their 20 address bytes.
"""

from __future__ import annotations

from store.errors import StoreError

META = b"\x00"
BLOCK = b"\x01"
BLOCK_END = b"\x02"  # the first key after the block table
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
TABLE_KEY_LEN = 9  # prefix + one u64: block, order, fill, cancel and checkpoint keys
USER_INDEX_LEN = 29  # prefix + 20 address bytes + one u64


def check_u64(what: str, value: int, low: int = 0) -> None:
    """Refuse an integer that cannot go into a key (or a u64 field)."""
    if type(value) is not int or not low <= value <= U64_MAX:
        raise StoreError(f"{what} {value!r} out of range [{low}, 2^64-1]")


def tail_u64(key: bytes) -> int:
    """The integer a key ends with (a version's height, an order fill's sequence number)."""
    return int.from_bytes(key[-8:], "big")


def table_id(key: bytes) -> int:
    """The integer after the prefix of a block, order, fill, cancel or checkpoint key."""
    return int.from_bytes(key[1:], "big")


# -- block log --------------------------------------------------------------------------


def block_key(height: int) -> bytes:
    return BLOCK + height.to_bytes(8, "big")


# -- history ----------------------------------------------------------------------------


def order_key(order_id: int) -> bytes:
    return ORDER + order_id.to_bytes(8, "big")


def fill_key(seq: int) -> bytes:
    return FILL + seq.to_bytes(8, "big")


def order_fill_prefix(order_id: int) -> bytes:
    return ORDER_FILL + order_id.to_bytes(8, "big")


def order_fill_key(order_id: int, seq: int) -> bytes:
    return ORDER_FILL + order_id.to_bytes(8, "big") + seq.to_bytes(8, "big")


def cancel_key(order_id: int) -> bytes:
    return CANCEL + order_id.to_bytes(8, "big")


def user_fill_prefix(user: bytes) -> bytes:
    return USER_FILL + user


def user_fill_key(user: bytes, seq: int) -> bytes:
    return USER_FILL + user + seq.to_bytes(8, "big")


def user_order_prefix(user: bytes) -> bytes:
    return USER_ORDER + user


def user_order_key(user: bytes, order_id: int) -> bytes:
    return USER_ORDER + user + order_id.to_bytes(8, "big")


def user_of_index_key(key: bytes) -> bytes:
    """The 20 address bytes of a `USER_FILL` or `USER_ORDER` key."""
    return key[1:21]


def id_of_index_key(key: bytes) -> int:
    """The fill sequence number or order id of a `USER_FILL` or `USER_ORDER` key."""
    return int.from_bytes(key[21:], "big")


def ids_after(prefix: bytes, after: int) -> tuple[bytes, bytes] | None:
    """The (start, stop) range of the keys `prefix ‖ id` with id > `after` (None: empty)."""
    if after >= U64_MAX:
        return None
    return prefix + (after + 1).to_bytes(8, "big"), prefix + b"\xff" * 9


# -- state and checkpoints --------------------------------------------------------------


def latest_key(state_key: bytes) -> bytes:
    return STATE_LATEST + state_key


def state_key_of_latest(key: bytes) -> bytes:
    return key[1:]


def version_prefix(state_key: bytes) -> bytes:
    return STATE_VERSION + state_key


def version_key(state_key: bytes, height: int) -> bytes:
    return STATE_VERSION + state_key + height.to_bytes(8, "big")


def state_key_of_version(key: bytes) -> bytes:
    return key[1:-8]


def checkpoint_key(height: int) -> bytes:
    return CHECKPOINT + height.to_bytes(8, "big")


def change_log_prefix(height: int) -> bytes:
    return CHECKPOINT_CHANGES + height.to_bytes(8, "big")


def change_log_key(height: int, state_key: bytes) -> bytes:
    return CHECKPOINT_CHANGES + height.to_bytes(8, "big") + state_key


def state_key_of_change_log(key: bytes) -> bytes:
    return key[9:]
