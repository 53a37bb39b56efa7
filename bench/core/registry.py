"""Generic name -> object registries with "did you mean" errors."""
from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from .errors import BenchError


def suggest(name: str, choices) -> str:
    """Return a ``; did you mean 'x'?`` hint (or '') for a mistyped ``name``."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


class Registry:
    """A named collection of objects (classes or factories).

    >>> METHODS = Registry("method")
    >>> @METHODS.register("coop")
    ... class CoOp: ...
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, Any] = {}

    def register(self, name: str, obj: Any = None) -> Callable:
        def add(target):
            if name in self._entries and self._entries[name] is not target:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._entries[name] = target
            if isinstance(target, type) and "registry_name" in dir(target):
                target.registry_name = name  # the class knows the name it is run under (error messages)
            return target

        return add(obj) if obj is not None else add

    def get(self, name: str) -> Any:
        try:
            return self._entries[name]
        except KeyError:
            available = ", ".join(sorted(self._entries)) or "none"
            raise BenchError(
                f"unknown {self.kind} '{name}'{suggest(name, self._entries)} "
                f"(available: {available})"
            ) from None

    def names(self) -> list:
        return sorted(self._entries)

    def items(self) -> Iterator[Tuple[str, Any]]:
        return iter(sorted(self._entries.items()))

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)


def describe(obj: Any) -> Optional[str]:
    """First line of an object's docstring, for ``bench list``."""
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else None


class MethodRegistry(Registry):
    """Methods, and ``<method>@<variant>`` names built by a variant factory from ``VARIANTS``
    (``coop@la_posthoc``): a variant applies to every method without a registration of its own."""

    def __init__(self, kind: str, variants: Registry):
        super().__init__(kind)
        self.variants = variants
        self._built: Dict[str, Any] = {}

    def get(self, name: str) -> Any:
        if "@" not in name or name in self._entries:  # a registered name may spell a variant (lamp@no_newbias)
            return super().get(name)
        if name not in self._built:
            base, variant = name.split("@", 1)
            cls = self.variants.get(variant)(super().get(base))
            cls.registry_name = name
            self._built[name] = cls
        return self._built[name]


# The module that registers the built-in entries imports methods/ and every package, so it sits
# above them all; configuration, which checks names against full registries, reaches it by name.
LOADER = "bench.plugins"


def fill_registries() -> None:
    """Register the built-in methods, datasets and backbones (imports them once)."""
    importlib.import_module(LOADER).load_builtins()


VARIANTS = Registry("method variant")
METHODS = MethodRegistry("method", VARIANTS)
DATASETS = Registry("dataset")
BACKBONES = Registry("backbone")
