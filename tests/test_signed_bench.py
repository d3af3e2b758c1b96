"""The signed-tx benchmark measures what it claims: the signed and unsigned runs do the
same work (same receipts, same state but for nonces and the bridge), and a warm cache
answers every tx."""

from __future__ import annotations

from block_exec import bench_signed
from block_exec.executor import Executor
from block_exec.genesis import genesis_balances_state
from block_exec.receipts_json import receipt_to_json_obj
from block_exec.signed import SignatureCache, check_signed_tx
from block_exec.types import Block
from state_machine import state_entries


def test_signed_and_unsigned_runs_do_the_same_work() -> None:
    genesis, signed_blocks, plain_blocks = bench_signed._workload(2, 4)
    plain = Executor(genesis_balances_state(genesis))
    network = bench_signed._network_executor(genesis)
    cache = SignatureCache()
    for raws, block in zip(signed_blocks, plain_blocks, strict=True):
        checked = [check_signed_tx(raw, bench_signed.CHAIN, cache) for raw in raws]
        assert tuple(s.tx for s, _ in checked) == block.txs
        signed_result = network.apply_block(Block(block.height, block.time, block.txs),
                                            auth=[a for _, a in checked])
        plain_result = plain.apply_block(block)
        receipts = [receipt_to_json_obj(r) for r in signed_result.receipts]
        assert receipts == [receipt_to_json_obj(r) for r in plain_result.receipts]
        assert all(r.get("error") not in ("not_authorized", "bad_nonce") for r in receipts)
    without_network = [e for e in state_entries(network.state)
                       if e[0][0] != 3 and e[0] != b"\x00bridge"]
    assert without_network == state_entries(plain.state)


def test_signed_benchmark_figures() -> None:
    figures = {f["name"]: f for f in bench_signed.signed_benchmarks(quick=True)}
    warm = figures["signed/apply signed txs, cache warm"]
    assert warm["cache_hits"] == warm["operations"] == 2000
    for item in figures.values():
        assert item["seconds"] > 0 and item["operations"] == 2000
    assert "ratio_vs_baseline" in figures["signed/apply signed txs, cache cold"]
