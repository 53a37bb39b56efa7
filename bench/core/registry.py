"""Generic name -> object registries with "did you mean" errors, and where each entry came from.

Each registration remembers its origin: built-in, or the plugin being loaded when it was made
(``bench.plugins`` sets it), so a clash names both sides and a record says where its method came from::

    with registering_from({"from": "plugin", "plugin": "./my_method.py", "sha256": "..."}):
        import_the_plugin()                 # its @METHODS.register(...) calls carry that origin
    METHODS.origin("my_method")["plugin"]   # "./my_method.py"
"""
from __future__ import annotations

import contextlib
import difflib
import importlib
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from bench import __version__
from .errors import BenchError


def suggest(name: str, choices) -> str:
    """Return a ``; did you mean 'x'?`` hint (or '') for a mistyped ``name``."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


BUILT_IN = {"from": "built-in"}
_origin: Dict[str, str] = BUILT_IN  # what registrations made now come from


@contextlib.contextmanager
def registering_from(origin: Dict[str, str]):
    """Registrations made inside the block come from ``origin`` (a plugin being imported)."""
    global _origin
    previous, _origin = _origin, origin
    try:
        yield
    finally:
        _origin = previous


def origin_label(origin: Dict[str, str]) -> str:
    """``built-in`` or ``plugin ./my_method.py``."""
    return "built-in" if origin.get("from") == "built-in" else f"plugin {origin.get('plugin')}"


def clash_fix(first: Dict[str, str]) -> str:
    """How to resolve a second registration of a name first registered from ``first``."""
    if first.get("via") == "entry point" and _origin.get("from") == "plugin":
        return ("; the first is an installed package's plugin, loaded without --plugin: to develop an installed "
                "plugin, install its package editable (pip install -e DIR) and do not pass --plugin, or uninstall "
                "the package while you pass its file with --plugin")
    return "; rename one of them"


def code_version(origin: Dict[str, str], revision: str = "") -> str:
    """The code version results are filed under: bench's, and for a plugin's entry the hash of its
    source as well (a method's: of the file defining it, see bench.plugins), so an edited plugin's
    results are new cells, kept apart from the old; then the entry's own ``code_revision`` if it has
    one (a change to one method's results only)."""
    own = __version__ if origin.get("from") == "built-in" else f"{__version__}+plugin.{origin['sha256'][:12]}"
    return f"{own}+{revision}" if revision else own


class Registry:
    """A named collection of objects (classes or factories).

    >>> METHODS = Registry("method")
    >>> @METHODS.register("coop")
    ... class CoOp: ...
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, Any] = {}
        self._origins: Dict[str, Dict[str, str]] = {}

    def register(self, name: str, obj: Any = None) -> Callable:
        def add(target):
            if name in self._entries and self._entries[name] is not target:
                first = origin_label(self._origins[name])
                by = "built-in" if first == "built-in" else f"by {first}"
                raise BenchError(f"{self.kind} '{name}' is already registered ({by}){clash_fix(self._origins[name])}")
            self._entries[name] = target
            self._origins[name] = _origin
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

    def origin(self, name: str) -> Dict[str, str]:
        """Where ``name`` was registered from (:data:`BUILT_IN`, or the plugin's origin)."""
        self.get(name)
        return self._origins[name]

    def set_origin(self, name: str, origin: Dict[str, str]) -> None:
        """Replace ``name``'s origin (a plugin's method gets the hash of its own file once imported)."""
        self.get(name)
        self._origins[name] = origin

    def code_version(self, name: str) -> str:
        return code_version(self.origin(name), getattr(self._entries[name], "code_revision", ""))

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

    def __init__(self, kind: str, variants: Registry, reported: Registry):
        super().__init__(kind)
        self.variants = variants
        self.reported = reported
        self._built: Dict[str, Any] = {}

    def get(self, name: str) -> Any:
        if name in self.reported and name not in self._entries:
            raise BenchError(f"method '{name}' is reported only: reports show its paper's numbers, but this suite "
                             "does not run it yet (see `bench list methods`)")
        if "@" not in name or name in self._entries:  # a registered name may spell a variant (lamp@no_newbias)
            return super().get(name)
        if name not in self._built:
            base, variant = name.split("@", 1)
            cls = self.variants.get(variant)(super().get(base))
            cls.registry_name = name
            self._built[name] = cls
        return self._built[name]

    def origin(self, name: str) -> Dict[str, str]:
        if "@" in name and name not in self._entries:  # a variant runs its base method's code
            self.get(name)
            return super().origin(name.split("@", 1)[0])
        return super().origin(name)


# The module that registers the built-in entries imports bench/methods/ and every package, so it sits
# above them all; configuration, which checks names against full registries, reaches it by name.
LOADER = "bench.plugins"


def fill_registries() -> None:
    """Register the built-in methods, datasets and backbones and the plugins' (imports them once)."""
    importlib.import_module(LOADER).load_all()


VARIANTS = Registry("method variant")
# Systems the seed papers compare against that the suite does not run yet: a card each (citation and
# printed numbers), so reports show them as paper rows; a port registered under the same name in
# METHODS takes over, and the same report rows gain our numbers.
REPORTED = Registry("reported-only method")
METHODS = MethodRegistry("method", VARIANTS, REPORTED)
DATASETS = Registry("dataset")
BACKBONES = Registry("backbone")


def all_cards() -> Dict[str, Any]:
    """Every method card a report can name: the reported-only ones and each runnable method's (a
    runnable method wins a shared name)."""
    return {**{name: REPORTED.get(name).card for name in REPORTED.names()},
            **{name: METHODS.get(name).card for name in METHODS.names()}}
