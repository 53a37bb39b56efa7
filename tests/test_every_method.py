"""Every registered method on every smoke protocol, driven by the registries: it trains (the loss on a
fixed batch goes down), resumes bit-exactly from a checkpoint (on the smoke protocol), and classifies
every label space the protocol evaluates (new classes included).  (Each method's own numerical tests are in its test file.)  A new method or smoke protocol is covered by registering it."""
import dataclasses
import functools
import tempfile
from pathlib import Path

import pytest
import torch
from torch.utils.data import Subset

from bench.cli import main
from bench.config.catalog import available_protocols
from bench.config.protocol import load_protocol
from bench.core.errors import BenchError, MissingInput
from bench.core.registry import METHODS
from bench.data import TransformedDataset
from bench.engine.runner import RunOptions, Runner
from bench.engine.train import make_optimizer, train
from bench.model.method import optimizer_groups
from bench.model.transforms import build_transforms
from bench.plugins import load_builtins

load_builtins()  # fills the registries before parametrisation
CPU = torch.device("cpu")
SMOKE = [name for name in available_protocols() if name.startswith("smoke")]
VARIANTS = ["coop@la_posthoc"]  # a variant is a method built from another; one stands for the mechanism


# Methods that cannot classify some evaluation of a protocol; `bench run --method all` leaves them out.
UNFIT = {("candle", "smoke_xd_dg"): "only the classes named at training time (its cross-dataset mode is not built)"}


# Methods that need a file only the user can make, and how the tests make it (`--method all` leaves them out).
KB_DIR = Path(tempfile.mkdtemp(prefix="bench-kb-"))
USER_INPUTS = {"mdpr_coop": "kb", "mdpr_maple": "kb"}


@functools.lru_cache(maxsize=None)
def knowledge_base(protocol_name):
    out = KB_DIR / f"{protocol_name}.json"
    assert main(["kb", "build", "--dataset", protocol_name, "--out", str(out), "--device", "cpu"]) == 0
    return str(out)


def options(protocol, name):
    extra = {USER_INPUTS[name]: knowledge_base(protocol.name)} if name in USER_INPUTS else None
    return protocol.resolve(name, extra)


@pytest.mark.parametrize("name", METHODS.names())
def test_methods_build_from_protocol_defaults_or_need_a_named_input(name):
    protocol, backbone, spaces, _, _ = setting("smoke")
    if name in USER_INPUTS:
        with pytest.raises(MissingInput, match=USER_INPUTS[name]):
            METHODS.get(name)(backbone, spaces.train_info, protocol.resolve(name).options)
    else:
        METHODS.get(name)(backbone, spaces.train_info, protocol.resolve(name).options)


@functools.lru_cache(maxsize=None)
def setting(protocol_name):
    """The protocol's backbone and label spaces, as the runner builds them (declared evaluations included)."""
    protocol = load_protocol(protocol_name)
    runner = Runner(protocol, RunOptions(device="cpu"))
    backbone, spaces = runner.backbone(), runner.spaces(1)
    train_tf, test_tf = build_transforms(protocol.transforms, backbone.image_size)
    return protocol, backbone, spaces, train_tf, test_tf


def build(protocol_name, name, seed):
    protocol, backbone, spaces, _, test_tf = setting(protocol_name)
    torch.manual_seed(seed)
    method = METHODS.get(name)(backbone, spaces.train_info, options(protocol, name).options)
    method.prepare(TransformedDataset(spaces.train, test_tf))
    return method


def steps_on_a_fixed_batch(method, protocol_name, recipe, steps=5):
    """The loss before and after ``steps`` optimizer steps (the recipe's optimizer and lr) on one batch."""
    _, _, spaces, _, test_tf = setting(protocol_name)
    batch = [TransformedDataset(spaces.train, test_tf)[i] for i in range(0, len(spaces.train), 9)]
    images, labels = torch.stack([b[0] for b in batch]), torch.tensor([b[1] for b in batch])
    optimizer = make_optimizer(optimizer_groups(method, recipe.lr), recipe)  # the method's own groups (LASP)
    method.train()
    losses = []
    for _ in range(steps + 1):
        with torch.random.fork_rng():
            torch.manual_seed(0)  # the same dropout masks at every step
            loss = method.loss(method(images), labels)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        if recipe.grad_clip is not None:  # as the engine's step does (LASP's 1.0)
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], recipe.grad_clip)
        optimizer.step()
    return losses[0], losses[-1]


@pytest.mark.parametrize("protocol_name", [p if p == "smoke" else pytest.param(p, marks=pytest.mark.slow)
                                           for p in SMOKE])  # the fast tier trains each method on `smoke` only
@pytest.mark.parametrize("name", METHODS.names() + VARIANTS)
def test_method_trains_resumes_and_classifies_every_label_space(protocol_name, name, tmp_path):
    protocol, _, spaces, train_tf, test_tf = setting(protocol_name)
    recipe = dataclasses.replace(options(protocol, name).train, epochs=2)
    data = TransformedDataset(Subset(spaces.train, range(0, len(spaces.train), 3)), train_tf)  # a few batches
    method = build(protocol_name, name, seed=0)
    if method.trains:
        before, after = steps_on_a_fixed_batch(build(protocol_name, name, seed=0), protocol_name, recipe)
        assert after < before
    full = train(method, data, recipe, seed=1, device=CPU)
    if method.trains and protocol_name == "smoke":  # resuming is the method's own, whatever the label space
        ckpt = tmp_path / "cell.ckpt"
        train(build(protocol_name, name, seed=0), data, recipe, seed=1, device=CPU, checkpoint=ckpt, key="k",
              stop_after=1)
        resumed = build(protocol_name, name, seed=99)  # another process: other init, state from disk
        rest = train(resumed, data, recipe, seed=1, device=CPU, checkpoint=ckpt, key="k")
        assert rest["resumed_from_epoch"] == 1 and rest["loss_history"] == full["loss_history"]
        assert all(torch.equal(v, method.trainable_state()[k]) for k, v in resumed.trainable_state().items())
        extra = method.extra_state()
        assert all(torch.equal(torch.as_tensor(v), torch.as_tensor(extra[k]))
                   for k, v in resumed.extra_state().items()) and extra.keys() == resumed.extra_state().keys()
    method.eval()
    if spaces.new_train is not None:  # as the runner does after training (transductive methods use it)
        method.adapt_to_new(TransformedDataset(spaces.new_train, test_tf))
    for ev in spaces.evaluations:
        if (name, protocol_name) in UNFIT and ev.info.training_index is None:
            with pytest.raises(BenchError, match="can classify only the classes named at training time"):
                method.use_label_space(ev.info)
            continue
        method.use_label_space(ev.info)
        images = torch.stack([TransformedDataset(ev.test, test_tf)[i][0] for i in range(6)])
        with torch.no_grad():
            logits = method(images)
        assert logits.shape == (6, len(ev.info.classnames)) and torch.isfinite(logits).all(), ev.name


@pytest.mark.parametrize("name", METHODS.names() + VARIANTS)
def test_prediction_encodes_image_independent_prompts_once_with_the_same_logits(name):
    """A prediction pass computes the class prompts' text features once per label space, not once per
    test batch, for every method whose text side does not depend on the images; the logits are exactly
    the naive path's, which runs the text tower again for every batch."""
    from bench.engine.train import predict

    if name in USER_INPUTS:
        pytest.skip("the same code as its offline-KB twin, which runs here")
    _, backbone, spaces, _, test_tf = setting("smoke")
    method = build("smoke", name, seed=1)
    test = Subset(TransformedDataset(spaces.evaluations[0].test, test_tf), range(0, 200, 4))  # 5 batches of 10
    batches = [torch.stack([test[i][0] for i in range(start, start + 10)]) for start in range(0, 50, 10)]
    method.eval()
    method(batches[0])  # warm: what a method builds once per label space (MDPR's knowledge) is built now
    runs = []
    hook = backbone.text.transformer.resblocks[0].register_forward_pre_hook(lambda module, args: runs.append(1))
    try:
        naive = torch.cat([method(images).float() for images in batches])
        per_batch, runs[:] = len(runs) // len(batches), []
        logits, _ = predict(method, test, batch_size=10, device=CPU)
    finally:
        hook.remove()
    assert torch.allclose(logits, naive, rtol=1e-6, atol=1e-5), (logits - naive).abs().max()
    memoised = hasattr(type(method), "text_features") and not method.text_depends_on_image
    assert len(runs) == (per_batch if memoised else per_batch * len(batches)), (len(runs), per_batch)
    if name in ("coop", "maple", "ivlp", "cpt"):
        assert per_batch >= 1  # their text tower runs at all: the count above says something
