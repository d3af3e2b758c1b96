"""The simulated market's blocks, receipts and final root are pinned.

The generator reads the books (it cancels the oldest order of a level picked by rank, and
quotes around the mid), so a change in how the core holds its books could change the blocks
it generates. The values below were computed on main at cbf1e27 (books held in
`SortedDict`s of `OrderedDict`s), before the book moved to dicts and heaps: they are
independent of the code under test.
"""

from __future__ import annotations

import json

import blake3

from block_exec.decode import block_from_obj
from block_exec.executor import Executor
from block_exec.receipts_json import block_receipts_line
from block_exec.simulate import MarketConfig, SimulatedMarket

BLOCKS = 600
FINAL_ROOT = "ec523590024f326e35c6ef5b3232ed8641f61ffd791f2b58f3acc7cbe9d3e52f"
BLOCKS_DIGEST = "a1c2c0bd77bade35cc1ce8ba0bb997100b912c1f034e68e21fc0ac0ede7c1ad0"
RECEIPTS_DIGEST = "c52cd061a8c44f59507bed3ec42269166fa56b3f250b943a7d54e70da65476da"


def test_simulated_market_blocks_receipts_and_root_are_unchanged() -> None:
    market = SimulatedMarket(MarketConfig(blocks=BLOCKS))
    executor = Executor(checkpoint_interval=100)
    blocks, receipts = blake3.blake3(), blake3.blake3()
    for height in range(1, BLOCKS + 1):
        obj = market.block(height, executor.state)
        blocks.update(json.dumps(obj, separators=(",", ":")).encode() + b"\n")
        result = executor.apply_block(block_from_obj(obj, "sim"))
        root = None if result.state_root is None else result.state_root.hex()
        receipts.update(block_receipts_line(height, root, result.receipts).encode() + b"\n")
    executor.state._check()
    assert (len(executor.state.orders), executor.state.next_order_id) == (453, 22762)
    assert blocks.hexdigest() == BLOCKS_DIGEST
    assert receipts.hexdigest() == RECEIPTS_DIGEST
    assert executor.state_root.hex() == FINAL_ROOT
