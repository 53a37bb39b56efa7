"""Knowledge-base files (``mdpr-kb/v1``): building one from a backend, reading and checking one.

A KB holds five sentences per class, one per knowledge dimension (methods_spec §7.5)::

    kb = build_kb("cifar100_lt", classnames, partners, OfflineTemplateBackend())
    write_kb(kb, Path("kb/cifar100_lt.json"))
    kb = read_kb(Path("kb/cifar100_lt.json"))      # or the official code's {"apple": "s1; s2; ..."} file
    kb.sentences("apple")                          # {"GA": "A apple typically appears as ...", ...}

Files are JSON; a missing, malformed or incomplete file is a :class:`bench.core.errors.BenchError` that
names the file and how to rebuild it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional

from bench.core.safeyaml import load_json
from bench.core.atomic import write_json
from bench.core.errors import BenchError
from bench.core.namedfiles import read_named_bytes, read_named_text, require_regular
from .backends import KBRequest, OfflineTemplateBackend
from .prompts import DIMENSIONS, VALIDATOR, check, clean, frame_sentence, query

FORMAT = "mdpr-kb/v1"
KB_LIMIT = 64 << 20  # bytes: a KB of 1000 classes is about 1 MB; more is not a KB
REBUILD = "rebuild it with 'bench kb build --dataset <protocol>'"


@dataclass
class KnowledgeBase:
    dataset: str
    classnames: List[str]
    entries: Dict[str, Dict[str, dict]]  # class -> dimension -> {"sentence", "phrase", "attempts", ...}
    generator: dict = field(default_factory=dict)
    confusion: dict = field(default_factory=dict)
    dimensions: List[str] = field(default_factory=lambda: list(DIMENSIONS))

    def sentences(self, classname: str) -> Dict[str, str]:
        return {dim: entry["sentence"] for dim, entry in self.entries[classname].items()}

    def to_json(self) -> dict:
        return {"format": FORMAT, "dataset": self.dataset, "classnames": self.classnames,
                "dimensions": self.dimensions, "generator": self.generator, "confusion": self.confusion,
                "entries": self.entries}


def build_kb(dataset: str, classnames: List[str], partners: Mapping[str, str], backend, words: int = 25,
             max_retries: int = 1, temperature: float = 0.5, confusion_source: str = "",
             progress: Optional[Callable[[str], None]] = None,
             on_phrase: Optional[Callable[[], None]] = None) -> KnowledgeBase:
    """Ask ``backend`` for every class and dimension, check each reply (one retry by default) and fall
    back to the offline phrase, marked ``fallback``, when no attempt passes.  ``progress`` hears a line
    after each class, ``on_phrase`` is called after each phrase (a progress bar)."""
    entries = {}
    for number, name in enumerate(classnames, 1):
        entries[name] = class_entries(name, partners[name], backend, words, max_retries, temperature, on_phrase)
        if progress is not None:
            progress(f"{number}/{len(classnames)} {name}")
    generator = {"backend": backend.name, "model": getattr(backend, "model", None), "temperature": temperature,
                 "target_words": words, "max_retries": max_retries, "validator": VALIDATOR}
    confusion = {"source": confusion_source, "template": "a photo of a {}.", "partner": dict(partners)}
    return KnowledgeBase(dataset, list(classnames), entries, generator, confusion)


def class_entries(name: str, partner: str, backend, words: int, max_retries: int, temperature: float,
                  on_phrase: Optional[Callable[[], None]] = None) -> dict:
    out: Dict[str, dict] = {}
    for dim in DIMENSIONS:
        other = partner if dim == "DF" else None
        prompt = query(dim, name, other, words)
        ga = out.get("GA", {}).get("phrase")
        phrase, problems = None, []
        for attempt in range(1 + max_retries):
            req = KBRequest(name, dim, other, prompt, words, temperature, 3 * words, attempt)
            candidate = clean(backend.generate(req))
            problem = None if getattr(backend, "trusted", False) else check(dim, candidate, name, other, words, ga)
            if problem is None:
                phrase = candidate
                break
            problems.append(problem)
        fallback = phrase is None
        if fallback:
            phrase = clean(OfflineTemplateBackend().generate(KBRequest(name, dim, other, prompt)))
        out[dim] = {"phrase": phrase, "sentence": frame_sentence(dim, name, other, phrase),
                    "attempts": len(problems) + (0 if fallback else 1), "valid": not fallback, "fallback": fallback,
                    "rejected": problems, "prompt_sha256": hashlib.sha256(prompt.encode()).hexdigest()}
        if on_phrase is not None:
            on_phrase()
    return out


def write_kb(kb: KnowledgeBase, path: Path) -> None:
    write_json(Path(path), kb.to_json())


def file_sha256(path: Path) -> str:
    return hashlib.sha256(read_named_bytes(path, "knowledge base", KB_LIMIT, hint=REBUILD)).hexdigest()


def require_file(path: Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise BenchError(f"knowledge base '{path}' does not exist; {REBUILD}")
    require_regular(path, "knowledge base", hint=REBUILD)
    return path


def read_kb(path: Path) -> KnowledgeBase:
    """An ``mdpr-kb/v1`` file, or the official code's ``{class: "s1; s2; s3; s4; s5"}`` file."""
    path = require_file(path)
    try:
        data = load_json(read_named_text(path, "knowledge base", KB_LIMIT, hint=REBUILD))
    except ValueError as err:
        raise BenchError(f"knowledge base '{path}' is not valid JSON ({err}); {REBUILD}") from None
    if isinstance(data, dict) and data.get("format") == FORMAT:
        return _from_json(data, path)
    if isinstance(data, dict) and data and all(isinstance(v, str) for v in data.values()):
        return _from_code_format(data, path)
    raise BenchError(f"knowledge base '{path}' is neither an {FORMAT} file nor the official code's "
                     f"{{class: \"s1; s2; ...\"}} file; {REBUILD}")


def _from_json(data: dict, path: Path) -> KnowledgeBase:
    entries, names, dims = data.get("entries"), data.get("classnames"), data.get("dimensions")
    if not (isinstance(entries, dict) and isinstance(names, list) and dims == list(DIMENSIONS)):
        raise BenchError(f"knowledge base '{path}' lacks entries, classnames or the dimensions "
                         f"{list(DIMENSIONS)}; {REBUILD}")
    for name in names:
        entry = entries.get(name)
        if not isinstance(entry, dict) or any(not isinstance(entry.get(d, {}).get("sentence"), str) or
                                              not entry[d]["sentence"].strip() for d in DIMENSIONS):
            raise BenchError(f"knowledge base '{path}': class '{name}' lacks a sentence for some of "
                             f"{', '.join(DIMENSIONS)}; {REBUILD}")
    return KnowledgeBase(str(data.get("dataset", "")), [str(n) for n in names], entries,
                         dict(data.get("generator") or {}), dict(data.get("confusion") or {}))


def _from_code_format(data: Dict[str, str], path: Path) -> KnowledgeBase:
    """Split each class's string on ';', then truncate or pad (repeating the last) to five, as the code."""
    entries = {}
    for name, text in data.items():
        parts = [s.strip() for s in text.split(";") if s.strip()]
        if not parts:
            raise BenchError(f"knowledge base '{path}': class '{name}' has no sentences; {REBUILD}")
        parts = (parts + [parts[-1]] * len(DIMENSIONS))[:len(DIMENSIONS)]
        entries[name] = {d: {"sentence": s, "phrase": None, "source": "official-code-format"}
                         for d, s in zip(DIMENSIONS, parts)}
    return KnowledgeBase("", list(data), entries, {"backend": "official-code-format"})
