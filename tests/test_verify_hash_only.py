"""`coreledger verify` checks the roots by the hash-only pass: it builds no tree."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

import merkle.tree
from block_exec.commands import verify
from block_exec.decode import decode_json_block
from block_exec.executor import Executor


def test_verify_builds_no_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "db")
    user = "0x" + "11" * 20
    with Executor.open(db, checkpoint_interval=1) as executor:
        for height in (1, 2):
            line = json.dumps({"height": height, "time": height, "txs": [
                {"op": "deposit", "user": user, "asset": height, "amount": 5}]})
            executor.apply_block(decode_json_block(line.encode()))
        root = executor.state_root

    def no_tree(*_: object) -> object:
        raise AssertionError("verify built a tree")

    monkeypatch.setattr(merkle.tree, "build_all", no_tree)
    verify.handle(argparse.Namespace(db=db, height=None, all=True))
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["state_root"] == root.hex()
