"""`coreledger bench` figures of network mode (spec/signed.md): signature recovery per tx,
and the apply throughput of signed txs with the signature cache cold and warm, as ratios
to the same txs applied unsigned in the same run.

The workload: users with fixed test keys trade one book (gtc limits around a mid, some
crossing; cancels of their own recent orders; market orders), funded by the genesis. The
same inner txs run three ways on fresh in-memory executors: unsigned (`apply_block` of
decoded blocks: the baseline), signed with a cold cache (every tx decoded and recovered,
as a node that never saw it at CheckTx), and signed with a warm cache (every tx checked
once before, as CheckTx does, so applying it finds it in the cache).
"""

from __future__ import annotations

import time

from block_exec.bench import Figure, figure
from block_exec.executor import Executor
from block_exec.genesis import Genesis, GenesisBalance, genesis_balances_state
from block_exec.signed import (
    SignatureCache,
    TxAuth,
    address_of,
    check_signed_tx,
    decode_signed_tx,
    recover_signer,
    sign_tx,
)
from block_exec.simulate import SplitMix64
from block_exec.types import Block, Cancel, Limit, Market, Tx
from state_machine import Side, Tif

CHAIN = "coreledger-bench"
TXS_PER_BLOCK = 250
MID = 10_000


def _keys(count: int) -> list[bytes]:
    return [(0x1000 + i).to_bytes(32, "big") for i in range(count)]


def _workload(blocks: int, users: int) -> tuple[Genesis, list[list[bytes]], list[Block]]:
    """The genesis, each block's signed txs, and the same blocks unsigned."""
    keys = _keys(users)
    addresses = [address_of(key) for key in keys]
    genesis = Genesis(addresses[0], tuple(
        GenesisBalance(user, asset, 10**15) for user in addresses for asset in (0, 1)
    ))
    rng = SplitMix64(7)
    nonces = [0] * users
    last_order = [0] * users
    next_order_id = 1
    signed_blocks: list[list[bytes]] = []
    plain_blocks: list[Block] = []
    for height in range(1, blocks + 1):
        raws: list[bytes] = []
        txs: list[Tx] = []
        for _ in range(TXS_PER_BLOCK):
            who = rng.below(users)
            user = addresses[who]
            roll = rng.below(100)
            tx: Tx
            if roll < 35 and last_order[who]:
                tx = Cancel(user, 1, last_order[who])
                last_order[who] = 0
            elif roll < 90:
                side = Side.BUY if rng.below(2) == 0 else Side.SELL
                offset = rng.between(-20, 50)
                price = MID - offset if side == Side.BUY else MID + offset
                tx = Limit(user, 1, side, price, rng.between(1, 20), Tif.GTC)
                last_order[who] = next_order_id
                next_order_id += 1
            else:
                tx = Market(user, 1, Side.BUY if rng.below(2) == 0 else Side.SELL,
                            rng.between(1, 10))
                next_order_id += 1
            raws.append(sign_tx(keys[who], CHAIN, nonces[who], tx))
            nonces[who] += 1
            txs.append(tx)
        signed_blocks.append(raws)
        plain_blocks.append(Block(height, 1_700_000_000_000 + height, tuple(txs)))
    return genesis, signed_blocks, plain_blocks


def _network_executor(genesis: Genesis) -> Executor:
    executor = Executor()
    executor.init_chain(genesis, CHAIN)
    return executor


def _apply_signed(executor: Executor, signed_blocks: list[list[bytes]],
                  cache: SignatureCache) -> float:
    start = time.perf_counter()
    for height, raws in enumerate(signed_blocks, 1):
        checked = [check_signed_tx(raw, CHAIN, cache) for raw in raws]
        block = Block(height, 1_700_000_000_000 + height, tuple(s.tx for s, _ in checked))
        auth: list[TxAuth] = [a for _, a in checked]
        executor.apply_block(block, auth=auth)
    return time.perf_counter() - start


def signed_benchmarks(quick: bool) -> list[Figure]:
    """Recovery cost per tx; signed apply throughput (cold, warm) against unsigned."""
    genesis, signed_blocks, plain_blocks = _workload(8 if quick else 40, 16)
    raws = [raw for block in signed_blocks for raw in block]
    count = len(raws)

    decoded = [decode_signed_tx(raw) for raw in raws]
    start = time.perf_counter()
    for signed, raw in zip(decoded, raws, strict=True):
        recover_signer(signed, raw, cache=None)
    recover = figure("signed/recover_signer (secp256k1 + keccak)", count,
                      time.perf_counter() - start)
    start = time.perf_counter()
    for raw in raws:
        decode_signed_tx(raw)
    decode = figure("signed/decode_envelope (strict CBOR)", count, time.perf_counter() - start)

    baseline = Executor(genesis_balances_state(genesis))
    start = time.perf_counter()
    for block in plain_blocks:
        baseline.apply_block(block)
    unsigned = figure("signed/baseline: same txs unsigned (apply_block)", count,
                       time.perf_counter() - start)

    cold_cache = SignatureCache()
    cold = figure("signed/apply signed txs, cache cold", count,
                   _apply_signed(_network_executor(genesis), signed_blocks, cold_cache))
    warm_cache = SignatureCache()
    for raw in raws:  # CheckTx saw every tx first
        check_signed_tx(raw, CHAIN, warm_cache)
    warm = figure("signed/apply signed txs, cache warm", count,
                   _apply_signed(_network_executor(genesis), signed_blocks, warm_cache),
                   cache_hits=warm_cache.hits)
    figures = [recover, decode, unsigned, cold, warm]
    for item in (recover, decode, cold, warm):
        item["baseline"] = unsigned["name"]
        item["baseline_ops_per_s"] = unsigned["ops_per_s"]
        item["ratio_vs_baseline"] = round(item["ops_per_s"] / unsigned["ops_per_s"], 3)
    return figures
