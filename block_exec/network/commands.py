"""The network commands: `node`, `testnet init|start|stop|status`, `send`, and `state`,
`history`, `prove` with `--node URL` (the same answers through CometBFT's abci_query).

Their handlers import what they use (the testnet, the RPC client, the signer): the parser of
every command is built on each `coreledger` call (see `block_exec.commands.base`)."""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from block_exec.abci.node import add_arguments
from block_exec.commands.base import (
    Command,
    CommandFailed,
    UsageProblem,
    nonnegative,
    one_line,
    positive,
)
from block_exec.network import DEFAULT_BASE_PORT, DEFAULT_NODE

if TYPE_CHECKING:
    from block_exec.network.rpc import CometRpc

EXAMPLES = {
    "node": "coreledger node --db ./net/node0/app --abci tcp://127.0.0.1:26602",
    "testnet": "coreledger testnet init --validators 4 --dir ./net",
    "send": "coreledger send --key ./net/keys/user00.json --node http://127.0.0.1:26601 "
    "'{\"op\":\"withdraw\",\"asset\":0,\"amount\":5}' --wait",
}


def _expected() -> tuple[type[Exception], ...]:
    """The failures of these commands that are a one-line message (exit status 1)."""
    from block_exec.abci.node import NodeFailed
    from block_exec.errors import BlockError
    from block_exec.network.keys import KeyFileError
    from block_exec.network.rpc import RpcError
    from block_exec.network.testnet import TestnetError

    return (TestnetError, RpcError, KeyFileError, BlockError, NodeFailed)


def _print(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _guarded(handle: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """`handle` with this package's expected failures turned into CommandFailed."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handle(args)
        except _expected() as exc:  # evaluated only when something was raised
            raise CommandFailed(one_line(exc)) from None

    return run


def _testnet_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION",
                                    parser_class=type(parser))
    actions.required = True
    init = actions.add_parser("init", help="create CometBFT homes, genesis and key files")
    init.add_argument("--validators", metavar="N", type=positive, default=4)
    init.add_argument("--dir", metavar="DIR", required=True)
    init.add_argument("--base-port", metavar="P", type=positive,
                      default=DEFAULT_BASE_PORT)
    init.add_argument("--checkpoint-interval", metavar="N", type=positive, default=None,
                      help="the nodes' checkpoint interval (default: the node's, 100)")
    init.add_argument("--snapshot-interval", metavar="N", type=nonnegative, default=None,
                      help="the nodes' state-sync snapshot interval, a multiple of the "
                      "checkpoint interval (default: the node's, 100)")
    join = actions.add_parser("join", help="add a node (not a validator) that joins by "
                              "state sync; start it with start --node I")
    join.add_argument("dir", metavar="DIR")
    for action, help_text in (("start", "start every node (app + CometBFT), wait for them"),
                              ("stop", "stop every node, by its recorded pids"),
                              ("status", "processes, heights and app hashes, as JSON")):
        item = actions.add_parser(action, help=help_text)
        item.add_argument("dir", metavar="DIR")
        if action != "status":
            item.add_argument("--node", metavar="I", type=nonnegative, help="only node I")


def _testnet(args: argparse.Namespace) -> int:
    from block_exec.network import testnet

    if args.action == "init":
        _print(testnet.init(args.dir, args.validators, args.base_port,
                            checkpoint_interval=args.checkpoint_interval,
                            snapshot_interval=args.snapshot_interval))
    elif args.action == "join":
        from block_exec.network.join import join

        _print(join(args.dir))
    elif args.action == "start":
        _print(testnet.start(args.dir, args.node))
    elif args.action == "stop":
        _print(testnet.stop(args.dir, args.node))
    else:
        _print(testnet.status(args.dir))
    return 0


def _send_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key", metavar="FILE", required=True)
    parser.add_argument("--node", metavar="URL", default=DEFAULT_NODE)
    parser.add_argument("--wait", action="store_true",
                        help="wait for the block; print the receipt")
    parser.add_argument("tx", metavar="TX-JSON",
                        help='a block-file tx; without "user" the key\'s address is used')


# -- send ------------------------------------------------------------------------------------


def parse_tx_json(text: str, signer: str) -> Any:
    """One block-file tx from its JSON text (strict, as in a block file). Without a
    "user", the user is the signer (not for a deposit: its user is whom the bridge pays)."""
    from block_exec.decode import decode_json_block

    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if isinstance(obj, dict) and "user" not in obj and obj.get("op") != "deposit":
        text = text.strip()[:-1] + ("," if obj else "") + json.dumps({"user": signer})[1:]
    return decode_json_block('{"height":1,"time":0,"txs":[' + text + "]}", "tx").txs[0]


def _nonce(rpc: CometRpc, address: str) -> int:
    from block_exec.network.rpc import RpcError

    answer = rpc.abci_query("/nonce", {"user": address})
    if answer.get("code"):
        raise RpcError(f"/nonce: {answer.get('log')}")
    nonce: int = orjson.loads(answer["value"])["nonce"]
    return nonce


def cmd_send(args: argparse.Namespace) -> int:
    from block_exec.network.keys import read_key
    from block_exec.network.rpc import CometRpc
    from block_exec.signed import sign_tx

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


def add_node_option(parser: argparse.ArgumentParser) -> None:
    """`--node URL` for a read command whose `--db` then becomes optional."""
    parser.add_argument("--node", metavar="URL",
                        help="ask a running node through CometBFT's RPC instead of --db")


def wants_node(args: argparse.Namespace) -> bool:
    """True when the command asks a node; a usage error without --db or --node, or both."""
    if (args.db is None) == (getattr(args, "node", None) is None):
        raise UsageProblem("give either --db DIR or --node URL")
    return args.node is not None


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


def _remote(args: argparse.Namespace) -> int:
    from block_exec.network.rpc import CometRpc

    path, data = _remote_request(args)
    answer = CometRpc(args.node).abci_query(path, data)
    if answer.get("code"):
        raise CommandFailed(f"{path}: {answer.get('log')}")
    sys.stdout.write(answer["value"].decode() + "\n")
    return 0


remote = _guarded(_remote)
"""Run `state`, `history` or `prove` against `--node` (same JSON as with `--db`)."""

def _node(args: argparse.Namespace) -> int:
    from block_exec.abci.node import cmd_node

    return cmd_node(args)


NODE = Command("node", "serve the ABCI application for CometBFT v0.38", EXAMPLES["node"],
               add_arguments, _guarded(_node))
TESTNET = Command("testnet", "a local network of validators on 127.0.0.1",
                  EXAMPLES["testnet"], _testnet_arguments, _guarded(_testnet))
SEND = Command("send", "sign a tx with a key file and broadcast it; print the answer",
               EXAMPLES["send"], _send_arguments, _guarded(cmd_send))
