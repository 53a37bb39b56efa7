"""`bench bench`: both paths run, give the same logits, and are reported; the naive switch."""
import json
import re

import pytest

from bench.cli import main
from bench.engine.speed import class_names, long_tailed_info
from bench.model import shortcuts
from bench.model.prompting import pooled_span

TINY = ["--model", "bench-tiny-vit", "--protocol", "smoke", "--steps", "1", "--warmup", "0"]


@pytest.mark.slow  # times both paths
def test_benchmark_times_both_paths_and_their_logits_agree(capsys, tmp_path):
    out = tmp_path / "speed.json"
    code = main(["bench", "--method", "coop", "zeroshot", "cocoop", "mdpr_coop", "--classes", "5", "12",
                 "--batch-size", "3", "--json", str(out), *TINY])
    text = capsys.readouterr().out
    assert code == 0
    rows = {(r["method"], r["classes"]): r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {(m, c) for m in ("coop", "zeroshot", "cocoop", "mdpr_coop") for c in (5, 12)}
    for method in ("coop", "zeroshot", "cocoop", "mdpr_coop"):
        for classes in (5, 12):
            row = rows[(method, classes)]
            assert row["max_logit_difference"] < 1e-4
            for path in ("fast", "naive"):
                assert row[path]["eval_images_per_second"] > 0 and row[path]["peak_memory_mb"] > 0
                trains = row[path]["train_images_per_second"]
                assert (trains is None) == (method == "zeroshot") and (trains is None or trains > 0)
    assert rows[("mdpr_coop", 5)]["timed_as"] == "timed as mdpr_coop_offlinekb (its knowledge base built in memory)"
    assert re.search(r"\| mdpr_coop +\| 5 .*timed as mdpr_coop_offlinekb", text)
    assert json.loads(out.read_text())["jpeg_decode_images_per_second_per_core"] > 0
    assert re.search(r"\| coop +\| 12 +\|", text) and "train ×" in text and "bench-tiny-vit, random weights" in text


@pytest.mark.parametrize("argv, problem", [
    (["--method", "nonesuch"], "unknown method 'nonesuch'"),
    (["--method", "coop", "--set", "maple.depth=2"], "--set names method 'maple', which is not being measured"),
    (["--method", "coop", "--classes", "1"], "expected a whole number from 2"),
])
def test_bad_benchmark_input_is_one_error_line(capsys, argv, problem):
    assert main(["bench", *argv, *TINY]) == 2
    err = capsys.readouterr().err
    assert problem in err and err.count("\n") == 1 and err.startswith("bench: error:")


def test_all_times_each_knowledge_base_method_once_as_its_offline_twin():
    from bench.core.registry import METHODS
    from bench.engine.speed import check_methods

    names = check_methods(["all"], {})
    assert {"mdpr_coop", "mdpr_maple", "cocoop", "coop_la", "lamp"} <= set(names)
    assert not any(name.endswith("_offlinekb") for name in names)
    assert len(names) == len(METHODS.names()) - 2


def test_naive_turns_the_shortcuts_off_and_restores_them(backbone):
    tokens = backbone.tokenize(["a photo of a cat."])
    assert pooled_span(backbone, tokens) < tokens.shape[1]
    with pytest.raises(RuntimeError):
        with shortcuts.naive():
            assert pooled_span(backbone, tokens) == tokens.shape[1]
            assert not shortcuts.ACTIVE.memoise_text and not shortcuts.ACTIVE.share_prefix
            raise RuntimeError
    assert shortcuts.ACTIVE == shortcuts.Shortcuts()


def test_synthetic_label_space_is_long_tailed_with_distinct_names():
    info = long_tailed_info(1000)
    assert len(set(info.classnames)) == 1000 == len(class_names(1000))
    assert info.train_counts[0] == 1280 and info.train_counts[-1] == round(1280 / 100)
    assert info.train_counts == sorted(info.train_counts, reverse=True)
    assert {len(n.split()) for n in info.classnames} == {1, 2, 3}  # token lengths vary as real names do


def test_a_path_predicted_not_to_fit_is_skipped_and_freed_memory_is_returned_first(monkeypatch):
    """bench bench runs many methods in one process: memory an earlier one freed is given back before
    the next path's budget is read, and a path predicted to need more than its share is not run (a
    CPU's out-of-memory kill would take every row with it)."""
    import torch

    from bench.engine import speed

    released, ran = [], []
    monkeypatch.setattr(speed, "release_freed_memory", lambda device: released.append(device))
    monkeypatch.setattr(speed, "available_memory_mb", lambda device: 1000.0)
    skipped = speed.timed_path(lambda: ran.append(1) or {}, torch.device("cpu"), predicted_mb=800.0)
    assert skipped == {"skipped": "needs about 0.8 GiB more, 1.0 GiB free"} and not ran and len(released) == 1
    done = speed.timed_path(lambda: ran.append(1) or {"x": 1}, torch.device("cpu"), predicted_mb=700.0)
    assert ran == [1] and done["x"] == 1 and "peak_memory_mb" in done
