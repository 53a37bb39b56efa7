"""Hostile round three (issue 39), the frozen-feature cache: a cache file is used only for its own key
and its own, unchanged features, and the key follows the copy of the data the images come from."""
import os

import pytest
import torch
from PIL import Image

from bench.data.folder_lt import ListedImages
from bench.engine.features import FeatureCache

CPU = torch.device("cpu")
NAMES = ["a/one.png", "a/two.png", "b/three.png"]


def image_tree(root, shade: int):
    """Images under ``root`` with the names of :data:`NAMES`, each a flat colour from ``shade``."""
    for number, name in enumerate(NAMES):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (24, 24), ((shade + 60 * number) % 256, shade, 255 - shade)).save(path)
    return ListedImages(str(root), list(NAMES), [0, 1, 1], "test images")


@pytest.fixture
def encode(backbone, smoke_transforms, tmp_path):
    """The cached features of ``images`` (a new cache object, as a new run makes), and their truth."""
    def cached(images, split="train", logged=None):
        log = logged.append if logged is not None else (lambda line: None)
        cache = FeatureCache(tmp_path / "cache", backbone, {"name": "test"}, CPU, "fp32", log)
        return cache.views(images, smoke_transforms[1], 1, {"split": split}).features

    def truth(images):
        cache = FeatureCache(tmp_path / "unused", backbone, {"name": "test"}, CPU, "fp32")
        return cache.encode(images, smoke_transforms[1], 1, 0)

    return cached, truth


def test_another_copy_of_the_data_with_the_same_names_is_encoded_anew(encode, tmp_path):
    cached, truth = encode
    first, copy = image_tree(tmp_path / "data-1", 10), image_tree(tmp_path / "data-2", 200)
    logged = []
    assert torch.equal(cached(first, logged=logged), truth(first))
    from_copy = cached(copy, logged=logged)
    assert len(logged) == 2, "the copy under another data root reused the first copy's features"
    assert torch.equal(from_copy, truth(copy)) and not torch.equal(from_copy, truth(first))
    assert torch.equal(cached(first, logged=logged), truth(first)) and len(logged) == 2  # both stay cached


def test_an_image_rewritten_in_place_is_encoded_anew(encode, tmp_path):
    cached, truth = encode
    images = image_tree(tmp_path / "data", 10)
    before = cached(images)
    image_tree(tmp_path / "data", 200)
    stamp = os.stat(tmp_path / "data" / NAMES[0]).st_mtime_ns + 10**9
    os.utime(tmp_path / "data" / NAMES[0], ns=(stamp, stamp))  # newer, whatever the file system's clock step
    after = cached(images)
    assert torch.equal(after, truth(images)) and not torch.equal(after, before)


def test_swapped_cache_files_are_not_used_under_each_others_keys(encode, tmp_path, capsys):
    cached, truth = encode
    dark, light = image_tree(tmp_path / "dark", 10), image_tree(tmp_path / "light", 200)
    cached(dark, "one"), cached(light, "two")
    one, two = sorted((tmp_path / "cache" / "features").glob("*.pt"))
    held = one.read_bytes()
    one.write_bytes(two.read_bytes())
    two.write_bytes(held)
    logged = []
    assert torch.equal(cached(dark, "one", logged), truth(dark))
    assert torch.equal(cached(light, "two", logged), truth(light))
    assert len(logged) == 2  # both encoded again
    err = capsys.readouterr().err
    assert err.count("it holds the features of another key (a cache file copied or renamed here)") == 2
    assert err.count("set aside as") == 2 and len(list((tmp_path / "cache" / "features").glob("*.corrupt"))) == 2


def test_changed_tensors_under_an_intact_key_are_not_used(encode, tmp_path, capsys):
    cached, truth = encode
    images = image_tree(tmp_path / "data", 10)
    cached(images)
    [path] = (tmp_path / "cache" / "features").glob("*.pt")
    state = torch.load(path, weights_only=True)
    state["features"] = torch.zeros_like(state["features"])
    torch.save(state, path)
    logged = []
    assert torch.equal(cached(images, logged=logged), truth(images)) and len(logged) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"bench: warning: feature cache '{path}' cannot be used")
    assert "its features do not match their stored checksum (changed after they were written)" in err
    assert torch.equal(cached(images, logged=logged), truth(images)) and len(logged) == 1  # the rewrite is kept


@pytest.mark.slow
def test_a_run_on_another_data_root_with_the_same_file_names_encodes_its_own_images(capsys, tmp_path, monkeypatch):
    """The reported case: a run with --feature-cache on a second copy of a dataset (same names, other
    pixels) took the first copy's features (and its scores)."""
    from test_coop_data import fake_split
    from test_overrides import run

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    for copy, shade in (("one", 10), ("two", 200)):
        fake_split(monkeypatch, tmp_path / copy, "eurosat", classes=4, train=4, test=2)
        for path in (tmp_path / copy).rglob("*.jpg"):
            Image.new("RGB", (8, 8), (shade, 255 - shade, shade)).save(path, "JPEG")
    tiny = ["--set", "protocol.backbone.model=bench-tiny-vit", "--set", "protocol.backbone.pretrained=null",
            "--set", "protocol.transforms.size=32", "--set", "protocol.eval.batch_size=8",
            "--set", "protocol.train.num_workers=0"]
    for copy in ("one", "two"):
        code, out, err = run(capsys, "run", "--protocol", "b2n_lamp/eurosat/imb10", "--method", "zeroshot",
                             "--seeds", "1", "--feature-cache", "1", "--data-root", str(tmp_path / copy),
                             "--results-dir", str(tmp_path / f"results-{copy}"), "--no-progress", *tiny)
        assert code == 0 and "1 ran" in out, err
        assert "feature cache: encoding" in out, f"the run on data root '{copy}' used another copy's features"
