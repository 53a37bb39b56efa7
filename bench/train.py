"""Training loop and prediction, with AMP on GPU, a progress bar and checkpoints.

The recipe (:class:`bench.recipes.TrainRecipe`) sets the optimiser, the
per-epoch schedule (:func:`bench.recipes.lr_for_epoch`), batch size, drop-last
and precision.  Each epoch's shuffling and augmentation are seeded by (seed,
epoch), so a run resumed from a checkpoint gives the same result as an
uninterrupted one.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional, Tuple

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .atomic import save_torch
from .errors import BenchError
from .method import Method
from .recipes import TrainRecipe, lr_for_epoch


def make_optimizer(params, cfg: TrainRecipe) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def amp_dtype(device: torch.device, precision: str) -> Optional[torch.dtype]:
    """The autocast dtype for ``precision`` ("amp"/"fp32"), or None for fp32 (always on CPU)."""
    if device.type != "cuda" or precision != "amp":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def precision_name(device: torch.device, precision: str) -> str:
    """What actually ran, for the record: "fp32", "bf16-autocast" or "fp16-autocast"."""
    dtype = amp_dtype(device, precision)
    return "fp32" if dtype is None else {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype] + "-autocast"


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def train(
    method: Method,
    dataset: Dataset,
    cfg: TrainRecipe,
    seed: int,
    device: torch.device,
    checkpoint: Optional[Path] = None,
    key: str = "",
    progress: bool = False,
    stop_after: Optional[int] = None,
) -> dict:
    """Train ``method``'s trainable parameters; returns a summary for the record.

    With ``checkpoint`` set, state is saved after every epoch and training
    resumes from it.  ``stop_after`` ends early after that many epochs (for
    tests of resuming).
    """
    params = method.trainable_parameters()
    if not method.trains or not params:
        return {"epochs": 0, "loss_history": [], "resumed_from_epoch": None}
    optimizer = make_optimizer(params, cfg)
    dtype = amp_dtype(device, cfg.precision)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    start, history, resumed = 0, [], None
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        if state.get("key") == key:
            method.load_trainable_state(state["trainable"])
            optimizer.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            start, history, resumed = state["epoch"], list(state["loss_history"]), state["epoch"]
    for epoch in range(start, cfg.epochs):
        if stop_after is not None and epoch >= stop_after:
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_for_epoch(cfg, epoch)
        generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
        torch.manual_seed(epoch_seed(seed, epoch))  # augmentation draws from the global RNG
        loader = DataLoader(
            dataset, batch_size=cfg.batch_size, shuffle=True, generator=generator,
            num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
            drop_last=cfg.drop_last and len(dataset) >= cfg.batch_size,  # Dassl's rule
        )
        method.train()
        total, count = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
        for images, labels in bar:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            with autocast(device, dtype):
                loss = method.loss(method(images), labels)
            if not torch.isfinite(loss):
                raise BenchError(f"training diverged: the loss is {loss.item()} in epoch {epoch + 1}; "
                                 "try a lower train.lr, or train.precision: fp32")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += loss.item() * labels.numel()
            count += labels.numel()
            bar.set_postfix(loss=f"{total / count:.4f}")
        history.append(total / max(count, 1))
        if checkpoint is not None:
            save_torch(
                checkpoint,
                {
                    "key": key,
                    "epoch": epoch + 1,
                    "trainable": method.trainable_state(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "loss_history": history,
                },
            )
    return {"epochs": len(history), "loss_history": history, "resumed_from_epoch": resumed}


@torch.no_grad()
def predict(
    method: Method, dataset: Dataset, batch_size: int, device: torch.device, precision: str = "fp32",
    num_workers: int = 0, progress: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels for every item of ``dataset``."""
    method.eval()
    dtype = amp_dtype(device, precision)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    all_logits, all_labels = [], []
    for images, labels in tqdm(loader, desc="eval", disable=not progress, leave=False):
        with autocast(device, dtype):
            logits = method(images.to(device))
        all_logits.append(logits.float().cpu())
        all_labels.append(labels)
    return torch.cat(all_logits), torch.cat(all_labels)
