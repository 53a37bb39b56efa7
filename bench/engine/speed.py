"""How fast each method trains and evaluates, against the naive path in the same run (`bench bench`).

The naive path is what a straight port of the official code runs: the full 77-token text tower,
class prompts re-encoded for every batch (:func:`bench.model.shortcuts.naive`), fp32, no worker
processes.  Images are random tensors already in memory, so the figures are the model's, not the
data loader's; weights are random (``pretrained: null``), which costs the same as real ones::

    setup = SpeedSetup(model="ViT-B-16", classes=[100], batch_size=4, steps=2)
    rows = measure(["coop", "maple"], setup, torch.device("cpu"))   # one dict per method and class count
"""
from __future__ import annotations

import contextlib
import copy
import io
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import torch
from torch.utils.data import Dataset

from bench.config.protocol import Protocol, load_protocol, parse_protocol
from bench.core.errors import BenchError, MissingInput
from bench.core.registry import BACKBONES, METHODS, fill_registries
from bench.model.method import ClassInfo
from bench.model.shortcuts import naive
from .usage import available_memory_mb, memory_in_use_mb, peak_memory_mb, release_freed_memory, reset_peak
from .train import amp_dtype, make_optimizer, make_scaler, precision_name, predict, train_step

# a path runs only if its predicted extra memory is at most this share of what is free: the prediction
# scales the smaller label space's linearly, and an out-of-memory kill on a CPU takes every row with it
MEMORY_SHARE = 0.75
OFFLINE_SUFFIX = "_offlinekb"  # mdpr_coop_offlinekb: mdpr_coop with the offline template knowledge base
WORDS = ("red", "tailed", "hawk", "sea", "lion", "paper", "towel", "grand", "piano", "snow", "leopard",
         "garden", "spider", "steel", "bridge", "coffee", "mug", "golden", "retriever", "mountain", "bike")


@dataclass
class SpeedSetup:
    model: str = "ViT-B-16"  # an open_clip model name, built with random weights
    classes: List[int] = field(default_factory=lambda: [100, 1000])
    batch_size: int = 4
    steps: int = 2  # timed training steps and evaluation batches per path
    warmup: int = 0  # untimed steps first (allocator, kernels)
    precision: str = "amp"  # the fast path's; the naive path is fp32
    naive: bool = True  # also time the naive path, and compare the logits
    overrides: Dict[str, dict] = field(default_factory=dict)  # method -> --set options (and "train")
    protocol: Optional[str] = None  # each method's options and recipe from this protocol (default: the lt family's)


def class_names(count: int) -> List[str]:
    """``count`` distinct ImageNet-like names of one to three words or more: class ``i``'s words are
    its digits in base ``len(WORDS)`` (token lengths vary as real names' do)."""
    names = []
    for i in range(count):
        digits, rest = [i % len(WORDS)], i // len(WORDS)
        while rest:
            digits.append(rest % len(WORDS))
            rest //= len(WORDS)
        names.append(" ".join(WORDS[d] for d in reversed(digits)))
    return names


def long_tailed_info(count: int, ratio: float = 100.0, most: int = 1280) -> ClassInfo:
    """``count`` classes whose training counts fall from ``most`` by ``ratio`` (ImageNet-LT's shape)."""
    counts = [max(1, round(most * ratio ** (-i / max(count - 1, 1)))) for i in range(count)]
    return ClassInfo(class_names(count), counts, training_index=list(range(count)))


class RandomImages(Dataset):
    """``length`` random images (fixed by ``seed``) labelled ``i % classes``."""

    def __init__(self, length: int, classes: int, size: int, device: torch.device, seed: int = 0):
        # on the device already: the figures are the model's, not a host-to-device copy's
        self.images = torch.randn(length, 3, size, size, generator=torch.Generator().manual_seed(seed)).to(device)
        self.classes = classes

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], i % self.classes


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Bench:
    """One method on one label space: builds it, then times training steps and evaluation batches."""

    def __init__(self, name: str, backbone, info: ClassInfo, setup: SpeedSetup, device: torch.device,
                 protocol: Protocol):
        self.resolved = protocol.resolve(name, setup.overrides.get(name))
        self.name, self.backbone, self.info, self.setup, self.device = name, backbone, info, setup, device
        size, classes = backbone.image_size, len(info.classnames)
        self.data = RandomImages(setup.batch_size * (setup.steps + setup.warmup), classes, size, device)
        self.built = None

    def build(self):
        """A fresh copy of the method, built and prepared once (prototypes need an image of every class)."""
        if self.built is None:
            torch.manual_seed(0)
            self.built = METHODS.get(self.name)(self.backbone, self.info, self.resolved.options).to(self.device)
            classes = len(self.info.classnames)
            self.built.prepare(RandomImages(classes, classes, self.backbone.image_size, self.device, seed=1))
        return copy.deepcopy(self.built, memo={id(self.backbone): self.backbone})

    @property
    def trains(self) -> bool:
        return METHODS.get(self.name).trains

    def train_rate(self, precision: str) -> float:
        """Training images/s over ``steps`` optimizer steps (after ``warmup``)."""
        method = self.build()
        method.train()
        method.start_epoch(0, 1, self.setup.steps + self.setup.warmup)
        params = method.trainable_parameters()
        optimizer = make_optimizer(params, self.resolved.train)
        dtype = amp_dtype(self.device, precision)
        scaler = make_scaler(dtype)
        batches = [self.batch(i) for i in range(self.setup.warmup + self.setup.steps)]
        for images, labels in batches[:self.setup.warmup]:
            train_step(method, optimizer, scaler, dtype, images, labels)
        synchronize(self.device)
        started = time.perf_counter()
        for images, labels in batches[self.setup.warmup:]:
            train_step(method, optimizer, scaler, dtype, images, labels)
        synchronize(self.device)
        return self.setup.batch_size * self.setup.steps / (time.perf_counter() - started)

    def batch(self, i: int):
        size = self.setup.batch_size
        images, labels = zip(*(self.data[j] for j in range(i * size, (i + 1) * size)))
        return torch.stack(images).to(self.device), torch.tensor(labels, device=self.device)

    def eval_rate(self, precision: str):
        """Evaluation images/s over ``steps`` batches (after ``warmup``), and the logits."""
        method = self.build()
        warm = self.setup.warmup * self.setup.batch_size
        if warm:
            predict(method, torch.utils.data.Subset(self.data, range(warm)), self.setup.batch_size, self.device,
                    precision)
        timed = torch.utils.data.Subset(self.data, range(warm, len(self.data)))
        synchronize(self.device)
        started = time.perf_counter()
        logits, _ = predict(method, timed, self.setup.batch_size, self.device, precision)
        synchronize(self.device)
        return len(timed) / (time.perf_counter() - started), logits


def decode_rate(image_size: int, count: int = 64, shape: tuple = (500, 375)) -> float:
    """JPEG decoding plus the Dassl train transform, images/s on one core: the loading limit per
    worker process (ImageNet's JPEGs average about 500 x 375 pixels)."""
    from PIL import Image

    from bench.config.transforms import TransformConfig
    from bench.model.transforms import build_transforms

    ramp = torch.linspace(0, 255, shape[0]).view(1, -1, 1).expand(shape[1], -1, 3)
    noise = torch.randint(0, 64, (shape[1], shape[0], 3), generator=torch.Generator().manual_seed(0))
    buffer = io.BytesIO()
    Image.fromarray((ramp + noise).clamp(0, 255).to(torch.uint8).numpy()).save(buffer, "JPEG", quality=90)
    encoded, transform = buffer.getvalue(), build_transforms(TransformConfig(), image_size)[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what one loader worker has
    try:
        started = time.perf_counter()
        for _ in range(count):
            transform(Image.open(io.BytesIO(encoded)).convert("RGB"))
        return count / (time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads)


def timed_path(run: Callable[[], Dict], device: torch.device, predicted_mb: Optional[float]) -> Dict:
    """``run()``'s figures, its peak memory and what it added to the memory in use before it;
    skipped (with why) when the ``predicted_mb`` it would add does not fit."""
    release_freed_memory(device)  # else a CPU's resident set still holds the last method's freed memory
    free = available_memory_mb(device)
    if predicted_mb is not None and predicted_mb > MEMORY_SHARE * free:
        return {"skipped": f"needs about {predicted_mb / 1024:.1f} GiB more, {free / 1024:.1f} GiB free"}
    reset_peak(device)
    before = memory_in_use_mb(device)
    figures = run()
    peak = peak_memory_mb(device)
    return {**figures, "peak_memory_mb": peak, "added_memory_mb": peak - before if peak and before else None}


def measure_one(bench: Bench, device: torch.device, fast_precision: str, seen: Dict) -> Dict:
    """Both paths of one method and label space; ``seen`` holds earlier peaks, to skip what cannot fit."""
    classes = len(bench.info.classnames)
    row = {"method": bench.name, "classes": classes, "batch_size": bench.setup.batch_size}
    paths = {"fast": (fast_precision, contextlib.nullcontext)}
    if bench.setup.naive:
        paths["naive"] = ("fp32", naive)
    logits = {}
    for path, (precision, switch) in paths.items():
        earlier = seen.get((bench.name, path))  # (classes, memory added): the text side grows with the classes
        predicted = earlier[1] * classes / earlier[0] if earlier and earlier[0] < classes else None

        def run():
            with switch():
                figures = {"train_images_per_second": bench.train_rate(precision) if bench.trains else None}
                figures["eval_images_per_second"], logits[path] = bench.eval_rate(precision)
            return figures

        row[path] = timed_path(run, device, predicted)
        if row[path].get("added_memory_mb"):
            seen[(bench.name, path)] = (classes, row[path]["added_memory_mb"])
    row["precision"] = precision_name(device, fast_precision)
    if len(logits) == 2:
        row["max_logit_difference"] = float((logits["fast"] - logits["naive"]).abs().max())
    return row


def recipes_protocol(setup: SpeedSetup) -> Protocol:
    """The protocol whose method blocks and family give each method's options and training recipe."""
    if setup.protocol:
        return load_protocol(setup.protocol)
    return parse_protocol({"name": "speed", "family": "lt", "dataset": {"name": "synthetic_lt"},
                           "backbone": {"name": "open_clip", "model": setup.model, "pretrained": None}})


def offline_twin(name: str) -> Optional[str]:
    """The registered method that runs ``name``'s code on inputs built in memory (MDPR's offline
    knowledge base), or None."""
    twin = f"{name}{OFFLINE_SUFFIX}"
    return twin if twin in METHODS.names() else None


def measure_with_inputs(name: str, backbone, info: ClassInfo, setup: SpeedSetup, device: torch.device,
                        protocol: Protocol, seen: Dict) -> Dict:
    """:func:`measure_one`; a method that needs a file only a user has (a knowledge base) is timed as
    its offline twin, which runs the same code on inputs built in memory, and the row says so."""
    try:
        return measure_one(Bench(name, backbone, info, setup, device, protocol), device, setup.precision, seen)
    except MissingInput:
        twin = offline_twin(name)
        if twin is None:
            raise
    row = measure_one(Bench(twin, backbone, info, setup, device, protocol), device, setup.precision, seen)
    return {**row, "method": name, "timed_as": f"timed as {twin} (its knowledge base built in memory)"}


def measure(methods: List[str], setup: SpeedSetup, device: torch.device,
            log: Callable[[str], None] = lambda line: None) -> List[Dict]:
    """One row per method and class count (fewest classes first); a method that needs an input file
    only a user has (a knowledge base) gets a row that says so."""
    backbone = BACKBONES.get("open_clip").build(
        BACKBONES.get("open_clip").Config(model=setup.model, pretrained=None), device=str(device))
    protocol, rows, seen = recipes_protocol(setup), [], {}
    for classes in sorted(setup.classes):
        info = long_tailed_info(classes)
        for name in methods:
            try:
                row = measure_with_inputs(name, backbone, info, setup, device, protocol, seen)
            except MissingInput as err:
                row = {"method": name, "classes": classes, "skipped": str(err)}
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                row = {"method": name, "classes": classes, "skipped": "out of GPU memory; try a smaller --batch-size"}
            log(summary_line(row))
            rows.append(row)
    return rows


def ratio(row: Dict, field_name: str) -> Optional[float]:
    fast, slow = row.get("fast", {}).get(field_name), row.get("naive", {}).get(field_name)
    return fast / slow if fast and slow else None


def summary_line(row: Dict) -> str:
    if "skipped" in row:
        return f"{row['method']} @ {row['classes']} classes: skipped ({row['skipped']})"
    parts = [f"{row['method']} @ {row['classes']} classes:"]
    for field_name, label in (("train_images_per_second", "train"), ("eval_images_per_second", "eval")):
        fast = row["fast"].get(field_name)
        if fast is not None:
            speedup = ratio(row, field_name)
            parts.append(f"{label} {fast:.2f} img/s" + (f" ({speedup:.2f}x naive)" if speedup else ""))
    parts += [f"{path} path skipped ({row[path]['skipped']})" for path in ("fast", "naive")
              if "skipped" in row.get(path, {})]
    parts += [f"({row['timed_as']})"] if "timed_as" in row else []
    return " ".join(parts)


def check_methods(names: List[str], overrides: Dict[str, dict]) -> List[str]:
    """``names`` (``["all"]``: every registered method), each checked to be registered."""
    fill_registries()
    if names == ["all"]:  # a method's offline twin is timed in its row (measure_with_inputs), not twice
        names = [n for n in METHODS.names() if not (n.endswith(OFFLINE_SUFFIX) and n[: -len(OFFLINE_SUFFIX)]
                                                     in METHODS.names())]
    for name in names:
        METHODS.get(name)  # an unknown name is a BenchError with suggestions
    for name in overrides:
        if name not in names:
            raise BenchError(f"--set names method '{name}', which is not being measured")
    if not names:
        raise BenchError("no methods to measure")
    return names
