import os

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never download anything

import pytest  # noqa: E402
import torch  # noqa: E402

from shared_state import fingerprint  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True, scope="session")
def bench_cache(tmp_path_factory):
    """Pretrained synthetic CLIP weights are cached once per test session."""
    path = tmp_path_factory.mktemp("bench-cache")
    old = os.environ.get("BENCH_CACHE")
    os.environ["BENCH_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("BENCH_CACHE", None)
    else:
        os.environ["BENCH_CACHE"] = old


# Fixtures built once and handed to many tests (session-scoped here, module-scoped in test files).
SHARED_FIXTURES = ("smoke", "backbone", "smoke_data", "smoke_transforms", "vit_b16", "images")


@pytest.fixture(autouse=True)
def shared_fixtures_stay_unchanged(request):
    """A test that changes a shared fixture fails, rather than the unrelated tests that run after it.

    Checked after the test's own fixtures are torn down (so after ``monkeypatch`` has undone what it
    set: what is left is what later tests see)."""
    shared = {name: request.getfixturevalue(name) for name in SHARED_FIXTURES if name in request.fixturenames}
    before = {name: fingerprint(value) for name, value in shared.items()}
    yield
    changed = [name for name, value in shared.items() if fingerprint(value) != before[name]]
    assert not changed, (f"this test changed the shared fixture(s) {changed}, which later tests reuse; "
                         "change a private copy (copy.deepcopy) instead")


@pytest.fixture
def new_process():
    """Calling it puts the registries back as a fresh `bench` process has them (the built-ins only);
    it runs after the test too, so a plugin a test loads does not stay for the tests after it."""
    from bench import plugins
    from bench.core.registry import METHODS

    plugins.load_all()
    saved = [(r, dict(r._entries), dict(r._origins)) for r in plugins.REGISTRIES.values()]
    built, requested, loaded = dict(METHODS._built), list(plugins._requested), dict(plugins._loaded)

    def reset():
        for registry, entries, origins in saved:
            registry._entries, registry._origins = dict(entries), dict(origins)
        METHODS._built, plugins._requested[:], plugins._loaded = dict(built), list(requested), dict(loaded)

    yield reset
    reset()


@pytest.fixture(scope="session")
def smoke():
    from bench.config.protocol import load_protocol

    return load_protocol("smoke")


@pytest.fixture(scope="session")
def backbone(smoke):
    """The smoke protocol's tiny pretrained backbone (shared: it is frozen)."""
    from bench.core.registry import BACKBONES

    return BACKBONES.get(smoke.backbone_name).build(smoke.backbone)


@pytest.fixture(scope="session")
def smoke_data(smoke):
    from bench.core.registry import DATASETS

    return DATASETS.get(smoke.dataset_name).build(smoke.dataset)


@pytest.fixture
def class_info(smoke_data):
    from bench.model.method import ClassInfo

    return ClassInfo(smoke_data.classnames, smoke_data.train_counts, smoke_data.template)


@pytest.fixture(scope="session")
def smoke_transforms(smoke, backbone):
    """``(train, test)`` image transforms of the smoke protocol."""
    from bench.model.transforms import build_transforms

    return build_transforms(smoke.transforms, backbone.image_size)


@pytest.fixture(scope="session")
def vit_b16():
    """ViT-B/16 shapes with random weights: parameter counts as in the papers."""
    from bench.model.backbone import ClipBackbone, create_open_clip

    return ClipBackbone(*create_open_clip("ViT-B-16", None))


LONGEST = ("test_readme_smoke_command_runs_as_written",)  # the whole smoke leaderboard: a third of the suite's time


def pytest_collection_modifyitems(items):
    """The longest test first, so that with several workers (-n) it does not run alone at the end."""
    items.sort(key=lambda item: item.name not in LONGEST)


def pytest_terminal_summary(terminalreporter):
    """Name what was tested (CI installs the newest versions pyproject.toml allows, so they move)."""
    import sys
    from importlib.metadata import PackageNotFoundError, version

    def installed(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    names = ("torch", "torchvision", "open_clip_torch", "numpy", "pandas", "scipy", "pytest", "hypothesis")
    tested = ", ".join(f"{name} {installed(name)}" for name in names)
    terminalreporter.write_line(f"tested with Python {sys.version.split()[0]}, {tested}")
