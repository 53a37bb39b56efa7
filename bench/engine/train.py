"""Training loop and prediction, with AMP on GPU, a progress bar and checkpoints.

The recipe (:class:`bench.config.recipes.TrainRecipe`) sets the optimiser, the
per-epoch schedule (:func:`bench.config.recipes.lr_for_epoch`), batch size, drop-last
and precision.  Each epoch's shuffling is seeded by (seed, epoch) and each image's
augmentation by (seed, epoch, image) (:mod:`bench.engine.loading`), so a run resumed from a
checkpoint gives the same result as an uninterrupted one, with any number of loader workers.
"""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Callable, Optional, Tuple

import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from bench.config.recipes import TrainRecipe, lr_for_epoch
from bench.core.atomic import save_torch, set_aside_note
from bench.core.errors import BenchError, reason, warn
from bench.model.method import Method, optimizer_groups
from .loading import TrainLoader, epoch_seed, eval_loader, loader_workers
from .usage import per_second


def make_optimizer(params, cfg: TrainRecipe) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":  # Dassl's: L2 weight decay added to the gradient (coupled), unlike AdamW
        return torch.optim.Adam(params, lr=cfg.lr, eps=cfg.eps, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, eps=cfg.eps, weight_decay=cfg.weight_decay)


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(device: torch.device, precision: str, assumed: Optional[str] = None) -> Optional[torch.dtype]:
    """The autocast dtype for ``precision`` ("amp"/"fp32"), or None for fp32 (always on CPU).
    ``assumed`` ("bf16", "fp16"): a target GPU's, for keys only (`bench plan --amp-dtype`)."""
    if device.type != "cuda" or precision != "amp":
        return None
    if assumed in AMP_DTYPES:
        return AMP_DTYPES[assumed]
    if not torch.cuda.is_available():  # keys for a GPU that is not here: bf16, as A100s and newer run
        return torch.bfloat16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def precision_name(device: torch.device, precision: str, assumed: Optional[str] = None) -> str:
    """What actually ran, for the record: "fp32", "bf16-autocast" or "fp16-autocast"."""
    dtype = amp_dtype(device, precision, assumed)
    return "fp32" if dtype is None else {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype] + "-autocast"


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


CHECKPOINT_FIELDS = {"key": str, "epoch": int, "trainable": dict, "optimizer": dict, "scaler": dict,
                     "loss_history": list}
# Saved only by runs that evaluate after every epoch (``train(after_epoch=...)``): one entry per epoch.
EPOCH_METRICS = "epoch_metrics"


def read_checkpoint(path: Path, key: str, method: Method, epochs: int, device: torch.device,
                    curve: bool = False) -> Optional[dict]:
    """The checkpoint at ``path`` if it resumes this cell; a damaged one is set aside with a warning.
    ``curve``: the run evaluates after every epoch, so the checkpoint must hold each epoch's entry."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # truncated, empty or not a torch file: many exception types
        return _discard(path, f"cannot be read ({reason(err)})")
    if not isinstance(state, dict) or any(not isinstance(state.get(k), tp) for k, tp in CHECKPOINT_FIELDS.items()):
        return _discard(path, "is not a bench checkpoint")
    if state["key"] != key:
        return None  # another config's checkpoint in a folder of the same key prefix: overwritten after epoch 1
    shapes = {name: tuple(p.shape) for name, p in method.named_parameters() if p.requires_grad}
    saved = {name: tuple(getattr(t, "shape", ())) for name, t in state["trainable"].items()}
    if saved != shapes or not 1 <= state["epoch"] <= epochs or len(state["loss_history"]) != state["epoch"]:
        return _discard(path, "does not match this cell's parameters or epochs")
    entries = state.get(EPOCH_METRICS)
    if entries is not None and (not isinstance(entries, list) or len(entries) != state["epoch"]):
        return _discard(path, "does not match this cell's parameters or epochs")
    if curve and entries is None:
        return None  # its first epochs were not evaluated, so it cannot resume a curve (its key differs anyway)
    return state


def make_scaler(dtype: Optional[torch.dtype]) -> torch.amp.GradScaler:
    return torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)


def restore(state: dict, optimizer, scaler, method: Method, path: Path) -> bool:
    """Load a checkpoint's optimizer, scaler and parameters; False (file set aside) if they do not fit."""
    try:
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:
            for p in group["params"]:
                for value in optimizer.state.get(p, {}).values():
                    if torch.is_tensor(value) and value.dim() and value.shape != p.shape:
                        raise ValueError(f"optimizer state of shape {tuple(value.shape)} for {tuple(p.shape)}")
        scaler.load_state_dict(state["scaler"])
        method.load_trainable_state(state["trainable"])
        method.load_extra_state(state.get("extra", {}))
        return True
    except (KeyError, ValueError, RuntimeError, TypeError) as err:
        _discard(path, f"cannot be restored ({reason(err)})")
        return False


def _discard(path: Path, problem: str) -> None:
    warn(f"checkpoint '{path}' {problem}; {set_aside_note(path)}, training starts over")
    return None


def train_step(method: Method, optimizer, scaler, dtype: Optional[torch.dtype], images: torch.Tensor,
               labels: torch.Tensor, grad_clip: Optional[float] = None) -> float:
    """One optimizer step on a batch already on the device; the batch's mean loss (a non-finite loss
    is returned without stepping).  ``grad_clip``: the gradients' total norm is clipped to it first."""
    with autocast(images.device, dtype):
        loss = method.loss(method(images), labels)
    value = loss.item()
    if not math.isfinite(value):
        return value
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip is not None:
        scaler.unscale_(optimizer)  # clip the true gradients, not the loss-scaled ones
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return value


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
    log: Optional[Callable[[str], None]] = None,
    workers: Optional[int] = None,
    after_epoch: Optional[Callable[[int], dict]] = None,
) -> dict:
    """Train ``method``'s trainable parameters; returns a summary for the record.

    With ``checkpoint`` set, state is saved after every epoch and training
    resumes from it.  ``stop_after`` ends early after that many epochs (for
    tests of resuming).  ``log`` gets one line per epoch (for logs without bars).  ``workers``: data
    loading processes (None: :func:`bench.engine.loading.loader_workers`'s choice).
    ``after_epoch(epoch)`` (1-based) runs after each epoch's steps, before its checkpoint, and returns
    that epoch's metrics; it must leave the method as it found it (label space, train mode).  The
    summary then has ``epoch_metrics``, ``[{"epoch": 1, "metrics": ...}, ...]`` over every epoch trained
    (those before a resume come from the checkpoint); empty for a method that does not train.
    """
    params = method.trainable_parameters()
    if not method.trains or not params:
        return {"epochs": 0, "loss_history": [], "resumed_from_epoch": None, "epoch_seconds": [],
                "images_per_second": None, **({EPOCH_METRICS: []} if after_epoch is not None else {})}
    optimizer = make_optimizer(optimizer_groups(method, cfg.lr), cfg)
    dtype = amp_dtype(device, cfg.precision)
    scaler = make_scaler(dtype)
    start, history, resumed, seconds, seen, curve = 0, [], None, [], 0, []
    state = None if checkpoint is None else read_checkpoint(checkpoint, key, method, cfg.epochs, device,
                                                            curve=after_epoch is not None)
    if state is not None and not restore(state, optimizer, scaler, method, checkpoint):
        optimizer, scaler, state = make_optimizer(optimizer_groups(method, cfg.lr), cfg), make_scaler(dtype), None
    if state is not None:
        start, history, resumed = state["epoch"], list(state["loss_history"]), state["epoch"]
        curve = list(state.get(EPOCH_METRICS) or [])
    loader = TrainLoader(dataset, cfg.batch_size, cfg.drop_last, seed, device, loader_workers(workers, device))
    for epoch in range(start, cfg.epochs):
        if stop_after is not None and epoch >= stop_after:
            break
        lr, started = lr_for_epoch(cfg, epoch), time.time()
        for group in optimizer.param_groups:
            group["lr"] = lr_for_epoch(cfg, epoch, group.get("lr_scale", 1.0))
        torch.manual_seed(epoch_seed(seed, epoch))  # what the method draws (augmentation draws per image)
        method.train()
        method.start_epoch(epoch, cfg.epochs, len(loader))
        total, count = 0.0, 0
        bar = tqdm(loader.epoch(epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
        for images, labels in bar:
            loss = train_step(method, optimizer, scaler, dtype, images.to(device, non_blocking=True),
                              labels.to(device, non_blocking=True), cfg.grad_clip)
            if not math.isfinite(loss):
                raise BenchError(f"training diverged: the loss is {loss} in epoch {epoch + 1}; "
                                 "try a lower train.lr, or train.precision: fp32")
            total += loss * labels.numel()
            count += labels.numel()
            bar.set_postfix(loss=f"{total / count:.4f}")
        history.append(total / max(count, 1))
        seconds.append(time.time() - started)
        seen += count
        if log is not None:
            log(f"epoch {epoch + 1}/{cfg.epochs}: loss {history[-1]:.4f}, lr {lr:.3g}, {seconds[-1]:.1f}s")
        if after_epoch is not None:  # outside the epoch's timing; the next epoch reseeds what it draws
            curve.append({"epoch": epoch + 1, "metrics": after_epoch(epoch + 1)})
        if checkpoint is not None:
            save_torch(
                checkpoint,
                {
                    "key": key,
                    "epoch": epoch + 1,
                    "trainable": method.trainable_state(),
                    "extra": method.extra_state(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "loss_history": history,
                    **({EPOCH_METRICS: curve} if after_epoch is not None else {}),
                },
            )
    # the epochs this process ran (a resumed run's earlier ones ran elsewhere): wall time and throughput
    return {"epochs": len(history), "loss_history": history, "resumed_from_epoch": resumed,
            "epoch_seconds": seconds, "images_per_second": per_second(seen, sum(seconds)),
            **({EPOCH_METRICS: curve} if after_epoch is not None else {})}


@torch.no_grad()
def predict(
    method: Method, dataset: Dataset, batch_size: int, device: torch.device, precision: str = "fp32",
    num_workers: Optional[int] = 0, progress: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels for every item of ``dataset`` (``num_workers`` None: sized to the CPUs on a GPU)."""
    method.eval()
    dtype = amp_dtype(device, precision)
    loader = eval_loader(dataset, batch_size, device, loader_workers(num_workers, device))
    all_logits, all_labels = [], []
    with method.one_label_space():  # image-independent class prompts are encoded once, not per batch
        for images, labels in tqdm(loader, desc="eval", disable=not progress, leave=False):
            with autocast(device, dtype):
                logits = method(images.to(device, non_blocking=True))
            all_logits.append(logits.float().cpu())
            all_labels.append(labels)
    logits = torch.cat(all_logits)
    finite = torch.isfinite(logits).all(dim=1)
    if not bool(finite.all()):  # argmax of NaN is class 0: stored, it would read as a real (bad) result
        raise BenchError(f"evaluation gave non-finite logits (NaN or inf) for {int((~finite).sum())} of "
                         f"{len(finite)} images; the model diverged, or the evaluation precision overflows: "
                         "try train.eval_precision: fp32")
    return logits, torch.cat(all_labels)
