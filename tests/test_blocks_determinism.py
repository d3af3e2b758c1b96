"""Determinism: the same blocks give byte-identical receipts and state entries, across
fresh instances and across processes with different PYTHONHASHSEED values."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from block_exec import (
    Block,
    Cancel,
    Deposit,
    Executor,
    Limit,
    Market,
    Tx,
    Withdraw,
    block_receipts_line,
    decode_json_block,
    encode_block,
    iter_blocks,
)
from state_machine import Side, Tif, state_entries

USERS = ["0x" + c * 40 for c in "abcd"]
users = st.sampled_from(USERS)
small = st.integers(1, 20)
txs: st.SearchStrategy[Tx] = st.one_of(
    st.builds(Deposit, users, st.integers(0, 2), st.integers(1, 500)),
    st.builds(Withdraw, users, st.integers(0, 2), st.integers(1, 100)),
    st.builds(Limit, users, st.integers(1, 2), st.sampled_from(list(Side)), small, small,
              st.sampled_from(list(Tif))),
    st.builds(Market, users, st.integers(1, 2), st.sampled_from(list(Side)), small),
    st.builds(Cancel, users, st.integers(1, 2), st.integers(1, 40)),
)
block_txs = st.lists(st.lists(txs, max_size=15), min_size=1, max_size=6)


def _run(tx_lists: list[list[Tx]]) -> tuple[list[str], list[tuple[bytes, bytes]], list[bytes]]:
    ex = Executor()
    lines = []
    hashes = []
    for height, block_txs_ in enumerate(tx_lists, 1):
        result = ex.apply_block(Block(height, 1000 + height, tuple(block_txs_)))
        lines.append(block_receipts_line(result.height, None, result.receipts))
        hashes.append(result.block_hash)
    return lines, state_entries(ex.state), hashes


@settings(max_examples=60, deadline=None)
@given(block_txs)
def test_fresh_instances_agree(tx_lists: list[list[Tx]]) -> None:
    first = _run(tx_lists)
    assert _run(tx_lists) == first
    # Decoding the same blocks from CBOR and from JSON changes nothing either.
    blocks = [Block(h, 1000 + h, tuple(t)) for h, t in enumerate(tx_lists, 1)]
    via_cbor = list(iter_blocks(b"".join(encode_block(b) for b in blocks)))
    assert [list(b.txs) for b in via_cbor] == tx_lists
    for line, block in zip(first[0], blocks, strict=True):
        assert json.loads(line)["height"] == block.height


SCRIPT = r"""
import hashlib, json, sys
from block_exec import Executor, block_receipts_line, iter_blocks
from state_machine import state_entries
digest = hashlib.sha256()
ex = Executor()
for block in iter_blocks(sys.stdin.buffer.read()):
    result = ex.apply_block(block)
    digest.update(block_receipts_line(result.height, None, result.receipts).encode())
    digest.update(result.block_hash)
for key, value in state_entries(ex.state):
    digest.update(key); digest.update(value)
print(digest.hexdigest())
"""


def _stream() -> bytes:
    """A deterministic mixed block stream (a linear congruential generator, no `random`)."""
    x = 12345
    lines = []

    def nxt(n: int) -> int:
        nonlocal x
        x = (x * 6364136223846793005 + 1442695040888963407) % 2**64
        return (x >> 33) % n

    for height in range(1, 31):
        block_txs_: list[dict[str, object]] = []
        for _ in range(60):
            user = "0x%040x" % (nxt(25) + 1)
            kind = nxt(10)
            if height == 1 or kind == 0:
                block_txs_.append({"op": "deposit", "user": user, "asset": nxt(3),
                                   "amount": 1 + nxt(10**6)})
            elif kind < 6:
                block_txs_.append({"op": "limit", "user": user, "asset": 1 + nxt(2),
                                   "side": ("buy", "sell")[nxt(2)], "price": 95 + nxt(10),
                                   "size": 1 + nxt(50), "tif": ("gtc", "ioc", "alo")[nxt(3)]})
            elif kind < 8:
                block_txs_.append({"op": "cancel", "user": user, "asset": 1 + nxt(2),
                                   "order_id": 1 + nxt(height * 40)})
            else:
                block_txs_.append({"op": "market", "user": user, "asset": 1 + nxt(2),
                                   "side": ("buy", "sell")[nxt(2)], "size": 1 + nxt(30)})
        lines.append(json.dumps({"height": height, "time": height, "txs": block_txs_}))
    return ("\n".join(lines) + "\n").encode()


def test_same_bytes_under_different_hash_seeds() -> None:
    data = _stream()
    root = str(Path(__file__).resolve().parent.parent)
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=root)
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT], input=data, capture_output=True, env=env,
            check=True, timeout=120,
        )
        outputs.add(done.stdout)
    assert len(outputs) == 1
    # And in this process, from the JSON lines decoded one by one.
    digest = hashlib.sha256()
    ex = Executor()
    for line in data.splitlines():
        result = ex.apply_block(decode_json_block(line))
        digest.update(block_receipts_line(result.height, None, result.receipts).encode())
        digest.update(result.block_hash)
    for key, value in state_entries(ex.state):
        digest.update(key)
        digest.update(value)
    assert outputs == {(digest.hexdigest() + "\n").encode()}
    assert ex.height == 30 and len(ex.state.orders) > 0
