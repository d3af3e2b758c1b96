"""The four state-sync calls on the wire: protobuf requests to `block_exec.statesync`'s
plain calls and back (the snapshot format and its checks are in store/, spec/store.md)."""

from __future__ import annotations

from collections.abc import Callable

from block_exec.abci.proto.tendermint.abci import types_pb2 as abci
from block_exec.statesync import StateSync
from store.snapshot_format import Snapshot
from store.snapshot_restore import ChunkVerdict, OfferVerdict

_OFFER = {
    OfferVerdict.ACCEPT: abci.ResponseOfferSnapshot.ACCEPT,
    OfferVerdict.ABORT: abci.ResponseOfferSnapshot.ABORT,
    OfferVerdict.REJECT: abci.ResponseOfferSnapshot.REJECT,
    OfferVerdict.REJECT_FORMAT: abci.ResponseOfferSnapshot.REJECT_FORMAT,
}
_CHUNK = {
    ChunkVerdict.ACCEPT: abci.ResponseApplySnapshotChunk.ACCEPT,
    ChunkVerdict.ABORT: abci.ResponseApplySnapshotChunk.ABORT,
    ChunkVerdict.RETRY: abci.ResponseApplySnapshotChunk.RETRY,
    ChunkVerdict.REJECT_SNAPSHOT: abci.ResponseApplySnapshotChunk.REJECT_SNAPSHOT,
}


class SnapshotCalls:
    """ListSnapshots, LoadSnapshotChunk, OfferSnapshot, ApplySnapshotChunk over `sync`.
    `on_restored` is called once a snapshot is restored (with the new executor in
    `sync.executor`)."""

    def __init__(self, sync: StateSync, on_restored: Callable[[], None]) -> None:
        self.sync = sync
        self.on_restored = on_restored

    def list_snapshots(self, _: abci.RequestListSnapshots) -> abci.ResponseListSnapshots:
        return abci.ResponseListSnapshots(snapshots=[
            abci.Snapshot(height=s.height, format=s.format, chunks=s.chunks, hash=s.hash,
                          metadata=s.metadata)
            for s in self.sync.list_snapshots()
        ])

    def load_snapshot_chunk(
        self, request: abci.RequestLoadSnapshotChunk
    ) -> abci.ResponseLoadSnapshotChunk:
        chunk = self.sync.load_snapshot_chunk(request.height, request.format, request.chunk)
        return abci.ResponseLoadSnapshotChunk(chunk=chunk)

    def offer_snapshot(self, request: abci.RequestOfferSnapshot) -> abci.ResponseOfferSnapshot:
        if self.sync.chain_id is None:
            # a snapshot does not hold the chain id: without it the restored node could
            # check no signed tx (and would leave every tx of the next block out)
            self.sync.log("snapshot offer refused: state sync needs the chain id (--chain-id)")
            return abci.ResponseOfferSnapshot(result=abci.ResponseOfferSnapshot.ABORT)
        offered = request.snapshot
        snapshot = Snapshot(offered.height, offered.format, offered.chunks, offered.hash,
                            offered.metadata)
        verdict = self.sync.offer_snapshot(snapshot, request.app_hash)
        return abci.ResponseOfferSnapshot(result=_OFFER[verdict])

    def apply_snapshot_chunk(
        self, request: abci.RequestApplySnapshotChunk
    ) -> abci.ResponseApplySnapshotChunk:
        before = self.sync.executor
        outcome = self.sync.apply_snapshot_chunk(request.index, request.chunk, request.sender)
        if self.sync.executor is not before:
            self.on_restored()
        return abci.ResponseApplySnapshotChunk(
            result=_CHUNK[outcome.verdict],
            refetch_chunks=list(outcome.refetch),
            reject_senders=list(outcome.reject_senders),
        )
