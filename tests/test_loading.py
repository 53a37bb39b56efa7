"""Data loaders: augmentation seeded per image, so results do not depend on the loader's workers."""
import torch

from bench.config.recipes import TrainRecipe
from bench.data import TransformedDataset
from bench.engine import loading
from bench.engine.loading import EpochSampler, SeededItems, TrainLoader, loader_workers
from bench.engine.train import train
from bench.methods.coop import CoOp, CoOpConfig

CPU = torch.device("cpu")


class Draws(torch.utils.data.Dataset):
    """Item ``i`` is ``(i, a random draw)``: what a random transform of image ``i`` would draw."""

    def __len__(self):
        return 10

    def __getitem__(self, i):
        return torch.rand(()), i


def draws_by_item(workers: int, epochs=(0, 1)) -> dict:
    loader = TrainLoader(Draws(), batch_size=3, drop_last=False, seed=7, device=CPU, workers=workers)
    seen = {}
    for epoch in epochs:
        for values, items in loader.epoch(epoch):
            seen.update({(epoch, int(i)): float(v) for v, i in zip(values, items)})
    return seen


def test_each_image_draws_the_same_with_any_number_of_workers_and_after_resuming():
    single = draws_by_item(0)
    assert draws_by_item(2) == single  # two persistent worker processes
    assert draws_by_item(0, epochs=(1,)) == {k: v for k, v in single.items() if k[0] == 1}  # resumed at epoch 1
    assert len(set(single.values())) == len(single)  # every (epoch, image) draws anew


def test_seeded_items_leave_the_callers_random_state_alone():
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    items = SeededItems(Draws())
    first = [items[(i, 100 + i)] for i in range(3)]
    assert torch.equal(torch.rand(2), expected)
    assert [items[(i, 100 + i)] for i in range(3)] == first


def test_epoch_order_is_a_permutation_fixed_by_seed_and_epoch():
    sampler = EpochSampler(20, seed=1)
    orders = []
    for epoch in (0, 1, 0):
        sampler.set_epoch(epoch)
        orders.append([i for i, _ in sampler])
    assert sorted(orders[0]) == list(range(20)) and orders[0] == orders[2] != orders[1]
    assert orders[0] == torch.randperm(20, generator=torch.Generator().manual_seed(loading.epoch_seed(1, 0))).tolist()


def test_loader_workers_follow_the_request_then_the_device_and_cpus(monkeypatch):
    monkeypatch.setattr(loading, "usable_cpus", lambda: 16)
    assert loader_workers(3, torch.device("cuda")) == 3 and loader_workers(0, torch.device("cuda")) == 0
    assert loader_workers(None, CPU) == 0  # a CPU's cores run the model
    assert loader_workers(None, torch.device("cuda")) == 8  # at most 8
    assert loader_workers(None, torch.device("cuda"), share=4) == 3  # 4 worker processes split 16 CPUs
    monkeypatch.setattr(loading, "usable_cpus", lambda: 1)
    assert loader_workers(None, torch.device("cuda")) == 1


def test_training_is_the_same_with_loader_workers(backbone, class_info, smoke_data, smoke_transforms):
    data = TransformedDataset(smoke_data.train, smoke_transforms[0])
    cfg = TrainRecipe(epochs=2, warmup_epochs=0, batch_size=64)
    runs = []
    for workers in (0, 2):
        torch.manual_seed(0)
        method = CoOp(backbone, class_info, CoOpConfig(n_ctx=4))
        runs.append((train(method, data, cfg, seed=1, device=CPU, workers=workers)["loss_history"],
                     method.prompt_learner.ctx.detach().clone()))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])
