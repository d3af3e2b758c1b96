"""Key files of the signing client (`coreledger keys`, `coreledger sign`; spec/signed.md).

A key file is one JSON object `{"address": "0x…", "private_key": "64 hex digits"}`
(address lower case), created readable and writable by its owner only (mode 0600) and
never overwritten. Reading one checks that the address is the key's and refuses a file
that others may read, as ssh does.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass

from coincurve import PrivateKey

from block_exec.signed import SECP256K1_N, address_of
from state_machine.errors import CoreledgerError

_KEYS = frozenset(("address", "private_key"))


class KeyFileError(CoreledgerError):
    """A key file that cannot be written or read (one line naming the file)."""


@dataclass(frozen=True, slots=True)
class KeyFile:
    address: str  # lower-case 0x address
    private_key: bytes  # 32 bytes

    def __repr__(self) -> str:  # never print the secret by accident
        return f"KeyFile(address={self.address!r})"

    def to_json(self) -> str:
        return json.dumps({"address": self.address, "private_key": self.private_key.hex()})


def new_key() -> KeyFile:
    """A fresh key from the operating system's randomness (via libsecp256k1)."""
    private_key = PrivateKey().secret
    return KeyFile(address_of(private_key), private_key)


def write_key_file(path: str, key: KeyFile) -> None:
    """Create `path` with mode 0600 holding `key`; refuse if it exists (never overwrite)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path}: already exists (a key file is never overwritten)") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, (key.to_json() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def parse_key_json(text: str, where: str) -> KeyFile:
    """The key in a key file's text; KeyFileError naming `where` if it is not one."""
    try:
        obj = json.loads(text)
    except ValueError:
        raise KeyFileError(f"{where}: not JSON (want a key file from 'coreledger keys new')") \
            from None
    if type(obj) is not dict or obj.keys() != _KEYS:
        raise KeyFileError(f'{where}: want an object with "address" and "private_key"')
    secret = obj["private_key"]
    try:
        private_key = bytes.fromhex(secret) if type(secret) is str else b""
    except ValueError:
        private_key = b""
    if len(private_key) != 32 or not 1 <= int.from_bytes(private_key, "big") < SECP256K1_N:
        raise KeyFileError(f'{where}: "private_key" is not 64 hex digits of a secp256k1 key')
    address = address_of(private_key)
    if type(obj["address"]) is not str or obj["address"].lower() != address:
        raise KeyFileError(f'{where}: "address" is not the address of its private key')
    return KeyFile(address, private_key)


def read_key_file(path: str) -> KeyFile:
    """Read and check a key file; refuse one that its group or others may read."""
    try:
        with open(path, encoding="utf-8") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise KeyFileError(
                    f"{path}: others may read it (mode {stat.S_IMODE(mode):04o}); "
                    f"run chmod 600 {path}"
                )
            text = handle.read()
    except OSError as exc:
        raise KeyFileError(f"{path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: not a key file (not UTF-8)") from None
    return parse_key_json(text, path)
