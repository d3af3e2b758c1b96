"""The ABCI result codes are the ones spec/network.md gives: its CheckTx and FinalizeBlock
tables are read here and checked against the application's answers to one tx of each
kind (in process, on a real store), and against the code's tables."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message

from block_exec.abci.app import CHECK_CODES, Application
from block_exec.abci.ledger import Ledger
from block_exec.abci.proto.tendermint.abci import types_pb2 as abci
from block_exec.abci.results import CODES, REFUSED_CODE
from block_exec.executor import Executor
from block_exec.signed import address_of, sign_tx
from block_exec.types import Cancel, Deposit, Limit, Tx, Withdraw
from state_machine import Side, Tif

SPEC = Path(__file__).resolve().parent.parent / "spec"
VECTORS = json.loads((SPEC / "vectors" / "signed" / "txs.json").read_text())
BAD_SIGNATURE = next(v for v in VECTORS if v["verdict"] == "bad_signature")
CHAIN = BAD_SIGNATURE["chain_id"]  # so that the vector fails at its signature only
ALICE_KEY, BOB_KEY, BRIDGE_KEY = bytes([2]) * 32, bytes([3]) * 32, bytes([1]) * 32
ALICE, BOB, BRIDGE = (address_of(k) for k in (ALICE_KEY, BOB_KEY, BRIDGE_KEY))
GENESIS = {"bridge": BRIDGE, "balances": [{"user": ALICE, "asset": 0, "amount": 1000},
                                          {"user": BOB, "asset": 1, "amount": 50}]}


def spec_codes(section: str) -> dict[str, int]:
    """{name: code} of the table in spec/network.md's section headed `section`; the row
    without a name (CheckTx's acceptance) as "ok"."""
    text = (SPEC / "network.md").read_text()
    body = text.split(f"\n## {section}", 1)[1].split("\n## ", 1)[0]
    codes: dict[str, int] = {}
    for code, name in re.findall(r"^\| +(\d+) \| ([^|]*)\|", body, re.M):
        codes[name.strip().strip("`") or "ok"] = int(code)
    assert codes, f"no code table in section {section!r}"
    return codes


CHECK = spec_codes("2. CheckTx")
FINALIZE = spec_codes("4. FinalizeBlock")


def test_the_spec_tables_are_the_codes_the_brief_fixed() -> None:
    """Hand-written from the contract and the issue: a second, independent reading."""
    assert CHECK == {"not_initialised": 13, "malformed": 10, "wrong_chain": 12,
                     "bad_signature": 11, "not_authorized": 6, "bad_nonce": 7, "ok": 0}
    assert FINALIZE == {"ok": 0, "insufficient_balance": 1, "overflow": 2, "would_cross": 3,
                        "unknown_order": 4, "not_owner": 5, "not_authorized": 6,
                        "bad_nonce": 7, "not_a_signed_tx": 8}


def test_the_code_tables_are_the_spec_tables() -> None:
    assert {name: code for name, code in CHECK.items() if name != "ok"} == CHECK_CODES
    assert {name: code for name, code in FINALIZE.items()
                     if name not in ("ok", "not_a_signed_tx")} == CODES
    assert FINALIZE["not_a_signed_tx"] == REFUSED_CODE


def run(app: Application, kind: str, request: Message) -> Any:
    return asyncio.run(app.handle(kind, request))


@pytest.fixture
def app(tmp_path: Path) -> Any:
    executor = Executor.open(str(tmp_path / "node"))
    application = Application(Ledger(executor))
    run(application, "init_chain", abci.RequestInitChain(
        chain_id=CHAIN, app_state_bytes=json.dumps(GENESIS).encode()))
    yield application
    executor.close()


def signed(key: bytes, nonce: int, tx: Tx, chain: str = CHAIN) -> bytes:
    return sign_tx(key, chain, nonce, tx)


def test_check_tx_answers_each_spec_code(app: Application, tmp_path: Path) -> None:
    def code(raw: bytes, on: Application = app) -> int:
        response = run(on, "check_tx", abci.RequestCheckTx(tx=raw))
        assert response.code == 0 or (response.codespace == "coreledger"
                                      and response.log and "\n" not in response.log)
        return int(response.code)

    withdraw = Withdraw(ALICE, 0, 1)
    assert code(b"\xa1\x01\x02") == CHECK["malformed"]
    assert code(signed(ALICE_KEY, 0, withdraw, "other-chain")) == CHECK["wrong_chain"]
    assert code(bytes.fromhex(BAD_SIGNATURE["hex"])) == CHECK["bad_signature"]
    assert code(signed(ALICE_KEY, 0, Deposit(ALICE, 0, 5))) == CHECK["not_authorized"]
    assert code(signed(ALICE_KEY, 1, withdraw)) == CHECK["bad_nonce"]
    assert code(signed(ALICE_KEY, 0, withdraw)) == CHECK["ok"]
    with Executor.open(str(tmp_path / "fresh")) as executor:  # no InitChain, no --chain-id
        fresh = Application(Ledger(executor))
        assert code(signed(ALICE_KEY, 0, withdraw), fresh) == CHECK["not_initialised"]


def test_finalize_block_answers_each_spec_code(app: Application) -> None:
    resting = signed(BOB_KEY, 0, Limit(BOB, 1, Side.SELL, 10, 5, Tif.GTC))  # order 1
    request = abci.RequestFinalizeBlock(height=1, txs=[resting], hash=b"\x01" * 32)
    request.time.seconds = 1_700_000_000
    assert [r.code for r in run(app, "finalize_block", request).tx_results] == [FINALIZE["ok"]]
    run(app, "commit", abci.RequestCommit())
    txs = {
        "ok": signed(ALICE_KEY, 0, Withdraw(ALICE, 0, 1)),
        "insufficient_balance": signed(ALICE_KEY, 1, Withdraw(ALICE, 0, 10**6)),
        "would_cross": signed(ALICE_KEY, 2, Limit(ALICE, 1, Side.BUY, 10, 1, Tif.ALO)),
        "unknown_order": signed(ALICE_KEY, 3, Cancel(ALICE, 1, 99)),
        "not_owner": signed(ALICE_KEY, 4, Cancel(ALICE, 1, 1)),
        "not_authorized": signed(BOB_KEY, 1, Deposit(BOB, 0, 5)),
        "bad_nonce": signed(ALICE_KEY, 9, Withdraw(ALICE, 0, 1)),
        "not_a_signed_tx": signed(ALICE_KEY, 5, Withdraw(ALICE, 0, 1), "other-chain"),
    }
    request = abci.RequestFinalizeBlock(height=2, txs=list(txs.values()), hash=b"\x02" * 32)
    request.time.seconds = 1_700_000_001
    results = run(app, "finalize_block", request).tx_results
    assert [r.code for r in results] == [FINALIZE[name] for name in txs]
    assert {r.codespace for r in results if r.code} == {"coreledger"}
    refused = results[-1]
    assert refused.data == b"" and "other-chain" in refused.log
    # `overflow` (a supply past 2^256-1) cannot be reached with amounts below 2^64 in a
    # test; its code is checked against the spec table above.
