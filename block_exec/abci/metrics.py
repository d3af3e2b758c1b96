"""Prometheus metrics of `coreledger node --metrics HOST:PORT` (prometheus-client).

Each node has its own registry (not the process-global default), so tests can run several
applications in one process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from block_exec.types import BlockResult

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.height = Gauge("coreledger_height", "last committed block height", registry=r)
        self.txs = Counter("coreledger_txs_applied", "txs applied in finalized blocks",
                           registry=r)
        self.fills = Counter("coreledger_fills", "fills in finalized blocks", registry=r)
        self.receipts = Counter("coreledger_receipts", "receipts of applied txs by code",
                                ["code"], registry=r)
        self.apply_seconds = Histogram("coreledger_block_apply_seconds",
                                       "FinalizeBlock: decode, verify and apply a block",
                                       buckets=_SECONDS, registry=r)
        self.commit_seconds = Histogram("coreledger_block_commit_seconds",
                                        "Commit: write the block to the store",
                                        buckets=_SECONDS, registry=r)
        self.check_txs = Counter("coreledger_check_tx", "CheckTx answers by outcome",
                                 ["outcome"], registry=r)
        self.check_seconds = Histogram("coreledger_check_tx_seconds", "CheckTx time",
                                       buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001,
                                                0.0025, 0.01), registry=r)

    def serve(self, host: str, port: int) -> None:
        """Serve /metrics over HTTP from a daemon thread."""
        start_http_server(port, addr=host, registry=self.registry)

    def check_tx(self, outcome: str, seconds: float) -> None:
        self.check_txs.labels(outcome).inc()
        self.check_seconds.observe(seconds)

    def block_applied(self, result: BlockResult, seconds: float) -> None:
        self.txs.inc(len(result.results))
        for _, error, _, fills, *_ in result.results:
            self.receipts.labels(error or "ok").inc()
            if fills:
                self.fills.inc(len(fills))
        self.apply_seconds.observe(seconds)

    def committed(self, height: int, seconds: float) -> None:
        self.height.set(height)
        self.commit_seconds.observe(seconds)
