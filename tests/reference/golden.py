"""The end-to-end golden vectors spec/vectors/blocks/NAME.golden.json.

Layout: spec/vectors/README.md.

`python -m tests.reference.golden` rewrites them from the reference alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.reference import ledger

VECTOR_DIR = Path(__file__).resolve().parents[2] / "spec" / "vectors" / "blocks"
DESCRIPTION = (
    "Computed from the block file by the reference written from spec/ alone "
    "(tests/reference/); layout in spec/vectors/README.md."
)


def names() -> list[str]:
    return sorted(p.name.split(".")[0] for p in VECTOR_DIR.glob("*.blocks.jsonl"))


def golden(name: str) -> dict[str, Any]:
    outcomes = ledger.run(VECTOR_DIR / f"{name}.blocks.jsonl")
    final = outcomes[-1]
    return {
        "description": DESCRIPTION,
        "blocks": [
            {"height": o.height, "block_hash": o.block_hash.hex(), "state_root": o.state_root.hex()}
            for o in outcomes
        ],
        "entries": [[key.hex(), value.hex()] for key, value in final.entries.items()],
        "namespace_roots": [[ns.hex(), root.hex()] for ns, root in final.namespace_roots.items()],
        "state_root": final.state_root.hex(),
    }


def render(name: str) -> str:
    """JSON with one block, entry or namespace per line (diffs then read line by line)."""
    data = golden(name)
    lines = ["{", f' "description": {json.dumps(data["description"])},']
    for field in ("blocks", "entries", "namespace_roots"):
        items = [f"  {json.dumps(item)}" for item in data[field]]
        lines.append(f' "{field}": [')
        lines.append(",\n".join(items))
        lines.append(" ],")
    lines.append(f' "state_root": {json.dumps(data["state_root"])}')
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> None:
    for name in names():
        (VECTOR_DIR / f"{name}.golden.json").write_text(render(name))


if __name__ == "__main__":
    main()
