"""Blocks and transactions (spec/blocks.md, "Transactions").

Frozen slotted dataclasses: a block is data, built once by the decoder (or by node code)
and never changed. Field values are the domain's own types: `user` is the normalised
lower-case address, `side`/`tif` are `state_machine.Side`/`Tif`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from typing import TypeVar

from state_machine import (
    Address,
    Cancellation,
    Fill,
    OpResult,
    OrderType,
    Result,
    Side,
    Tif,
)

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Deposit:
    user: Address
    asset: int
    amount: int


@dataclass(frozen=True, slots=True)
class Withdraw:
    user: Address
    asset: int
    amount: int


@dataclass(frozen=True, slots=True)
class Limit:
    user: Address
    asset: int
    side: Side
    price: int
    size: int
    tif: Tif = Tif.GTC


@dataclass(frozen=True, slots=True)
class Market:
    user: Address
    asset: int
    side: Side
    size: int


@dataclass(frozen=True, slots=True)
class Cancel:
    user: Address
    asset: int
    order_id: int


def _fast_init(cls: type) -> None:
    """Give a frozen slotted dataclass an `__init__` that stores through the slot
    descriptors directly.

    The generated dataclass `__init__` of a frozen class goes through
    `object.__setattr__` per field (~0.9 us for a Limit); decoding builds one tx per
    transaction, so this is on the hot path. The class stays frozen: only `__init__`
    changes, with the same signature and defaults.
    """
    names = [f.name for f in fields(cls)]
    defaults = {f.name: f.default for f in fields(cls) if f.default is not MISSING}
    namespace: dict[str, object] = {f"_set_{n}": cls.__dict__[n].__set__ for n in names}
    namespace.update({f"_default_{n}": v for n, v in defaults.items()})
    params = ", ".join(f"{n}=_default_{n}" if n in defaults else n for n in names)
    body = "\n".join(f"    _set_{n}(self, {n})" for n in names)
    exec(f"def __init__(self, {params}):\n{body}\n", namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"  # type: ignore[attr-defined]
    cls.__init__ = init  # type: ignore[misc]


for _cls in (Deposit, Withdraw, Limit, Market, Cancel):
    _fast_init(_cls)


def _builder(cls: type[_T]) -> Callable[..., _T]:
    """A function building an instance of the frozen slotted dataclass `cls` from all its
    fields, positionally, for the decoder's hot path.

    It fills a mutable twin class with the same slots (plain slot stores, the cheapest
    attribute writes there are) and then sets the object's `__class__` to `cls`, which
    CPython allows between classes of one layout: the result is an ordinary `cls`
    instance, equal to `cls(...)` of the same fields (tested). Measured ~2,300 CPU
    instructions for a Limit where `Limit(...)` takes ~5,800 (one descriptor call per
    field).
    """
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    twin = type(f"_{cls.__name__}Fields", (), {"__slots__": cls.__slots__})  # type: ignore[attr-defined]
    assert list(cls.__slots__) == names  # type: ignore[attr-defined]
    namespace: dict[str, object] = {"_new": object.__new__, "_twin": twin, "_cls": cls}
    body = "\n".join(f"    tx.{n} = {n}" for n in names)
    exec(f"def build({', '.join(names)}):\n    tx = _new(_twin)\n{body}\n"
         f"    tx.__class__ = _cls\n    return tx\n", namespace)
    build = namespace["build"]
    build.__qualname__ = f"new_{cls.__name__.lower()}"  # type: ignore[attr-defined]
    return build  # type: ignore[return-value]


new_deposit: Callable[[Address, int, int], Deposit] = _builder(Deposit)
new_withdraw: Callable[[Address, int, int], Withdraw] = _builder(Withdraw)
new_limit: Callable[[Address, int, Side, int, int, Tif], Limit] = _builder(Limit)
new_market: Callable[[Address, int, Side, int], Market] = _builder(Market)
new_cancel: Callable[[Address, int, int], Cancel] = _builder(Cancel)

Tx = Deposit | Withdraw | Limit | Market | Cancel
TX_TYPES = (Deposit, Withdraw, Limit, Market, Cancel)
OP_NAMES: dict[type, str] = {
    Deposit: "deposit",
    Withdraw: "withdraw",
    Limit: "limit",
    Market: "market",
    Cancel: "cancel",
}


@dataclass(frozen=True, slots=True)
class Block:
    height: int
    time: int  # milliseconds; never goes backwards
    txs: tuple[Tx, ...]
    # The block's canonical CBOR, set only by the decoder (`blockobj.py`), which has checked
    # the whole schema and built these bytes on the way; empty for a block built any
    # other way (then `encode.encode_block_checked` checks and encodes it). Not a
    # constructor argument, so `Block(...)` and `dataclasses.replace` never carry bytes
    # that do not match the fields; not compared.
    cbor: bytes = field(default=b"", init=False, compare=False, repr=False)


_set_block_cbor = Block.__dict__["cbor"].__set__  # the slot itself: Block stays frozen


def block_with_cbor(height: int, time: int, txs: tuple[Tx, ...], cbor: bytes) -> Block:
    """A Block carrying its canonical CBOR: for the decoder only, which has checked the
    schema and built exactly `encode.encode_block`'s bytes (tested)."""
    block = Block(height, time, txs)
    _set_block_cbor(block, cbor)
    return block


@dataclass(frozen=True, slots=True)
class OrderPlaced:
    """An accepted limit or market tx: the order it created (first event of its tx)."""

    order_id: int
    tx: Limit | Market

    @property
    def user(self) -> Address:
        return self.tx.user

    @property
    def asset(self) -> int:
        return self.tx.asset

    @property
    def side(self) -> Side:
        return self.tx.side

    @property
    def type(self) -> OrderType:
        return OrderType.LIMIT if type(self.tx) is Limit else OrderType.MARKET

    @property
    def tif(self) -> Tif | None:
        """The limit's tif; None for a market order (it has none)."""
        tx = self.tx
        return tx.tif if type(tx) is Limit else None

    @property
    def price(self) -> int | None:
        """The limit price; None for a market order."""
        tx = self.tx
        return tx.price if type(tx) is Limit else None

    @property
    def size(self) -> int:
        return self.tx.size


Event = OrderPlaced | Fill | Cancellation
"""Per tx in block order: `OrderPlaced` (if it placed an order), then its fills in match
order, then its cancellations (self-trade makers in match order, then a taker's ioc or
market remainder, or the user-cancelled order). Fills carry asset and taker_side; their
height is the block's (`BlockResult.height`)."""

Receipt = Result
"""The core's result of one tx, a plain tuple in `OpResult`'s field order (unpack it, or
name it with `OpResult._make`); see `receipts_json.receipt_to_json_obj` for its
JSON form."""


@dataclass(slots=True)
class BlockResult:
    height: int
    time: int
    block_hash: bytes  # blake3 of the block's canonical CBOR, 32 bytes
    # The core's result of each tx, in block order, as plain tuples (`Receipt`): what the
    # executor's own paths read; `receipts` is the same, named.
    results: tuple[Receipt, ...]
    txs: tuple[Tx, ...]  # the block's txs, results[i] answering txs[i]
    state_root: bytes | None = None  # set by the executor at checkpoint heights
    block_bytes: bytes = b""  # the block's canonical CBOR (what its hash is taken of)
    receipts_line: str | None = None  # its receipts JSON line, once something encoded it

    @property
    def receipts(self) -> tuple[OpResult, ...]:
        """The receipts, one per tx in block order, by name (`receipts[0].ok`): the named
        view of `results`, built on each read (O(txs); the hot paths read `results`)."""
        return tuple(map(OpResult._make, self.results))

    def placed(self) -> list[OrderPlaced]:
        """The orders the block's accepted limit and market txs created, in block order."""
        return [
            OrderPlaced(order_id, tx)  # type: ignore[arg-type]
            for tx, (_, _, order_id, *_) in zip(self.txs, self.results, strict=True)
            if order_id is not None
        ]

    @property
    def events(self) -> tuple[Event, ...]:
        """The events in execution order (see `Event`), derived from txs and receipts.

        Built on demand: a node that only needs receipts does not pay for them on the
        apply path.
        """
        events: list[Event] = []
        for tx, receipt in zip(self.txs, self.results, strict=True):
            ok, _, order_id, fills, _, _, cancellations = receipt
            if not ok:
                continue
            if order_id is not None:
                events.append(OrderPlaced(order_id, tx))  # type: ignore[arg-type]
            events.extend(fills)
            events.extend(cancellations)
        return tuple(events)

    @property
    def block_hash_hex(self) -> str:
        return self.block_hash.hex()
