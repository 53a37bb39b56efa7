"""Property: any value in any protocol or method field gives a valid command or one
`bench: error:` line with exit code 2 — never a traceback.  Fields come from the
config dataclasses and the registries, so new fields and methods are fuzzed too."""
import dataclasses
import os

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bench.cli import main
from bench.config.protocol import EvalConfig, load_protocol
from bench.config.recipes import TrainRecipe
from bench.config.transforms import TransformConfig
from bench.core.registry import BACKBONES, DATASETS, METHODS
from bench.plugins import load_builtins

load_builtins()
SMOKE = yaml.safe_load(load_protocol("smoke").path.read_text())

NASTY = ["nan", "-inf", "5e-4", "{}", "{} {x}", "{0}", "}{", "a photo of a {}.", "openai", "sgd", "fp32", "",
         " ", "a photo of a", "\n", "X " * 40]
values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.integers(-3, 300),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), st.sampled_from(NASTY),
    st.lists(st.one_of(st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=3), st.sampled_from(NASTY)),
             max_size=4),
    st.dictionaries(st.text(max_size=4), st.integers(-2, 2), max_size=2),
)


def names(cls):
    return [f.name for f in dataclasses.fields(cls)]


SECTIONS = {
    ("dataset",): names(DATASETS.get("synthetic_lt").Config),
    ("backbone",): names(BACKBONES.get("synthetic_clip").Config),
    ("transforms",): names(TransformConfig),
    ("train",): names(TrainRecipe),
    ("eval",): names(EvalConfig),
    **{("methods", m): names(METHODS.get(m).Config) for m in METHODS.names()},
    **{("methods", m, "train"): names(TrainRecipe) for m in METHODS.names()},
}
PATHS = [(*section, field) for section, fields in SECTIONS.items() for field in fields + ["no_such_field"]]
PATHS += [("name",), ("description",), ("family",), ("seeds",), ("methods",), ("transforms",), ("train",),
          ("dataset",), ("dataset", "name"), ("backbone", "name"), ("no_such_section",)]


def with_value(path, value):
    data = yaml.safe_load(yaml.safe_dump(SMOKE))
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(node.get(key, {}), dict) else node
    node[path[-1]] = value
    return data


def one_line_or_success(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err
    if code == 0:
        return True
    lines = [line for line in err.splitlines() if not line.startswith("bench: warning:")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("bench: error: "), (code, err)
    return False


@pytest.mark.slow  # fuzzing: tens to hundreds of examples
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), value=values)
@example(path=("family",), value=[])  # was a TypeError (unhashable list)
@example(path=("backbone", "model"), value="\x1e")  # a control character split the error line
def test_any_value_in_any_field_loads_or_is_one_error_line(tmp_path, capsys, path, value):
    protocol = tmp_path / "fuzz.yaml"
    protocol.write_text(yaml.safe_dump(with_value(path, value)))
    one_line_or_success(capsys, ["show", str(protocol)])


# Fields a run may take any value of and stay cheap: sizes and epochs are fuzzed above, not run.
RUN_PATHS = [p for p in PATHS if p[-1] not in ("epochs", "batch_size", "num_classes", "max_per_class",
                                                  "test_per_class", "image_size", "steps", "concepts",
                                                  "concepts", "seeds", "num_workers", "warmup_epochs",
                                                  "n_iters")]


@pytest.mark.slow  # fuzzing: tens to hundreds of examples
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(RUN_PATHS), value=values)
@example(path=("methods", "zeroshot", "templates"), value=["{} {x}"])  # passed the '{}' count, then KeyError
@example(path=("methods", "coop", "init_text"), value="X " * 40)
@example(path=("methods", "coop", "n_ctx"), value=2**62)
@example(path=("transforms", "crop_ratio"), value=[1e308, 1e308])
def test_any_value_runs_or_is_one_error_line(tmp_path_factory, capsys, path, value):
    base = tmp_path_factory.mktemp("fuzz")
    data = with_value(path, value)
    data["train"] = {**(data.get("train") if isinstance(data.get("train"), dict) else {}), "epochs": 1}
    data["seeds"] = [1]
    protocol = base / "fuzz.yaml"
    protocol.write_text(yaml.safe_dump(data))
    ran = one_line_or_success(capsys, ["run", "--protocol", str(protocol), "--method", "all",
                                       "--results-dir", str(base / "results"), "--threads", "1"])
    results = list((base / "results").rglob("seed-1.json"))
    assert len(results) == (len(METHODS) if ran else 0) or not ran and all(os.path.getsize(r) for r in results)


# Every method option (about 170): breadth over the options, a few values each (the field test draws 400).
@pytest.mark.parametrize("path", [p for p in PATHS if p[:1] == ("methods",) and len(p) == 3])
@pytest.mark.slow  # fuzzing: tens to hundreds of examples
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=values)
def test_any_set_value_is_taken_or_one_error_line(capsys, path, value):
    text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    one_line_or_success(capsys, ["show", "smoke", "--method", path[1], "--set", f"{path[1]}.{path[2]}={text}"])
