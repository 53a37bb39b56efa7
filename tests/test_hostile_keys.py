"""Hostile input, round three (issue 39), keys and plugins: options that run alike share one key (and
the keys of default configurations stay as they were), registry names are checked where they are
registered, and a plugin that changes a built-in method's class cannot file its numbers as the built-in's."""
import dataclasses
import json

import pytest

from bench.cli import main
from test_overrides import one_error  # noqa: E402  (the CLI helpers)


def key_of(protocol: str, method: str, sets: dict = None) -> str:
    from bench.config.protocol import load_protocol
    from bench.engine.runner import RunOptions, Runner

    options = RunOptions(results_dir="unused", device="cpu", overrides={method: sets} if sets else {})
    return Runner(load_protocol(protocol), options, log=lambda m: None).plan([method], [1])[0].key


@pytest.mark.parametrize("protocol, method, alike", [
    # coop's lt recipe leaves n_ctx null, which is 16
    ("cifar100_lt_ir100", "coop", [{}, {"n_ctx": None}, {"n_ctx": 16}]),
    # the smoke protocol sets coop's n_ctx to 4: null and 16 are another configuration, one key
    ("smoke", "coop", [{"n_ctx": None}, {"n_ctx": 16}]),
    # with init_text, the n_ctx accepted is its token count, which null means
    ("smoke", "coop", [{"init_text": "a photo of a"}, {"init_text": "a photo of a", "n_ctx": None},
                       {"init_text": "a_photo of a "}, {"init_text": "a  photo\tof a "}]),
    ("cifar100_lt_ir100", "coop", [{"init_text": "a photo of a"}, {"init_text": "a photo of a", "n_ctx": None},
                                   {"init_text": "a photo of a", "n_ctx": 4}]),
    ("cifar100_lt_ir100", "cocoop", [{}, {"n_ctx": None}, {"n_ctx": 4}]),
    ("cifar100_lt_ir100", "coop_la", [{}, {"n_ctx": 16}]),
    # textrefiner's card writes n_ctx 4 beside "a photo of a": null runs the same
    ("cifar100_lt_ir100", "textrefiner", [{}, {"n_ctx": None}]),
])
def test_options_that_run_alike_get_one_key(protocol, method, alike):
    keys = {json.dumps(sets): key_of(protocol, method, sets) for sets in alike}
    assert len(set(keys.values())) == 1, keys


def test_options_that_run_differently_keep_their_own_keys():
    assert len({key_of("smoke", "coop", sets) for sets in
                ({}, {"n_ctx": 8}, {"n_ctx": None}, {"init_text": "a photo of a"}, {"init_text": "a photo"})}) == 5


@pytest.mark.parametrize("protocol", ["smoke", "cifar100_lt_ir100", "b2n_lamp/eurosat/imb10", "smoke_xd_dg"])
def test_the_keys_of_default_configurations_do_not_change(protocol):
    """Every method's default key is the one computed from its options as resolved, as before keys
    were written in one form: finished results are found again."""
    from bench.config.protocol import load_protocol
    from bench.core.coerce import identity
    from bench.core.registry import METHODS, fill_registries
    from bench.engine.runner import RunOptions, Runner
    from bench.engine.train import precision_name
    from bench.records.schema import cell_key

    fill_registries()
    proto = load_protocol(protocol)
    runner = Runner(proto, RunOptions(results_dir="unused", device="cpu"), log=lambda m: None)
    for name in ["coop", "cocoop", "coop_la", "cocoop_la", "textrefiner", "mdpr_coop_offlinekb", "maple", "kgcoop"]:
        resolved = proto.resolve(name)
        fields = identity(resolved.options)  # the options as given: what keys were made of before
        inputs = METHODS.get(name).key_inputs(resolved.options)
        recipe = resolved.train_identity()
        recipe.update({f: precision_name(runner.device, recipe[f]) for f in ("precision", "eval_precision") if f in recipe})
        before = cell_key(proto.identity(), name, {**fields, "inputs": inputs} if inputs else fields, recipe,
                          METHODS.code_version(name))
        assert runner.make_cells(name, resolved, [1])[0].key == before, name


@pytest.mark.slow
def test_a_wrong_n_ctx_beside_init_text_is_still_refused(capsys, tmp_path):
    """n_ctx is keyed as null beside init_text, but what runs is still what was given."""
    error = one_error(capsys, "run", "--protocol", "smoke", "--method", "coop", "--seeds", "1", "--device", "cpu",
                      "--results-dir", str(tmp_path), "--set", "coop.init_text=a photo of a", "--set", "coop.n_ctx=5")
    assert "n_ctx: is 5 but init_text 'a photo of a' has 4 tokens" in error


PLUGIN = '''
from bench.api import METHODS
from bench.methods.zeroshot import ZeroShotCLIP


@METHODS.register({name!r})
class Mine(ZeroShotCLIP):
    """A zero-shot copy under a name of its own."""
'''


@pytest.mark.parametrize("name, problem", [
    ("../../../trav", "method name '../../../trav': use lower-case letters, digits and '_', starting with a letter"),
    ("coop@la_posthoc", "method name 'coop@la_posthoc' is bench's variant 'la_posthoc' of method 'coop'"),
    ("all", "method name 'all': 'all' is a reserved word (--method all means every method)"),
    ("coop@fast", "method name 'coop@fast': 'coop' is a built-in method, and only its own code registers"),
    ("My-Method", "method name 'My-Method': use lower-case letters"),
    ("mine@../x", "method name 'mine@../x': after '@', use lower-case letters, digits, '_' and '-'"),
])
def test_a_plugin_registering_a_bad_name_is_one_error(capsys, new_process, tmp_path, name, problem):
    plugin = tmp_path / "named.py"
    plugin.write_text(PLUGIN.format(name=name))
    error = one_error(capsys, "run", "--plugin", str(plugin), "--protocol", "smoke", "--method", name,
                      "--results-dir", str(tmp_path / "results"))
    assert f"plugin '{plugin}': {problem}" in error
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["named.py"]  # nothing written, inside or out
    from bench.core.registry import METHODS

    assert name not in METHODS


def test_every_registry_checks_names_and_the_built_ins_pass(new_process):
    from bench.core.errors import BenchError
    from bench.core.registry import BACKBONES, DATASETS, METHODS, REPORTED, VARIANTS, name_problem

    for registry, name in [(DATASETS, "../data"), (BACKBONES, "a/b"), (VARIANTS, "all"), (REPORTED, "X"),
                           (METHODS, ""), (DATASETS, 3)]:
        with pytest.raises(BenchError, match=f"{registry.kind} name "):
            registry.register(name, object())
    assert "tcp@eps1e-8" in METHODS and "lamp@no_newbias" in METHODS  # built-in variants of their own
    for registry in (DATASETS, BACKBONES, VARIANTS, REPORTED):
        assert not [name for name in registry.names() if name_problem(name)]


def test_bench_new_method_refuses_reserved_words(capsys, tmp_path):
    error = one_error(capsys, "new", "method", "all", "--dir", str(tmp_path))
    assert "method name 'all': 'all' is a reserved word (--method all means every method); pick another" in error
    assert not list(tmp_path.iterdir())


PATCHING_PLUGIN = '''
from bench.api import METHODS
from bench.methods.coop import CoOp
from bench.methods.zeroshot import ZeroShotCLIP


def forward(self, images):  # "improves" the built-in CoOp
    return ZeroShotCLIP.forward(self, images)


CoOp.forward = forward


@METHODS.register("patcher")
class Patcher(ZeroShotCLIP):
    """Registers a method of its own, and patches a built-in."""
'''


@pytest.fixture
def coop_restored(monkeypatch):
    """The built-in CoOp class put back as it was after the test (a plugin here patches it)."""
    from bench.core.registry import METHODS
    from bench.methods.coop import CoOp

    monkeypatch.setattr(CoOp, "forward", CoOp.forward)
    yield CoOp
    monkeypatch.undo()
    assert not METHODS.changed("coop")  # later tests see the built-in as registered


def test_a_plugin_that_patches_a_built_in_is_refused(capsys, new_process, coop_restored, tmp_path):
    plugin = tmp_path / "patcher.py"
    plugin.write_text(PATCHING_PLUGIN)
    results = tmp_path / "results"
    error = one_error(capsys, "run", "--plugin", str(plugin), "--protocol", "smoke", "--method", "coop",
                      "--seeds", "1", "--device", "cpu", "--results-dir", str(results))
    assert f"plugin '{plugin}' changed method 'coop' (built-in) after it was registered (CoOp.forward)" in error
    assert not results.exists()


def test_a_built_in_changed_after_import_has_no_key(capsys, new_process, coop_restored, tmp_path):
    """However it was changed (here after every plugin loaded), coop and its variants are refused before
    a cell is planned; the other methods run as ever."""
    from bench.core.registry import METHODS

    coop_restored.forward = lambda self, images: None
    for name in ("coop", "coop@la_posthoc", "textrefiner"):  # textrefiner inherits CoOp's forward
        with pytest.raises(Exception, match=rf"method '{name}' \(built-in\) was changed after it was registered "
                                            r"\(CoOp.forward; plugins loaded: none\)"):
            METHODS.code_version(name)
    error = one_error(capsys, "run", "--protocol", "smoke", "--method", "coop", "--seeds", "1",
                      "--device", "cpu", "--results-dir", str(tmp_path / "results"))
    assert "method 'coop' (built-in) was changed after it was registered (CoOp.forward" in error
    assert METHODS.code_version("zeroshot") and not METHODS.changed("maple")
    assert not list(tmp_path.rglob("*.json"))


def test_a_plugin_may_finish_its_own_class_after_registering_it(capsys, new_process, tmp_path):
    plugin = tmp_path / "finished.py"
    plugin.write_text(PLUGIN.format(name="finished") + "\nMine.eval_note = lambda self: 'set after the decorator'\n")
    assert main(["list", "methods", "--plugin", str(plugin)]) == 0
    from bench import __version__
    from bench.core.registry import METHODS

    assert METHODS.code_version("finished").startswith(f"{__version__}+plugin.")


@pytest.mark.slow
def test_a_record_names_every_plugin_loaded(capsys, new_process, tmp_path):
    """A built-in's record run beside a plugin names the plugin and its source hash: a plugin may change
    what ran (a module-level function the built-in calls) in ways no check sees."""
    from bench.plugins import plugin_files, source_hash

    plugin = tmp_path / "beside.py"
    plugin.write_text(PLUGIN.format(name="beside"))
    results = tmp_path / "results"
    code = main(["run", "--plugin", str(plugin), "--protocol", "smoke", "--method", "zeroshot", "beside",
                 "--seeds", "1", "--device", "cpu", "--results-dir", str(results), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    records = {r["method"]: r for r in (json.loads(p.read_text()) for p in results.rglob("seed-1.json"))}
    expected = [{"plugin": str(plugin), "via": "--plugin", "module": records["beside"]["origin"]["module"],
                 "sha256": source_hash(plugin_files(str(plugin)))}]
    assert records["zeroshot"]["plugins"] == expected and records["zeroshot"]["origin"] == {"from": "built-in"}
    assert records["beside"]["plugins"] == expected


def test_a_record_of_a_process_without_plugins_says_so(tmp_path):
    from bench.engine.store import ResultStore

    record = {"key": "k" * 64, "protocol": "p", "method": "m", "seed": 1}
    path = ResultStore(tmp_path).write(dict(record))
    assert json.loads(path.read_text())["plugins"] == []


def test_resolved_keyed_options_fall_back_when_the_protocol_alone_is_invalid():
    """--set may mend a protocol's own options; the key is then the options' one form."""
    from bench.config.recipes import resolve
    from bench.methods.coop import CoOp

    resolved = resolve(CoOp, "lt", {}, {"csc": True, "init_text": "a photo"}, {"init_text": None, "n_ctx": 16})
    assert resolved.base is None
    assert dataclasses.asdict(resolved.keyed_options) == {**dataclasses.asdict(resolved.options), "n_ctx": None}
