"""Name -> implementation tables for the pluggable parts (schedules, pruning methods, reinits)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def registrar(table: dict[str, T]) -> Callable[[str], Callable[[T], T]]:
    """A `@register("name")` decorator that files its target in `table` (and sets `.name` on classes)."""

    def register(name: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            if isinstance(item, type):
                item.name = name
            table[name] = item
            return item

        return add

    return register
