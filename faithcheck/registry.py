"""One decorator registry per concept (tasks, probes, backends, rewriters).

Registering a factory is the only way to add one, so the registry is the single
source of truth that `faithcheck list` prints and the CLI validates against.
Modules are imported lazily by name so heavy libraries load only when used.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class UnknownNameError(ValueError):
    pass


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable[..., Any]
    summary: str


class Registry:
    def __init__(self, kind: str, package: str, modules: tuple[str, ...], discover: bool = False):
        """`modules`: imported in this order when the registry is first read. `discover`: also
        import every other public module of the package (after them), so adding one is
        adding its file."""
        self.kind = kind
        self._package = package
        self._modules = modules
        self._discover = discover
        self._entries: dict[str, Entry] = {}
        self._loaded = False

    def register(self, name: str, summary: str = "") -> Callable:
        def wrap(factory: Callable) -> Callable:
            doc = summary or (factory.__doc__ or "").strip().split("\n")[0]
            self._entries[name] = Entry(name, factory, doc)
            return factory

        return wrap

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for mod in self._modules:
                importlib.import_module(f"{self._package}.{mod}")
            if self._discover:
                package = importlib.import_module(self._package)
                for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
                    if not info.name.startswith("_") and info.name not in self._modules and info.name != "base":
                        importlib.import_module(f"{self._package}.{info.name}")

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        self._load()
        return [self._entries[n] for n in sorted(self._entries)]

    def in_module_order(self) -> list[Entry]:
        """Entries in the order their modules are listed (the order a reader meets them in)."""
        self._load()
        order = {f"{self._package}.{m}": i for i, m in enumerate(self._modules)}
        return sorted(self._entries.values(), key=lambda e: order.get(e.factory.__module__, len(order)))

    def get(self, name: str) -> Entry:
        self._load()
        if name not in self._entries:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._entries[name]
