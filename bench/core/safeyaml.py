"""YAML and JSON as users (and damaged files) write them, read without surprises.

``yaml.safe_load`` expands aliases without limit (a 2.6 kB file of nested aliases grows past gigabytes),
keeps the last of two equal keys silently, and recurses once per nesting level.  :func:`load_yaml`
refuses a document that would expand past :data:`MAX_NODES` nodes before constructing it, a mapping
that names a key twice (both lines in the error), and nesting deeper than :data:`MAX_DEPTH`;
:func:`load_json` turns a too-deep document into a ``ValueError`` like any other damage::

    load_yaml(text, "protocol file 'x.yaml'")   # the data, or BenchError("protocol file 'x.yaml': ...")
    load_json(text)                            # the data, or ValueError (a damaged file)
"""
from __future__ import annotations

import json
import re
from typing import Any, Dict

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import BenchError, reason, shorten  # noqa: F401  (shorten: re-exported)

MAX_DEPTH = 100  # levels of nesting: protocols use about 5
MAX_NODES = 100_000  # nodes once aliases are expanded: the largest shipped file has about 600
MERGE = "tag:yaml.org,2002:merge"


class YAMLLimit(yaml.YAMLError):
    """A document refused before it is built: too deep, too large once expanded, or a repeated key."""


class _Loader(yaml.SafeLoader):
    depth = 0

    def compose_node(self, parent, index):
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise YAMLLimit(f"nested more than {MAX_DEPTH} levels deep (line {mark.line + 1})")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, MappingNode):
            seen: Dict[tuple, int] = {}
            for key_node, _ in node.value:
                if isinstance(key_node, ScalarNode) and key_node.tag != MERGE:
                    key, line = (key_node.tag, key_node.value), key_node.start_mark.line + 1  # 1 and "1" differ
                    if key in seen:
                        raise YAMLLimit(f"key '{shorten(key_node.value, 80)}' appears twice in one mapping "
                                        f"(lines {seen[key]} and {line}); keep one")
                    seen[key] = line
        return super().construct_mapping(node, deep)


# Scalars read as YAML 1.2's core schema, not PyYAML's YAML 1.1: `010` is ten (1.1: eight), `1:30` and
# `1_000` are text (1.1: ninety, a thousand), `yes`/`on`/`no`/`off` are text (1.1: booleans); a typed
# field then refuses the text with its usual error.  Null and timestamps stay as they were.
CORE_SCALARS = {
    "tag:yaml.org,2002:bool": (r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    "tag:yaml.org,2002:int": (r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    "tag:yaml.org,2002:float": (r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                                r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+0123456789."),
}


def _core_int(loader: yaml.SafeLoader, node: ScalarNode) -> int:
    text = loader.construct_scalar(node)
    base = {"0o": 8, "0x": 16}.get(text[:2], 10)
    return int(text[2:] if base != 10 else text, base)


def _core_float(loader: yaml.SafeLoader, node: ScalarNode) -> float:
    return float(loader.construct_scalar(node).lower().replace(".inf", "inf").replace(".nan", "nan"))


def _core_bool(loader: yaml.SafeLoader, node: ScalarNode) -> bool:
    return loader.construct_scalar(node).lower() == "true"


_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag not in CORE_SCALARS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _tag, (_pattern, _first) in CORE_SCALARS.items():
    _Loader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))
for _tag, _construct in (("int", _core_int), ("float", _core_float), ("bool", _core_bool)):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _construct)


def expanded_size(node: Node, sizes: Dict[int, int]) -> int:
    """Nodes in ``node`` with every alias expanded (each shared node counted once per use),
    computed once per distinct node."""
    if id(node) in sizes:
        return sizes[id(node)]
    size = 1
    if isinstance(node, SequenceNode):
        size += sum(expanded_size(child, sizes) for child in node.value)
    elif isinstance(node, MappingNode):
        size += sum(expanded_size(k, sizes) + expanded_size(v, sizes) for k, v in node.value)
    sizes[id(node)] = size
    return size


def load_yaml(text: str, where: str, malformed_as_text: bool = False) -> Any:
    """The YAML document ``text`` (None when empty), or one BenchError naming ``where`` and the problem;
    ``malformed_as_text``: text that is not YAML is returned as it is (``--set`` values)."""
    loader = None
    try:
        loader = _Loader(text)  # its reader refuses control characters here already
        node = loader.get_single_node()
        if node is None:
            return None
        if expanded_size(node, {}) > MAX_NODES:
            raise YAMLLimit(f"expands to more than {MAX_NODES:,} values (aliases of aliases?); refused")
        return loader.construct_document(node)
    except YAMLLimit as err:
        raise BenchError(f"{where}: {err}") from None
    except (ValueError, TypeError, OverflowError) as err:  # a date that is no date, a bad !!float tag
        if malformed_as_text:
            return text
        raise BenchError(f"{where}: a value YAML cannot build ({shorten(reason(err), 200)})") from None
    except yaml.YAMLError as err:
        if malformed_as_text:
            return text
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise BenchError(f"{where}: malformed YAML{at}: {shorten(problem, 200)}") from None
    except RecursionError:
        raise BenchError(f"{where}: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_json(text) -> Any:
    """``json.loads``, with a document too deeply nested to parse reported as ``ValueError``."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None
