"""The CLI's start-up stays light: building the parser of every command imports none of the
heavy modules a single command needs (block_exec/commands/base.py says why), and the lazy
names of `block_exec` all resolve."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import block_exec

# Each costs tens of milliseconds or more to import, and most commands never use it.
HEAVY = ("asyncio", "urllib.request", "coincurve", "block_exec.executor", "block_exec.signed",
         "block_exec.encode", "block_exec.abci.server", "block_exec.network.testnet", "store")


def test_building_the_parser_imports_no_heavy_module() -> None:
    code = ("import json, sys; from block_exec.cli import build_parser; build_parser(); "
            "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    loaded = set(json.loads(done.stdout))
    assert [name for name in HEAVY if name in loaded] == []
    assert "block_exec.commands.run" in loaded  # the parser was built from every command


def test_every_public_name_of_block_exec_resolves() -> None:
    assert sorted(block_exec.__all__) == sorted(block_exec._MODULE_OF)
    for name in block_exec.__all__:
        home = importlib.import_module(block_exec._MODULE_OF[name])
        assert getattr(block_exec, name) is getattr(home, name)
    assert sorted(dir(block_exec)) == sorted(block_exec.__all__)
