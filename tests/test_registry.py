import pytest

from bench.core.errors import BenchError
from bench.core.registry import Registry, describe, suggest


def test_register_and_get():
    reg = Registry("widget")

    @reg.register("alpha")
    class Alpha:
        """First line.

        More text."""

    assert reg.get("alpha") is Alpha
    assert "alpha" in reg and len(reg) == 1
    assert reg.names() == ["alpha"]
    assert describe(Alpha) == "First line."


def test_unknown_name_suggests_the_closest():
    reg = Registry("method")
    reg.register("coop", object())
    reg.register("zeroshot", object())
    with pytest.raises(BenchError) as err:
        reg.get("cop")
    msg = str(err.value)
    assert msg == "unknown method 'cop'; did you mean 'coop'? (available: coop, zeroshot)"


def test_no_suggestion_for_unrelated_names():
    assert suggest("xyz", ["coop", "zeroshot"]) == ""


def test_duplicate_registration_is_refused():
    reg = Registry("method")
    reg.register("a", 1)
    reg.register("a", 1)  # same object again is fine (re-import)
    with pytest.raises(BenchError, match=r"method 'a' is already registered \(built-in\); rename one of them"):
        reg.register("a", 2)


def test_builtin_registries_are_filled():
    from bench.plugins import load_builtins
    from bench.core.registry import BACKBONES, DATASETS, METHODS

    load_builtins()
    assert {"zeroshot", "coop"} <= set(METHODS.names())
    assert {"synthetic_lt", "cifar100_lt"} <= set(DATASETS.names())
    assert {"open_clip", "synthetic_clip"} <= set(BACKBONES.names())
