"""The torch-free catalog behind `bench list` and `bench leaderboard` agrees with the real thing."""
import json
import subprocess
import sys

from bench.config.catalog import (load_view, method_papers, protocol_descriptions, registrations, resolve_path, view_path)
from bench.config.protocol import load_protocol
from bench.core.registry import BACKBONES, DATASETS, METHODS, REPORTED, VARIANTS, describe
from bench.plugins import load_builtins


def test_registrations_read_from_source_match_the_registries():
    load_builtins()
    real = {kind: [(name, describe(obj) or "") for name, obj in registry.items()]
            for kind, registry in (("methods", METHODS), ("variants", VARIANTS), ("datasets", DATASETS),
                                   ("backbones", BACKBONES), ("reported", REPORTED))}
    assert registrations() == real


def test_method_papers_read_from_source_match_the_cards():
    load_builtins()
    assert method_papers() == {name: cls.card.paper for name, cls in [*METHODS.items(), *REPORTED.items()]}


def test_protocol_descriptions_match_the_loaded_protocols():
    assert protocol_descriptions() == [(n, load_protocol(n).description) for n, _ in protocol_descriptions()]


def no_torch(*argv, env=None):
    code = ("import sys; from bench.cli import main; rc = main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env)


def test_list_does_not_import_torch():
    done = no_torch("list")
    assert done.returncode == 0, done.stderr
    assert "coop" in done.stdout and "cifar100_lt_ir10_liftgroups" in done.stdout


def test_leaderboard_uses_the_cached_view_and_misses_on_any_edit(tmp_path, bench_cache):
    import os

    from bench.cli import main

    proto = tmp_path / "mine.yaml"
    proto.write_text(load_protocol("smoke").path.read_text().replace("name: smoke", "name: mine"))
    results = tmp_path / "results"
    assert main(["run", "--protocol", str(proto), "--method", "zeroshot", "--seeds", "1",
                 "--results-dir", str(results)]) == 0
    assert load_view(proto) == load_protocol(str(proto)).view()  # bench run cached it
    env = {**os.environ, "BENCH_CACHE": str(bench_cache)}
    done = no_torch("leaderboard", "--protocol", str(proto), "--results-dir", str(results), env=env)
    assert done.returncode == 0 and "| zeroshot | 1 |" in done.stdout, done.stderr

    proto.write_text(proto.read_text() + "\n# an edit\n")
    assert load_view(proto) is None  # the YAML changed: recomputed (and torch imported) once
    assert main(["leaderboard", "--protocol", str(proto), "--results-dir", str(results)]) == 0
    view_path(proto).write_text("{broken")
    assert load_view(proto) is None
    assert main(["leaderboard", "--protocol", str(proto), "--results-dir", str(results)]) == 0
    assert json.loads(view_path(proto).read_text())["name"] == "mine"
    assert resolve_path(str(proto)) == proto
