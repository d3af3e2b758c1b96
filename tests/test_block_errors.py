"""One error precedence for a refused block, and errors that carry their facts.

spec/blocks.md section 3: schema errors (the block's fields, then each tx in order) come
before sequence errors (height, then time). `Executor.validate` and `Executor.apply_block`
must name the same error for a block wrong in several ways at once, and change nothing.
Expected messages and fields here are written by hand from the spec.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from block_exec import (
    Block,
    BlockDecodeError,
    BlockError,
    BlockSchemaError,
    BlockSequenceError,
    Deposit,
    Executor,
    Limit,
    Tx,
    decode_cbor_block,
    decode_json_block,
)
from state_machine import CoreError, CoreledgerError, Side, Tif
from store import StoreError

U = "0x" + "00" * 19 + "0a"


def _executor_at_height_1() -> Executor:
    executor = Executor()
    executor.apply_block(Block(1, 1000, (Deposit(U, 0, 10**6),)))
    return executor


def _refusal(executor: Executor, block: Block) -> tuple[BlockError, BlockError]:
    """The errors validate and apply_block raise for `block`; the executor is unchanged."""
    before = (executor.height, executor.last_time, executor.state_root)
    with pytest.raises(BlockError) as by_validate:
        executor.validate(block)
    with pytest.raises(BlockError) as by_apply:
        executor.apply_block(block)
    assert (executor.height, executor.last_time, executor.state_root) == before
    return by_validate.value, by_apply.value


def _facts(error: BlockError) -> tuple[type, str, int | None, int | None, str | None]:
    return type(error), str(error), error.height, error.tx_index, error.field


def test_wrong_height_and_bad_tx_is_a_schema_error_for_both() -> None:
    executor = _executor_at_height_1()
    block = Block(5, 2000, (Deposit(U, 0, 1), Limit(U, 1, Side.BUY, 0, 3, Tif.GTC)))
    by_validate, by_apply = _refusal(executor, block)
    assert _facts(by_validate) == _facts(by_apply) == (
        BlockSchemaError,
        'block (height 5): tx 1: field "price": expected an integer in [1, 2^64-1], got 0',
        5, 1, "price",
    )


def test_time_backwards_and_bad_user_is_a_schema_error_for_both() -> None:
    executor = _executor_at_height_1()
    block = Block(2, 999, (Deposit("0xABC", 0, 1),))
    by_validate, by_apply = _refusal(executor, block)
    assert _facts(by_validate) == _facts(by_apply)
    assert type(by_apply) is BlockSchemaError
    assert (by_apply.height, by_apply.tx_index, by_apply.field) == (2, 0, "user")


def test_wrong_height_and_time_backwards_names_the_height() -> None:
    executor = _executor_at_height_1()
    by_validate, by_apply = _refusal(executor, Block(3, 999, ()))
    assert _facts(by_validate) == _facts(by_apply) == (
        BlockSequenceError,
        "block (height 3): height is not the next one (want 2)",
        3, None, "height",
    )


def test_time_backwards_alone() -> None:
    executor = _executor_at_height_1()
    by_validate, by_apply = _refusal(executor, Block(2, 999, ()))
    assert _facts(by_validate) == _facts(by_apply) == (
        BlockSequenceError,
        "block (height 2): time goes backwards (999 < previous 1000)",
        2, None, "time",
    )


_BAD_TXS: dict[str, Tx] = {
    "price": Limit(U, 1, Side.BUY, 0, 1, Tif.GTC),
    "size": Limit(U, 1, Side.SELL, 5, 2**64, Tif.GTC),
    "asset": Limit(U, 0, Side.BUY, 5, 1, Tif.GTC),
    "amount": Deposit(U, 0, -1),
    "user": Deposit("0x" + "0A" * 20, 0, 1),  # not normalised: a constructed block's error
}


@given(
    height=st.sampled_from([1, 2, 3, 10]),
    time=st.sampled_from([0, 999, 1000, 5000]),
    bad=st.lists(st.sampled_from([None, *sorted(_BAD_TXS)]), max_size=4),
)
def test_several_defects_one_precedence(height: int, time: int, bad: list[str | None]) -> None:
    executor = _executor_at_height_1()
    txs = tuple(Deposit(U, 0, 1) if name is None else _BAD_TXS[name] for name in bad)
    block = Block(height, time, txs)
    first_bad = next((i for i, name in enumerate(bad) if name is not None), None)
    if first_bad is None and height == 2 and time >= 1000:
        executor.validate(block)  # a good block: both accept it
        executor.apply_block(block)
        assert executor.height == 2
        return
    by_validate, by_apply = _refusal(executor, block)
    assert _facts(by_validate) == _facts(by_apply)
    if first_bad is not None:  # the schema first, at the first bad tx
        assert type(by_apply) is BlockSchemaError
        assert (by_apply.height, by_apply.tx_index, by_apply.field) == (
            height, first_bad, bad[first_bad])
    else:  # then the sequence: the height before the time
        assert type(by_apply) is BlockSequenceError
        assert by_apply.field == ("height" if height != 2 else "time")


# -- structured fields on decode errors -------------------------------------------------


def test_decode_error_fields() -> None:
    tx0 = f'{{"op": "deposit", "user": "{U}", "asset": 0, "amount": 1}}'
    tx1 = f'{{"op": "limit", "user": "{U}", "asset": 1, "side": "buy", "price": 1.5, "size": 1}}'
    line = f'{{"height": 7, "time": 1, "txs": [{tx0}, {tx1}]}}'
    with pytest.raises(BlockDecodeError) as caught:
        decode_json_block(line, "block at line 3")
    error = caught.value
    # A float is bad JSON here (refused before the schema): no height read yet.
    assert str(error).startswith("block at line 3: bad JSON")
    assert (error.height, error.tx_index, error.field) == (None, None, None)

    bad_price = line.replace("1.5", "0")
    with pytest.raises(BlockDecodeError) as caught:
        decode_json_block(bad_price, "block at line 3")
    assert (caught.value.height, caught.value.tx_index, caught.value.field) == (7, 1, "price")

    no_time = '{"height": 7, "txs": []}'
    with pytest.raises(BlockDecodeError) as caught:
        decode_json_block(no_time)
    assert str(caught.value) == 'block: missing field "time"'
    assert (caught.value.height, caught.value.tx_index, caught.value.field) == (
        None, None, "time")

    unknown_op = '{"height": 9, "time": 1, "txs": [{"op": "swap"}]}'
    with pytest.raises(BlockDecodeError) as caught:
        decode_json_block(unknown_op)
    assert (caught.value.height, caught.value.tx_index, caught.value.field) == (9, 0, "op")

    with pytest.raises(BlockDecodeError) as caught:
        decode_cbor_block(b"\xff")
    assert (caught.value.height, caught.value.tx_index, caught.value.field) == (
        None, None, None)


def test_one_exception_root() -> None:
    for error_class in (BlockError, CoreError, StoreError):
        assert issubclass(error_class, CoreledgerError)
