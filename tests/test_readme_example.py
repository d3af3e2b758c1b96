"""The README's embedding example runs as written: it is the Python API a node operator
reads first (`Executor.open`, `validate`, `apply_block`, a receipt read by name)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _embedding_example() -> str:
    text = README.read_text()
    section = text.split("## Embedding the executor in a node", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None, "README lost its embedding example"
    return found.group(1)


def test_the_readme_embedding_example_runs(tmp_path: Path) -> None:
    code = _embedding_example()
    assert "result.receipts[0].ok" in code  # the example reads a receipt by name
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    height, root = done.stdout.split()
    assert height == "1"
    assert re.fullmatch("[0-9a-f]{64}", root)
    assert (tmp_path / "node-data").is_dir()  # it really opened a LevelDB directory
    again = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split()[0] == "2"  # the reopened node recovered height 1
