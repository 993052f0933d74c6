"""The one way to extend regrow: a `Registry` per extension point (methods, reinits, schedules,
laws, families, executors, loggers, callbacks, CLI commands).

An implementation registers itself with `@REGISTRY.register("name")` in its own file; what it
needs or can do is declared on the class (class attributes, methods), and every caller reads it
from there, so no code outside an implementation tests its name. A registry is a read-only
mapping name -> implementation; an unknown name is a RegrowError listing the known ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from regrow.errors import RegrowError

T = TypeVar("T")


class Registry(Mapping, Generic[T]):
    """Name -> implementation for one extension point; `kind` names it in messages."""

    def __init__(self, kind: str, entry_points: str | None = None):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._group = entry_points  # installed packages may offer entries under this entry-point group

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: file the class (or function) under `name`; classes get `.name` set."""

        def add(item: T) -> T:
            if name in self._items and self._items[name] is not item:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            if isinstance(item, type):
                item.name = name
            self._items[name] = item
            return item

        return add

    def unregister(self, name: str) -> None:
        """Remove an entry (tests that register a toy implementation clean up with this)."""
        self._items.pop(name, None)

    def _load_entry_points(self) -> None:
        """Once, on the first unknown name: register what installed packages offer (an
        installed package is code the user chose to install; no file regrow reads names code)."""
        group, self._group = self._group, None
        if group is None:
            return
        from importlib.metadata import entry_points

        for entry in entry_points(group=group):
            if entry.name not in self._items:
                self.register(entry.name)(entry.load())

    def __getitem__(self, name: str) -> T:
        if name not in self:
            raise RegrowError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self._items)}")
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        try:
            if name not in self._items:
                self._load_entry_points()
            return name in self._items
        except TypeError:  # an unhashable value from a config file
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def where(self, predicate: Callable[[T], bool]) -> list[str]:
        """Names of the entries for which `predicate(entry)` holds (e.g. methods that stream)."""
        return [name for name, item in self._items.items() if predicate(item)]

    def summaries(self) -> str:
        """'name: summary; ...' for CLI help (an entry's `summary`, else its docstring's first line)."""
        return "; ".join(f"{name}: {summary_of(item)}" for name, item in self._items.items())


def summary_of(item: object) -> str:
    text = getattr(item, "summary", "") or (getattr(item, "__doc__", "") or "")
    return text.strip().splitlines()[0].rstrip(".") if text.strip() else ""
