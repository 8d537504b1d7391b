"""A name → entry table with the two errors every registry of lipsort gives the same way."""
from __future__ import annotations

import dataclasses
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(dict, Generic[T]):
    """``registry.add(name, entry)`` once per name; ``registry.lookup(name)`` or a
    ValueError that lists the valid names (``Unknown activation 'x'; valid activations
    are: …``)."""

    def __init__(self, kind: str, plural: str | None = None):
        super().__init__()
        self.kind, self.plural = kind, plural or f"{kind}s"

    def add(self, name: str, entry: T) -> T:
        if name in self:
            raise ValueError(f"{self.kind} {name!r} is already registered.")
        self[name] = entry
        return entry

    def lookup(self, name: str) -> T:
        if name not in self:
            raise ValueError(f"Unknown {self.kind} {name!r}; valid {self.plural} are: {', '.join(self)}.")
        return self[name]

    def option_fields(self) -> tuple[str, ...]:
        """The names of every entry's ``options_type`` dataclass fields, first seen first
        (for registries whose entries carry options: constraints, conv constraints)."""
        seen: dict[str, None] = {}
        for entry in self.values():
            seen.update((f.name, None) for f in dataclasses.fields(entry.options_type))
        return tuple(seen)
