import json

import pytest

from bench.errors import BenchError
from bench.store import ResultStore, cell_key


def record(method="coop", seed=1, key="a" * 64, all_=50.0):
    return {"key": key, "protocol": "p", "method": method, "seed": seed, "metrics": {"all": all_}}


def test_key_is_stable_and_sensitive():
    ident = {"dataset": {"name": "d"}, "train": {"lr": 0.1}}
    k = cell_key(ident, "coop", {"n_ctx": 4}, "0.1.0")
    assert k == cell_key({"train": {"lr": 0.1}, "dataset": {"name": "d"}}, "coop", {"n_ctx": 4}, "0.1.0")
    assert len(k) == 64
    assert k != cell_key(ident, "coop", {"n_ctx": 8}, "0.1.0")
    assert k != cell_key(ident, "zeroshot", {"n_ctx": 4}, "0.1.0")
    assert k != cell_key({**ident, "train": {"lr": 0.2}}, "coop", {"n_ctx": 4}, "0.1.0")
    assert k != cell_key(ident, "coop", {"n_ctx": 4}, "0.2.0")


def test_write_load_and_list(tmp_path):
    store = ResultStore(tmp_path)
    path = store.write(record())
    assert path == tmp_path / "p" / "coop" / ("a" * 12) / "seed-1.json"
    loaded = store.load("p", "coop", "a" * 64, 1)
    assert loaded["metrics"] == {"all": 50.0} and loaded["schema"] == 1
    assert store.load("p", "coop", "a" * 64, 2) is None
    assert store.load("p", "coop", "a" * 12 + "b" * 52, 1) is None  # same folder, other key
    store.write(record(method="zeroshot", seed=2))
    assert sorted((r["method"], r["seed"]) for r in store.records("p")) == [("coop", 1), ("zeroshot", 2)]
    assert store.records("other") == []
    assert not list(tmp_path.rglob("*.tmp"))


def test_overwrite_is_atomic(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    path = store.write(record(all_=1.0))

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(json, "dump", boom)
    with pytest.raises(OSError):
        store.write(record(all_=2.0))
    monkeypatch.undo()
    assert json.loads(path.read_text())["metrics"]["all"] == 1.0  # old result intact
    assert not list(tmp_path.rglob("*.tmp"))


def test_unreadable_result_is_a_clear_error(tmp_path):
    bad = tmp_path / "p" / "coop" / "abc" / "seed-1.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    with pytest.raises(BenchError, match="cannot read result file"):
        ResultStore(tmp_path).records("p")
