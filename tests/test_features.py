"""The opt-in frozen-feature cache: same logits from cached test features, computed once and
shared by seeds and methods, its own key and label, refused for methods with image-tower prompts."""
import json

import pytest
import torch

from bench.cli import main
from bench.data import TransformedDataset
from bench.engine.features import CachedViews, FeatureCache
from bench.engine.loading import SeededItems
from bench.engine.train import predict
from bench.reporting.leaderboard import differences
from bench.methods.coop import CoOp, CoOpConfig

CPU = torch.device("cpu")


def cache(tmp_path, logged=None):
    def log(line):
        if logged is not None:
            logged.append(line)
    return lambda backbone: FeatureCache(tmp_path, backbone, {"name": "test"}, CPU, "fp32", log)


def test_cached_test_features_give_the_logits_of_the_images(backbone, class_info, smoke_data, smoke_transforms,
                                                            tmp_path):
    torch.manual_seed(0)
    method = CoOp(backbone, class_info, CoOpConfig(n_ctx=4))
    images = TransformedDataset(smoke_data.test, smoke_transforms[1])
    expected, labels = predict(method, images, 32, CPU)
    features = cache(tmp_path)(backbone).views(smoke_data.test, smoke_transforms[1], 1, {"split": "test"})
    method.features_given = True
    try:
        got, cached_labels = predict(method, features, 32, CPU)
    finally:
        method.features_given = False
    assert torch.equal(labels, cached_labels)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)


def test_views_are_computed_once_and_a_damaged_file_is_set_aside(backbone, smoke_data, smoke_transforms, tmp_path,
                                                                 capsys):
    logged = []
    make = cache(tmp_path, logged)
    first = make(backbone).views(smoke_data.train, smoke_transforms[0], 3, {"split": "train"})
    again = make(backbone).views(smoke_data.train, smoke_transforms[0], 3, {"split": "train"})
    assert len(logged) == 1 and torch.equal(first.features, again.features)
    reused = make(backbone)
    held = reused.views(smoke_data.train, smoke_transforms[0], 3, {"split": "train"})
    assert reused.views(smoke_data.train, smoke_transforms[0], 3, {"split": "train"}) is held  # read once
    assert first.features.shape[:2] == (len(smoke_data.train), 3)
    assert not torch.equal(first.features[:, 0], first.features[:, 1])  # augmented views differ
    [path] = (tmp_path / "features").glob("*.pt")
    path.write_bytes(path.read_bytes()[:50])
    rebuilt = make(backbone).views(smoke_data.train, smoke_transforms[0], 3, {"split": "train"})
    assert len(logged) == 2 and torch.equal(rebuilt.features, first.features)
    assert "cannot be used" in capsys.readouterr().err and list((tmp_path / "features").glob("*.corrupt"))


def test_each_epoch_and_image_draws_a_view_from_its_seed():
    views = SeededItems(CachedViews(torch.arange(40.0).view(10, 4, 1), list(range(10))))
    drawn = [[int(views[(i, seed * 100 + i)][0]) % 4 for i in range(10)] for seed in (1, 2, 1)]
    assert drawn[0] == drawn[2] != drawn[1]


def run_json(capsys, *argv):
    code = main(["run", "--protocol", "smoke", "--no-progress", *argv])
    return code, capsys.readouterr()


def test_feature_cache_run_is_a_labelled_variant_shared_by_seeds_and_methods(capsys, tmp_path, backbone):
    results = tmp_path / "results"
    code, out = run_json(capsys, "--method", "coop", "coop_la", "maple", "--seeds", "1", "2", "--feature-cache", "2",
                         "--set", "maple.train.epochs=1", "--results-dir", str(results))
    assert code == 0, out.err
    assert out.out.count("feature cache: encoding") == 2  # the training views and the test images, once
    keys = {p.parent.parent.name: p.parent.name for p in results.rglob("seed-1.json")}
    record = json.loads(next((results / "smoke" / "coop").rglob("seed-1.json")).read_text())
    assert record["config"]["train"]["feature_cache"] == 2
    assert record["usage"]["trainable_parameters"] == 4 * backbone.width  # the smoke protocol's 4 context vectors
    code, out = run_json(capsys, "--method", "coop", "maple", "--seeds", "1", "--set", "maple.train.epochs=1",
                         "--results-dir", str(results))
    assert code == 0 and "feature cache" not in out.out
    plain = {p.parent.parent.name: p.parent.name for p in results.rglob("seed-1.json")}
    assert plain["maple"] == keys["maple"] and "done already" in out.out  # maple cannot cache: unchanged
    assert len(list((results / "smoke" / "coop").iterdir())) == 2  # another key for the cached variant
    assert main(["leaderboard", "--protocol", "smoke", "--results-dir", str(results)]) == 0
    board = capsys.readouterr().out
    assert "| coop (train.feature_cache=2) | 2 |" in board and "| coop | 1 |" in board


def test_methods_with_image_tower_prompts_refuse_the_cache(capsys):
    code, out = run_json(capsys, "--method", "maple", "--set", "maple.train.feature_cache=4")
    assert code == 2 and out.err.count("\n") == 1
    assert "maple.train.feature_cache: method 'maple' runs prompts inside the image tower" in out.err


@pytest.mark.parametrize("config, reference, label", [
    ({"train": {"feature_cache": 4, "lr": 1}}, {"train": {"lr": 1}}, ["train.feature_cache=4"]),
    ({"train": {"feature_cache": 0, "lr": 1}}, {"train": {"lr": 1}}, []),
    ({"train": {"feature_cache": 4}}, {"train": {"feature_cache": 4}}, []),
])
def test_a_cached_record_differs_from_a_reference_without_the_cache(config, reference, label):
    assert differences(config, reference) == label
