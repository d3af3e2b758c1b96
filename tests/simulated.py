"""The simulated market's first blocks, for tests that need real traffic: made by applying
each block in memory, since the market chooses a block's orders from the state before it."""

from __future__ import annotations

from collections.abc import Iterator

from block_exec import Block, Executor, block_from_obj
from block_exec.simulate import BlockObject, MarketConfig, SimulatedMarket


def _simulated(count: int) -> Iterator[tuple[BlockObject, Block]]:
    market = SimulatedMarket(MarketConfig(blocks=count))
    executor = Executor()
    for height in range(1, count + 1):
        obj = market.block(height, executor.state)
        block = block_from_obj(obj, f"simulated block {height}")
        executor.apply_block(block)
        yield obj, block


def simulated_block_objs(count: int) -> list[BlockObject]:
    """Blocks 1..count as block-file objects (what `--blocks` reads)."""
    return [obj for obj, _ in _simulated(count)]


def simulated_block_list(count: int) -> list[Block]:
    """Blocks 1..count, decoded."""
    return [block for _, block in _simulated(count)]
