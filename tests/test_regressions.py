"""Regression tests for bugs found in review, each named after its symptom."""

from __future__ import annotations

from pathlib import Path

import pytest

from block_exec import Executor
from block_exec.cli import main


@pytest.mark.parametrize("text", ["\u00b2", "\u0661", "1\u00b2"])
def test_history_order_id_with_non_ascii_digits_is_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    # str.isdigit() accepts superscripts and other scripts' digits; int() then either
    # fails with Python's own message or reads another script's digits as an id.
    db = tmp_path / "db"
    Executor.open(str(db)).close()
    assert main(["history", "--db", str(db), "--order", text]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "bad order id" in err[0], err

