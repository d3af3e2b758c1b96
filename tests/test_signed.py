"""Signed txs (spec/signed.md): envelope decoding, signing message, recovery, cache.

Expected bytes and signers come from eth-account and cbor2 (tests/signed_reference.py),
never from the code under test.
"""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from block_exec import signed as signed_mod
from block_exec.signed import (
    HALF_N,
    SECP256K1_N,
    SignatureCache,
    TxAuth,
    TxRefused,
    address_of,
    check_signed_tx,
    decode_signed_tx,
    is_authorized,
    recover_signer,
    sign_tx,
)
from block_exec.types import Cancel, Deposit, Limit, Market, Tx, Withdraw
from state_machine import Side, Tif
from tests import signed_reference as ref

KEY = ref.TEST_KEYS[0]
ADDRESS = "0x2c7536e3605d9c16a7a3d7b1898e529396a65c23"  # eth-account's, lower-cased
CHAIN = "coreledger-test"


def limit_dict(user: str = ADDRESS, **changes: Any) -> dict[str, Any]:
    tx = {"op": "limit", "user": user, "asset": 1, "side": "buy", "price": 100, "size": 5,
          "tif": "gtc"}
    tx.update(changes)
    return tx


def good_raw(nonce: int = 0, tx: dict[str, Any] | None = None) -> bytes:
    return ref.signed_tx(KEY, CHAIN, nonce, limit_dict() if tx is None else tx)


def test_eth_account_address_is_recovered_exactly() -> None:
    assert ref.address(KEY).lower() == ADDRESS
    raw = good_raw(nonce=7)
    signed, auth = check_signed_tx(raw, CHAIN, cache=None)
    assert auth == TxAuth(ADDRESS, 7)
    assert signed.tx == Limit(ADDRESS, 1, Side.BUY, 100, 5, Tif.GTC)
    assert signed.message == ref.message(CHAIN, 7, limit_dict())
    assert signed.sig == ref.signature(KEY, signed.message)
    assert address_of(KEY) == ADDRESS


@pytest.mark.parametrize("key", ref.TEST_KEYS)
def test_sign_tx_gives_the_bytes_eth_account_and_cbor2_give(key: bytes) -> None:
    user = ref.address(key).lower()
    txs: list[tuple[Tx, dict[str, Any]]] = [
        (Deposit(user, 0, 5), {"op": "deposit", "user": user, "asset": 0, "amount": 5}),
        (Withdraw(user, 9, 2**64 - 1),
         {"op": "withdraw", "user": user, "asset": 9, "amount": 2**64 - 1}),
        (Limit(user, 2**32 - 1, Side.SELL, 300, 24, Tif.IOC),
         {"op": "limit", "user": user, "asset": 2**32 - 1, "side": "sell", "price": 300,
          "size": 24, "tif": "ioc"}),
        (Market(user, 3, Side.BUY, 1), {"op": "market", "user": user, "asset": 3, "side": "buy",
                                         "size": 1}),
        (Cancel(user, 1, 77), {"op": "cancel", "user": user, "asset": 1, "order_id": 77}),
    ]
    for nonce, (tx, tx_dict) in enumerate(txs):
        # RFC 6979 makes both signers deterministic: the bytes must agree exactly.
        assert sign_tx(key, "c", nonce * 1000, tx) == ref.signed_tx(key, "c", nonce * 1000,
                                                                  tx_dict)


def test_long_chain_id_and_big_nonce() -> None:
    chain = "x" * 50
    raw = ref.signed_tx(KEY, chain, 2**64 - 1, limit_dict())
    assert check_signed_tx(raw, chain, cache=None)[1] == TxAuth(ADDRESS, 2**64 - 1)


def test_sign_tx_refuses_bad_arguments() -> None:
    tx = Limit(ADDRESS, 1, Side.BUY, 100, 5, Tif.GTC)
    with pytest.raises(ValueError, match="chain id"):
        sign_tx(KEY, "", 0, tx)
    with pytest.raises(ValueError, match="nonce"):
        sign_tx(KEY, CHAIN, -1, tx)
    with pytest.raises(ValueError, match="tx: field \"price\""):
        sign_tx(KEY, CHAIN, 0, Limit(ADDRESS, 1, Side.BUY, 0, 5, Tif.GTC))
    with pytest.raises(ValueError, match="private key"):
        sign_tx(KEY[:31], CHAIN, 0, tx)


# -- refusals: one per kind, each one line naming what is wrong ---------------------------

def _with(**changes: Any) -> bytes:
    obj = cbor2.loads(good_raw())
    obj.update(changes)
    return cbor2.dumps(obj, canonical=True)


def _without(key: str) -> bytes:
    obj = cbor2.loads(good_raw())
    del obj[key]
    return cbor2.dumps(obj, canonical=True)


def _sig_with(r: int | None = None, s: int | None = None, v: int | None = None) -> bytes:
    sig = cbor2.loads(good_raw())["sig"]
    r = int.from_bytes(sig[:32], "big") if r is None else r
    s = int.from_bytes(sig[32:64], "big") if s is None else s
    v = sig[64] if v is None else v
    return _with(sig=r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes((v,)))


def _non_canonical_head() -> bytes:
    raw = good_raw(nonce=5)
    # nonce 5 as a one-byte-argument uint (18 05) instead of the short form 05
    return raw.replace(b"\x65nonce\x05", b"\x65nonce\x18\x05")


def _uppercase_user() -> bytes:
    obj = cbor2.loads(good_raw())
    obj["tx"]["user"] = "0x" + ADDRESS[2:].upper()
    return cbor2.dumps(obj, canonical=True)


def _unsorted_keys() -> bytes:
    obj = cbor2.loads(good_raw())
    return cbor2.dumps({k: obj[k] for k in ("chain_id", "nonce", "sig", "tx")})


def _indefinite() -> bytes:
    raw = good_raw()
    assert raw[0] == 0xA4
    return b"\xbf" + raw[1:] + b"\xff"


REFUSALS: list[tuple[str, bytes, str]] = [
    ("not CBOR", b"\xff\x00", "bad CBOR"),
    ("empty", b"", "bad CBOR"),
    ("not a map", cbor2.dumps([1, 2]), "expected a map, got an array"),
    ("missing key", _without("nonce"), 'missing field "nonce"'),
    ("extra key", _with(memo="hi"), 'unknown field "memo"'),
    ("non-text key", cbor2.dumps({**cbor2.loads(good_raw()), 1: 2}, canonical=True),
     "unknown field 1"),
    ("chain id not text", _with(chain_id=b"abc"), 'field "chain_id": expected a text string'),
    ("chain id empty", _with(chain_id=""), 'field "chain_id": expected 1 to 50 bytes'),
    ("chain id too long", _with(chain_id="x" * 51), 'field "chain_id": expected 1 to 50'),
    ("nonce negative", _with(nonce=-1), 'field "nonce": expected an integer'),
    ("nonce a float", _with(nonce=0.0), 'field "nonce": expected an integer'),
    ("nonce too big", _with(nonce=2**64), 'field "nonce": expected an integer'),
    ("nonce text", _with(nonce="0"), 'field "nonce": expected an integer'),
    ("tx not a map", _with(tx=[1]), 'field "tx": expected an object'),
    ("tx bad field", _with(tx=limit_dict(price=0)), 'field "tx": field "price"'),
    ("tx unknown op", _with(tx={"op": "mint", "user": ADDRESS}), 'field "tx": field "op"'),
    ("tx limit without tif", _with(tx={k: v for k, v in limit_dict().items() if k != "tif"}),
     'field "tx": missing field "tif" (required in CBOR)'),
    ("tx user upper case", _uppercase_user(), "non-canonical CBOR"),
    ("sig not bytes", _with(sig="00" * 65), 'field "sig": expected a byte string'),
    ("sig 64 bytes", _with(sig=bytes(64)), 'field "sig": expected 65 bytes, got 64'),
    ("sig 66 bytes", _with(sig=bytes(66)), 'field "sig": expected 65 bytes, got 66'),
    ("v 0", _sig_with(v=0), 'field "sig": v must be 27 or 28, got 0'),
    ("v 29", _sig_with(v=29), 'field "sig": v must be 27 or 28, got 29'),
    ("high s", _sig_with(s=HALF_N + 1), 'field "sig": high s'),
    ("s zero", _sig_with(s=0), 'field "sig": s is zero'),
    ("r zero", _sig_with(r=0), 'field "sig": r out of range'),
    ("r = n", _sig_with(r=SECP256K1_N), 'field "sig": r out of range'),
    ("trailing bytes", good_raw() + b"\x00", "1 trailing bytes after the envelope"),
    ("non-minimal integer", _non_canonical_head(), "non-canonical CBOR"),
    ("unsorted keys", _unsorted_keys(), "non-canonical CBOR"),
    ("indefinite map", _indefinite(), "bad CBOR"),
    ("truncated", good_raw()[:-1], "bad CBOR"),
]


@pytest.mark.parametrize(("name", "raw", "expected"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_malformed_envelopes_are_refused_in_one_line(name: str, raw: bytes,
                                                     expected: str) -> None:
    with pytest.raises(TxRefused) as info:
        decode_signed_tx(raw)
    assert info.value.reason == "malformed"
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("signed tx: ")
    assert expected in message, message
    with pytest.raises(TxRefused):
        check_signed_tx(raw, CHAIN, cache=SignatureCache())


def test_wrong_chain_is_refused() -> None:
    with pytest.raises(TxRefused) as info:
        check_signed_tx(good_raw(), "other-chain", cache=None)
    assert info.value.reason == "wrong_chain"
    assert '"coreledger-test" is not this chain\'s ("other-chain")' in str(info.value)


def test_a_cached_tx_is_still_checked_for_its_chain() -> None:
    cache = SignatureCache()
    check_signed_tx(good_raw(), CHAIN, cache=cache)
    with pytest.raises(TxRefused) as info:
        check_signed_tx(good_raw(), "other-chain", cache=cache)
    assert info.value.reason == "wrong_chain"


def test_a_signature_that_recovers_no_key_is_a_bad_signature() -> None:
    # r = 5 is not the x coordinate of a curve point (x^3 + 7 = 132 is no square mod p),
    # so no public key can be recovered whatever s and v are.
    raw = _sig_with(r=5)
    with pytest.raises(TxRefused) as info:
        check_signed_tx(raw, CHAIN, cache=None)
    assert info.value.reason == "bad_signature"


def test_a_signature_of_another_message_recovers_another_signer() -> None:
    obj = cbor2.loads(good_raw())
    obj["sig"] = ref.signature(KEY, b"something else")
    _, auth = check_signed_tx(cbor2.dumps(obj, canonical=True), CHAIN, cache=None)
    assert auth.signer != ADDRESS


# -- properties ------------------------------------------------------------------------------

keys = st.integers(1, SECP256K1_N - 1).map(lambda k: k.to_bytes(32, "big"))
u64 = st.integers(1, 2**64 - 1)
assets = st.integers(0, 2**32 - 1)
book_assets = st.integers(1, 2**32 - 1)
sides = st.sampled_from(["buy", "sell"])


def tx_dicts(user: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.fixed_dictionaries({"op": st.sampled_from(["deposit", "withdraw"]),
                               "user": st.just(user), "asset": assets, "amount": u64}),
        st.fixed_dictionaries({"op": st.just("limit"), "user": st.just(user),
                               "asset": book_assets, "side": sides, "price": u64,
                               "size": u64, "tif": st.sampled_from(["gtc", "ioc", "alo"])}),
        st.fixed_dictionaries({"op": st.just("market"), "user": st.just(user),
                               "asset": book_assets, "side": sides, "size": u64}),
        st.fixed_dictionaries({"op": st.just("cancel"), "user": st.just(user),
                               "asset": book_assets, "order_id": u64}),
    )


@st.composite
def signed_cases(draw: st.DrawFn) -> tuple[bytes, str, str, int, dict[str, Any], bytes]:
    key = draw(keys)
    signer = ref.address(key).lower()
    user = draw(st.sampled_from([signer, "0x" + draw(st.binary(min_size=20, max_size=20)).hex()]))
    tx = draw(tx_dicts(user))
    chain = draw(st.text(st.characters(codec="ascii"), min_size=1, max_size=50))
    nonce = draw(st.integers(0, 2**64 - 1))
    return key, signer, chain, nonce, tx, ref.signed_tx(key, chain, nonce, tx)


@given(signed_cases())
def test_a_random_tx_signed_by_a_random_key_always_verifies(
    case: tuple[bytes, str, str, int, dict[str, Any], bytes],
) -> None:
    key, signer, chain, nonce, tx, raw = case
    signed, auth = check_signed_tx(raw, chain, cache=None)
    assert auth == TxAuth(signer, nonce)
    assert signed.chain_id == chain
    assert signed.message == ref.message(chain, nonce, tx)
    assert sign_tx(key, chain, nonce, signed.tx) == raw


def _sig_and_tx_bits(raw: bytes) -> tuple[range, range]:
    obj = cbor2.loads(raw)
    tx_bytes = cbor2.dumps(obj["tx"], canonical=True)
    tx_start = raw.index(tx_bytes)
    sig_start = raw.index(b"\x63sig\x58\x41") + 6
    return (range(tx_start * 8, (tx_start + len(tx_bytes)) * 8),
            range(sig_start * 8, (sig_start + 65) * 8))


@given(signed_cases(), st.data())
def test_a_flipped_bit_in_sig_or_tx_never_gives_the_same_signer_and_tx(
    case: tuple[bytes, str, str, int, dict[str, Any], bytes], data: st.DataObject,
) -> None:
    _, signer, chain, _, _, raw = case
    original, _ = check_signed_tx(raw, chain, cache=None)
    tx_bits, sig_bits = _sig_and_tx_bits(raw)
    bit = data.draw(st.one_of(st.sampled_from(tx_bits), st.sampled_from(sig_bits)))
    flipped = bytearray(raw)
    flipped[bit // 8] ^= 1 << (bit % 8)
    try:
        signed, auth = check_signed_tx(bytes(flipped), chain, cache=None)
    except TxRefused:
        return
    assert (signed.tx, auth.signer) != (original.tx, signer)


def test_every_bit_of_one_sig_flipped() -> None:
    raw = good_raw()
    _, sig_bits = _sig_and_tx_bits(raw)
    for bit in sig_bits:
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        try:
            _, auth = check_signed_tx(bytes(flipped), CHAIN, cache=None)
        except TxRefused:
            continue
        assert auth.signer != ADDRESS


# -- the cache -------------------------------------------------------------------------------

def test_the_cache_skips_recovery_and_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = signed_mod._recover

    def counting(sig: bytes, message: bytes) -> str:
        calls.append(sig)
        return real(sig, message)

    monkeypatch.setattr(signed_mod, "_recover", counting)
    cache = SignatureCache(capacity=3)
    raws = [good_raw(nonce=n) for n in range(5)]
    for raw in raws[:3]:
        check_signed_tx(raw, CHAIN, cache=cache)
    assert len(calls) == 3
    for raw in raws[:3]:
        assert check_signed_tx(raw, CHAIN, cache=cache)[1].signer == ADDRESS
        signed = decode_signed_tx(raw)
        assert recover_signer(signed, raw, cache=cache) == ADDRESS
    assert len(calls) == 3 and cache.hits == 6
    cache._check()
    for raw in raws[3:]:
        check_signed_tx(raw, CHAIN, cache=cache)
    assert len(cache) == 3
    cache._check()
    check_signed_tx(raws[0], CHAIN, cache=cache)  # evicted first: recovered again
    assert len(calls) == 6
    cache.clear()
    assert len(cache) == 0 and cache.hits == 0


def test_recover_signer_without_a_cache() -> None:
    raw = good_raw()
    assert recover_signer(decode_signed_tx(raw), raw, cache=None) == ADDRESS


def test_authorization_rule() -> None:
    bridge = "0x" + "bb" * 20
    other = "0x" + "cc" * 20
    assert is_authorized(Deposit(ADDRESS, 0, 1), bridge, bridge)
    assert not is_authorized(Deposit(ADDRESS, 0, 1), ADDRESS, bridge)
    assert not is_authorized(Deposit(ADDRESS, 0, 1), ADDRESS, None)
    for tx in (Withdraw(ADDRESS, 0, 1), Cancel(ADDRESS, 1, 1), Market(ADDRESS, 1, Side.BUY, 1),
               Limit(ADDRESS, 1, Side.BUY, 1, 1)):
        assert is_authorized(tx, ADDRESS, bridge)
        assert not is_authorized(tx, other, bridge)
        assert not is_authorized(tx, bridge, bridge)
