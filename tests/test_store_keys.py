"""The store's key layout and module structure (issue 12 item 10).

The expected key bytes are written by hand from spec/store.md's "Key layout" table, not
produced by the code under test. The structural tests read the source: `store/keys.py` is
the only module that builds a key, every helper in it is used, every store error is a
`CoreledgerError`, and no store module carries several jobs in 800 lines again.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import store
from state_machine.errors import CoreledgerError
from store import keys as K

STORE_DIR = Path(__file__).resolve().parent.parent / "store"
USER = bytes.fromhex("ab" * 20)


def u64(hex_digits: str) -> str:
    return hex_digits.rjust(16, "0")


@pytest.mark.parametrize(
    ("key", "expected_hex"),
    [
        (K.FORMAT_KEY, "00" + b"format".hex()),
        (K.INTERVAL_KEY, "00" + b"checkpoint_interval".hex()),
        (K.HEAD_KEY, "00" + b"head".hex()),
        (K.block_key(258), "01" + u64("102")),
        (K.version_key(b"\x01\x02", 7), "10" + "0102" + u64("7")),
        (K.version_prefix(b"\x01\x02"), "10" + "0102"),
        (K.latest_key(b"\x02\x09"), "11" + "0209"),
        (K.checkpoint_key(100), "12" + u64("64")),
        (K.change_log_key(100, b"\x00ab"), "13" + u64("64") + "006162"),
        (K.change_log_prefix(100), "13" + u64("64")),
        (K.order_key(2**64 - 1), "20" + "ff" * 8),
        (K.fill_key(1), "21" + u64("1")),
        (K.order_fill_key(3, 4), "22" + u64("3") + u64("4")),
        (K.order_fill_prefix(3), "22" + u64("3")),
        (K.cancel_key(5), "23" + u64("5")),
        (K.user_fill_key(USER, 6), "24" + "ab" * 20 + u64("6")),
        (K.user_fill_prefix(USER), "24" + "ab" * 20),
        (K.user_order_key(USER, 7), "25" + "ab" * 20 + u64("7")),
        (K.user_order_prefix(USER), "25" + "ab" * 20),
    ],
)
def test_keys_match_the_spec_layout(key: bytes, expected_hex: str) -> None:
    assert key.hex() == expected_hex


def test_key_parsers_invert_the_builders() -> None:
    assert K.table_id(bytes.fromhex("01" + u64("102"))) == 258
    assert K.tail_u64(bytes.fromhex("10" + "0102" + u64("7"))) == 7
    assert K.state_key_of_version(bytes.fromhex("10" + "0102" + u64("7"))) == b"\x01\x02"
    assert K.state_key_of_latest(bytes.fromhex("11" + "0209")) == b"\x02\x09"
    assert K.state_key_of_change_log(bytes.fromhex("13" + u64("64") + "0061")) == b"\x00a"
    index = bytes.fromhex("24" + "ab" * 20 + u64("6"))
    assert (K.user_of_index_key(index), K.id_of_index_key(index)) == (USER, 6)
    assert len(index) == K.USER_INDEX_LEN


def test_ids_after_spans_exactly_the_later_ids() -> None:
    span = K.ids_after(b"\x24", 5)
    assert span == (bytes.fromhex("24" + u64("6")), bytes.fromhex("24" + "ff" * 9))
    assert K.ids_after(b"\x24", 2**64 - 1) is None


def _modules() -> list[Path]:
    return sorted(STORE_DIR.glob("*.py"))


def _is_table_prefix(node: ast.expr) -> bool:
    """`K.BLOCK`, `keys.ORDER`, ...: a bytes constant of the keys module."""
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in ("K", "keys")
        and isinstance(getattr(K, node.attr, None), bytes)
    )


def test_only_keys_py_builds_keys() -> None:
    offenders = []
    for path in _modules():
        if path.name == "keys.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.Add)
                and (_is_table_prefix(node.left) or _is_table_prefix(node.right))
            ):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_every_key_helper_is_used() -> None:
    helpers = [
        name
        for name, value in vars(K).items()
        if inspect.isfunction(value) and value.__module__ == K.__name__
    ]
    assert "block_key" in helpers
    sources = "\n".join(p.read_text() for p in _modules() if p.name != "keys.py")
    unused = [name for name in helpers if f"K.{name}(" not in sources]
    assert unused == []


def test_store_modules_have_one_job_each() -> None:
    sizes = {path.name: len(path.read_text().splitlines()) for path in _modules()}
    assert {"blocklog.py", "history.py", "checkpoints.py", "audit.py"} <= set(sizes)
    assert max(sizes.values()) <= 450, sizes


def test_every_store_error_has_the_package_root() -> None:
    errors = [
        value
        for value in vars(store).values()
        if isinstance(value, type) and issubclass(value, BaseException)
    ]
    assert len(errors) >= 6
    assert all(issubclass(error, CoreledgerError) for error in errors)
