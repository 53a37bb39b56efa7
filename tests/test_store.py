import json
import math
import os

import pytest

from bench.core.errors import BenchError
from bench.engine.store import ResultStore
from bench.records.schema import SCHEMA, cell_key


def record(method="coop", seed=1, key="a" * 64, all_=50.0):
    return {"key": key, "protocol": "p", "method": method, "seed": seed, "code_version": "0.2.0",
            "metrics": {"all": all_}, "config": {}}


def test_key_is_stable_and_sensitive():
    ident = {"dataset": {"name": "d"}, "eval": {"few_threshold": 20}}
    recipe = {"lr": 0.1, "epochs": 5}

    def key(ident=ident, method="coop", cfg={"n_ctx": 4}, recipe=recipe, version="0.2.0"):
        return cell_key(ident, method, cfg, recipe, code_version=version)

    k = key()
    assert k == key(ident={"eval": {"few_threshold": 20}, "dataset": {"name": "d"}}, recipe={"epochs": 5, "lr": 0.1})
    assert len(k) == 64
    assert k != key(cfg={"n_ctx": 8})
    assert k != key(method="zeroshot")
    assert k != key(ident={**ident, "eval": {"few_threshold": 10}})
    assert k != key(recipe={**recipe, "lr": 0.2})
    assert k != key(version="0.1.0")


def test_write_load_and_list(tmp_path):
    store = ResultStore(tmp_path)
    path = store.write(record())
    assert path == tmp_path / "p" / "coop" / ("a" * 12) / "seed-1.json"
    loaded = store.load("p", "coop", "a" * 64, 1)
    assert loaded["metrics"] == {"all": 50.0} and loaded["schema"] == SCHEMA
    assert store.load("p", "coop", "a" * 64, 2) is None
    store.write(record(method="zeroshot", seed=2))
    assert sorted((r["method"], r["seed"]) for r in store.records("p")) == [("coop", 1), ("zeroshot", 2)]
    assert store.records("other") == []
    assert not list(tmp_path.rglob("*.tmp"))
    # Same folder (key prefix), another key: that result is set aside, never overwritten unseen.
    assert store.load("p", "coop", "a" * 12 + "b" * 52, 1) is None
    assert not path.exists() and path.with_name("seed-1.json.corrupt").exists()


def test_copied_or_misplaced_results_are_not_counted_twice(tmp_path, capsys):
    store = ResultStore(tmp_path)
    path = store.write(record())
    copy = path.parent.with_name(path.parent.name + ".bak") / path.name
    copy.parent.mkdir()
    copy.write_text(path.read_text())
    assert len(store.records("p")) == 1
    assert "is not where its own protocol, method, key and seed put it" in capsys.readouterr().err
    os.mkfifo(path.parent / "seed-9.json")
    assert len(store.records("p")) == 1  # a FIFO is skipped, not read (which would block)


def test_overwrite_is_atomic(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    path = store.write(record(all_=1.0))

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)  # fails after the temp file is written, before the rename
    with pytest.raises(OSError):
        store.write(record(all_=2.0))
    monkeypatch.undo()
    assert json.loads(path.read_text())["metrics"]["all"] == 1.0  # old result intact
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("content, problem", [
    ("{not json", "is not valid JSON"),
    ("", "is not valid JSON"),
    ('{"metrics": {"all": 1}, "schema": %d, "key": "k"}' % SCHEMA, "lacks valid protocol, method, seed, code_version"),
    (json.dumps({**record(), "schema": SCHEMA, "metrics": {"all": 1, "few": "high"}}), "has metrics that are not numbers of their range: few"),
    (json.dumps({**record(), "schema": SCHEMA, "config": [1]}), "lacks valid config"),
    ("[1, 2]", "is not a benchmark result"),
])
def test_bad_result_file_is_skipped_with_a_warning(tmp_path, capsys, content, problem):
    store = ResultStore(tmp_path)
    good = store.write(record())
    bad = tmp_path / "p" / "coop" / "abc" / "seed-1.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(content)
    assert [r["seed"] for r in store.records("p")] == [1]  # the good one still counts
    err = capsys.readouterr().err
    assert err.startswith(f"bench: warning: skipped '{bad}': it {problem}") and err.count("\n") == 1
    assert bad.read_text() == content and good.exists()  # reading never changes files


def test_corrupt_result_of_a_cell_is_set_aside(tmp_path, capsys):
    store = ResultStore(tmp_path)
    path = store.write(record())
    path.write_text(path.read_text()[:40])  # truncated
    assert store.load("p", "coop", "a" * 64, 1) is None  # so the cell runs again
    assert not path.exists() and path.with_name("seed-1.json.corrupt").exists()
    assert "set aside as 'seed-1.json.corrupt', the cell runs again" in capsys.readouterr().err


def test_unwritable_results_root_is_found_before_work(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(BenchError, match="cannot write results under .*pick another folder"):
        ResultStore(afile).check_writable()
    with pytest.raises(BenchError, match="cannot write results under"):
        ResultStore(afile / "below").check_writable()


def test_results_are_strict_json(tmp_path):
    store = ResultStore(tmp_path)
    with pytest.raises(ValueError):
        store.write(record(all_=math.nan))
    assert not list(tmp_path.rglob("*.json")) and not list(tmp_path.rglob("*.tmp"))


def test_results_of_another_schema_are_one_line(tmp_path, capsys):
    store = ResultStore(tmp_path)
    for seed in (1, 2, 3):
        path = tmp_path / "p" / "coop" / "old" / f"seed-{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"metrics": {"all": 1}, "schema": 1}')
    assert store.records("p") == []
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "skipped 3 result file(s) of another result schema" in err
