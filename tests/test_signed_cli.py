"""The signing client and the network-mode views on the real CLI: `keys new/show`, `sign`,
`state` with nonces, `prove --nonce`, `diff` of nonces.

Signed bytes are checked by recovering them with eth-account's independent recovery, and
by decoding them with cbor2; stores are real LevelDB directories.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import cbor2
from eth_account import Account
from eth_account.messages import encode_defunct

from block_exec import Executor
from block_exec.genesis import Genesis, GenesisBalance
from block_exec.signed import TxAuth
from block_exec.types import Block, Withdraw
from tests import signed_reference as ref

_SCRIPT = shutil.which("coreledger")
CLI: list[str] = [_SCRIPT] if _SCRIPT else [sys.executable, "-m", "block_exec.cli"]

ALICE = "0x" + "a1" * 20
BOB = "0x" + "b0" * 20
BRIDGE = "0x" + "b1" * 20
CHAIN = "coreledger-test"


def cli(*args: str | Path, check: int | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=90,
                          stdin=subprocess.DEVNULL)
    assert "Traceback" not in proc.stderr, proc.stderr
    if check is not None:
        assert proc.returncode == check, (args, proc.returncode, proc.stderr)
    assert proc.stderr.count("\n") <= 1, proc.stderr  # errors are one line
    return proc


def test_keys_new_show_and_sign(tmp_path: Path) -> None:
    key_file = tmp_path / "alice.key"
    made = json.loads(cli("keys", "new", "--out", key_file, check=0).stdout)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    stored = json.loads(key_file.read_text())
    assert stored["address"] == made["address"]
    # eth-account, from the private key alone, names the same address.
    assert ref.address(bytes.fromhex(stored["private_key"])).lower() == made["address"]
    assert json.loads(cli("keys", "show", key_file, check=0).stdout) == {
        "address": made["address"]
    }
    refused = cli("keys", "new", "--out", key_file, check=1)
    assert "already exists" in refused.stderr
    assert json.loads(key_file.read_text()) == stored  # not overwritten

    user = made["address"].upper().replace("0X", "0x")
    tx = {"op": "limit", "user": user, "asset": 1, "side": "buy", "price": 7, "size": 3}
    out = cli("sign", "--key", key_file, "--chain-id", CHAIN, "--nonce", "4", json.dumps(tx),
              check=0).stdout
    raw = bytes.fromhex(out.strip())
    envelope = cbor2.loads(raw)
    assert envelope["chain_id"] == CHAIN and envelope["nonce"] == 4
    assert envelope["tx"] == {**tx, "user": made["address"], "tif": "gtc"}
    assert cbor2.dumps(envelope, canonical=True) == raw
    message = cbor2.dumps({k: envelope[k] for k in ("chain_id", "nonce", "tx")},
                          canonical=True)
    signer = Account.recover_message(encode_defunct(primitive=message),
                                     signature=envelope["sig"])
    assert signer.lower() == made["address"]


def test_keys_new_to_stdout_and_bad_key_files(tmp_path: Path) -> None:
    made = json.loads(cli("keys", "new", check=0).stdout)
    assert set(made) == {"address", "private_key"}
    assert ref.address(bytes.fromhex(made["private_key"])).lower() == made["address"]
    loose = tmp_path / "loose.key"
    loose.write_text(json.dumps(made))
    loose.chmod(0o644)
    assert "others may read it" in cli("keys", "show", loose, check=1).stderr
    wrong = tmp_path / "wrong.key"
    wrong.write_text(json.dumps({**made, "address": ALICE}))
    wrong.chmod(0o600)
    assert "not the address of its private key" in cli("keys", "show", wrong, check=1).stderr
    garbage = tmp_path / "garbage.key"
    garbage.write_text("hello")
    garbage.chmod(0o600)
    assert "not JSON" in cli("keys", "show", garbage, check=1).stderr
    assert "No such file" in cli("keys", "show", tmp_path / "none", check=1).stderr


def test_sign_refuses_bad_input(tmp_path: Path) -> None:
    key_file = tmp_path / "k.key"
    cli("keys", "new", "--out", key_file, check=0)
    sign = ("sign", "--key", key_file, "--chain-id", CHAIN)
    bad_tx = '{"op":"withdraw","user":"%s","asset":0,"amount":0}' % ALICE  # noqa: UP031
    assert 'field "amount"' in cli(*sign, "--nonce", "0", bad_tx, check=1).stderr
    assert "bad JSON" in cli(*sign, "--nonce", "0", "{", check=1).stderr
    good_tx = '{"op":"withdraw","user":"%s","asset":0,"amount":1}' % ALICE  # noqa: UP031
    assert "--nonce" in cli(*sign, "--nonce", "-1", good_tx, check=2).stderr
    assert "nonce" in cli(*sign, "--nonce", str(2**64), good_tx, check=1).stderr
    assert "chain id" in cli("sign", "--key", key_file, "--chain-id", "", "--nonce", "0",
                             good_tx, check=1).stderr


def _network_store(path: Path, alice_withdraws: int) -> None:
    """A store of a network chain (checkpoint every block), with Alice's nonce used
    `alice_withdraws` times and Bob's once."""
    with Executor.open(str(path), checkpoint_interval=1) as executor:
        executor.init_chain(
            Genesis(BRIDGE, (GenesisBalance(ALICE, 0, 100), GenesisBalance(BOB, 0, 100))),
            CHAIN,
        )
        txs = [Withdraw(ALICE, 0, 1) for _ in range(alice_withdraws)] + [Withdraw(BOB, 0, 1)]
        auth = [TxAuth(ALICE, n) for n in range(alice_withdraws)] + [TxAuth(BOB, 0)]
        executor.apply_block(Block(1, 1000, tuple(txs)), auth=auth)


def _json(*args: str | Path) -> Any:
    return json.loads(cli(*args, check=0).stdout)


def test_state_prove_and_diff_show_nonces(tmp_path: Path) -> None:
    node = tmp_path / "node"
    _network_store(node, 3)
    state = _json("state", "--db", node)
    assert state["nonces"] == {ALICE: 3, BOB: 1}
    assert state["balances"][ALICE] == {"0": {"available": 97, "locked": 0}}
    assert _json("state", "--db", node, "--user", ALICE)["nonces"] == {ALICE: 3}
    assert "nonces" not in _json("state", "--db", node, "--user", BRIDGE)

    proof = _json("prove", "--db", node, "--nonce", ALICE.upper().replace("0X", "0x"))
    assert proof["key"] == f"nonces/{ALICE}"
    assert proof["key_hex"] == "03" + "a1" * 20
    assert proof["value_hex"] == "03" and proof["value"] == 3 and proof["included"]
    assert proof["root"] == state["state_root"]
    proof_file = tmp_path / "proof.json"
    proof_file.write_text(json.dumps(proof))
    assert _json("verify-proof", "--root", state["state_root"], proof_file)["valid"]
    absent = _json("prove", "--db", node, "--nonce", BRIDGE)
    assert absent["included"] is False and absent["value"] is None
    assert "--nonce" in cli("prove", "--db", node, "--nonce", ALICE, "--order", "1",
                            check=2).stderr
    assert "bad address" in cli("prove", "--db", node, "--nonce", "0x12", check=1).stderr

    other = tmp_path / "other"
    _network_store(other, 2)
    diff = json.loads(cli("diff", "--db", node, "--other", other, check=1).stdout)
    assert {"key": f"nonces/{ALICE}", "db": 3, "other": 2} in diff["differences"]
    assert f"nonces/{BOB}" not in {d["key"] for d in diff["differences"]}


def test_block_file_stores_show_no_nonces(tmp_path: Path) -> None:
    blocks = tmp_path / "b.jsonl"
    blocks.write_text(json.dumps({"height": 1, "time": 1, "txs": [
        {"op": "deposit", "user": ALICE, "asset": 0, "amount": 5}]}) + "\n")
    cli("run", "--blocks", blocks, "--db", tmp_path / "n", "--checkpoint-interval", "1",
        check=0)
    assert "nonces" not in _json("state", "--db", tmp_path / "n")
