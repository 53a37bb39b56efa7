"""Generic name -> object registries with "did you mean" errors, and where each entry came from.

Each registration remembers its origin: built-in, or the plugin being loaded when it was made
(``bench.plugins`` sets it), so a clash names both sides and a record says where its method came from::

    with registering_from({"from": "plugin", "plugin": "./my_method.py", "sha256": "..."}):
        import_the_plugin()                 # its @METHODS.register(...) calls carry that origin
    METHODS.origin("my_method")["plugin"]   # "./my_method.py"

A name is checked where it is registered (:func:`name_problem`, the rule `bench new method` applies
too): it becomes a results folder and a command-line word, so ``../x``, ``all`` or a method name
that spells a built-in variant (``coop@la_posthoc``) is refused with one line.
"""
from __future__ import annotations

import contextlib
import difflib
import importlib
import re
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from bench import __version__
from .class_code import changed_since, code_snapshot
from .errors import BenchError, one_line


def suggest(name: str, choices) -> str:
    """Return a ``; did you mean 'x'?`` hint (or '') for a mistyped ``name``."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


# A registry name is also a results folder, a module `bench new method` writes and a command-line word.
NAME = re.compile(r"[a-z][a-z0-9_]*")
NAME_RULE = "use lower-case letters, digits and '_', starting with a letter"
OWN_VARIANT = re.compile(r"[a-z0-9][a-z0-9_-]*")  # after the '@' of a method's own variant ("tcp@eps1e-8")
RESERVED = {"all": "--method all means every method"}  # words the command line reads as something else


def name_problem(name: Any) -> Optional[str]:
    """What is wrong with ``name`` as a registry name (None: nothing)."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        return NAME_RULE
    if name in RESERVED:
        return f"'{name}' is a reserved word ({RESERVED[name]})"
    return None


def quoted(name: Any) -> str:
    """A name as an error line shows it: quoted, on one line, cut when long (or its type, when not text)."""
    return f"'{one_line(name, 100)}'" if isinstance(name, str) else f"{name!r} (not text)"


BUILT_IN = {"from": "built-in"}
_origin: Dict[str, str] = BUILT_IN  # what registrations made now come from
_plugins: Dict[str, Dict[str, str]] = {}  # plugin -> its origin, for every plugin imported in this process


@contextlib.contextmanager
def registering_from(origin: Dict[str, str]):
    """Registrations made inside the block come from ``origin`` (a plugin being imported)."""
    global _origin
    if origin.get("from") == "plugin":
        _plugins[origin["plugin"]] = origin
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

    def check_name(self, name: Any) -> None:
        problem = name_problem(name)
        if problem:
            raise BenchError(f"{self.kind} name {quoted(name)}: {problem}; register it under another name")

    def register(self, name: str, obj: Any = None) -> Callable:
        self.check_name(name)

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
        return code_version(self.origin(name), getattr(self.get(name), "code_revision", ""))

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
    (``coop@la_posthoc``): a variant applies to every method without a registration of its own.

    Each method's class is remembered as it was registered (:mod:`bench.core.class_code`): one changed
    since (a plugin replacing ``CoOp.forward``) has no code version, so no results are filed under its name."""

    def __init__(self, kind: str, variants: Registry, reported: Registry):
        super().__init__(kind)
        self.variants = variants
        self.reported = reported
        self._built: Dict[str, Any] = {}
        self._snapshots: Dict[str, Tuple[Any, dict]] = {}  # name -> (class, its code at registration)

    def check_name(self, name: Any) -> None:
        """A name, or ``<method>@<label>`` for a method's own variant (``lamp@no_newbias``): its method's
        code only, and never a label of ``VARIANTS``, which every method has already."""
        if not isinstance(name, str) or "@" not in name:
            return super().check_name(name)
        base, label = name.split("@", 1)
        super().check_name(base)
        if not OWN_VARIANT.fullmatch(label):
            raise BenchError(f"method name {quoted(name)}: after '@', use lower-case letters, digits, '_' and '-'")
        if label in self.variants:
            raise BenchError(f"method name {quoted(name)} is bench's variant '{label}' of method '{base}', built for "
                             "every method; register yours under a name of its own")
        owner = origin_label(self._origins[base]) if base in self._entries else None
        if owner is not None and owner != origin_label(_origin):
            whose = "a built-in method" if owner == "built-in" else f"a method of {owner}"
            raise BenchError(f"method name {quoted(name)}: '{base}' is {whose}, and only its own code registers "
                             f"'{base}@...' variants; use a name of your own")

    def register(self, name: str, obj: Any = None) -> Callable:
        add = super().register(name)

        def add_and_remember(target):
            add(target)
            if self._snapshots.get(name, (None,))[0] is not target:  # not on a re-import of the same class
                self.remember(name)
            return target

        return add_and_remember(obj) if obj is not None else add_and_remember

    def remember(self, name: str) -> None:
        """Take ``name``'s class as it is now as its code (a plugin's, once the whole plugin is imported)."""
        self._snapshots[name] = (self._entries[name], code_snapshot(self._entries[name]))

    def changed(self, name: str) -> List[str]:
        """The attributes of ``name``'s class (and the classes it inherits from) changed since it was
        remembered: ``["CoOp.forward"]``; empty for a class that was not."""
        target, snapshot = self._snapshots.get(name, (None, None))
        return changed_since(target, snapshot) if target is not None and target is self._entries.get(name) else []

    def check_unchanged(self, name: str, by: str = "") -> None:
        """One error line if ``name``'s class was changed since it was registered; ``by``: the plugin just
        loaded, which did it (else whatever code did)."""
        registered = self.registered(name)
        changed = self.changed(registered)
        if not changed:
            return
        what = f"{', '.join(changed[:3])}{', ...' if len(changed) > 3 else ''}"
        origin, subclass = origin_label(self.origin(registered)), "(a subclass: @METHODS.register(\"my_method\"))"
        if by:
            raise BenchError(f"plugin '{by}' changed method '{name}' ({origin}) after it was registered ({what}); "
                             f"leave it as it is and register your version under a name of its own {subclass}")
        plugins = ", ".join(p["plugin"] for p in loaded_plugins()) or "none"
        raise BenchError(f"method '{name}' ({origin}) was changed after it was registered ({what}; plugins loaded: "
                         f"{plugins}), so its results would not be its own; leave it as it is and register the "
                         f"changed class under a name of its own {subclass}")

    def registered(self, name: str) -> str:
        """The registered name whose code ``name`` runs: a variant not registered runs its base method's."""
        return name.split("@", 1)[0] if "@" in name and name not in self._entries else name

    def code_version(self, name: str) -> str:
        self.check_unchanged(name)
        return super().code_version(name)

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
        if self.registered(name) != name:  # a variant runs its base method's code
            self.get(name)
        return super().origin(self.registered(name))


# The module that registers the built-in entries imports bench/methods/ and every package, so it sits
# above them all; configuration, which checks names against full registries, reaches it by name.
LOADER = "bench.plugins"


def fill_registries() -> None:
    """Register the built-in methods, datasets and backbones and the plugins' (imports them once)."""
    importlib.import_module(LOADER).load_all()


def loaded_plugins() -> List[Dict[str, str]]:
    """Every plugin imported in this process whose entries are registered (a record names them all:
    any of them may have changed what ran), each as ``{"plugin", "via", "module", "sha256"}`` with the
    hash of its whole source."""
    live = {origin.get("plugin") for registry in (VARIANTS, REPORTED, METHODS, DATASETS, BACKBONES)
            for origin in registry._origins.values()}
    return [{k: origin[k] for k in ("plugin", "via", "module", "sha256") if k in origin}
            for spec, origin in sorted(_plugins.items()) if spec in live]


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
