"""`coreledger verify-proof`: check a `prove` file against a state root, with no database.

Every field of the file is checked against the bytes the proof proves, so nothing a
person reads in it can say more than the proof shows: `key` and `namespace_hex` must be
what `key_hex` names, `value` the decoded `value_hex`, `included` whether `value_hex` is
present, `root` (when present) equal to `--root`, `height` (when present) an integer
equal to `--height` when that is given. Any disagreement, an unknown field or a proof that
does not hash to the root: exit 1 and one line naming the field.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from block_exec.commands.base import (
    Command,
    CommandFailed,
    nonnegative,
    one_line,
    print_json,
)
from block_exec.views.entries import UndecodableValue, entry_name, entry_value
from merkle import verify_namespaced
from state_machine import namespace_of

REQUIRED = ("key_hex", "value_hex", "proof_hex")
CHECKED_WHEN_PRESENT = ("height", "root", "key", "namespace_hex", "value", "included")
MAX_HEIGHT = 2**64 - 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", metavar="HEX", required=True)
    parser.add_argument("--height", metavar="H", type=nonnegative,
                        help="also require the proof to be for this height")
    parser.add_argument("proof_file", metavar="PROOF_FILE")


class _Disagrees(CommandFailed):
    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"proof file: field {name!r} {problem}")


def _hex(proof: dict[str, Any], name: str) -> bytes:
    text = proof[name]
    if not isinstance(text, str):
        raise _Disagrees(name, "must be a hex string")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise _Disagrees(name, "is not hex") from None


def _json_text(value: Any) -> str:
    """JSON text, so that `true` never equals 1 and `5.0` never equals 5."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            proof = json.load(handle)
    except OSError as exc:
        raise CommandFailed(f"{path}: {exc.strerror}") from None
    except ValueError as exc:
        raise CommandFailed(f"{path}: not JSON ({one_line(exc)})") from None
    if not isinstance(proof, dict):
        raise CommandFailed(f"{path}: want a JSON object from 'coreledger prove'")
    for name in sorted(proof):
        if name not in REQUIRED and name not in CHECKED_WHEN_PRESENT:
            raise _Disagrees(name, "is not a field of a proof")
    for name in REQUIRED:
        if name not in proof:
            raise _Disagrees(name, "is missing")
    return proof


def _check_fields(proof: dict[str, Any], root: bytes, height: int | None) -> tuple[
        bytes, bytes | None, Any]:
    """(key, value, decoded value) after checking every field against the bytes."""
    key = _hex(proof, "key_hex")
    if not key:
        raise _Disagrees("key_hex", "is empty")
    value = None if proof["value_hex"] is None else _hex(proof, "value_hex")
    try:
        decoded = entry_value(key, value)
    except UndecodableValue as exc:
        raise _Disagrees("value_hex", f"is not a value of {entry_name(key)} ({exc})") from None
    expected = {
        "key": entry_name(key),
        "namespace_hex": namespace_of(key).hex(),
        "value": decoded,
        "included": value is not None,
        "root": root.hex(),
    }
    for name, want in expected.items():
        if name in proof and _json_text(proof[name]) != _json_text(want):
            raise _Disagrees(name, f"says {_json_text(proof[name])[:80]}, the proof holds "
                             f"{_json_text(want)[:80]}")
    if "height" in proof:
        got = proof["height"]
        if type(got) is not int or not 0 <= got <= MAX_HEIGHT:
            raise _Disagrees("height", "must be an integer in [0, 2^64-1]")
        if height is not None and got != height:
            raise _Disagrees("height", f"says {got}, --height is {height}")
    elif height is not None:
        raise _Disagrees("height", f"is missing (--height is {height})")
    return key, value, decoded


def handle(args: argparse.Namespace) -> int:
    try:
        root = bytes.fromhex(args.root)
    except ValueError:
        root = b""
    if len(root) != 32:
        raise CommandFailed(f"bad --root {args.root!r}: want 64 hex digits")
    proof = _read(args.proof_file)
    key, value, decoded = _check_fields(proof, root, args.height)
    proof_bytes = _hex(proof, "proof_hex")
    valid = verify_namespaced(root, namespace_of(key), key, value, proof_bytes)
    name = entry_name(key)
    print_json(
        {
            "valid": valid,
            "root": root.hex(),
            "height": proof.get("height"),
            "key": name,
            "included": value is not None,
            "value": decoded,
        }
    )
    if not valid:
        print(
            f"coreledger: error: field 'proof_hex': the proof does not show {name} "
            f"{'has this value' if value is not None else 'absent'} under root {root.hex()}",
            file=sys.stderr,
        )
        return 1
    return 0


COMMAND = Command(
    name="verify-proof",
    help="check a proof file against a state root",
    example="coreledger verify-proof --root <hex> proof.json",
    add_arguments=add_arguments,
    handle=handle,
)
