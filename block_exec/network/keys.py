"""Key files of the testnet and of `coreledger send`: JSON
`{"address": "0x...", "private_key": "<64 hex digits>"}`, readable by the owner only."""

from __future__ import annotations

import json
import os
from pathlib import Path

from block_exec.signed import address_of


class KeyFileError(ValueError):
    """A key file that cannot be read or is not a key (one line)."""


def write_key(path: Path, private_key: bytes) -> str:
    """Write a new key file (mode 0600) and return its address."""
    address = address_of(private_key)
    text = json.dumps({"address": address, "private_key": private_key.hex()}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    return address


def read_key(path: str) -> tuple[bytes, str]:
    """(private key, address) of a key file; the address is checked against the key."""
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{path}: cannot read a key file ({exc})") from None
    text = obj.get("private_key") if isinstance(obj, dict) else None
    try:
        assert isinstance(text, str) and len(text) == 64
        key = bytes.fromhex(text)
        address = address_of(key)
    except (AssertionError, ValueError):
        raise KeyFileError(f'{path}: want {{"private_key": 64 hex digits}}') from None
    if obj.get("address", address).lower() != address:
        raise KeyFileError(f"{path}: the address does not belong to the private key")
    return key, address
