"""Runs the conformance vectors of spec/vectors/signed/ (spec/signed.md section 10).

The vectors were signed with eth-account and their verdicts, receipts, nonces and
balances written by hand (tests/make_signed_vectors.py); here the project's code must
reproduce every one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cbor2
import pytest

from block_exec import Executor
from block_exec.encode import encode_tx
from block_exec.genesis import parse_app_state
from block_exec.receipts_json import receipt_to_json_obj
from block_exec.signed import SignatureCache, TxRefused, check_signed_tx
from block_exec.types import Block
from state_machine import state_entries
from tests import make_signed_vectors

VECTORS = Path(__file__).resolve().parent.parent / "spec" / "vectors" / "signed"
TXS = json.loads((VECTORS / "txs.json").read_text())
BLOCKS = json.loads((VECTORS / "blocks.json").read_text())


def test_the_vector_files_are_what_the_generator_writes() -> None:
    assert (VECTORS / "txs.json").read_text() == make_signed_vectors.render(
        make_signed_vectors.txs_vectors())
    assert (VECTORS / "blocks.json").read_text() == make_signed_vectors.render(
        make_signed_vectors.blocks_vector())


def test_every_refusal_kind_and_op_has_a_vector() -> None:
    assert {v["verdict"] for v in TXS} == {"ok", "malformed", "bad_signature", "wrong_chain"}
    assert {v["tx"]["op"] for v in TXS if v["tx"]} == {"deposit", "withdraw", "limit",
                                                       "market", "cancel"}
    codes = {r.get("error") for b in BLOCKS["blocks"] for r in b["receipts"]}
    assert {"not_authorized", "bad_nonce", None, "insufficient_balance"} <= codes


@pytest.mark.parametrize("vector", TXS, ids=[v["name"] for v in TXS])
def test_tx_vector(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    for cache in (None, SignatureCache()):
        if vector["verdict"] != "ok":
            with pytest.raises(TxRefused) as info:
                check_signed_tx(raw, vector["chain_id"], cache=cache)
            assert info.value.reason == vector["verdict"]
            assert vector["error"] in str(info.value)
            assert "\n" not in str(info.value)
            continue
        signed, auth = check_signed_tx(raw, vector["chain_id"], cache=cache)
        assert auth.signer == vector["signer"] and auth.nonce == vector["nonce"]
        assert cbor2.loads(encode_tx(signed.tx)) == vector["tx"]


def _run(executor: Executor) -> None:
    chain = BLOCKS["chain_id"]
    executor.init_chain(parse_app_state(json.dumps(BLOCKS["app_state"])), chain)
    for block in BLOCKS["blocks"]:
        checked = [check_signed_tx(bytes.fromhex(h), chain) for h in block["txs"]]
        result = executor.apply_block(
            Block(block["height"], block["time"], tuple(s.tx for s, _ in checked)),
            auth=[auth for _, auth in checked],
        )
        assert [receipt_to_json_obj(r) for r in result.receipts] == block["receipts"]


def _check_state(executor: Executor) -> None:
    for user, nonce in BLOCKS["nonces"].items():
        assert executor.nonce(user) == nonce
    entries = [[k.hex(), v.hex()] for k, v in state_entries(executor.state) if k[0] == 3]
    assert entries == BLOCKS["nonce_entries"]
    for user, assets in BLOCKS["balances"].items():
        for asset, value in assets.items():
            assert executor.state.balance(user, int(asset)) == (value["available"],
                                                                value["locked"])
    assert executor.bridge == BLOCKS["app_state"]["bridge"]


def test_blocks_vector_in_memory() -> None:
    executor = Executor()
    _run(executor)
    _check_state(executor)


def test_blocks_vector_on_a_store_survives_a_restart(tmp_path: Path) -> None:
    with Executor.open(str(tmp_path / "n"), checkpoint_interval=5) as executor:
        _run(executor)
        root = executor.state_root
    # No checkpoint after genesis: reopening replays both blocks with their auth.
    with Executor.open(str(tmp_path / "n")) as reopened:
        _check_state(reopened)
        assert reopened.state_root == root
        assert reopened.chain_id == BLOCKS["chain_id"]
