"""ABCI Query (CometBFT's `abci_query`): `/state`, `/history`, `/prove`, `/nonce`, each
answering the same JSON as the CLI command of that name, for the committed state.

`data` is a JSON object; anything else (bad JSON, a missing, unknown or ill-typed field, a
bad address or id) raises QueryError with one line naming it.
"""

from __future__ import annotations

from typing import Any

import orjson

from block_exec.errors import BlockError
from block_exec.executor import Executor
from block_exec.views.entries import entry_name, entry_value
from block_exec.views.state import state_json
from state_machine import CoreError, namespace_of, normalize_address
from state_machine.entries import balance_key, entry_value_of, nonce_key, order_key

MAX_ASSET = 2**32 - 1
MAX_ID = 2**64 - 1


class QueryError(BlockError):
    """A query whose path or data is refused (one line)."""


def _object(data: bytes, allowed: frozenset[str]) -> dict[str, Any]:
    try:
        obj = orjson.loads(data) if data.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise QueryError(f"data: bad JSON ({exc})") from None
    if type(obj) is not dict:
        raise QueryError("data: expected a JSON object")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed))
        raise QueryError(f"data: unknown field {unknown[0]!r} (known: {known})")
    return obj


def _user(value: object, name: str) -> str:
    if type(value) is not str:
        raise QueryError(f'{name}: expected "0x" + 40 hex digits')
    try:
        return normalize_address(value)
    except CoreError as exc:
        raise QueryError(f"{name}: {exc}") from None


def _int(value: object, name: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise QueryError(f"{name}: expected an integer in [{low}, {high}], got {value!r}")
    return value


def _state(executor: Executor, obj: dict[str, Any]) -> Any:
    asset = None if "asset" not in obj else _int(obj["asset"], "asset", 0, MAX_ASSET)
    user = None if "user" not in obj else _user(obj["user"], "user")
    return state_json(executor.state, executor.height, executor.state_root, asset, user)


def _history(executor: Executor, obj: dict[str, Any]) -> Any:
    if ("user" in obj) == ("order" in obj):
        raise QueryError('data: give either "user" or "order"')
    limit = None if obj.get("limit") is None else _int(obj["limit"], "limit", 1, MAX_ID)
    after = obj.get("after")
    if after is not None and type(after) is not str:
        raise QueryError("after: expected the cursor string of a previous answer")
    store = executor.store
    if store is None:
        raise QueryError("this node keeps no history (no store)")
    if "user" in obj:
        page = store.user_history(_user(obj["user"], "user"), limit, after)
    else:
        page = store.order_history(_int(obj["order"], "order", 1, MAX_ID), limit, after)
    return page.to_json()


def _prove(executor: Executor, obj: dict[str, Any]) -> Any:
    if "nonce" in obj:
        if len(obj) != 1:
            raise QueryError('data: "nonce" goes alone')
        key = nonce_key(_user(obj["nonce"], "nonce"))
    elif "order" in obj:
        if len(obj) != 1:
            raise QueryError('data: "order" goes alone')
        order_id = _int(obj["order"], "order", 1, MAX_ID)
        store = executor.store
        page = None if store is None else store.order_history(order_id)
        if page is None or not page.orders:
            raise QueryError(f"order {order_id}: not in this node's history")
        key = order_key(page.orders[0].placed.asset, order_id)
    elif "user" in obj and "asset" in obj:
        key = balance_key(_user(obj["user"], "user"), _int(obj["asset"], "asset", 0, MAX_ASSET))
    else:
        raise QueryError('data: give {"user", "asset"}, {"order"} or {"nonce"}')
    root = executor.state_root  # folds the changes into the commitment first
    commitment = executor.commitment
    namespace = namespace_of(key)
    machine = executor.state  # the commitment keeps no values: the machine has them

    def value_of(_namespace: bytes, entry_key: bytes) -> bytes | None:
        return entry_value_of(machine, entry_key)

    value = value_of(namespace, key)
    proof = commitment.prove(namespace, key, value_of)
    return {
        "height": executor.height,
        "root": root.hex(),
        "key": entry_name(key),
        "key_hex": key.hex(),
        "namespace_hex": namespace.hex(),
        "value_hex": None if value is None else value.hex(),
        "value": entry_value(key, value),
        "included": value is not None,
        "proof_hex": proof.to_bytes().hex(),
    }


def _nonce(executor: Executor, obj: dict[str, Any]) -> Any:
    if "user" not in obj:
        raise QueryError('data: "user" is required')
    user = _user(obj["user"], "user")
    return {"user": user, "nonce": executor.nonce(user)}


PATHS = {
    "/state": (_state, frozenset(("asset", "user"))),
    "/history": (_history, frozenset(("user", "order", "limit", "after"))),
    "/prove": (_prove, frozenset(("user", "asset", "order", "nonce"))),
    "/nonce": (_nonce, frozenset(("user",))),
}


def answer_query(executor: Executor, path: str, data: bytes) -> bytes:
    """The UTF-8 JSON answer to `path` with `data`, or raise QueryError."""
    entry = PATHS.get(path)
    if entry is None:
        raise QueryError(f"unknown path {path!r} (known: {', '.join(PATHS)})")
    handler, allowed = entry
    return orjson.dumps(handler(executor, _object(data, allowed)))
