"""Writes spec/vectors/signed/*.json (run: `python -m tests.make_signed_vectors`).

Envelopes are built and signed with eth-account and cbor2 only (tests/signed_reference.py),
never with the project's code; verdicts, messages, receipts, nonces and balances are
written here by hand. Both signers are deterministic (RFC 6979), so running this again
gives the same files; tests/test_signed_vectors.py checks that too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cbor2

from tests import signed_reference as ref

OUT = Path(__file__).resolve().parent.parent / "spec" / "vectors" / "signed"
CHAIN = "coreledger-vectors"
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

KEY_A, KEY_B, KEY_BRIDGE = ref.TEST_KEYS
A = ref.address(KEY_A).lower()
B = ref.address(KEY_B).lower()
BRIDGE = ref.address(KEY_BRIDGE).lower()

Json = Any


def _limit(user: str, side: str, price: int, size: int, tif: str = "gtc") -> Json:
    return {"op": "limit", "user": user, "asset": 1, "side": side, "price": price,
            "size": size, "tif": tif}


def _ok(name: str, key: bytes, nonce: int, tx: Json, chain: str = CHAIN) -> Json:
    return {"name": name, "hex": ref.signed_tx(key, chain, nonce, tx).hex(), "chain_id": chain,
            "verdict": "ok", "signer": ref.address(key).lower(), "nonce": nonce, "tx": tx,
            "error": None}


def _refused(name: str, raw: bytes, verdict: str, error: str) -> Json:
    return {"name": name, "hex": raw.hex(), "chain_id": CHAIN, "verdict": verdict,
            "signer": None, "nonce": None, "tx": None, "error": error}


def _envelope_of(tx: Json, **changes: Any) -> bytes:
    """A's signed tx of `tx` (nonce 0), then its keys changed (None: removed)."""
    obj = cbor2.loads(ref.signed_tx(KEY_A, CHAIN, 0, tx))
    obj.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del obj[key]
    return cbor2.dumps(obj, canonical=True)


def _with_sig(tx: Json, r: int | None = None, s: int | None = None,
              v: int | None = None) -> bytes:
    sig = cbor2.loads(ref.signed_tx(KEY_A, CHAIN, 0, tx))["sig"]
    r = int.from_bytes(sig[:32], "big") if r is None else r
    s = int.from_bytes(sig[32:64], "big") if s is None else s
    v = sig[64] if v is None else v
    return _envelope_of(tx, sig=r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes((v,)))


def txs_vectors() -> list[Json]:
    withdraw = {"op": "withdraw", "user": A, "asset": 0, "amount": 5}
    vectors = [
        _ok("withdraw_ok", KEY_A, 0, withdraw),
        _ok("deposit_by_bridge", KEY_BRIDGE, 3,
            {"op": "deposit", "user": A, "asset": 7, "amount": 2**64 - 1}),
        _ok("limit_ioc", KEY_B, 1, {**_limit(B, "sell", 300, 24, "ioc"), "asset": 2**32 - 1}),
        _ok("market_buy", KEY_A, 2**64 - 1,
            {"op": "market", "user": A, "asset": 2, "side": "buy", "size": 10}),
        _ok("cancel_long_chain_id", KEY_B, 24, {"op": "cancel", "user": B, "asset": 1,
                                                 "order_id": 65536}, chain="c" * 50),
        # A valid signature, by B, of a tx naming A: it verifies (the signer is B); the
        # block then refuses it not_authorized.
        _ok("signed_by_another", KEY_B, 0, withdraw),
    ]
    good = ref.signed_tx(KEY_A, CHAIN, 0, withdraw)
    half_s = (N // 2) + 1
    vectors += [
        _refused("not_cbor", b"\xff", "malformed", "bad CBOR"),
        _refused("not_a_map", cbor2.dumps([1]), "malformed", "expected a map"),
        _refused("missing_key", _envelope_of(withdraw, nonce=None), "malformed",
                 'missing field "nonce"'),
        _refused("extra_key", _envelope_of(withdraw, memo=""), "malformed",
                 'unknown field "memo"'),
        _refused("mistyped_nonce", _envelope_of(withdraw, nonce="0"), "malformed",
                 'field "nonce": expected an integer in [0, 2^64-1]'),
        _refused("mistyped_chain_id", _envelope_of(withdraw, chain_id=1), "malformed",
                 'field "chain_id": expected a text string'),
        _refused("mistyped_sig", _envelope_of(withdraw, sig="x"), "malformed",
                 'field "sig": expected a byte string'),
        _refused("bad_tx_field", _envelope_of({**withdraw, "amount": 0}), "malformed",
                 'field "tx": field "amount": expected an integer in [1, 2^64-1], got 0'),
        _refused("limit_without_tif",
                 _envelope_of({k: v for k, v in _limit(A, "buy", 1, 1).items() if k != "tif"}),
                 "malformed", 'field "tx": missing field "tif" (required in CBOR)'),
        _refused("trailing_bytes", good + b"\x00", "malformed",
                 "1 trailing bytes after the envelope"),
        _refused("non_canonical_integer",
                 good.replace(b"\x65nonce\x00", b"\x65nonce\x18\x00"), "malformed",
                 "non-canonical CBOR"),
        _refused("upper_case_user", _envelope_of({**withdraw, "user": "0x" + A[2:].upper()}),
                 "malformed", "non-canonical CBOR"),
        _refused("sig_64_bytes", _envelope_of(withdraw, sig=bytes(64)), "malformed",
                 'field "sig": expected 65 bytes, got 64'),
        _refused("v_is_1", _with_sig(withdraw, v=1), "malformed",
                 'field "sig": v must be 27 or 28, got 1'),
        _refused("high_s", _with_sig(withdraw, s=half_s), "malformed", 'field "sig": high s'),
        _refused("r_zero", _with_sig(withdraw, r=0), "malformed", 'field "sig": r out of range'),
        # x = 5 is not on secp256k1 (5^3 + 7 = 132 has no square root mod p).
        _refused("no_public_key", _with_sig(withdraw, r=5), "bad_signature",
                 "recovers no public key"),
        _refused("wrong_chain", ref.signed_tx(KEY_A, "another-chain", 0, withdraw),
                 "wrong_chain", 'chain id "another-chain" is not this chain\'s'),
    ]
    return vectors


def blocks_vector() -> Json:
    def signed(key: bytes, nonce: int, tx: Json) -> str:
        return ref.signed_tx(key, CHAIN, nonce, tx).hex()

    app_state = {"bridge": BRIDGE, "balances": [
        {"user": A, "asset": 0, "amount": 1000},
        {"user": B, "asset": 1, "amount": 10},
    ]}
    block1 = [
        # A may not deposit (only the bridge may): not_authorized, A's nonce stays 0.
        (signed(KEY_A, 0, {"op": "deposit", "user": A, "asset": 0, "amount": 5}),
         {"ok": False, "error": "not_authorized"}),
        # The bridge deposits 5 of asset 0 for B (bridge nonce 0 -> 1).
        (signed(KEY_BRIDGE, 0, {"op": "deposit", "user": B, "asset": 0, "amount": 5}),
         {"ok": True}),
        # B signs a withdrawal of A's funds: not_authorized.
        (signed(KEY_B, 0, {"op": "withdraw", "user": A, "asset": 0, "amount": 1}),
         {"ok": False, "error": "not_authorized"}),
        # A with nonce 1, but A is at 0: bad_nonce.
        (signed(KEY_A, 1, {"op": "withdraw", "user": A, "asset": 0, "amount": 1}),
         {"ok": False, "error": "bad_nonce"}),
        # B sells 4 at 10 (B nonce 0 -> 1): order 1 rests, locks 4 of asset 1.
        (signed(KEY_B, 0, _limit(B, "sell", 10, 4)),
         {"ok": True, "order_id": 1, "fills": [], "resting": 4, "canceled": []}),
    ]
    block2 = [
        # A buys 3 at 12 (A nonce 0 -> 1): fills 3 at the maker's 10, pays 30.
        (signed(KEY_A, 0, _limit(A, "buy", 12, 3)),
         {"ok": True, "order_id": 2, "fills": [
             {"maker_order_id": 1, "taker_order_id": 2, "maker": B, "taker": A, "price": 10,
              "size": 3}], "resting": 0, "canceled": []}),
        # A withdraws more than it has (1000 - 30 = 970): insufficient_balance, but the
        # nonce is used (A 1 -> 2).
        (signed(KEY_A, 1, {"op": "withdraw", "user": A, "asset": 0, "amount": 971}),
         {"ok": False, "error": "insufficient_balance"}),
        # Replaying nonce 1 is refused: bad_nonce.
        (signed(KEY_A, 1, {"op": "withdraw", "user": A, "asset": 0, "amount": 1}),
         {"ok": False, "error": "bad_nonce"}),
        # A cancels B's order: not_authorized (the signer is not the tx's user).
        (signed(KEY_A, 2, {"op": "cancel", "user": B, "asset": 1, "order_id": 1}),
         {"ok": False, "error": "not_authorized"}),
        # A signs B's cancel with A's key but names itself: not_owner, nonce used (2 -> 3).
        (signed(KEY_A, 2, {"op": "cancel", "user": A, "asset": 1, "order_id": 1}),
         {"ok": False, "error": "not_owner"}),
        # B cancels the remaining 1 (B 1 -> 2).
        (signed(KEY_B, 1, {"op": "cancel", "user": B, "asset": 1, "order_id": 1}),
         {"ok": True, "canceled": [1]}),
    ]
    blocks = [
        {"height": 1, "time": 1700000000001, "txs": [t for t, _ in block1],
         "receipts": [r for _, r in block1]},
        {"height": 2, "time": 1700000000002, "txs": [t for t, _ in block2],
         "receipts": [r for _, r in block2]},
    ]
    nonces = {A: 3, B: 2, BRIDGE: 1}
    return {
        "chain_id": CHAIN,
        "app_state": app_state,
        "blocks": blocks,
        "nonces": dict(sorted(nonces.items())),
        "nonce_entries": sorted(["03" + u[2:], f"{n:02x}"] for u, n in nonces.items()),
        "balances": dict(sorted({
            A: {"0": {"available": 970, "locked": 0}, "1": {"available": 3, "locked": 0}},
            B: {"0": {"available": 35, "locked": 0}, "1": {"available": 7, "locked": 0}},
        }.items())),
    }


def render(obj: Json) -> str:
    return json.dumps(obj, indent=1) + "\n"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "txs.json").write_text(render(txs_vectors()))
    (OUT / "blocks.json").write_text(render(blocks_vector()))


if __name__ == "__main__":
    main()
