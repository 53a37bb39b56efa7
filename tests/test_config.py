from dataclasses import dataclass, field
from typing import List, Literal, Optional, Union

import pytest

from bench.core.coerce import from_dict
from bench.core.errors import ConfigError


@dataclass
class Inner:
    width: int = 4


@dataclass
class Example:
    name: str
    lr: float = 0.1
    steps: int = 3
    flag: bool = False
    mode: Literal["a", "b"] = "a"
    amp: Union[bool, Literal["auto"]] = "auto"
    n: Optional[int] = None
    items: List[str] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)


def test_valid_values_and_defaults():
    cfg = from_dict(Example, {"name": "x", "lr": 1, "items": ["p"], "inner": {"width": 8}, "amp": False}, "cfg")
    assert cfg == Example(name="x", lr=1.0, items=["p"], inner=Inner(8), amp=False)
    assert isinstance(cfg.lr, float)


def test_scientific_notation_string_is_a_number():
    # PyYAML reads 5e-4 (no dot) as a string.
    assert from_dict(Example, {"name": "x", "lr": "5e-4"}, "cfg").lr == pytest.approx(5e-4)


@pytest.mark.parametrize(
    "data, where, fragment",
    [
        ({"name": "x", "lr": "fast"}, "cfg.lr", "expected a number, got 'fast'"),
        ({"name": "x", "steps": 2.5}, "cfg.steps", "expected an integer"),
        ({"name": "x", "steps": True}, "cfg.steps", "expected an integer"),
        ({"name": "x", "flag": "yes"}, "cfg.flag", "expected true/false"),
        ({"name": "x", "mode": "c"}, "cfg.mode", "expected one of 'a', 'b'"),
        ({"name": "x", "items": "p"}, "cfg.items", "expected a list"),
        ({"name": "x", "items": [1]}, "cfg.items[0]", "expected a string"),
        ({"name": "x", "inner": {"widht": 3}}, "cfg.inner.widht", "did you mean 'width'?"),
        ({"name": "x", "setps": 3}, "cfg.setps", "did you mean 'steps'?"),
        ({}, "cfg.name", "required field is missing"),
        ("oops", "cfg", "expected a mapping"),
    ],
)
def test_errors_name_the_field(data, where, fragment):
    with pytest.raises(ConfigError) as err:
        from_dict(Example, data, "cfg")
    assert err.value.where == where
    assert fragment in str(err.value)
    assert str(err.value).startswith(where + ":")
