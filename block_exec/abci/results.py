"""FinalizeBlock's per-tx results (contract: "Network mode"): codes, receipt JSON, events."""

from __future__ import annotations

import orjson

from block_exec.abci.proto.tendermint.abci import types_pb2 as abci
from block_exec.receipts_json import receipt_to_json_obj
from block_exec.types import Receipt
from state_machine import CancelReason

CODESPACE = "coreledger"

CODES: dict[str, int] = {
    "insufficient_balance": 1,
    "overflow": 2,
    "would_cross": 3,
    "unknown_order": 4,
    "not_owner": 5,
    "not_authorized": 6,
    "bad_nonce": 7,
}
"""ExecTxResult.code of a rejected receipt, by its error (0 for an ok receipt)."""

REFUSED_CODE = 8
"""A tx of a decided block that is not a valid signed tx of this chain. ProcessProposal
rejects such proposals, so honest validators never decide one; if one is decided anyway
it is left out of the applied block (deterministically, on every node) with this code."""

_REASONS = {
    CancelReason.USER: "user",
    CancelReason.IOC: "ioc",
    CancelReason.MARKET: "market",
    CancelReason.SELF_TRADE: "self_trade",
}


def _attribute(key: str, value: object) -> abci.EventAttribute:
    return abci.EventAttribute(key=key, value=str(value), index=True)


def receipt_events(receipt: Receipt) -> list[abci.Event]:
    """One `fill` event per fill and one `cancel` event per cancellation, in order."""
    _, _, _, fills, _, _, cancellations = receipt
    events = [
        abci.Event(
            type="fill",
            attributes=[
                _attribute("asset", fill.asset),
                _attribute("maker_order_id", fill.maker_order_id),
                _attribute("taker_order_id", fill.taker_order_id),
                _attribute("maker", fill.maker),
                _attribute("taker", fill.taker),
                _attribute("price", fill.price),
                _attribute("size", fill.size),
                _attribute("taker_side", fill.taker_side.name.lower()),
            ],
        )
        for fill in fills
    ]
    events.extend(
        abci.Event(
            type="cancel",
            attributes=[
                _attribute("asset", cancel.asset),
                _attribute("order_id", cancel.order_id),
                _attribute("user", cancel.user),
                _attribute("size", cancel.size),
                _attribute("reason", _REASONS[cancel.reason]),
            ],
        )
        for cancel in cancellations
    )
    return events


def exec_tx_result(receipt: Receipt) -> abci.ExecTxResult:
    """The ExecTxResult of one applied tx: code, codespace, receipt JSON, events."""
    data = orjson.dumps(receipt_to_json_obj(receipt))
    ok, error, *_ = receipt
    if not ok:
        assert error is not None
        return abci.ExecTxResult(
            code=CODES[error], codespace=CODESPACE, data=data, log=error
        )
    return abci.ExecTxResult(
        code=0, codespace=CODESPACE, data=data, events=receipt_events(receipt)
    )


def refused_tx_result(message: str) -> abci.ExecTxResult:
    return abci.ExecTxResult(code=REFUSED_CODE, codespace=CODESPACE, log=message)
