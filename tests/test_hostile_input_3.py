"""Hostile input, round three (issue 39): each case gives one `bench: error:` line, a warning, or the
right result."""
import pytest

from bench.cli import main
from test_overrides import one_error  # noqa: E402  (the CLI helpers)


@pytest.mark.parametrize("module, kind", [("sys", "built-in"), ("os", "frozen")])
def test_a_module_of_python_itself_is_not_a_plugin(capsys, new_process, module, kind):
    error = one_error(capsys, "list", "--plugin", module)
    assert f"plugin '{module}': a module of Python itself ({kind}), not a plugin" in error


NAN_PLUGIN = '''
import torch
from bench.api import METHODS
from bench.methods.zeroshot import ZeroShotCLIP


@METHODS.register("nan_zeroshot")
class NanZeroShot(ZeroShotCLIP):
    """Zero-shot whose logits are NaN (a diverged model)."""

    def forward(self, images):
        return super().forward(images) * float("nan")
'''


def test_non_finite_evaluation_logits_fail_the_cell_instead_of_storing_a_result(capsys, new_process, tmp_path):
    """(new_process: the plugin's method is registered for this test alone, not for a later --method all.)"""
    plugin = tmp_path / "nan_plugin.py"
    plugin.write_text(NAN_PLUGIN)
    results = tmp_path / "results"
    code = main(["run", "--plugin", str(plugin), "--protocol", "smoke", "--method", "nan_zeroshot", "--seeds", "1",
                 "--device", "cpu", "--results-dir", str(results), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 1, err
    assert "evaluation gave non-finite logits (NaN or inf) for" in out + err
    assert not list(results.rglob("seed-1.json"))  # no result: a failure record only
    assert list(results.rglob("seed-1.failed"))  # the failure record `bench status` lists


@pytest.mark.parametrize("text, value", [
    ("010", 10), ("0o17", 15), ("0x1F", 31), ("-5", -5), ("1e-3", 0.001), ("5e3", 5000.0), (".5", 0.5),
    ("true", True), ("False", False), ("1:30", "1:30"), ("1:0", "1:0"), ("1_000", "1_000"), ("yes", "yes"),
    ("off", "off"), ("~", None),
])
def test_scalars_read_as_yaml_1_2(text, value):
    """YAML 1.1 (PyYAML's default) reads 010 as 8, 1:30 as 90 and yes as true; the suite reads YAML 1.2."""
    from bench.core.safeyaml import load_yaml

    assert load_yaml(f"x: {text}", "test") == {"x": value}


@pytest.mark.parametrize("item, problem", [
    ("coop.train.epochs=1:30", "--set coop.train.epochs: expected an integer, got '1:30'"),
    ("coop.train.lr=1:0", "--set coop.train.lr: expected a number, got '1:0'"),
    ("coop.csc=yes", "--set coop.csc: expected true/false, got 'yes'"),
])
def test_yaml_1_1_readings_are_refused_by_their_fields(capsys, tmp_path, item, problem):
    error = one_error(capsys, "plan", "--protocol", "smoke", "--method", "coop", "--set", item,
                      "--results-dir", str(tmp_path))
    assert problem in error


def test_a_protocol_file_reads_a_leading_zero_as_decimal(tmp_path):
    from bench.config.protocol import load_protocol

    text = load_protocol("smoke").path.read_text().replace("  epochs: 4\n", "  epochs: 010\n", 1)
    assert "epochs: 010" in text
    (tmp_path / "p.yaml").write_text(text)
    assert load_protocol(str(tmp_path / "p.yaml")).resolve("coop").train.epochs == 10


@pytest.mark.parametrize("argv, what", [
    (("run", "--protocol", "{f}", "--method", "zeroshot"), "protocol file"),
    (("report", "{f}"), "report spec"),
])
@pytest.mark.parametrize("kind, said", [("device", "is a character device, not a file"),
                                        ("fifo", "is a FIFO (named pipe), not a file"),
                                        ("huge", "has 2,097,152 bytes, more than the 1,048,576 it may have")])
def test_a_protocol_or_report_spec_that_is_no_small_file_is_one_error(capsys, tmp_path, argv, what, kind, said):
    """/dev/zero was read without bound (then a MemoryError), a FIFO blocked for ever, a huge file was read whole."""
    import os

    path = tmp_path / "spec.yaml"
    if kind == "device":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        with open(path, "wb") as f:
            f.truncate(2 << 20)  # sparse: nothing is written
    error = one_error(capsys, *(a.format(f=path) for a in argv))
    assert f"{what} '{path}' {said}" in error


def test_a_knowledge_base_that_is_a_device_is_one_error(tmp_path):
    from bench.core.errors import BenchError
    from bench.kb.knowledge import file_sha256, require_file

    kb = tmp_path / "kb.json"
    kb.symlink_to("/dev/zero")
    for read in (require_file, file_sha256):
        with pytest.raises(BenchError, match="knowledge base '.*kb.json' is a character device, not a file"):
            read(kb)
