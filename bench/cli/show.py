"""``bench show``: a protocol and each method's fully resolved recipe, with where every value comes from.

    bench show cifar100_lt_ir100 --method coop --set coop.train.lr=0.002

prints the dataset, backbone (with the activation it will be built with),
transforms, evaluation and seeds, then per method its paper and official code,
the numbers its paper reports here, and a table of every option and training
field with the layer that set it (default, card, protocol, --set).
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Dict, List, Optional

from bench.config.overrides import describe as describe_overrides
from bench.config.recipes import FAMILIES, recipe_table
from bench.core.errors import BenchError
from bench.core.registry import METHODS, describe

from .common import SET_HELP, add_plugin_option, parse_sets

if TYPE_CHECKING:  # the command imports torch only once the protocol name is known to exist
    from bench.config.protocol import Protocol
    from bench.model.method import MethodCard


def _fields(cfg) -> str:
    return " ".join(f"{k}={v}" for k, v in dataclasses.asdict(cfg).items())


def protocol_lines(protocol: Protocol) -> List[str]:
    planned = protocol.planned_setup()
    from bench.model.transforms import build_transforms, describe as describe_transform

    train_tf, test_tf = build_transforms(protocol.transforms, planned["image_size"])
    return [
        f"protocol    {protocol.name}: {protocol.description}",
        *([f"overrides   {describe_overrides(protocol.overrides)}"] if protocol.overrides else []),
        f"family      {protocol.family}: {FAMILIES[protocol.family]}",
        f"dataset     {protocol.dataset_name}  {_fields(protocol.dataset)}",
        f"backbone    {protocol.backbone_name}  {_fields(protocol.backbone)}  "
        f"(activation {planned['activation']}, input {planned['image_size']} px)",
        f"train tf    {' -> '.join(describe_transform(train_tf))}",
        f"test tf     {' -> '.join(describe_transform(test_tf))}",
        f"eval        {_fields(protocol.eval)}",
        *evaluation_lines(protocol),
        f"seeds       {' '.join(map(str, protocol.seeds))}",
    ]


def evaluation_lines(protocol: Protocol) -> List[str]:
    """One line per declared evaluation: its name, group, classes and the dataset fields that differ."""
    lines = []
    for spec in protocol.evaluations:
        plan, where = spec.plan, "its own test set"
        if spec.dataset_name is not None:
            ours, train = dataclasses.asdict(spec.dataset), dataclasses.asdict(protocol.dataset)
            changed = {k: v for k, v in ours.items() if spec.dataset_name != protocol.dataset_name or train.get(k) != v}
            where = f"{spec.dataset_name}  " + " ".join(f"{k}={v}" for k, v in changed.items())
        group = f" [{plan.group}]" if plan.group else ""
        lines.append(f"evaluation  {plan.name}{group}: {plan.classes} classes of {where}")
    return lines


def card_lines(card: Optional[MethodCard], protocol: Protocol) -> List[str]:
    if card is None:
        return ["  card        none: options and recipe are engine defaults"]
    lines = [f"  paper       {card.paper}", f"  code        {card.code}"]
    reported = card.reported.get(protocol.name)
    if reported is not None:
        numbers = ", ".join(f"{k} {v:.2f}" if v is not None else f"{k} –" for k, v in reported.metrics.items())
        note = f" ({reported.note})" if reported.note else ""
        lines.append(f"  reported    {reported.source}: {numbers}{note}")
    if protocol.family not in card.recipes:
        lines.append(f"  recipe      the card has none for family '{protocol.family}': engine defaults")
    return lines


def method_lines(protocol: Protocol, name: str, cli: Optional[dict]) -> List[str]:
    entry = METHODS.get(name)
    resolved = protocol.resolve(name, cli)
    lines = [f"{name}: {describe(entry) or ''}"] + card_lines(entry.card, protocol)
    if not resolved.trains:
        fits = getattr(entry, "fit_views", None)  # a method that fits itself (LFA): its own options below
        lines.append(f"  training    no epoch loop: it fits itself on frozen {fits} features" if fits
                     else "  training    none (evaluated as built)")
    rows = [(field, repr(value) if isinstance(value, str) else str(value), source)
            for field, value, source in recipe_table(resolved)]
    width = max(len(r[0]) for r in rows)
    value_width = min(max(len(r[1]) for r in rows), 40)
    lines += [f"  {f:<{width}}  {v:<{value_width}}  {s}" for f, v, s in rows]
    return lines


def render(protocol: Protocol, methods: List[str], overrides: Dict[str, dict]) -> str:
    blocks = [protocol_lines(protocol)] + [method_lines(protocol, m, overrides.get(m)) for m in methods]
    return "\n\n".join("\n".join(block) for block in blocks) + "\n"


def cmd_show(args) -> int:
    from bench.config.catalog import locate

    locate(args.protocol)  # an unknown name is reported before torch is imported
    from bench.config.protocol import load_protocol

    protocol_sets, overrides = parse_sets(args.set)
    protocol = load_protocol(args.protocol, protocol_sets)
    methods = METHODS.names() if not args.method or args.method == ["all"] else list(dict.fromkeys(args.method))
    for name in [*methods, *overrides]:
        METHODS.get(name)
        if name not in methods:
            raise BenchError(f"--set names method '{name}', which is not being shown")
    print(render(protocol, methods, overrides), end="")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("show", help="a protocol and each method's resolved recipe, with its sources")
    p.add_argument("protocol", help="protocol name (see `bench list`) or YAML path")
    p.add_argument("--method", nargs="+", help="methods to show (default: all)")
    p.add_argument("--set", action="append", default=[], metavar="METHOD.FIELD=VALUE",
                   help="show the protocol and recipes with this override, as `bench run --set` would run them: "
                        + SET_HELP)
    add_plugin_option(p)
    p.set_defaults(func=cmd_show)
