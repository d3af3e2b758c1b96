"""LevelDB errors as `StoreError`s, and refusal of a closed store, for `Store`'s methods."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from store import leveldb
from store.errors import CorruptStore, StoreError

if TYPE_CHECKING:
    from store.database import Store

P = ParamSpec("P")
R = TypeVar("R")


def translate(exc: Exception) -> StoreError:
    if isinstance(exc, leveldb.CorruptionError):
        return CorruptStore(f"LevelDB corruption: {exc}")
    return StoreError(f"LevelDB error: {exc}")


def guarded(method: Callable[Concatenate[Store, P], R]) -> Callable[Concatenate[Store, P], R]:
    """Refuse a closed store and turn LevelDB's own errors into `StoreError`s."""

    @functools.wraps(method)
    def wrapper(self: Store, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if self._db is None:
            raise StoreError(f"{self.directory}: the store is closed")
        try:
            return method(self, *args, **kwargs)
        except (leveldb.Error, RuntimeError, OSError) as exc:
            raise translate(exc) from None

    return wrapper


def guarded_iter(items: Iterator[R]) -> Iterator[R]:
    try:
        yield from items
    except (leveldb.Error, RuntimeError, OSError) as exc:
        raise translate(exc) from None
