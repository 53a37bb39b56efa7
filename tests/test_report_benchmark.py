"""pytest-benchmark: loading a results folder and rendering a report from it.

The default run times 2,000 results; the 100,000-result run is marked ``heavy`` (writing the folder
alone takes about 20 s on 2 cores), which the default run leaves out:

    python -m pytest tests/test_report_benchmark.py -m heavy --benchmark-only
"""
import json

import pytest

from bench.core.coerce import from_dict
from bench.engine.store import ResultStore
from bench.model.method import MethodCard
from bench.records.schema import SCHEMA
from bench.reporting.render import render
from bench.reporting.report import build_report
from bench.reporting.reportspec import ReportSpec
from bench.reporting.results import load_results

PROTOCOLS = ["smoke", "smoke_b2n", "smoke_xd_dg", "cifar100_lt_ir10", "cifar100_lt_ir50"]
METHODS = [f"method{i:02d}" for i in range(20)]
VIEWS = {p: {"name": p, "description": "", "identity": {"dataset": p}, "seeds": [],
             "references": {m: {"": {"n_ctx": 4}, "train": {"lr": 0.002}} for m in METHODS}} for p in PROTOCOLS}
CARDS = {m: MethodCard("p", "c") for m in METHODS}


def write_folder(root, count):
    """``count`` results spread over 5 protocols x 20 methods, each a few KB like a real record."""
    per_cell = count // (len(PROTOCOLS) * len(METHODS))
    store = ResultStore(root)
    for p_i, protocol in enumerate(PROTOCOLS):
        for m_i, method in enumerate(METHODS):
            key = f"{p_i:02d}{m_i:02d}" + "0" * 60
            folder = store.cell_dir(protocol, method, key)
            folder.mkdir(parents=True)
            config = {"protocol": VIEWS[protocol]["identity"], "method": {"n_ctx": 4}, "train": {"lr": 0.002},
                      "sources": {f"field{i}": "card: a paper table" for i in range(40)}}
            for seed in range(per_cell):
                value = 50 + (m_i * 7 + seed * 13) % 40
                record = {"schema": SCHEMA, "key": key, "protocol": protocol, "method": method, "seed": seed,
                          "code_version": "0.2.0", "config": config, "per_class_accuracy": [value] * 100,
                          "metrics": {"all": value, "many": value, "medium": value, "few": value}}
                (folder / f"seed-{seed}.json").write_text(json.dumps(record))
    return per_cell


def load_and_render(root, seeds):
    spec = from_dict(ReportSpec, {"title": "Bench", "columns": PROTOCOLS, "metrics": ["all", "few"],
                                  "rows": "all", "seeds": seeds, "reference": METHODS[0]}, "")
    report = build_report(spec, load_results([root]), VIEWS.get, "0.2.0", CARDS)
    return render(report, "md")


def run(benchmark, tmp_path, count):
    per_cell = write_folder(tmp_path, count)
    text = benchmark.pedantic(load_and_render, args=(tmp_path, list(range(per_cell))), rounds=2, iterations=1)
    assert text.count("| method") >= len(METHODS)  # a row per method (and the companion tables)


def test_load_and_render_2000_results(benchmark, tmp_path):
    run(benchmark, tmp_path, 2_000)


@pytest.mark.heavy
@pytest.mark.slow
def test_load_and_render_100000_results(benchmark, tmp_path):
    run(benchmark, tmp_path, 100_000)
