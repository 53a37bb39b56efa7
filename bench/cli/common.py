"""What the subcommands share: one-line usage errors, --set parsing, argument types, --output."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, List, Tuple

from bench.core.errors import BenchError, one_line


class OnceStore(argparse._StoreAction):
    """An option that takes its value(s) once: ``--seeds 1 --seeds 2`` is refused, not read as ``--seeds 2``
    (repeatable options say so: ``action="append"``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = namespace.__dict__.setdefault("_given", set())
        if option_string is not None and self.dest in given:
            parser.error(f"{option_string} is given twice; give all its values after one {option_string}"
                         + (f" ({option_string} A B ...)" if self.nargs in ("+", "*") else ""))
        given.add(self.dest)
        super().__call__(parser, namespace, values, option_string)


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line (exit code 2) and options that take values once."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("action", None, OnceStore)
        self.register("action", "store", OnceStore)

    def error(self, message):
        self.exit(2, f"bench: error: {one_line(message)} (see '{self.prog} --help')\n")


SET_HELP = ("override a method option or training field (coop.n_ctx=4, coop.train.lr=0.01) or a protocol field "
            "(protocol.backbone.model=ViT-B-32, protocol.eval.batch_size=256); repeatable")


def parse_sets(items: List[str]) -> Tuple[Dict[str, Any], Dict[str, dict]]:
    """``(protocol overrides, method overrides)`` of ``--set`` items: ``protocol.PATH=VALUE`` and
    ``METHOD.FIELD=VALUE`` (:func:`parse_overrides`)."""
    from bench.config.overrides import split_sets

    protocol, rest = split_sets(items)
    return protocol, parse_overrides(rest)


def protocol_sets(items: List[str]) -> dict:
    """``--set`` of a command that reads results: protocol fields only (rows of other method settings
    are shown by --all-configs, or selected by a report spec's rows)."""
    sets, methods = parse_sets(items)
    if methods:
        raise BenchError(f"--set {next(iter(methods))}...: here --set takes protocol fields only "
                         "(protocol.backbone.model=RN50); --all-configs shows rows of other method settings")
    return sets


def parse_overrides(items: List[str]) -> Dict[str, dict]:
    """``["coop.n_ctx=4", "coop.train.lr=0.01"]`` -> ``{"coop": {"n_ctx": 4, "train": {"lr": 0.01}}}``
    (values read as YAML)."""
    from bench.config.overrides import read_value

    out: Dict[str, dict] = {}
    for item in items:
        target, sep, raw = item.partition("=")
        parts = target.split(".")
        nested = len(parts) == 3 and parts[1] == "train"
        if not sep or not all(parts) or not (len(parts) == 2 or nested) or parts[-1] == "train":
            raise BenchError(f"--set '{item}': expected METHOD.FIELD=VALUE or METHOD.train.FIELD=VALUE, "
                             "e.g. coop.n_ctx=4 or coop.train.lr=0.01 (or protocol.SECTION.FIELD=VALUE)")
        value = read_value(raw, target)
        block = out.setdefault(parts[0], {})
        if nested:
            block = block.setdefault("train", {})
        if parts[-1] in block:
            raise BenchError(f"--set '{target}' is given twice; give it once")
        block[parts[-1]] = value
    return out


def write_output(path: Path, text: str, results_dir: Path) -> None:
    """Write a table to a regular file (a symlink's target), never over a device, folder or result."""
    from bench.core.atomic import write_atomic

    try:
        target = path.resolve()
        if target.is_dir():
            raise BenchError(f"--output '{path}' is a folder; give a file name, e.g. {path / 'table.md'}")
        if target.exists() and not target.is_file():
            raise BenchError(f"--output '{path}' is not a regular file; give a file name")
        if results_dir.resolve() in target.parents and target.suffix in (".json", ".ckpt"):
            raise BenchError(f"--output '{path}' would replace a result or checkpoint; write tables elsewhere")
        write_atomic(target, lambda f: f.write(text))
    except OSError as err:
        raise BenchError(f"--output '{path}': cannot write it ({err.strerror or type(err).__name__})") from None


def add_plugin_option(parser) -> None:
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE",
                        help="load methods, datasets or backbones from this module or .py file "
                             "(repeatable; also $BENCH_PLUGINS, and installed packages' entry points)")


def whole(low: int, high: int):
    """An argparse type: a whole number in [low, high]."""
    def parse(text: str) -> int:
        value = int(text) if text.lstrip("+").isdigit() and len(text) < 20 else -1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, got '{text}'")
        return value
    return parse
