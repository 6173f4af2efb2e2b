"""One registry type for every family of named things: models, losses, ablation arms (timm's pattern).

An entry is a name, a target (a class, a factory or a plain record), a one-line description and default
keyword arguments. Entries are added with the :meth:`Registry.register` decorator, or with
:meth:`Registry.add` when one target is registered several times with other defaults (model variants)::

    MODELS = Registry("model")

    @MODELS.register("unet", "classic 4-level U-Net")
    class UNet(nn.Module): ...

    MODELS.add("s2mnet_k16", S2MNet, "SSTM band K=16", k=16)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from s2mnet.errors import S2MError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered name: its target, what it is (one line) and the keyword arguments it implies."""

    name: str
    target: T
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Named entries in registration order.

    Args:
        kind: what the entries are ("model", "loss", "arm"), used in error messages.
        error: the exception raised for an unknown name (an :class:`S2MError` subclass).
    """

    def __init__(self, kind: str, error: type[S2MError] = S2MError) -> None:
        self.kind = kind
        self.error = error
        self._entries: dict[str, Entry[T]] = {}

    def add(self, name: str, target: T, description: str, **defaults: Any) -> T:
        """Register ``target`` under ``name``; a name registered twice is a programming error."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = Entry(name, target, description, dict(defaults))
        return target

    def register(self, name: str, description: str, **defaults: Any) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda target: self.add(name, target, description, **defaults)

    def get(self, name: str) -> Entry[T]:
        """The entry of ``name``; an unknown name raises ``error`` listing the known ones."""
        if name not in self._entries:
            raise self.error(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self._entries)}")
        return self._entries[name]

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._entries)

    def describe(self) -> dict[str, str]:
        """Name → one-line description."""
        return {name: entry.description for name, entry in self._entries.items()}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
