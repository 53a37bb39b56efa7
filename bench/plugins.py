"""Fill the registries: the built-in methods, datasets and backbones, then the plugins.

A plugin is a Python module that registers entries with ``@METHODS.register("name")`` (or
``DATASETS`` / ``BACKBONES``) when imported.  Three ways name one, loaded in this order:

- an installed package's entry point in the group ``lt_prompt_bench.plugins``
  (``[project.entry-points."lt_prompt_bench.plugins"] my_method = "my_package.my_method"``);
- ``$BENCH_PLUGINS``: module names or ``.py`` files, separated by ``os.pathsep``;
- ``bench ... --plugin MODULE_OR_FILE`` (repeatable), recorded by :func:`use`.

Each entry a plugin registers carries the plugin's origin (its name, how it was loaded, its module,
and a SHA-256).  A method's SHA-256 is that of the file that defines its class, content only, and it
enters the method's cell key: editing that file gives new cells, while the same file loaded another
way (``--plugin FILE``, or installed in a package with an entry point) keeps its cells::

    use(["./my_method.py"])
    load_all()            # bench.core.registry.fill_registries() calls it by name
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from bench.core.errors import BenchError, one_line
from bench.core.registry import BACKBONES, DATASETS, METHODS, REPORTED, VARIANTS, registering_from

ENTRY_POINT_GROUP = "lt_prompt_bench.plugins"
ENV_VAR = "BENCH_PLUGINS"
_requested: List[str] = []  # --plugin values of this process
_loaded: Dict[str, Dict[str, str]] = {}  # plugin (a file's resolved path, or a module name) -> its origin


def load_builtins() -> None:
    from bench import data  # noqa: F401  (datasets)
    from bench.model import backbone, synthetic_clip  # noqa: F401  (backbones)
    from bench import methods  # noqa: F401  (bench/methods/)


def use(specs: Sequence[str]) -> None:
    """Plugins named on the command line (``--plugin``), loaded with the others by :func:`load_all`."""
    _requested.extend(spec for spec in specs if spec not in _requested)


def export() -> None:
    """Name every requested plugin in ``$BENCH_PLUGINS`` (files by absolute path), so that worker
    processes and SLURM tasks started from here load them too."""
    specs = [canonical(spec) for spec in requested()]
    if specs:
        os.environ[ENV_VAR] = os.pathsep.join(specs)


def requested() -> List[str]:
    """``$BENCH_PLUGINS`` and ``--plugin`` values, in that order, each once."""
    named = [spec for spec in os.environ.get(ENV_VAR, "").split(os.pathsep) if spec.strip()]
    return list(dict.fromkeys([*named, *_requested]))


@functools.lru_cache(maxsize=None)  # the installed packages do not change while a command runs
def installed() -> Tuple[str, ...]:
    """The modules that installed packages declare in the entry-point group."""
    return tuple(point.value for point in entry_points(group=ENTRY_POINT_GROUP))


def any_plugins() -> bool:
    return bool(requested() or installed())


def fingerprint() -> str:
    """Each plugin's name and source hash, read without importing it (for caches keyed by the code)."""
    return ";".join(f"{spec}={source_hash(plugin_files(spec))}" for spec in [*installed(), *requested()])


def load_all() -> None:
    """The built-ins, then every installed and requested plugin (each imported once)."""
    load_builtins()
    named = [(spec, "entry point") for spec in installed()] + [(spec, "--plugin") for spec in requested()]
    for spec, via in named:
        if canonical(spec) not in _loaded and not loaded_already(spec):  # ./a.py and a.py are one plugin
            _loaded[canonical(spec)] = load_plugin(spec, via)


def loaded_already(spec: str) -> bool:
    """Whether ``spec`` is the file of a plugin module loaded already (an editable install's entry point,
    named again with ``--plugin``): importing it twice would register its methods twice."""
    if not is_file(spec):
        return False
    modules = [sys.modules.get(origin.get("module", "")) for origin in _loaded.values()]
    return any(Path(getattr(m, "__file__", "") or "").resolve() == Path(canonical(spec)) for m in modules if m)


def canonical(spec: str) -> str:
    """A file plugin by its absolute path; a module by its name."""
    return str(Path(spec).expanduser().resolve()) if is_file(spec) else spec


def is_file(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or (os.altsep or os.sep) in spec


def load_plugin(spec: str, via: str = "--plugin") -> Dict[str, str]:
    """Import one plugin with its registrations marked as its own, and check what it registered."""
    before = {kind: set(registry.names()) for kind, registry in REGISTRIES.items()}
    files = plugin_files(spec)
    origin = {"from": "plugin", "plugin": spec, "via": via, "sha256": source_hash(files)}
    with registering_from(origin):
        try:
            module = import_file(spec, files[0]) if is_file(spec) else importlib.import_module(spec)
        except BenchError as err:
            raise BenchError(f"plugin '{spec}': {err}") from None
        except Exception as err:  # the plugin's own code failed: name it, in one line
            raise BenchError(f"plugin '{spec}' failed to import: {type(err).__name__}: {one_line(str(err))}") from None
    origin["module"] = module.__name__
    added = {kind: sorted(set(registry.names()) - before[kind]) for kind, registry in REGISTRIES.items()}
    if not any(added.values()):
        raise BenchError(f"plugin '{spec}' registers nothing; decorate a class with @METHODS.register(\"name\") "
                         "(from bench.api import METHODS)")
    check_methods(spec, added["methods"])
    for name in added["methods"]:
        METHODS.set_origin(name, {**origin, "sha256": defining_file_hash(METHODS.get(name), origin["sha256"])})
        METHODS.remember(name)  # as the whole plugin left it (it may add to its class after registering it)
    for name in sorted(before["methods"]):  # a plugin that patches a built-in would file its numbers under it
        METHODS.check_unchanged(name, by=spec)
    return origin


def defining_file_hash(entry, fallback: str) -> str:
    """SHA-256 of the content of the file that defines ``entry`` (its name and the package around it
    do not count, so a plugin file keeps its cells once packaged); ``fallback`` where no file is found."""
    try:
        return hashlib.sha256(Path(inspect.getsourcefile(entry)).read_bytes()).hexdigest()
    except (TypeError, OSError):
        return fallback


def plugin_files(spec: str) -> List[Path]:
    """The source files that decide a plugin's code: the file, or its top-level package's files."""
    if is_file(spec):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise BenchError(f"plugin '{spec}': no such file; give a .py file or an importable module name")
        return [path.resolve()]
    try:
        found = importlib.util.find_spec(spec.split(".")[0])
    except (ImportError, ValueError) as err:
        raise BenchError(f"plugin '{spec}': cannot find it ({one_line(str(err))})") from None
    if found is None or found.origin is None:
        raise BenchError(f"plugin '{spec}': no module of that name; install its package or give a .py file")
    top = Path(found.origin)
    if not top.is_file():  # "built-in", "frozen": part of Python itself (sys, os), no source to load or hash
        raise BenchError(f"plugin '{spec}': a module of Python itself ({found.origin}), not a plugin; give a .py "
                         "file or the module of an installed plugin package")
    if top.name == "__init__.py":
        return sorted(top.parent.rglob("*.py"))
    return [top]


def source_hash(files: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    root = files[0].parent
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def import_file(spec: str, path: Path):
    """Import a plugin file as a module of its own (its folder first on ``sys.path``, for its siblings)."""
    where = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    name = "bench_plugin_" + "".join(c if c.isalnum() else "_" for c in path.stem) + "_" + where
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def check_methods(spec: str, names: Sequence[str]) -> None:
    from bench.model.method import method_problems

    for name in names:
        problems = method_problems(METHODS.get(name))
        if problems:
            raise BenchError(f"plugin '{spec}': method '{name}': {problems[0]}")


REGISTRIES = {"methods": METHODS, "variants": VARIANTS, "datasets": DATASETS, "backbones": BACKBONES,
              "reported": REPORTED}
