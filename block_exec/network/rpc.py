"""A small client of CometBFT's JSON-RPC over HTTP (GET with URI parameters), with the
standard library only: the endpoints `send`, the remote queries and the tests use."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import orjson

from block_exec.network import DEFAULT_NODE


class RpcError(Exception):
    """The node could not be reached, or answered with an error (one line)."""


class CometRpc:
    def __init__(self, url: str = DEFAULT_NODE, timeout: float = 30.0) -> None:
        url = url.rstrip("/")
        if url.startswith("tcp://"):
            url = "http://" + url[len("tcp://"):]
        if not url.startswith(("http://", "https://")):
            url = "http://" + url
        self.url = url
        self.timeout = timeout

    def call(self, method: str, **params: Any) -> Any:
        """`method` with `params` (already in CometBFT's URI form) -> its `result`."""
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        target = f"{self.url}/{method}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(target, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()
            if not body:
                raise RpcError(f"{self.url}: {method}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RpcError(f"{self.url}: cannot reach the node ({reason})") from None
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise RpcError(f"{self.url}: {method}: not a JSON-RPC answer") from None
        if answer.get("error"):
            error = answer["error"]
            text = f"{error.get('message', '')} {error.get('data', '')}".strip()
            raise RpcError(f"{self.url}: {method}: {' '.join(text.split())}")
        return answer.get("result")

    # -- the endpoints used ----------------------------------------------------------------

    def status(self) -> Any:
        return self.call("status")

    def height(self) -> int:
        return int(self.status()["sync_info"]["latest_block_height"])

    def block(self, height: int | None = None) -> Any:
        return self.call("block", height=height)

    def app_hash_of_header(self, height: int) -> bytes:
        """The app hash in the header of block `height` (the state after height - 1)."""
        header = self.block(height)["block"]["header"]
        return bytes.fromhex(header["app_hash"])

    def abci_query(self, path: str, data: dict[str, Any], height: int = 0) -> dict[str, Any]:
        """The ResponseQuery, with `value` decoded from base64."""
        raw = json.dumps(data, separators=(",", ":")).encode()
        result = self.call("abci_query", path=json.dumps(path), data="0x" + raw.hex(),
                           height=height or None)
        response: dict[str, Any] = result["response"]
        value = response.get("value")
        response["value"] = base64.b64decode(value) if value else b""
        return response

    def broadcast(self, tx: bytes, wait: bool = False) -> Any:
        method = "broadcast_tx_commit" if wait else "broadcast_tx_sync"
        return self.call(method, tx="0x" + tx.hex())
