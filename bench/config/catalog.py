"""What ships and what is registered, read without importing torch, so `bench list` and
`bench leaderboard` start in well under a second and a half (importing torch alone takes longer).

- Registrations are read from the source with ``ast``: a class decorated with
  ``@METHODS.register("name")`` (or ``DATASETS`` / ``BACKBONES``) in ``bench/``
  or ``bench/methods/``.  ``tests/test_catalog.py`` holds this view against the real registries.
- A protocol's *view* (name, description, identity, each method's current
  recipe) is what the leaderboard needs; computing it imports everything, so it
  is cached under ``$BENCH_CACHE``, keyed by the YAML text and a fingerprint of
  the code.  ``bench run`` writes it; any edit to the YAML or the code misses.

    registrations()["methods"]          # [("coop", "CoOp: learned prompt context ..."), ...]
    load_view(resolve_path("smoke"))    # None until computed once
"""
from __future__ import annotations

import ast
import copy
import fnmatch
import functools
import hashlib
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple


from bench import __version__
from bench.core.atomic import set_aside_note, write_json
from bench.core.errors import BenchError, reason, warn
from bench.core.namedfiles import read_named_text
from bench.core.registry import suggest
from bench.core.safeyaml import load_json, load_yaml
from .grid import expand

ROOT = Path(__file__).resolve().parents[2]  # the checkout, or site-packages: the folder that holds bench/
PACKAGE = ROOT / "bench"  # with the built-ins: bench/methods/, bench/protocols/, bench/reports/
KINDS = {"METHODS": "methods", "VARIANTS": "variants", "DATASETS": "datasets", "BACKBONES": "backbones",
         "REPORTED": "reported"}


def protocols_dir() -> Path:
    return PACKAGE / "protocols"


def reports_dir() -> Path:
    return PACKAGE / "reports"


def available_reports() -> List[str]:
    """Names of the report specs in bench/reports/ (for `bench report` and `bench list reports`)."""
    return sorted(p.stem for p in reports_dir().glob("*.yaml"))


def _natural(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _yaml(path: Path) -> Any:
    """The parsed file, or None when it cannot be read (loading it later gives the error)."""
    try:
        return copy.deepcopy(_parsed(read_named_text(path, "protocol file"), str(path)))
    except BenchError:
        return None


@functools.lru_cache(maxsize=64)  # a command lists the protocols several times: each text is parsed once
def _parsed(text: str, where: str) -> Any:
    return load_yaml(text, where)


def grid_cells(path: Path) -> Dict[str, dict]:
    """The protocols a grid file declares (name -> mapping); {} for a plain protocol file."""
    data = _yaml(path)
    if not isinstance(data, dict) or "grid" not in data:
        return {}
    try:
        return expand(data, path.stem)
    except BenchError:  # a broken grid: listed by its file name, and loading it says what is wrong
        return {}


def available_protocols() -> List[str]:
    """Every protocol in bench/protocols/: plain files by name, grid files by their cells' names."""
    names = []  # files in natural order; a grid's cells in the grid's own order (a paper's dataset order)
    for path in sorted(protocols_dir().glob("*.yaml"), key=lambda p: _natural(p.stem)):
        names += list(grid_cells(path)) or [path.stem]
    return names


def split_grid_path(name_or_path: str) -> Optional[Tuple[Path, str]]:
    """``("my/grid.yaml", "grid/eurosat/imb10")`` for a cell of a grid file outside bench/protocols/
    (``my/grid.yaml/eurosat/imb10``), else None."""
    for suffix in (".yaml/", ".yml/"):
        head, sep, rest = name_or_path.partition(suffix)
        if sep and rest:
            path = Path(head + suffix[:-1])
            return path, f"{path.stem}/{rest}"
    return None


def locate(name_or_path: str) -> Tuple[Path, Optional[str]]:
    """``(YAML file, grid cell name or None)`` of a protocol name from bench/protocols/, a path, or a cell
    of a grid file given by path (``my/grid.yaml/eurosat/imb10``)."""
    candidate = Path(name_or_path)
    if candidate.is_dir():
        raise BenchError(f"protocol '{name_or_path}' is a folder; give a protocol name or a .yaml file")
    in_file = split_grid_path(name_or_path)
    if in_file is not None:
        path, cell = in_file
        if not path.exists():  # a device or FIFO: read_named_text says what it is
            raise BenchError(f"protocol file '{path}' does not exist")
        cells = list(grid_cells(path))
        if cell not in cells:
            shown = [cell_reference(path, c) for c in cells]
            raise BenchError(f"'{path}' has no grid cell '{cell}'{suggest(name_or_path, shown)}"
                             f"{' (its cells: ' + ', '.join(shown[:3]) + ', ...)' if shown else ' (it is not a grid file)'}")
        return path, cell
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
        if not candidate.exists():
            raise BenchError(f"protocol file '{name_or_path}' does not exist")
        return candidate, None
    stem, _, cell = name_or_path.partition("/")
    path = protocols_dir() / f"{stem}.yaml"
    if path.is_file() and not cell:
        return path, None
    cells = list(grid_cells(path)) if path.is_file() else []
    if name_or_path in cells:
        return path, name_or_path
    names = available_protocols()
    raise BenchError(f"unknown protocol '{name_or_path}'{suggest(name_or_path, cells or names)} "
                     f"(see `bench list protocols`; a whole table runs with a glob, e.g. 'b2n_lamp/*/imb10')")


def cell_reference(path: Path, cell: str) -> str:
    """How a command names a cell of a grid file given by path: the file, then the cell's labels."""
    return f"{path}/{cell.partition('/')[2]}"


def resolve_path(name_or_path: str) -> Path:
    """The YAML file of a protocol name from bench/protocols/ or a path to a YAML file."""
    return locate(name_or_path)[0]


def match_protocols(pattern: str) -> List[str]:
    """What ``bench run --protocol`` runs: one protocol, every cell of a grid file (shipped or given
    by path), or the protocols a glob matches ('b2n_lamp/*/imb10', 'cifar100_lt_ir*',
    'my/grid.yaml/*/imb10')."""
    in_file = split_grid_path(pattern)
    if any(c in pattern for c in "*?["):
        names = available_protocols()
        if in_file is not None and in_file[0].is_file():
            names = [cell_reference(in_file[0], c) for c in grid_cells(in_file[0])]
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise BenchError(f"no protocol matches '{pattern}' (see `bench list protocols`)")
        return hits
    path, cell = locate(pattern)
    if cell is not None:
        return [pattern]
    cells = list(grid_cells(path))
    if path.parent.resolve() == protocols_dir().resolve():
        return cells or [pattern]
    return [cell_reference(path, c) for c in cells] or [pattern]


def source_files() -> List[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _registration(decorator: ast.expr) -> Optional[Tuple[str, str]]:
    """``(kind, name)`` of ``@METHODS.register("name")``, else None."""
    if not (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)):
        return None
    target, args = decorator.func.value, decorator.args
    if decorator.func.attr != "register" or not isinstance(target, ast.Name) or target.id not in KINDS:
        return None
    if not args or not isinstance(args[0], ast.Constant) or not isinstance(args[0].value, str):
        return None
    return KINDS[target.id], args[0].value


def registrations() -> Dict[str, List[Tuple[str, str]]]:
    """kind -> sorted ``(name, first docstring line)`` pairs, from the source."""
    found: Dict[str, List[Tuple[str, str]]] = {kind: [] for kind in KINDS.values()}
    for path in source_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                for decorator in node.decorator_list:
                    hit = _registration(decorator)
                    if hit:
                        doc = (ast.get_docstring(node) or "").strip()
                        found[hit[0]].append((hit[1], doc.splitlines()[0] if doc else ""))
    return {kind: sorted(entries) for kind, entries in found.items()}


def _card_papers(body: List[ast.stmt], strings: Dict[str, str]) -> Dict[str, str]:
    """``NAME = MethodCard(paper=...)`` statements of ``body`` -> {NAME: paper}; the paper a string, or
    the name of one of the module's ``strings``."""
    papers = {}
    for node in body:
        call = node.value if isinstance(node, ast.Assign) else None
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "MethodCard":
            paper = next((k.value for k in call.keywords if k.arg == "paper"), None)
            text = paper.value if isinstance(paper, ast.Constant) else strings.get(getattr(paper, "id", None))
            if isinstance(text, str) and isinstance(node.targets[0], ast.Name):
                papers[node.targets[0].id] = text
    return papers


def _module_strings(tree: ast.Module) -> Dict[str, str]:
    """The module's ``NAME = "..."`` constants."""
    return {node.targets[0].id: node.value.value for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)}


def method_papers() -> Dict[str, str]:
    """Registered method -> the paper of its card (``card = CARD`` in the class, CARD a MethodCard)."""
    papers = {}
    for path in source_files():
        tree = ast.parse(path.read_text(), str(path))
        strings = _module_strings(tree)
        cards = _card_papers(tree.body, strings)
        for node in ast.walk(tree):
            hits = [_registration(d) for d in getattr(node, "decorator_list", [])] if isinstance(node, ast.ClassDef) else []
            for kind, name in filter(None, hits):
                inline = _card_papers(node.body, strings)  # card = MethodCard(...) in the class itself
                for stmt in node.body:
                    target = stmt.targets[0] if isinstance(stmt, ast.Assign) else None
                    if getattr(target, "id", None) == "card" and getattr(stmt.value, "id", None) in cards:
                        papers[name] = cards[stmt.value.id]
                    elif getattr(target, "id", None) == "card" and "card" in inline:
                        papers[name] = inline["card"]
    return papers


def protocol_descriptions() -> List[Tuple[str, str]]:
    out = []
    for path in sorted(protocols_dir().glob("*.yaml"), key=lambda p: _natural(p.stem)):
        cells = grid_cells(path)
        if not cells:
            data = _yaml(path)
            cells = {path.stem: data if isinstance(data, dict) else {}}
        out += [(name, str(data.get("description", ""))) for name, data in cells.items()]
    return sorted(out, key=lambda row: _natural(row[0]))


def cache_root() -> Path:
    return Path(os.environ.get("BENCH_CACHE") or Path.home() / ".cache" / "lt-prompt-bench")


@functools.lru_cache(maxsize=None)  # one read of the sources per process: load and save both need it
def code_fingerprint() -> str:
    digest = hashlib.sha256(__version__.encode())
    for path in [*source_files(), *sorted((PACKAGE / "model" / "model_configs").glob("*.json"))]:
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def view_path(protocol_file: Path, name: str = "", plugins: str = "", overrides: str = "") -> Path:
    """Where the view of protocol ``name`` (a grid cell; "" for a plain file) of this YAML text is cached;
    ``plugins`` names the plugins' code (bench.plugins.fingerprint) and ``overrides`` the protocol
    overrides (bench.config.overrides.fingerprint), which the view depends on too."""
    blob = (protocol_file.read_bytes() + name.encode() + code_fingerprint().encode() + plugins.encode()
            + b"\0" + overrides.encode() + b"\0" + protocol_file.stem.encode())  # a file without name: is its stem
    digest = hashlib.sha256(blob).hexdigest()
    return cache_root() / "protocol-views" / f"{digest[:32]}.json"


def load_view(protocol_file: Path, name: str = "", plugins: str = "", overrides: str = "") -> Optional[dict]:
    """The cached view of this exact YAML text and code, or None (a damaged cache is a miss)."""
    path = view_path(protocol_file, name, plugins, overrides)
    try:
        view = load_json(path.read_text())
    except OSError:
        return None
    except ValueError as err:
        warn(f"protocol view cache '{path}' is damaged ({reason(err)}); {set_aside_note(path)}, computing it again")
        return None
    return view if isinstance(view, dict) and {"name", "description", "identity", "references", "seeds"} <= set(view) else None


def save_view(protocol_file: Path, view: dict, name: str = "", plugins: str = "", overrides: str = "") -> None:
    try:
        write_json(view_path(protocol_file, name, plugins, overrides), view)
    except OSError:  # a read-only cache only costs speed
        pass


def cards_path(plugins: str = "") -> Path:
    """Where the method cards of this code (and these plugins' code) are cached, as JSON."""
    digest = hashlib.sha256(code_fingerprint().encode() + b"\0" + plugins.encode()).hexdigest()
    return cache_root() / "method-cards" / f"{digest[:32]}.json"


def load_cards(plugins: str = "") -> Optional[Dict[str, Any]]:
    """The cached cards (method -> :class:`bench.config.cards.MethodCard`, or None for a method without
    one), or None on a miss: reports read them without importing the methods (and torch)."""
    from .cards import card_from_json

    path = cards_path(plugins)
    try:
        data = load_json(path.read_text())
        return {name: None if card is None else card_from_json(card) for name, card in data.items()}
    except OSError:
        return None
    except (ValueError, KeyError, TypeError, AttributeError, AssertionError) as err:
        warn(f"method card cache '{path}' is damaged ({reason(err)}); {set_aside_note(path)}, reading the cards again")
        return None


def save_cards(cards: Dict[str, Any], plugins: str = "") -> None:
    from .cards import card_to_json

    try:
        data = {name: None if card is None else card_to_json(card) for name, card in cards.items()}
        write_json(cards_path(plugins), data)
    except OSError:  # a read-only cache only costs speed
        pass
