"""bench.reporting.results: the tidy table merged from fabricated results folders (several machines)."""
import json

import pytest

from bench.core.errors import BenchError
from bench.engine.store import ResultStore
from bench.records.schema import SCHEMA
from bench.reporting.results import load_results, missing_cells


def record(protocol="smoke", method="coop", seed=1, key="a" * 64, **metrics):
    return {"schema": SCHEMA, "key": key, "protocol": protocol, "method": method, "seed": seed,
            "code_version": "0.2.0", "config": {"method": {}}, "column_order": [],
            "metrics": metrics or {"all": 70.0 + seed, "many": 80.0, "few": None}}


def put(root, rec):
    path = ResultStore(root).result_path(rec["protocol"], rec["method"], rec["key"], rec["seed"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))
    return path


def test_one_row_per_result_with_its_metrics(tmp_path):
    for seed in (2, 1):
        put(tmp_path, record(seed=seed))
    put(tmp_path, record("b2n_lamp/imagenet/imb10", "lamp", 1, "b" * 64, base=80.0, new=70.0, hm=74.67))
    results = load_results([tmp_path])
    table = results.table
    assert list(table[["protocol", "method", "seed"]].itertuples(index=False, name=None)) == [
        ("b2n_lamp/imagenet/imb10", "lamp", 1), ("smoke", "coop", 1), ("smoke", "coop", 2)]
    assert table.loc[1, "all"] == 71.0 and table.loc[2, "all"] == 72.0
    assert table["few"].isna().all() and table.loc[0, "hm"] == 74.67
    costs = {"params_m", "epoch_s", "eval_s", "train_img_s", "eval_img_s"}  # from timing fields these lack
    assert set(results.metrics) == {"all", "many", "few", "base", "new", "hm"} | costs
    assert table[list(costs)].isna().all().all()
    assert results.conflicts == [] and results.problems == [] and results.duplicates == 0


def test_machines_merge_duplicates_drop_and_conflicts_are_reported(tmp_path):
    a, b = tmp_path / "machine-a", tmp_path / "machine-b"
    put(a, record(seed=1)), put(b, record(seed=1))  # the same cell, the same numbers: one row
    put(a, record(seed=2)), put(b, record(seed=2, all=10.0))  # the same cell, other numbers: a conflict
    put(b, record(seed=3))
    results = load_results([a, b])
    assert sorted(results.table["seed"]) == [1, 3] and results.duplicates == 1
    (conflict,) = results.conflicts
    assert (conflict.method, conflict.seed) == ("coop", 2) and len(conflict.paths) == 2
    assert "different metrics" in str(conflict) and str(a) in str(conflict) and str(b) in str(conflict)


def test_damaged_files_are_reported_and_left_alone(tmp_path):
    good = put(tmp_path, record(seed=1))
    torn = put(tmp_path, record(seed=2))
    torn.write_text(torn.read_text()[:40])
    old = put(tmp_path, {**record(seed=3), "schema": SCHEMA - 1})
    moved = tmp_path / "smoke" / "coop" / "elsewhere" / "seed-4.json"
    moved.parent.mkdir()
    moved.write_text(json.dumps(record(seed=4)))
    before = {p: p.read_bytes() for p in (good, torn, old, moved)}
    results = load_results([tmp_path])
    assert list(results.table["seed"]) == [1]
    assert len(results.problems) == 3 and all(p.startswith("skipped '") for p in results.problems)
    assert any("not valid JSON" in p for p in results.problems)
    assert any("result schema" in p for p in results.problems) and any("a copy?" in p for p in results.problems)
    assert {p: p.read_bytes() for p in before} == before  # reported, never renamed or deleted


def test_empty_and_missing_folders(tmp_path):
    results = load_results([tmp_path])
    assert results.table.empty and list(results.table.columns)[:4] == ["protocol", "method", "key", "seed"]
    with pytest.raises(BenchError, match="does not exist"):
        load_results([tmp_path / "nowhere"])
    with pytest.raises(BenchError, match="no results folder"):
        load_results([])


def test_missing_cells_name_each_incomplete_block(tmp_path):
    for seed in (1, 2, 3):
        put(tmp_path, record(seed=seed))
    put(tmp_path, record(method="maple", seed=1, key="c" * 64))
    table = load_results([tmp_path]).table
    gaps = missing_cells(table, ["smoke", "places_lt"], ["coop", "maple"], [1, 2, 3])
    assert gaps == {("smoke", "maple"): [2, 3], ("places_lt", "coop"): [1, 2, 3], ("places_lt", "maple"): [1, 2, 3]}


def test_a_reload_reads_only_new_and_changed_files(tmp_path, monkeypatch):
    import bench.records.schema
    from bench.reporting.results import index_path

    paths = [put(tmp_path, record(seed=seed)) for seed in (1, 2, 3)]
    assert len(load_results([tmp_path]).table) == 3
    reads = []
    real = bench.records.schema.read_record
    monkeypatch.setattr(bench.records.schema, "read_record", lambda path: reads.append(path) or real(path))
    assert list(load_results([tmp_path]).table["all"]) == [71.0, 72.0, 73.0] and reads == []  # all from the index
    paths[1].write_text(json.dumps(record(seed=2, all=50.5)))  # another size: read again
    paths[2].unlink()
    table = load_results([tmp_path]).table
    assert list(table["all"]) == [71.0, 50.5] and reads == [str(paths[1])]
    index_path(str(tmp_path)).write_text("{torn")  # a damaged index is a miss, never an error
    assert list(load_results([tmp_path]).table["all"]) == [71.0, 50.5] and len(reads) == 3
