"""Per-method training recipes: schedules, layering, provenance, keys and method cards."""
import dataclasses
import fnmatch
import re

import pytest
import torch

from bench.config.overrides import parse_reference, reference
from bench.config.protocol import available_protocols, load_protocol
from bench.config.recipes import FALLBACK, FAMILIES, TrainRecipe, lr_for_epoch, resolve
from bench.core.errors import ConfigError
from bench.core.registry import METHODS
from bench.plugins import load_builtins
from bench.records.schema import cell_key

load_builtins()


def test_dassl_schedule_matches_maple_logs():
    # MaPLe issue #17 log (lr 0.0035, 5 epochs, 1 warm-up epoch at 1e-5): epoch 4/5 2.2908e-03, 5/5 1.2092e-03.
    cfg = TrainRecipe(epochs=5, lr=0.0035, warmup_epochs=1, warmup_lr=1e-5)
    assert lr_for_epoch(cfg, 0) == 1e-5
    assert lr_for_epoch(cfg, 1) == pytest.approx(0.0035)
    assert lr_for_epoch(cfg, 3) == pytest.approx(2.2908e-03, abs=1e-7)
    assert lr_for_epoch(cfg, 4) == pytest.approx(1.2092e-03, abs=1e-7)
    assert lr_for_epoch(dataclasses.replace(cfg, scheduler="constant"), 4) == 0.0035


def test_mdpr_schedule_matches_torch_cosine_annealing():
    """MDPR: CosineAnnealingLR(T_max=20, eta_min=1e-6) stepped once per epoch, no warm-up."""
    cfg = TrainRecipe(epochs=20, optimizer="adamw", lr=1e-3, min_lr=1e-6, warmup_epochs=0)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20, eta_min=1e-6)
    for epoch in range(20):
        assert lr_for_epoch(cfg, epoch) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9)
        opt.step()
        sched.step()


def test_coop_lt_recipe_is_mdprs():
    """MDPR App. A.1.2 / spec §11: 16 random context vectors, AdamW 1e-3, wd 1e-4, cosine 20 epochs, batch 128."""
    resolved = load_protocol("cifar100_lt_ir100").resolve("coop")
    assert resolved.options.n_ctx is None and resolved.options.init_text is None  # 16 random vectors
    t = resolved.train
    assert (t.optimizer, t.lr, t.weight_decay, t.scheduler, t.epochs, t.batch_size, t.warmup_epochs) == \
        ("adamw", 1e-3, 1e-4, "cosine", 20, 128, 0)
    assert t.min_lr == 1e-6 and t.precision == "amp"
    assert resolved.sources["train.lr"] == "card: MDPR App. A.1.2"
    assert resolved.sources["train.num_workers"] == "protocol train"


def test_layers_override_in_order(smoke):
    r = smoke.resolve("coop", {"n_ctx": 2, "train": {"lr": 0.01}})
    assert r.options.n_ctx == 2 and r.sources["n_ctx"] == "--set"
    assert r.train.lr == 0.01 and r.sources["train.lr"] == "--set"
    assert r.train.epochs == 4 and r.sources["train.epochs"] == "protocol train"
    assert r.train.optimizer == "adamw" and r.sources["train.optimizer"].startswith("card:")
    assert r.train.momentum == 0.9 and r.sources["train.momentum"] == "default"
    own = dataclasses.replace(smoke, methods={"coop": {"train": {"epochs": 2}}})
    assert own.resolve("coop").train.epochs == 2
    assert own.resolve("coop").sources["train.epochs"] == "protocol methods.coop"


def test_recipe_is_part_of_the_cell_key(smoke):
    ident = smoke.identity()
    base = smoke.resolve("coop")
    other = smoke.resolve("coop", {"train": {"lr": 0.01}})
    key = cell_key(ident, "coop", dataclasses.asdict(base.options), base.train_identity())
    assert key != cell_key(ident, "coop", dataclasses.asdict(other.options), other.train_identity())
    assert "num_workers" not in base.train_identity()


def test_untrained_method_ignores_training_settings(smoke):
    zs = smoke.resolve("zeroshot")
    assert zs.trains is False and zs.train_identity() == {"eval_precision": "amp"}
    assert smoke.resolve("zeroshot", {"train": {"eval_precision": "fp32"}}).train_identity() == \
        {"eval_precision": "fp32"}
    with pytest.raises(ConfigError, match="not trained"):
        smoke.resolve("zeroshot", {"train": {"lr": 0.1}})


@pytest.mark.parametrize("cli, where, message", [
    ({"train": {"lr": "fast"}}, "--set coop.train.lr", "expected a number"),
    ({"train": {"lrr": 0.1}}, "--set coop.train.lrr", "did you mean 'lr'"),
    ({"train": {"warmup_epochs": 4}}, "--set coop.train.warmup_epochs", "between 0 and epochs - 1"),
    ({"train": {"min_lr": 0.5}}, "--set coop.train.min_lr", "must not exceed lr"),
    ({"train": {"precision": "fp8"}}, "--set coop.train.precision", "one of 'amp', 'fp32'"),
])
def test_bad_recipe_values_name_their_layer(smoke, cli, where, message):
    with pytest.raises(ConfigError, match=message) as err:
        smoke.resolve("coop", cli)
    assert err.value.where == where


def test_protocol_wide_train_error_names_the_protocol(smoke):
    bad = dataclasses.replace(smoke, train={"epochs": 1, "warmup_epochs": 1})
    with pytest.raises(ConfigError) as err:
        bad.resolve("coop")
    assert err.value.where == "protocol.train.warmup_epochs"


CODE = re.compile(r"^[\w.-]+/[\w.-]+:[\w./ -]+@[0-9a-f]{40}$")  # owner/repo:path@commit (MDPR's path has spaces)


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_has_a_complete_card(name):
    entry = METHODS.get(name)
    card = entry.card
    assert card is not None and card.paper and CODE.match(card.code) and card.spec.startswith(("methods_spec §",
                                                                                             "b2n_anchors §",
                                                                                             "spec_lamp_baselines.md §",
                                                                                             "spec_cpt_mdpr_baselines.md §")), card
    assert card.recipes and set(card.recipes) <= set(FAMILIES)  # families the card has no recipe for use defaults
    for family, recipe in card.recipes.items():
        assert recipe.source
        for protocol in ("smoke", "smoke_b2n", "cifar100_lt_ir100"):
            proto = dataclasses.replace(load_protocol(protocol), family=family)
            proto.resolve(name)  # every card recipe is valid
    for protocol, reported in card.reported.items():
        name, sets = parse_reference(protocol)  # "places_lt [backbone.model=RN50]": a run with --set protocol....
        assert (name in available_protocols() or "*" in name and fnmatch.filter(available_protocols(), name)) \
            and reference(name, sets) == protocol  # a glob: the printed average over its protocols
        if sets:
            load_protocol(name, sets)  # a configuration that loads
        assert reported.source and all(v is None or 0 <= v <= 100 for v in reported.metrics.values())
        assert all(v is not None for v in reported.metrics.values()) or "'–'" in reported.note  # a dash says why


def test_builtin_cards_cover_every_family():
    for name in METHODS.names():
        recipes = METHODS.get(name).card.recipes
        assert all(family in recipes or FALLBACK[family] in recipes for family in FAMILIES), name


def test_cross_dataset_recipes_are_the_official_xd_configs():
    xd = dataclasses.replace(load_protocol("smoke"), family="xd_lt100", methods={}, train={})
    maple = xd.resolve("maple")  # MaPLe vit_b16_c2_ep5_batch4_2ctx_cross_datasets.yaml
    assert (maple.options.depth, maple.train.epochs, maple.train.lr, maple.train.batch_size) == (3, 2, 0.0026, 4)
    assert xd.resolve("coop").train.epochs == 50  # vit_b16_ep50_ctxv1 for the ImageNet source
    ivlp = xd.resolve("ivlp")  # no cross-dataset recipe of its own: its base-to-new one
    assert ivlp.sources["train.epochs"] == dataclasses.replace(xd, family="b2n_lt100").resolve("ivlp").sources["train.epochs"]


def test_conflict_with_a_card_value_says_where_both_came_from():
    with pytest.raises(ConfigError) as err:
        load_protocol("cifar100_lt_ir100").resolve("coop", {"train": {"lr": 1e-7}})
    assert err.value.where == "coop recipe: train.min_lr"
    assert "(train.min_lr = 1e-06 from card: MDPR App. A.1.2; set by you: train.lr = 1e-07 (--set))" in str(err.value)


def test_word_init_overrides_the_lt_cards_random_context(backbone, class_info):
    from bench.methods.coop import CoOp

    proto = load_protocol("cifar100_lt_ir100")
    assert CoOp(backbone, class_info, proto.resolve("coop").options).prompt_learner.n_ctx == 16
    words = proto.resolve("coop", {"init_text": "a photo of a"}).options
    assert CoOp(backbone, class_info, words).prompt_learner.n_ctx == 4


@pytest.mark.parametrize("family", ["b2n_lt100", "b2n_lt16"])
def test_coop_b2n_recipe_is_coops_ctxv1_config(family):
    """CoOp configs/trainers/CoOp/vit_b16_ctxv1.yaml on Dassl defaults: SGD 0.002, momentum 0.9, wd 5e-4,
    batch 32, 200 epochs, cosine, 1 constant warm-up epoch at 1e-5, drop-last, context "a photo of a"."""
    proto = dataclasses.replace(load_protocol("smoke"), family=family, train={})
    resolved = proto.resolve("coop", {"n_ctx": None})
    t = resolved.train
    assert (t.optimizer, t.lr, t.momentum, t.weight_decay, t.batch_size, t.epochs) == ("sgd", 0.002, 0.9, 5e-4, 32, 200)
    assert (t.scheduler, t.min_lr, t.warmup_epochs, t.warmup_lr, t.drop_last) == ("cosine", 0.0, 1, 1e-5, True)
    assert resolved.options.init_text == "a photo of a"


def test_optimizer_runs_at_the_scheduled_lr(monkeypatch):
    import bench.engine.train
    from tests.test_train import Counting

    seen = []
    real = bench.engine.train.make_optimizer

    def recording(params, cfg):
        opt = real(params, cfg)
        step = opt.step
        opt.step = lambda *a, **k: (seen.append(opt.param_groups[0]["lr"]), step(*a, **k))[1]
        return opt

    monkeypatch.setattr(bench.engine.train, "make_optimizer", recording)
    data = torch.utils.data.TensorDataset(torch.randn(4, 4), torch.zeros(4, dtype=torch.long))
    cfg = TrainRecipe(epochs=4, lr=0.1, warmup_epochs=1, warmup_lr=1e-5, batch_size=4)
    bench.engine.train.train(Counting(), data, cfg, seed=0, device=torch.device("cpu"))
    # epoch 0: warm-up; then 0.1 * (1 + cos(pi k / 4)) / 2 for k = 0, 1, 2
    assert seen == pytest.approx([1e-5, 0.1, 0.1 * (1 + 2 ** -0.5) / 2, 0.05], rel=1e-12)


def test_liftgroups_protocols_differ_only_in_grouping():
    for ir in (10, 50):
        own, lift = load_protocol(f"cifar100_lt_ir{ir}").identity(), load_protocol(f"cifar100_lt_ir{ir}_liftgroups").identity()
        assert lift["eval"]["group_by"] == "cifar100_lt_ir100" and own["eval"]["group_by"] == "own"
        assert {k: v for k, v in own.items() if k not in ("name", "eval")} == \
            {k: v for k, v in lift.items() if k not in ("name", "eval")}


def test_few_shot_base_to_new_trains_each_shot_count_as_its_source_does():
    """b2n_fs uses the 16-shot base-to-new recipes, and CoOp's by_shots epochs (COOP.md: 50 at 1 shot,
    100 at 2 and 4, 200 at 8) from the protocol's shot count."""
    epochs = {k: load_protocol(f"b2n_fs/dtd/shots{k}").resolve("coop").train for k in (1, 2, 4, 8)}
    assert {k: t.epochs for k, t in epochs.items()} == {1: 50, 2: 100, 4: 100, 8: 200}
    assert all((t.lr, t.batch_size) == (0.002, 32) for t in epochs.values())
    one = load_protocol("b2n_fs/dtd/shots1").resolve("coop")
    assert one.sources["train.epochs"].endswith("COOP.md, 1 shot") and one.sources["train.lr"].endswith("COOP.md")
    maple = load_protocol("b2n_fs/dtd/shots1").resolve("maple")  # no b2n_fs recipe: its 16-shot base-to-new one
    assert maple.sources["train.lr"] == load_protocol("b2n_cpt/dtd/tau1").resolve("maple").sources["train.lr"]
    smoke = load_protocol("smoke_b2n_fs")  # the twin's 4 shots pick CoOp's 4-shot epochs; its train: block wins
    assert dataclasses.replace(smoke, train={}).resolve("coop").train.epochs == 100
    assert smoke.resolve("coop").train.epochs == 4


def test_every_by_shots_entry_is_a_valid_recipe():
    checked = 0
    for name in METHODS.names():
        for family, recipe in METHODS.get(name).card.recipes.items():
            for shots in recipe.by_shots:
                assert isinstance(shots, int) and shots > 0, (name, family)
                resolve(METHODS.get(name), family, {}, None, None, name, shots)  # fields of TrainRecipe, in range
                checked += 1
    assert checked >= 3  # CoOp's 1, 2 and 4 shots


def test_adam_couples_weight_decay_into_the_gradient_and_takes_eps():
    """Dassl's adam (TCP's, with eps 1e-3): the update of Adam on g + wd * theta, written out by hand."""
    from bench.engine.train import make_optimizer

    cfg = TrainRecipe(optimizer="adam", lr=0.01, weight_decay=0.5, eps=1e-3)
    theta = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt, expected, m, v = make_optimizer([theta], cfg), theta.detach().clone(), 0.0, 0.0
    for step, grad in enumerate([torch.tensor([0.3, 0.1]), torch.tensor([-0.2, 0.4]), torch.tensor([0.05, 0.0])], 1):
        g = grad + 0.5 * expected  # coupled: the decay joins the gradient before the moments
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        expected = expected - 0.01 * (m / (1 - 0.9 ** step)) / ((v / (1 - 0.999 ** step)).sqrt() + 1e-3)
        theta.grad = grad.clone()
        opt.step()
        assert torch.allclose(theta.detach(), expected, atol=1e-7, rtol=0)
    adamw = make_optimizer([torch.nn.Parameter(torch.zeros(1))], TrainRecipe(optimizer="adamw", eps=1e-6))
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["eps"] == 1e-6


def test_eps_enters_the_key_only_where_it_acts_and_differs_from_torchs_default():
    def train_identity(**fields):
        return resolve(METHODS.get("coop"), "lt", {}, None, {"train": fields}, "coop").train_identity()

    assert "eps" not in train_identity()  # AdamW at eps 1e-8: the keys of results from before the field
    assert train_identity(eps=1e-3)["eps"] == 1e-3
    assert "eps" not in train_identity(optimizer="sgd", eps=1e-3)  # SGD has none


def test_a_card_recipe_can_train_one_dataset_differently():
    """by_dataset (TCP: 25 epochs on ImageNet and SUN397) applies where the protocol trains on that
    dataset, keyed by CoOp's name of it, and says so in the provenance."""
    from bench.config.recipes import Recipe

    class Tcpish(METHODS.get("coop")):
        card = dataclasses.replace(METHODS.get("coop").card, recipes={"b2n_lt100": Recipe(
            source="S", train={"epochs": 50}, by_dataset={"SUN397": {"train": {"epochs": 25}, "n_ctx": 2}})})

    sun = resolve(Tcpish, "b2n_lt100", {}, None, None, "t", 100, "SUN397")
    assert (sun.train.epochs, sun.options.n_ctx, sun.sources["train.epochs"]) == (25, 2, "card: S, SUN397")
    assert resolve(Tcpish, "b2n_lt100", {}, None, None, "t", 100, "EuroSAT").train.epochs == 50
    assert load_protocol("b2n_lamp/sun397/imb10").dataset.coop_name == "SUN397"
    assert load_protocol("imagenet_lt").dataset.coop_name == "ImageNet"
    assert not hasattr(load_protocol("smoke").dataset, "coop_name")


def test_grad_clip_bounds_the_step_and_stays_out_of_the_key_when_unset():
    """train.grad_clip (LASP's 1.0): one SGD step moves by lr times the gradient scaled to the norm limit."""
    from bench.engine.train import make_optimizer, make_scaler, train_step

    class Square(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))

        def forward(self, images):
            return images

        def loss(self, _, labels):
            return 0.5 * (self.w ** 2).sum()  # gradient = w, norm 5

    for clip, expected in ((None, [2.7, 3.6]), (1.0, [3.0 - 0.1 * 0.6, 4.0 - 0.1 * 0.8])):
        method = Square()
        cfg = TrainRecipe(lr=0.1, momentum=0.0, weight_decay=0.0, grad_clip=clip)
        train_step(method, make_optimizer(method.parameters(), cfg), make_scaler(None), None, torch.zeros(1),
                   torch.zeros(1), cfg.grad_clip)
        assert torch.allclose(method.w.detach(), torch.tensor(expected), atol=1e-6), clip
    ident = resolve(METHODS.get("coop"), "lt", {}, None, None, "coop").train_identity()
    assert "grad_clip" not in ident
    assert resolve(METHODS.get("lasp"), "b2n_lt100", {}, None, None, "lasp").train.grad_clip == 1.0
