"""The network commands: `node`, `testnet init|start|stop|status`, `send`, and `state`,
`history`, `prove` with `--node URL` (the same answers through CometBFT's abci_query)."""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Callable
from typing import Any

import orjson

from block_exec.abci.results import CODES
from block_exec.decode import decode_json_block
from block_exec.errors import BlockError
from block_exec.network import testnet
from block_exec.network.keys import KeyFileError, read_key
from block_exec.network.rpc import DEFAULT_NODE, CometRpc, RpcError
from block_exec.signed import sign_tx

AddParser = Callable[[str, str], argparse.ArgumentParser]

EPILOGS = {
    "node": "example: coreledger node --db ./node0/app --abci tcp://127.0.0.1:26658",
    "testnet": "example: coreledger testnet init --validators 4 --dir ./net && "
    "coreledger testnet start ./net",
    "send": "example: coreledger send --key ./net/keys/user00.json --node "
    "http://127.0.0.1:26601 '{\"op\":\"withdraw\",\"user\":\"0x...\",\"asset\":0,"
    "\"amount\":5}' --wait",
}


class NetworkCommandFailed(Exception):
    """Exit status 1, with this one-line message."""


def _print(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def add_commands(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """Register `node`, `testnet` and `send` on the `coreledger` subparsers."""
    from block_exec.abci.node import add_arguments

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(
            name, help=help_text, description=help_text, epilog=EPILOGS[name])
        return parser

    add_arguments(command("node", "serve the ABCI application for CometBFT v0.38"))
    net = command("testnet", "a local network of validators on 127.0.0.1")
    actions = net.add_subparsers(dest="action", metavar="ACTION", parser_class=parser_class)
    actions.required = True
    init = actions.add_parser("init", help="create CometBFT homes, genesis and key files")
    init.add_argument("--validators", metavar="N", type=int, default=4)
    init.add_argument("--dir", metavar="DIR", required=True)
    init.add_argument("--base-port", metavar="P", type=int, default=testnet.DEFAULT_BASE_PORT)
    for action, help_text in (("start", "start every node (app + CometBFT)"),
                              ("stop", "stop every node, by its recorded pids"),
                              ("status", "processes, heights and app hashes, as JSON")):
        item = actions.add_parser(action, help=help_text)
        item.add_argument("dir", metavar="DIR")
        if action != "status":
            item.add_argument("--node", metavar="I", type=int, help="only node I")
    send = command("send", "sign a tx with a key file and broadcast it; print the answer")
    send.add_argument("--key", metavar="FILE", required=True)
    send.add_argument("--node", metavar="URL", default=DEFAULT_NODE)
    send.add_argument("--wait", action="store_true", help="wait for the block; print the receipt")
    send.add_argument("tx", metavar="TX-JSON")


def dispatch(args: argparse.Namespace) -> int | None:
    """Run a network command; None when `args` is not one (the caller goes on)."""
    try:
        if args.command == "node":
            from block_exec.abci.node import NodeFailed, cmd_node

            try:
                return cmd_node(args)
            except NodeFailed as exc:
                raise NetworkCommandFailed(str(exc)) from None
        if args.command == "testnet":
            _print(_testnet(args))
            return 0
        if args.command == "send":
            return cmd_send(args)
        if args.command in ("state", "history", "prove") and getattr(args, "node", None):
            return cmd_remote(args)
    except (testnet.TestnetError, RpcError, KeyFileError, BlockError) as exc:
        raise NetworkCommandFailed(" ".join(str(exc).split())) from None
    return None


def _testnet(args: argparse.Namespace) -> dict[str, Any]:
    if args.action == "init":
        return testnet.init(args.dir, args.validators, args.base_port)
    if args.action == "start":
        return testnet.start(args.dir, args.node)
    if args.action == "stop":
        return testnet.stop(args.dir, args.node)
    return testnet.status(args.dir)


# -- send ------------------------------------------------------------------------------------


def parse_tx_json(text: str, signer: str) -> Any:
    """One block-file tx from its JSON text (strict, as in a block file). Without a
    "user", the user is the signer (not for a deposit: its user is whom the bridge pays)."""
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if isinstance(obj, dict) and "user" not in obj and obj.get("op") != "deposit":
        text = text.strip()[:-1] + ("," if obj else "") + json.dumps({"user": signer})[1:]
    return decode_json_block('{"height":1,"time":0,"txs":[' + text + "]}", "tx").txs[0]


def _nonce(rpc: CometRpc, address: str) -> int:
    answer = rpc.abci_query("/nonce", {"user": address})
    if answer.get("code"):
        raise RpcError(f"/nonce: {answer.get('log')}")
    nonce: int = orjson.loads(answer["value"])["nonce"]
    return nonce


def cmd_send(args: argparse.Namespace) -> int:
    key, address = read_key(args.key)
    tx = parse_tx_json(args.tx, address)
    rpc = CometRpc(args.node)
    chain_id = rpc.status()["node_info"]["network"]
    raw = sign_tx(key, chain_id, _nonce(rpc, address), tx)
    result = rpc.broadcast(raw, wait=args.wait)
    if not args.wait:
        _print({"code": result["code"], "log": result.get("log", ""), "hash": result["hash"],
                "signer": address})
        return 0 if result["code"] == 0 else 1
    check = result["check_tx"]
    out: dict[str, Any] = {"check_tx": {"code": check["code"], "log": check.get("log", "")},
                           "hash": result["hash"], "signer": address}
    if check["code"] != 0:
        _print(out)
        return 1
    tx_result = result["tx_result"]
    data = base64.b64decode(tx_result.get("data") or "")
    out["height"] = int(result["height"])
    out["code"] = tx_result.get("code", 0)
    out["receipt"] = orjson.loads(data) if data else None
    _print(out)
    return 0


# -- state / history / prove through abci_query ----------------------------------------------


def _remote_request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    if args.command == "state":
        data: dict[str, Any] = {}
        if args.asset is not None:
            data["asset"] = args.asset
        if args.user is not None:
            data["user"] = args.user
        return "/state", data
    if args.command == "history":
        data = {"user": args.user} if args.user is not None else {"order": _int(args.order)}
        if args.limit is not None:
            data["limit"] = args.limit
        if args.after is not None:
            data["after"] = args.after
        return "/history", data
    if getattr(args, "nonce", None) is not None:
        return "/prove", {"nonce": args.nonce}
    if args.order is not None:
        return "/prove", {"order": _int(args.order)}
    return "/prove", {"user": args.user, "asset": args.asset}


def _int(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def cmd_remote(args: argparse.Namespace) -> int:
    path, data = _remote_request(args)
    answer = CometRpc(args.node).abci_query(path, data)
    if answer.get("code"):
        raise NetworkCommandFailed(f"{path}: {answer.get('log')}")
    sys.stdout.write(answer["value"].decode() + "\n")
    return 0


__all__ = ["CODES", "NetworkCommandFailed", "add_commands", "dispatch"]
