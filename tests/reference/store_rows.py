"""The rows spec/store.md fixes byte for byte, built from the reference's outcomes.

For a store written by `coreledger run --checkpoint-interval N` from the empty state with
no pruning (keep >= the number of checkpoints), the tables `00` (meta), `01` (blocks),
`10` (state versions), `11` (latest state), `12` (checkpoints), `13` (change logs) and
the history tables `20`-`25` are exactly `expected_rows(...)`.
"""

from __future__ import annotations

from tests.reference import cbor
from tests.reference.ledger import BlockOutcome, user_bytes


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
    rows.update(history_rows(outcomes))
    last = outcomes[-1] if outcomes else None
    rows[b"\x00head"] = framed(
        [0, bytes(32), 1] if last is None else [last.height, last.block_hash, fills + 1]
    )
    return rows


SIDE = {"buy": 0, "sell": 1}
TIF = {"gtc": 0, "ioc": 1, "alo": 2}
REASON = {"user": 0, "ioc": 1, "market": 2, "self_trade": 3}


def history_rows(outcomes: list[BlockOutcome]) -> dict[bytes, bytes]:
    """spec/store.md, "The per-block batch": per order placed `20 id` and `25 user id`; per
    fill (seq from 1 in execution order) `21 seq`, `22 maker_id seq`, `22 taker_id seq`,
    `24 maker seq`, `24 taker seq`; per cancellation `23 id`."""
    rows: dict[bytes, bytes] = {}
    seq = 0
    for outcome in outcomes:
        height = outcome.height
        for tx, result in zip(outcome.txs, outcome.results, strict=True):
            if not result.ok:
                continue
            user = user_bytes(str(tx["user"]).lower())
            if result.order_id is not None:
                limit = tx["op"] == "limit"
                rows[b"\x20" + u64(result.order_id)] = framed([
                    user, tx["asset"], SIDE[tx["side"]], 0 if limit else 1,
                    TIF[tx.get("tif", "gtc")] if limit else None,
                    tx["price"] if limit else None, tx["size"], height,
                ])
                rows[b"\x25" + user + u64(result.order_id)] = b""
            for maker_id, taker_id, maker, taker, price, size in result.fills:
                seq += 1
                rows[b"\x21" + u64(seq)] = framed([
                    tx["asset"], maker_id, taker_id, user_bytes(maker), user_bytes(taker),
                    price, size, SIDE[tx["side"]], height,
                ])
                rows[b"\x22" + u64(maker_id) + u64(seq)] = u64(size)
                rows[b"\x22" + u64(taker_id) + u64(seq)] = u64(size)
                rows[b"\x24" + user_bytes(maker) + u64(seq)] = b""
                rows[b"\x24" + user_bytes(taker) + u64(seq)] = b""
            for order_id, _user, reason, _price, left in result.cancellations:
                rows[b"\x23" + u64(order_id)] = framed([REASON[reason], left, height])
    return rows


TABLES = (
    b"\x00", b"\x01", b"\x10", b"\x11", b"\x12", b"\x13",
    b"\x20", b"\x21", b"\x22", b"\x23", b"\x24", b"\x25",
)
