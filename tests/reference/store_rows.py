"""The rows spec/store.md fixes byte for byte, built from the reference's outcomes.

For a store written by `coreledger run --checkpoint-interval N` from the empty state with
no pruning (keep >= the number of checkpoints), the tables `00` (meta), `01` (blocks),
`10` (state versions), `11` (latest state), `12` (checkpoints) and `13` (change logs)
are exactly `expected_rows(...)`.
"""

from __future__ import annotations

from tests.reference import cbor
from tests.reference.ledger import BlockOutcome


def crc32(data: bytes) -> int:
    """CRC-32 as spec/store.md defines it (reflected polynomial 0xEDB88320, init and final
    xor 0xFFFFFFFF), bit by bit."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def framed(items: list[cbor.CborValue]) -> bytes:
    """F[...]: crc32(payload) as u32 big-endian, then the payload, a CBOR array."""
    payload = cbor.encode(items)
    return crc32(payload).to_bytes(4, "big") + payload


def u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def receipts_line(expected_line: str, state_root: bytes | None) -> bytes:
    """The stored receipts: the expected receipts line (state_root null) with the root set."""
    assert expected_line.startswith('{"height":') and '"state_root":null,' in expected_line
    if state_root is None:
        return expected_line.encode()
    root = f'"state_root":"{state_root.hex()}",'
    return expected_line.replace('"state_root":null,', root).encode()


def expected_rows(
    outcomes: list[BlockOutcome], receipt_lines: list[str], interval: int
) -> dict[bytes, bytes]:
    rows: dict[bytes, bytes] = {
        b"\x00format": framed([1]),
        b"\x00checkpoint_interval": framed([interval]),
    }
    prev_hash = bytes(32)
    fills = 0
    at_checkpoint: dict[bytes, bytes] = {}  # the state at the previous checkpoint
    for outcome, line in zip(outcomes, receipt_lines, strict=True):
        height = outcome.height
        checkpoint = height % interval == 0
        root = outcome.state_root if checkpoint else None
        rows[b"\x01" + u64(height)] = framed(
            [outcome.time, outcome.block_hash, prev_hash, outcome.block_bytes,
             receipts_line(line, root)]
        )
        prev_hash = outcome.block_hash
        fills += sum(len(result.fills) for result in outcome.results)
        if not checkpoint:
            continue
        now = outcome.entries
        keys = set(now) | set(at_checkpoint)
        changed = sorted(k for k in keys if now.get(k) != at_checkpoint.get(k))
        for key in changed:
            value = now.get(key)
            rows[b"\x10" + key + u64(height)] = b"\x00" if value is None else b"\x01" + value
            rows[b"\x13" + u64(height) + key] = b""
        namespaces: list[cbor.CborValue] = [[ns, r] for ns, r in outcome.namespace_roots.items()]
        rows[b"\x12" + u64(height)] = framed(
            [outcome.block_hash, outcome.state_root, namespaces, len(now), len(changed)]
        )
        at_checkpoint = now
    for key, value in at_checkpoint.items():
        rows[b"\x11" + key] = value
    last = outcomes[-1] if outcomes else None
    rows[b"\x00head"] = framed(
        [0, bytes(32), 1] if last is None else [last.height, last.block_hash, fills + 1]
    )
    return rows


TABLES = (b"\x00", b"\x01", b"\x10", b"\x11", b"\x12", b"\x13")
