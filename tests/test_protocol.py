import textwrap

import pytest
import yaml

from bench.config.protocol import available_protocols, load_protocol, parse_protocol
from bench.core.errors import BenchError, ConfigError

SMOKE_LIKE = {
    "name": "p",
    "family": "lt",
    "dataset": {"name": "synthetic_lt", "num_classes": 4},
    "backbone": {"name": "synthetic_clip", "steps": 2},
}


def parse(**changes):
    data = {**SMOKE_LIKE, **changes}
    return parse_protocol(yaml.safe_load(yaml.safe_dump(data)))


def test_builtin_protocols_load():
    names = available_protocols()
    assert {"cifar100_lt_ir10", "cifar100_lt_ir10_liftgroups", "cifar100_lt_ir50", "cifar100_lt_ir50_liftgroups",
            "cifar100_lt_ir100", "imagenet_lt", "places_lt", "smoke", "smoke_b2n", "smoke_xd_dg"} <= set(names)
    for name in names:
        proto = load_protocol(name)
        assert proto.name == name and proto.description and proto.seeds
    for ir in (10, 50, 100):
        proto = load_protocol(f"cifar100_lt_ir{ir}")
        assert proto.dataset_name == "cifar100_lt"
        assert proto.dataset.imbalance_ratio == ir
        assert proto.backbone.model == "ViT-B-16" and proto.backbone.pretrained == "openai"


def test_load_by_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in SMOKE_LIKE.items() if k != "name"}))
    proto = load_protocol(str(path))
    assert proto.name == "mine"  # defaults to the file name
    assert proto.path == path


def test_unknown_protocol_suggests():
    with pytest.raises(BenchError, match="unknown protocol 'smok'; did you mean 'smoke'"):
        load_protocol("smok")


def test_missing_protocol_file():
    with pytest.raises(BenchError, match="does not exist"):
        load_protocol("nowhere/p.yaml")


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent("""\
        name: bad
        dataset:
          name: synthetic_lt
            num_classes: 3
        """))
    with pytest.raises(BenchError) as err:
        load_protocol(str(path))
    assert "malformed YAML at line 4" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "changes, where, fragment",
    [
        ({"trian": {}}, "protocol.trian", "did you mean 'train'?"),
        ({"train": {"lr": "fast"}}, "protocol.train.lr", "expected a number"),
        ({"train": {"lr": float("nan")}}, "protocol.train.lr", "expected a finite number, got nan"),
        ({"train": {"lr": "inf"}}, "protocol.train.lr", "expected a finite number"),
        ({"dataset": {"name": "synthetic_lt", "imbalance_ratio": float("nan")}}, "protocol.dataset.imbalance_ratio",
         "finite"),
        ({"transforms": {"mean": [0.5, float("inf"), 0.5]}}, "protocol.transforms.mean[1]", "finite"),
        ({"train": {"epochs": 0}}, "protocol.train.epochs", "at least 1"),
        ({"train": {"num_workers": -1}}, "protocol.train.num_workers", "must not be negative"),
        ({"eval": {"few_threshold": 200}}, "protocol.eval.few_threshold", "must not exceed"),
        ({"dataset": {"name": "synthetic_ltt"}}, "protocol.dataset.name", "did you mean 'synthetic_lt'?"),
        ({"dataset": {"name": "synthetic_lt", "num_clases": 3}}, "protocol.dataset.num_clases", "did you mean 'num_classes'"),
        ({"dataset": {"num_classes": 3}}, "protocol.dataset.name", "required field is missing"),
        ({"dataset": {"name": "synthetic_lt", "max_shift": -1}}, "protocol.dataset.max_shift", "must not be negative"),
        ({"backbone": "ViT-B-16"}, "protocol.backbone", "expected a mapping"),
        ({"seeds": [1, "two"]}, "protocol.seeds", "integers from 0 to 4294967295"),
        ({"seeds": []}, "protocol.seeds", "integers from 0"),
        ({"seeds": [-1]}, "protocol.seeds", "integers from 0"),
        ({"seeds": [2**63]}, "protocol.seeds", "integers from 0"),
        ({"methods": {"cop": {}}}, "protocol.methods.cop", "did you mean 'coop'?"),
        ({"methods": {"coop": {"n_ctx": "four"}}}, "protocol.methods.coop.n_ctx", "expected an integer or null"),
        ({"methods": {"coop": {"class_token_position": "back"}}}, "protocol.methods.coop.class_token_position", "one of"),
        ({"name": "has space"}, "protocol.name", "expected a name"),
    ],
)
def test_validation_errors_name_the_bad_field(changes, where, fragment):
    with pytest.raises(ConfigError) as err:
        parse(**changes)
    assert err.value.where == where
    assert fragment in str(err.value)


def test_top_level_must_be_a_mapping():
    with pytest.raises(BenchError, match="expected a mapping at the top level"):
        parse_protocol(["a", "b"])


def test_identity_leaves_out_machine_settings():
    a = load_protocol("cifar100_lt_ir100")
    b = parse_protocol(
        {**yaml.safe_load(a.path.read_text()), "dataset": {"name": "cifar100_lt", "imbalance_ratio": 100, "root": "/x", "download": False}}
    )
    assert a.identity() == b.identity()
    assert "root" not in a.identity()["dataset"]
    assert "num_workers" not in a.resolve("coop").train_identity()
    c = parse_protocol({**yaml.safe_load(a.path.read_text()), "transforms": {"flip": False}})
    assert c.identity() != a.identity()


def test_method_config_applies_protocol_then_overrides(smoke):
    assert smoke.resolve("coop").options.n_ctx == 4  # from smoke.yaml
    assert smoke.resolve("coop", {"n_ctx": 2, "csc": True}).options.n_ctx == 2
    assert smoke.resolve("zeroshot").options.templates == ["a photo of a {}."]  # the card's lt recipe
    with pytest.raises(ConfigError) as err:
        smoke.resolve("coop", {"nctx": 2})
    assert err.value.where == "--set coop.nctx"


def test_protocol_wide_recipe_conflicts_surface_when_a_method_resolves():
    proto = parse(train={"epochs": 2, "warmup_epochs": 2})  # loads: no method of its own
    with pytest.raises(ConfigError) as err:
        proto.resolve("coop")
    assert err.value.where == "protocol.train.warmup_epochs" and "between 0 and epochs - 1" in str(err.value)


def test_transform_size_must_fit_the_backbone():
    with pytest.raises(ConfigError, match="is 48 but synthetic_clip takes 32-pixel images") as err:
        parse(transforms={"size": 48})
    assert err.value.where == "protocol.transforms.size"
    assert parse(transforms={"size": 32}).identity() == parse().identity()  # null means the same 32


def test_unreadable_protocol_files_are_one_line(tmp_path):
    junk = tmp_path / "junk.yaml"
    junk.write_bytes(bytes(range(128, 256)))
    with pytest.raises(BenchError, match="protocol file .*is not UTF-8 text.*it must be a YAML text file"):
        load_protocol(str(junk))
    with pytest.raises(BenchError, match="is a folder"):
        load_protocol(str(tmp_path))
