"""README.md's promises: its two commands come first, and its embedding example runs."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest

from tests.reference import ledger

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _embedding_example() -> str:
    match = re.search(r"## Embedding the executor in a node\n\n```python\n(.*?)```", README, re.S)
    assert match, "README lost its embedding example"
    return match.group(1)


def test_readme_starts_with_the_two_commands() -> None:
    fence = re.match(r"# coreledger\n\n```sh\n(.*?)\n(.*?)\n```", README)
    assert fence, "README must open with a code block of two commands"
    install_and_run, run_tests = fence.group(1), fence.group(2)
    assert "pip install -e '.[test]'" in install_and_run
    assert "coreledger run" in install_and_run
    assert run_tests == "python -m pytest -n auto"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install -q -e '.[test]'" in ci
    assert f"# README.md, command 2\n{run_tests}\n" in ci


def test_embedding_example_runs_and_persists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code = compile(_embedding_example(), "README.md", "exec")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(code, {})  # first run creates the store at height 1
        exec(code, {})  # a restart recovers it and goes on at height 2
    lines = printed.getvalue().split()
    assert lines[0] == "1" and lines[2] == "2"
    assert os.path.isdir(tmp_path / "node-data")

    # Independently: the reference written from spec/ alone (tests/reference/) gives the
    # roots of the same two blocks.
    line = (
        '{"height": %d, "time": 1700000000000, "txs": [{"op": "deposit", '
        '"user": "0x%s", "asset": 0, "amount": 500}]}'
    )
    blocks = tmp_path / "blocks.jsonl"
    blocks.write_text("".join(line % (height, "ab" * 20) + "\n" for height in (1, 2)))
    outcomes = ledger.run(blocks)
    assert [lines[1], lines[3]] == [o.state_root.hex() for o in outcomes]
    assert list(outcomes[-1].entries.values())[1] == bytes.fromhex("82" "1903e8" "00")
