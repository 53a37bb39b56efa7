"""The package layout holds: imports flow down, nothing imports the CLI, configuration and reporting
never import torch, and shipped methods import bench.api only.  Read from the source with ``ast``
(function-level imports count too), so a move that breaks the layering fails here, not in review."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What each part of bench/ may import from the rest of bench/ (besides itself and `bench.__version__`).
# Bottom to top: core; config, records, data, kb; model; engine, reporting; api; methods; plugins; cli.
# protocols/ and reports/ hold YAML files (packages only so that the wheel ships them).
MAY_IMPORT = {
    "": set(),  # bench/__init__.py: the version only
    "core": set(),
    "config": {"core"},
    "records": {"core"},
    "data": {"core"},
    "kb": {"core"},
    "model": {"core", "config", "data"},
    "engine": {"core", "config", "records", "data", "model"},
    "reporting": {"core", "config", "records"},
    "launch": {"core", "config", "records", "data", "model", "engine"},
    "api": {"core", "config", "kb", "model"},
    "methods": {"api"},  # the shipped methods: bench.api only
    "protocols": set(),  # protocols/ and reports/ hold YAML files: packages only so that the wheel ships them
    "reports": set(),
    "plugins": {"core", "data", "model", "methods"},  # the only one that loads bench/methods/
    "cli": {"core", "config", "records", "data", "kb", "model", "engine", "launch", "reporting", "plugins"},
    "__main__": {"cli"},
}
TORCH_FREE = ("core", "config", "records", "reporting")


def part_of(module: str) -> str:
    """``bench.config.protocol`` -> ``config``; ``bench.api`` -> ``api``; ``bench`` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool) -> list:
    """Every module ``source`` imports (``from x import y`` as ``x.y`` too: y may be a module)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + is_package]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found += [target] + [f"{target}.{alias.name}" for alias in node.names]
    return found


def violations(path: Path, source: str) -> list:
    module = module_name(path)
    here = part_of(module)
    allowed = MAY_IMPORT[here] | {here, ""}
    out = []
    for target in imported_modules(source, module, path.name == "__init__.py"):
        if target.startswith("bench.") and target != "bench.__version__" and part_of(target) not in allowed:
            out.append(f"{path.relative_to(ROOT)} imports {target} "
                       f"({here} may import: {', '.join(sorted(MAY_IMPORT[here])) or 'nothing from bench'})")
    return out


def bench_sources():
    return sorted((ROOT / "bench").rglob("*.py"))


def test_every_package_is_in_the_layering():
    parts = {part_of(module_name(path)) for path in bench_sources()}
    assert parts == set(MAY_IMPORT)


def test_imports_flow_down():
    found = [v for path in bench_sources() for v in violations(path, path.read_text())]
    assert not found, "\n".join(found)


def test_nothing_imports_the_cli():
    importers = [str(path.relative_to(ROOT)) for path in bench_sources()
                 if part_of(module_name(path)) not in ("cli", "__main__")
                 and any(m == "bench.cli" or m.startswith("bench.cli.")
                         for m in imported_modules(path.read_text(), module_name(path), path.name == "__init__.py"))]
    assert importers == []


def test_shipped_methods_import_bench_api_only():
    wrong = {}
    for path in sorted((ROOT / "bench" / "methods").glob("*.py")):
        modules = imported_modules(path.read_text(), module_name(path), path.name == "__init__.py")
        bench = {m for m in modules if m.startswith("bench")}
        if {m for m in bench if not m.startswith(("bench.api", "bench.methods"))}:  # bench.api and each other
            wrong[path.name] = sorted(bench)
    assert wrong == {}


@pytest.mark.parametrize("source, problem", [
    ("from bench.engine.runner import Runner\n", "imports bench.engine.runner (config may import: core)"),
    ("from ..plugins import load_builtins\n", "imports bench.plugins"),
    ("def later():\n    from bench.reporting import stats\n", "imports bench.reporting"),
    ("import bench.methods.coop\n", "imports bench.methods.coop (config may import: core)"),
])
def test_an_upward_import_is_reported(source, problem):
    path = ROOT / "bench" / "config" / "protocol.py"
    assert any(problem in v for v in violations(path, source))
    assert violations(path, "from bench.core.errors import BenchError\nfrom .grid import expand\n") == []


@pytest.mark.parametrize("part", TORCH_FREE)
def test_configuration_and_reporting_never_import_torch(part):
    modules = [module_name(path) for path in sorted((ROOT / "bench" / part).rglob("*.py"))]
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'open_clip')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
