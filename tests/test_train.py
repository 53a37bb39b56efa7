import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from bench.config.recipes import TrainRecipe
from bench.core.errors import BenchError
from bench.data import TransformedDataset
from bench.engine.train import predict, train
from bench.model.method import Method
from bench.methods.coop import CoOp, CoOpConfig

CPU = torch.device("cpu")


def make(backbone, class_info, seed=0):
    torch.manual_seed(seed)
    return CoOp(backbone, class_info, CoOpConfig(n_ctx=4))


def test_training_lowers_held_out_loss_and_improves_accuracy(backbone, class_info, smoke_data, smoke_transforms):
    """Under Dassl's 8%-area crops the training-stream loss is noisy; held-out numbers are not."""
    method = make(backbone, class_info)
    data = TransformedDataset(smoke_data.train, smoke_transforms[0])
    test = TransformedDataset(smoke_data.test, smoke_transforms[1])
    logits, labels = predict(method, test, 64, CPU)
    loss_before, acc_before = F.cross_entropy(logits, labels), (logits.argmax(1) == labels).float().mean()
    cfg = TrainRecipe(epochs=4, optimizer="adamw", lr=1e-3, weight_decay=1e-4, warmup_epochs=0)
    summary = train(method, data, cfg, seed=1, device=CPU)
    assert summary["epochs"] == 4 and summary["resumed_from_epoch"] is None
    assert all(torch.isfinite(torch.tensor(summary["loss_history"])))
    logits, labels = predict(method, test, 64, CPU)
    assert F.cross_entropy(logits, labels) < loss_before
    assert (logits.argmax(1) == labels).float().mean() > acc_before


def test_resumed_training_equals_uninterrupted(backbone, class_info, smoke_data, smoke_transforms, tmp_path):
    data = TransformedDataset(smoke_data.train, smoke_transforms[0])
    cfg = TrainRecipe(epochs=3, lr=0.01, warmup_epochs=1)

    straight = make(backbone, class_info)
    full = train(straight, data, cfg, seed=5, device=CPU)

    ckpt = tmp_path / "seed-5.ckpt"
    resumed = make(backbone, class_info)
    partial = train(resumed, data, cfg, seed=5, device=CPU, checkpoint=ckpt, key="k", stop_after=1)
    assert partial["epochs"] == 1 and ckpt.exists()
    fresh = make(backbone, class_info, seed=123)  # a new process: different init, state from disk
    rest = train(fresh, data, cfg, seed=5, device=CPU, checkpoint=ckpt, key="k")
    assert rest["resumed_from_epoch"] == 1
    # timing covers the epochs each process ran: 3 straight; 1, then the other 2 after resuming
    assert [len(s["epoch_seconds"]) for s in (full, partial, rest)] == [3, 1, 2]
    per_epoch = len(data) // cfg.batch_size * cfg.batch_size if cfg.drop_last else len(data)  # Dassl drops the rest
    for summary, epochs in ((full, 3), (rest, 2)):
        assert summary["images_per_second"] == pytest.approx(epochs * per_epoch / sum(summary["epoch_seconds"]))
    assert rest["loss_history"] == full["loss_history"]  # bit-identical, not merely close
    assert torch.equal(fresh.prompt_learner.ctx, straight.prompt_learner.ctx)
    assert not list(tmp_path.glob(".*.tmp"))


def test_checkpoint_of_another_config_is_ignored(backbone, class_info, smoke_data, smoke_transforms, tmp_path):
    data = TransformedDataset(smoke_data.train, smoke_transforms[0])
    cfg = TrainRecipe(epochs=1, warmup_epochs=0)
    ckpt = tmp_path / "c.ckpt"
    train(make(backbone, class_info), data, cfg, seed=1, device=CPU, checkpoint=ckpt, key="old")
    summary = train(make(backbone, class_info), data, cfg, seed=1, device=CPU, checkpoint=ckpt, key="new")
    assert summary["resumed_from_epoch"] is None and summary["epochs"] == 1


def test_method_that_does_not_train_is_evaluated_as_built(backbone, class_info, smoke_data, smoke_transforms):
    from bench.methods.zeroshot import ZeroShotCLIP, ZeroShotConfig

    method = ZeroShotCLIP(backbone, class_info, ZeroShotConfig())
    summary = train(method, smoke_data.train, TrainRecipe(), seed=1, device=CPU)
    assert summary == {"epochs": 0, "loss_history": [], "resumed_from_epoch": None, "epoch_seconds": [],
                       "images_per_second": None}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_amp_training_on_gpu(backbone, class_info, smoke_data, smoke_transforms):
    import copy

    from bench.engine.train import amp_dtype

    gpu = torch.device("cuda")
    assert amp_dtype(gpu, "amp") in (torch.bfloat16, torch.float16)
    assert amp_dtype(gpu, "fp32") is None and amp_dtype(CPU, "amp") is None
    method = CoOp(copy.deepcopy(backbone).to(gpu), class_info, CoOpConfig(n_ctx=4)).to(gpu)
    data = TransformedDataset(smoke_data.train, smoke_transforms[0])
    summary = train(method, data, TrainRecipe(epochs=2, warmup_epochs=0), seed=1, device=gpu)
    assert all(torch.isfinite(torch.tensor(summary["loss_history"])))
    assert summary["loss_history"][-1] < summary["loss_history"][0]
    assert method.prompt_learner.ctx.dtype == torch.float32  # AMP keeps master weights in fp32
    logits, labels = predict(method, TransformedDataset(smoke_data.test, smoke_transforms[1]), 64, gpu, precision="amp")
    assert logits.dtype == torch.float32 and logits.shape == (len(smoke_data.test), 10)
    assert (logits.argmax(1) == labels).float().mean() > 0.4


class Counting(Method):
    """One parameter; counts the batch sizes it is trained on."""

    def __init__(self):
        super().__init__(None, None, None)
        self.w = torch.nn.Parameter(torch.zeros(2))
        self.sizes = []

    def forward(self, x):
        if self.training:
            self.sizes.append(len(x))
        return x[:, :2] * self.w


@pytest.mark.parametrize("drop_last, n, sizes", [(True, 70, [32, 32]), (False, 70, [32, 32, 6]), (True, 20, [20])])
def test_drop_last_follows_dassl(drop_last, n, sizes):
    """Dassl: drop_last = is_train and len(data) >= batch_size."""
    data = TensorDataset(torch.randn(n, 4), torch.randint(0, 2, (n,)))
    method = Counting()
    cfg = TrainRecipe(epochs=1, warmup_epochs=0, batch_size=32, drop_last=drop_last)
    train(method, data, cfg, seed=0, device=CPU)
    assert method.sizes == sizes


@pytest.mark.parametrize("damage, problem", [
    (lambda path: path.write_bytes(path.read_bytes()[:100]), "cannot be read"),
    (lambda path: path.write_bytes(b""), "cannot be read"),
    (lambda path: torch.save({"weights": torch.zeros(3)}, path), "is not a bench checkpoint"),
    (lambda path: torch.save({**torch.load(path), "epoch": 7}, path), "does not match"),
    (lambda path: torch.save({**torch.load(path), "optimizer": {}}, path), "cannot be restored"),
    (lambda path: torch.save({**torch.load(path), "optimizer": {**torch.load(path)["optimizer"], "state": {
        0: {"momentum_buffer": torch.zeros(3)}}}}, path), "cannot be restored"),
])
def test_damaged_checkpoint_is_set_aside_and_training_starts_over(backbone, class_info, smoke_data,
                                                                  smoke_transforms, tmp_path, capsys, damage, problem):
    data = TransformedDataset(smoke_data.train, smoke_transforms[0])
    cfg = TrainRecipe(epochs=2, warmup_epochs=0)
    ckpt = tmp_path / "seed-1.ckpt"
    train(make(backbone, class_info), data, cfg, seed=1, device=CPU, checkpoint=ckpt, key="k", stop_after=1)
    damage(ckpt)
    summary = train(make(backbone, class_info), data, cfg, seed=1, device=CPU, checkpoint=ckpt, key="k")
    assert summary["resumed_from_epoch"] is None and summary["epochs"] == 2
    assert ckpt.with_name("seed-1.ckpt.corrupt").exists()
    err = capsys.readouterr().err
    assert problem in err and "training starts over" in err and err.count("\n") == 1


def test_non_finite_loss_stops_with_a_clear_error(backbone, class_info, smoke_data, smoke_transforms):
    data = TransformedDataset(smoke_data.train, smoke_transforms[0])
    with pytest.raises(BenchError, match="training diverged: the loss is nan in epoch 1"):
        train(make(backbone, class_info), data, TrainRecipe(epochs=1, warmup_epochs=0, lr=1e30, optimizer="sgd"),
              seed=1, device=CPU)
