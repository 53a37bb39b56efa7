"""protocol.eval's opt-in record extras: per-epoch metrics (``epoch_metrics``) and class text features
(``text_features``), and that neither moves the key of a protocol that leaves them off."""

import pytest
import torch
import torch.nn.functional as F

import bench.engine.runner
from bench.config.protocol import load_protocol
from bench.config.recipes import TrainRecipe
from bench.core.registry import METHODS
from bench.data import TransformedDataset
from bench.engine.evaluation import class_text_features
from bench.engine.runner import RunOptions, Runner
from bench.engine.train import EPOCH_METRICS, train
from bench.methods.coop import CoOp, CoOpConfig

CPU = torch.device("cpu")
PER_EPOCH = {"eval.per_epoch": True}


def runner(tmp_path, overrides=None, protocol="smoke") -> Runner:
    return Runner(load_protocol(protocol, overrides), RunOptions(results_dir=tmp_path, device="cpu"),
                  log=lambda line: None)


def run_one(tmp_path, method, overrides=None, protocol="smoke") -> dict:
    (record,) = runner(tmp_path, overrides, protocol).run([method], [1])
    return record


@pytest.fixture(scope="module")
def coop_runs(tmp_path_factory):
    """CoOp on the smoke base-to-new protocol, seed 1, with per-epoch evaluation and without: its new-class
    evaluation moves the method off its training classes, which training must not notice."""
    return {on: run_one(tmp_path_factory.mktemp(f"per-epoch-{on}"), "coop", PER_EPOCH if on else None, "smoke_b2n")
            for on in (True, False)}


def test_per_epoch_curve_ends_at_the_final_metrics_and_leaves_training_alone(coop_runs):
    curve, plain = coop_runs[True]["epoch_metrics"], coop_runs[False]
    assert [entry["epoch"] for entry in curve] == [1, 2, 3, 4]  # the smoke protocols train 4 epochs
    assert curve[-1]["metrics"] == coop_runs[True]["metrics"]  # the same evaluation of the same parameters
    assert curve[0]["metrics"] != curve[-1]["metrics"] and {"base", "new", "hm"} <= set(curve[0]["metrics"])
    assert coop_runs[True]["metrics"] == plain["metrics"]  # evaluating between epochs changes no step
    assert coop_runs[True]["train"]["loss_history"] == plain["train"]["loss_history"]
    assert "epoch_metrics" not in plain and "epoch_metrics" not in coop_runs[True]["train"]
    assert "text_features" not in plain


def test_resumed_run_keeps_the_whole_curve(coop_runs, tmp_path, monkeypatch):
    real_train = bench.engine.runner.train

    def interrupted(*args, **kwargs):
        real_train(*args, **kwargs, stop_after=2)
        raise KeyboardInterrupt

    monkeypatch.setattr(bench.engine.runner, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_one(tmp_path, "coop", PER_EPOCH, "smoke_b2n")
    (ckpt,) = tmp_path.rglob("seed-1.ckpt")
    assert [entry["epoch"] for entry in torch.load(ckpt, weights_only=True)[EPOCH_METRICS]] == [1, 2]
    monkeypatch.setattr(bench.engine.runner, "train", real_train)
    resumed = run_one(tmp_path, "coop", PER_EPOCH, "smoke_b2n")
    assert resumed["train"]["resumed_from_epoch"] == 2
    assert resumed["epoch_metrics"] == coop_runs[True]["epoch_metrics"]


def test_checkpoint_without_a_curve_does_not_resume_a_per_epoch_run(backbone, class_info, smoke_data,
                                                                    smoke_transforms, tmp_path):
    data = TransformedDataset(smoke_data.train, smoke_transforms[0])
    cfg = TrainRecipe(epochs=2, warmup_epochs=0)
    ckpt = tmp_path / "seed-1.ckpt"
    train(CoOp(backbone, class_info, CoOpConfig(n_ctx=4)), data, cfg, seed=1, device=CPU, checkpoint=ckpt,
          key="k", stop_after=1)
    assert EPOCH_METRICS not in torch.load(ckpt, weights_only=True)
    summary = train(CoOp(backbone, class_info, CoOpConfig(n_ctx=4)), data, cfg, seed=1, device=CPU,
                    checkpoint=ckpt, key="k", after_epoch=lambda epoch: {"all": float(epoch)})
    assert summary["resumed_from_epoch"] is None
    assert summary[EPOCH_METRICS] == [{"epoch": 1, "metrics": {"all": 1.0}}, {"epoch": 2, "metrics": {"all": 2.0}}]


def test_zeroshot_text_features_are_its_normalised_prompts_and_it_has_no_curve(backbone, smoke_data, tmp_path):
    record = run_one(tmp_path, "zeroshot", {**PER_EPOCH, "eval.text_features": True})
    assert record["epoch_metrics"] == []  # nothing trains
    assert list(record["text_features"]) == ["test"]  # the smoke protocol's one evaluation
    stored = record["text_features"]["test"]
    assert stored["classes"] == list(smoke_data.classnames)
    prompts = backbone.tokenize([f"a photo of a {c}." for c in smoke_data.classnames])  # the lt card's template
    with torch.no_grad():
        expected = F.normalize(backbone.encode_text(prompts).float(), dim=-1)
    assert torch.allclose(torch.tensor(stored["features"]), expected, atol=1e-5, rtol=0)


# written out, not read off the classes: a method that wrongly claims (or drops) the flag fails here
IMAGE_DEPENDENT = {"cocoop", "cocoop_la", "lamp", "candle"}  # Candle's text_features is a per-batch buffer


@pytest.mark.parametrize("name", ["coop", "maple", "cocoop", "cocoop_la", "lamp", "candle"])
def test_text_features_are_null_where_they_depend_on_the_image(name, backbone, tmp_path):
    smoke, spaces = load_protocol("smoke"), runner(tmp_path).spaces(1)
    torch.manual_seed(0)
    method = METHODS.get(name)(backbone, spaces.train_info, smoke.resolve(name).options)
    (stored,) = class_text_features(method, spaces).values()
    assert type(method).text_depends_on_image == (name in IMAGE_DEPENDENT)
    if name in IMAGE_DEPENDENT:
        assert stored is None
        return
    with torch.no_grad():
        expected = F.normalize(method.text_features(), dim=-1)
    assert torch.allclose(torch.tensor(stored["features"]), expected, atol=1e-5, rtol=0)


def test_extras_left_off_keep_the_key_and_each_turned_on_is_a_cell_of_its_own(tmp_path):
    default = load_protocol("smoke")
    # the eval identity as it was before the extras existed
    assert default.identity()["eval"] == {"many_threshold": 100, "few_threshold": 20, "group_by": "own"}
    keys = {str(sets): runner(tmp_path, sets).plan(["coop"], [1])[0].key
            for sets in (None, {"eval.per_epoch": False, "eval.text_features": False}, PER_EPOCH,
                         {"eval.text_features": True})}
    assert len(set(keys.values())) == 3
    assert keys["None"] == keys[str({"eval.per_epoch": False, "eval.text_features": False})]
    assert load_protocol("smoke", PER_EPOCH).identity()["eval"]["per_epoch"] is True
