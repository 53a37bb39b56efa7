import dataclasses

import pytest
import torch

from bench.data import TransformedDataset
from bench.protocol import TrainConfig
from bench.train import lr_for_epoch, predict, train
from methods.coop import CoOp, CoOpConfig

CPU = torch.device("cpu")


def test_lr_schedule_is_dassl_style():
    cfg = TrainConfig(epochs=10, lr=0.002, warmup_epochs=1, warmup_lr=1e-5)
    assert lr_for_epoch(cfg, 0) == 1e-5
    assert lr_for_epoch(cfg, 1) == pytest.approx(0.002)
    assert lr_for_epoch(cfg, 6) == pytest.approx(0.001)
    assert lr_for_epoch(dataclasses.replace(cfg, scheduler="constant"), 9) == 0.002


def make(backbone, class_info, seed=0):
    torch.manual_seed(seed)
    return CoOp(backbone, class_info, CoOpConfig(n_ctx=4))


def test_training_lowers_the_loss_and_improves_accuracy(backbone, class_info, smoke_data):
    method = make(backbone, class_info)
    data = TransformedDataset(smoke_data.train, backbone.preprocess_train)
    test = TransformedDataset(smoke_data.test, backbone.preprocess_val)
    logits, labels = predict(method, test, 64, CPU)
    before = (logits.argmax(1) == labels).float().mean()
    cfg = TrainConfig(epochs=3, lr=0.002, warmup_epochs=0)
    summary = train(method, data, cfg, seed=1, device=CPU)
    assert summary["epochs"] == 3 and summary["resumed_from_epoch"] is None
    history = summary["loss_history"]
    assert history[-1] < history[0]
    logits, labels = predict(method, test, 64, CPU)
    assert (logits.argmax(1) == labels).float().mean() > before


def test_resumed_training_equals_uninterrupted(backbone, class_info, smoke_data, tmp_path):
    data = TransformedDataset(smoke_data.train, backbone.preprocess_train)
    cfg = TrainConfig(epochs=3, lr=0.01, warmup_epochs=1)

    straight = make(backbone, class_info)
    full = train(straight, data, cfg, seed=5, device=CPU)

    ckpt = tmp_path / "seed-5.ckpt"
    resumed = make(backbone, class_info)
    partial = train(resumed, data, cfg, seed=5, device=CPU, checkpoint=ckpt, key="k", stop_after=1)
    assert partial["epochs"] == 1 and ckpt.exists()
    fresh = make(backbone, class_info, seed=123)  # a new process: different init, state from disk
    rest = train(fresh, data, cfg, seed=5, device=CPU, checkpoint=ckpt, key="k")
    assert rest["resumed_from_epoch"] == 1
    assert rest["loss_history"] == pytest.approx(full["loss_history"], rel=1e-5)
    assert torch.allclose(fresh.prompt_learner.ctx, straight.prompt_learner.ctx, atol=1e-6)
    assert not list(tmp_path.glob(".*.tmp"))


def test_checkpoint_of_another_config_is_ignored(backbone, class_info, smoke_data, tmp_path):
    data = TransformedDataset(smoke_data.train, backbone.preprocess_train)
    cfg = TrainConfig(epochs=1, warmup_epochs=0)
    ckpt = tmp_path / "c.ckpt"
    train(make(backbone, class_info), data, cfg, seed=1, device=CPU, checkpoint=ckpt, key="old")
    summary = train(make(backbone, class_info), data, cfg, seed=1, device=CPU, checkpoint=ckpt, key="new")
    assert summary["resumed_from_epoch"] is None and summary["epochs"] == 1


def test_method_without_parameters_is_not_trained(backbone, class_info, smoke_data):
    from methods.zeroshot import ZeroShotCLIP, ZeroShotConfig

    method = ZeroShotCLIP(backbone, class_info, ZeroShotConfig())
    summary = train(method, smoke_data.train, TrainConfig(), seed=1, device=CPU)
    assert summary == {"epochs": 0, "loss_history": [], "resumed_from_epoch": None}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_amp_training_on_gpu(backbone, class_info, smoke_data):
    import copy

    from bench.train import amp_dtype

    gpu = torch.device("cuda")
    assert amp_dtype(gpu, "auto") in (torch.bfloat16, torch.float16)
    assert amp_dtype(gpu, False) is None and amp_dtype(CPU, True) is None
    method = CoOp(copy.deepcopy(backbone).to(gpu), class_info, CoOpConfig(n_ctx=4)).to(gpu)
    data = TransformedDataset(smoke_data.train, backbone.preprocess_train)
    summary = train(method, data, TrainConfig(epochs=2, warmup_epochs=0), seed=1, device=gpu)
    assert all(torch.isfinite(torch.tensor(summary["loss_history"])))
    assert summary["loss_history"][-1] < summary["loss_history"][0]
    assert method.prompt_learner.ctx.dtype == torch.float32  # AMP keeps master weights in fp32
    logits, labels = predict(method, TransformedDataset(smoke_data.test, backbone.preprocess_val), 64, gpu, amp="auto")
    assert logits.dtype == torch.float32 and logits.shape == (len(smoke_data.test), 10)
    assert (logits.argmax(1) == labels).float().mean() > 0.4
