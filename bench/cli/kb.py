"""`bench kb build`: the MDPR knowledge base of a protocol's classes, from a backend, to an ``mdpr-kb/v1`` file.

The classes are the protocol's training classes, its new classes and those of every evaluation.  DF
partners (methods_spec §7.3) come from zero-shot CLIP's confusions on the training images, or from the
nearest text embedding for classes without labelled images (base-to-new, other datasets)::

    bench kb build --dataset cifar100_lt_ir100                       # offline templates (no network)
    MDPR_LLM_BASE_URL=... MDPR_LLM_MODEL=qwen2.5-72b-instruct MDPR_LLM_API_KEY=... \\
        bench kb build --dataset cifar100_lt_ir100 --backend llm     # every reply cached: reruns make no calls
    bench kb build --dataset cifar100_lt_ir100 --backend file --from merged.json   # the official code's file

`bench kb stats KB --dataset PROTOCOL`: the statistics of the KB's prior ``M`` (MDPR Table 7), with the
protocol's frozen text encoder, beside the paper's rows.
"""
from __future__ import annotations

import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, List, Tuple

from bench.core.errors import BenchError, reason
from bench.kb.backends import OfflineTemplateBackend, OpenAICompatibleBackend, ResponseCache
from bench.kb.knowledge import KnowledgeBase, build_kb, read_kb, write_kb
from bench.kb.prompts import DIMENSIONS
from bench.plugins import load_all

from .common import add_plugin_option, protocol_sets, whole


def protocol_classes(spaces) -> List[str]:
    names = list(spaces.train_info.classnames) + list(spaces.train_info.new_classnames)
    for ev in spaces.evaluations:
        names += ev.info.classnames
    return list(dict.fromkeys(names))


def partners(runner, spaces, train_images) -> Tuple[Dict[str, str], str]:
    """DF partners of every class of the protocol, and how the training dataset's were found."""
    from bench.kb.confusion import extend_partners, pool_partners  # torch: not at `bench list` time

    info = spaces.train_info
    pool = list(info.classnames) + list(info.new_classnames)
    found, source = pool_partners(runner.backbone(), pool, None if info.new_classnames else train_images)
    for ev in spaces.evaluations:
        found = extend_partners(runner.backbone(), found, ev.info.classnames)
    return found, source


def default_name(protocol) -> str:
    """``kb/<protocol>.json``; with protocol overrides, a name of their own (``smoke.3fa4c1d2.json``), so a
    build for another backend never replaces the plain protocol's file."""
    import hashlib

    from bench.config.overrides import fingerprint

    name = protocol.name.replace("/", "_")
    changed = fingerprint(protocol.overrides)
    return f"{name}.{hashlib.sha256(changed.encode()).hexdigest()[:8]}.json" if changed else f"{name}.json"


def writable_file(path: Path, option: str) -> Path:
    """``path``, checked before any work: not a folder, and its folder can be written."""
    if path.is_dir():
        raise BenchError(f"{option} '{path}' is a folder; give a file name, e.g. {path / 'kb.json'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as err:
        raise BenchError(f"{option} '{path}': cannot write in '{path.parent}' ({reason(err)})") from None
    return path


def backend_for(args, out: Path):
    if args.backend == "offline":
        return OfflineTemplateBackend()
    cache = Path(args.cache) if args.cache else out.with_suffix(".responses.jsonl")
    if args.strict_cache:
        return ResponseCache(None, cache, strict=True, model=args.model)
    endpoint = OpenAICompatibleBackend.from_environment(timeout=args.request_timeout, time_limit=args.time_limit)
    return ResponseCache(endpoint, cache)


@contextmanager
def phrase_bar(args, name: str, classes: int):
    """A progress bar over the phrases of an llm build, on stderr when it is a terminal (not with
    --verbose, whose lines would break it); yields the function to call after each phrase."""
    from tqdm import tqdm

    shown = args.backend == "llm" and not args.verbose
    with tqdm(total=classes * len(DIMENSIONS), desc=f"kb {name}", unit="phrase", file=sys.stderr, leave=False,
              disable=None if shown else True, dynamic_ncols=True) as bar:
        yield lambda: bar.update(1)


def cmd_build(args) -> int:
    from bench.data import TransformedDataset
    from bench.config.protocol import load_protocol
    from bench.engine.runner import RunOptions, Runner
    from bench.model.transforms import build_transforms

    load_all()
    protocol = load_protocol(args.dataset, protocol_sets(args.set))
    runner = Runner(protocol, RunOptions(device=args.device, data_root=args.data_root))
    spaces = runner.spaces(protocol.seeds[0])
    names = protocol_classes(spaces)
    out = writable_file(Path(args.out or Path("kb") / default_name(protocol)), "--out")
    if args.backend == "file":
        kb = imported(args, names, protocol.name)
    else:
        _, test_tf = build_transforms(protocol.transforms, runner.backbone().image_size)
        found, source = partners(runner, spaces, TransformedDataset(spaces.train, test_tf))
        backend = backend_for(args, out)
        verbose = (lambda line: print(f"kb {protocol.name}: {line}", flush=True)) if args.verbose else None
        with phrase_bar(args, protocol.name, len(names)) as tick:
            kb = build_kb(protocol.name, names, found, backend, words=args.words, max_retries=args.max_retries,
                          confusion_source=source, progress=verbose, on_phrase=tick)
    try:
        write_kb(kb, out)
    except OSError as err:
        raise BenchError(f"--out '{out}': cannot write it ({reason(err)})") from None
    fallbacks = sum(e["fallback"] for c in kb.entries.values() for e in c.values() if "fallback" in e)
    print(f"kb {protocol.name}: {len(names)} classes, {fallbacks} fallback phrase(s) -> {out}")
    return 0


def imported(args, names: List[str], dataset: str) -> KnowledgeBase:
    if not args.source:
        raise BenchError("--backend file reads a knowledge-base file: give it with --from FILE")
    kb = read_kb(Path(args.source))
    missing = [n for n in names if n not in kb.entries]
    if missing:
        raise BenchError(f"'{args.source}' lacks {len(missing)} class(es) of {dataset} ({', '.join(missing[:5])})")
    return KnowledgeBase(dataset, names, {n: kb.entries[n] for n in names},
                         {**kb.generator, "imported_from": Path(args.source).name}, kb.confusion)


def cmd_stats(args) -> int:
    """MDPR Table 7 for a knowledge-base file: mean, std and median of its prior ``M``."""
    from bench.config.protocol import load_protocol
    from bench.core.registry import all_cards
    from bench.engine.runner import RunOptions, Runner
    from bench.kb.stats import prior_matrix, prior_stats

    load_all()
    kb = read_kb(Path(args.kb))
    protocol = load_protocol(args.dataset, protocol_sets(args.set))
    backbone = Runner(protocol, RunOptions(device=args.device)).backbone()
    frame = "a photo of a {}." if args.prior_prompt == "photo" else "{}"
    sentences = {name: kb.sentences(name) for name in kb.classnames}
    _, prior = prior_matrix(backbone, sentences, kb.classnames, kb.dimensions, frame)
    ours = prior_stats(prior)
    rows = [(f"{Path(args.kb).name} ({protocol.backbone.model}, {len(kb.classnames)} classes)", *ours.values())]
    rows += [(f"{a.note} ({a.table}, CIFAR-100)", *a.metrics.values()) for a in all_cards()["mdpr_coop"].ablations
             if a.table == "MDPR Table 7"]
    print("| knowledge base | mean of M | std | median |\n|---|---|---|---|")
    print("\n".join(f"| {name} | {mean:.4f} | {std:.4f} | {median:.4f} |" for name, mean, std, median in rows))
    print(f"\nM[c, v]: cosine of class c's sentence v and '{frame}' (MDPR Eq. 4); std over all {prior.numel()} "
          "entries (n - 1).")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("kb", help="MDPR knowledge bases: build one for a protocol's classes, or its prior's statistics")
    kb = p.add_subparsers(dest="kb_command", required=True, parser_class=type(p))
    q = kb.add_parser("build", help="write an mdpr-kb/v1 file for a protocol's classes")
    q.add_argument("--dataset", required=True, help="the protocol whose classes (training, new, evaluations) it covers")
    q.add_argument("--backend", choices=["offline", "llm", "file"], default="offline",
                   help="offline templates (default), an OpenAI-compatible endpoint (MDPR_LLM_BASE_URL, "
                        "MDPR_LLM_MODEL, MDPR_LLM_API_KEY), or an existing file (--from)")
    q.add_argument("--from", dest="source", help="with --backend file: an mdpr-kb/v1 or the official code's JSON")
    q.add_argument("--out", help="the KB file (default: kb/<protocol>.json)")
    q.add_argument("--cache", help="llm replies, one JSON line each (default: <out>.responses.jsonl)")
    q.add_argument("--strict-cache", action="store_true", help="replay cached replies only; a miss is an error")
    q.add_argument("--model", help="with --strict-cache: the model the cached replies came from")
    q.add_argument("--words", type=whole(1, 500), default=25,
                   help="target words per phrase, 1 to 500 (default 25, as the code's CLI)")
    q.add_argument("--max-retries", type=whole(0, 20), default=1,
                   help="content retries after a rejected reply, 0 to 20 (default 1)")
    q.add_argument("--request-timeout", type=whole(1, 3600), default=120, metavar="SECONDS",
                   help="with --backend llm: the most one request may take, its whole reply included however "
                        "slowly it arrives; 1 to 3600 (default 120; a failed request is tried 6 times)")
    q.add_argument("--time-limit", type=whole(1, 30 * 24 * 3600), default=24 * 3600, metavar="SECONDS",
                   help="with --backend llm: the most all requests may take together; past it the build stops "
                        "with one error, the replies so far kept in the cache for a rerun (default 86400: a day)")
    q.add_argument("--data-root", help="dataset folder (overrides the protocol's dataset.root)")
    q.add_argument("--set", action="append", default=[], metavar="protocol.PATH=VALUE",
                   help="the protocol with this override, e.g. protocol.backbone.model=RN50 (its zero-shot "
                        "confusions pick the partners; repeatable)")
    q.add_argument("--device", default="auto", help="for the zero-shot confusions: auto, cpu, cuda, ...")
    q.add_argument("--verbose", action="store_true", help="one line per class")
    add_plugin_option(q)
    q.set_defaults(func=cmd_build)
    q = kb.add_parser("stats", help="mean, std and median of a KB's prior M (MDPR Table 7), beside the paper's")
    q.add_argument("kb", help="an mdpr-kb/v1 file, or the official code's JSON")
    q.add_argument("--dataset", required=True, help="the protocol whose backbone encodes the sentences")
    q.add_argument("--prior-prompt", choices=["photo", "bare"], default="photo",
                   help="M against 'a photo of a {c}.' (the paper, default) or the bare class name (its code)")
    q.add_argument("--set", action="append", default=[], metavar="protocol.PATH=VALUE",
                   help="the protocol with this override, e.g. protocol.backbone.model=RN50 (repeatable)")
    q.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    add_plugin_option(q)
    q.set_defaults(func=cmd_stats)
