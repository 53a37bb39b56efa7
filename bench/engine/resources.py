"""What every cell of a protocol shares: the frozen backbone, the training and evaluation data, and the
feature caches, built once and handed to each cell; runners of one protocol that differ only in method
settings (a figure's sweep) share one set::

    resources = ProtocolResources(protocol, data_root=None, device=torch.device("cpu"))
    resources.spaces(seed=1).train_info, resources.backbone()
    share_resources(runners)      # one backbone and one training set per protocol, not one per runner
"""
from __future__ import annotations

import dataclasses
import json
from typing import Callable, Dict, List, Optional

from bench.config.catalog import cache_root
from bench.config.protocol import Protocol
from bench.core.errors import BenchError, MissingData, message_of
from bench.core.registry import BACKBONES, DATASETS
from bench.data import DatasetBundle
from .evaluation import LabelSpaces, label_spaces
from .features import FeatureCache, images_id


class ProtocolResources:
    def __init__(self, protocol: Protocol, data_root: Optional[str], device, log: Callable[[str], None] = print):
        self.protocol, self.data_root, self.device, self.log = protocol, data_root, device, log
        self._spaces: Dict[Optional[int], LabelSpaces] = {}  # by data seed (None: the data take none)
        self._eval_data: Dict[int, DatasetBundle] = {}  # evaluation index -> its dataset
        self._backbone = None
        self._feature_caches: Dict[str, FeatureCache] = {}  # eval precision -> the run's feature cache

    def check_data(self) -> None:
        """Build the first seed's data, then let it go (a multi-protocol run checks every table cell first)."""
        self.spaces(self.protocol.seeds[0])
        self._spaces.clear()
        self._eval_data.clear()

    def dataset_config(self, cfg, moves_with_root: bool = True):
        """``cfg`` with ``--data-root`` applied (to the training dataset and blocks merged onto it)."""
        if self.data_root is None or not moves_with_root:
            return cfg
        if not hasattr(cfg, "root"):
            raise BenchError(f"--data-root: dataset '{self.protocol.dataset_name}' reads no files")
        return dataclasses.replace(cfg, root=self.data_root)

    @staticmethod
    def build(name: str, cfg, seed: int) -> DatasetBundle:
        entry = DATASETS.get(name)
        return entry.build(cfg, seed) if getattr(entry, "seeded", False) else entry.build(cfg)

    def spaces(self, seed: int) -> LabelSpaces:
        """What a cell of ``seed`` trains on and is evaluated on (bench.engine.evaluation).  Built once per
        run, or once per seed for datasets whose few-shot draw follows the seed (Dassl's)."""
        proto = self.protocol
        key = seed if getattr(DATASETS.get(proto.dataset_name), "seeded", False) else None
        if key not in self._spaces:
            self._spaces.clear()  # one training set in memory at a time
            problems: List[str] = []  # every dataset that cannot be read, not the first alone
            train = attempt(problems, lambda: self.build(proto.dataset_name, self.dataset_config(proto.dataset), seed))
            data = [attempt(problems, lambda i=i: self.eval_data(i, train)) for i in range(len(proto.evaluations))]
            if problems:
                raise MissingData(problems)
            self._spaces[key] = label_spaces(train, [(spec.plan, d) for spec, d in zip(proto.evaluations, data)])
        return self._spaces[key]

    def eval_data(self, index: int, train: DatasetBundle) -> DatasetBundle:
        """The dataset of declared evaluation ``index``: the training one, or its own (built once;
        a test set does not depend on the seed, so seeded datasets get seed 0)."""
        spec = self.protocol.evaluations[index]
        if spec.dataset_name is None:
            return train
        if index not in self._eval_data:
            cfg = self.dataset_config(spec.dataset, spec.inherits)
            self._eval_data[index] = self.build(spec.dataset_name, cfg, 0)
        return self._eval_data[index]

    def backbone(self):
        """The frozen backbone, built once per run and shared by its cells."""
        if self._backbone is None:
            entry = BACKBONES.get(self.protocol.backbone_name)
            self._backbone = entry.build(self.protocol.backbone, device=str(self.device))
        return self._backbone

    def cached(self, precision: str, dataset, transform, views: int, split: str, seed: int, workers: int):
        """``dataset`` as the frozen features of ``views`` views under ``transform`` (train.feature_cache)."""
        if precision not in self._feature_caches:
            self._feature_caches[precision] = FeatureCache(cache_root(), self.backbone(),
                                                           self.protocol.identity()["backbone"], self.device,
                                                           precision, self.log)
        named = images_id(self.protocol, split, seed)
        return self._feature_caches[precision].views(dataset, transform, views, named, workers)


def attempt(problems: List[str], build: Callable[[], DatasetBundle]) -> Optional[DatasetBundle]:
    """``build()``, or None with its error's message added to ``problems``."""
    try:
        return build()
    except BenchError as err:
        problems += getattr(err, "problems", [message_of(err)])
        return None


def share_resources(runners: list) -> None:
    """Runners of one protocol (same configuration, data and device) use the first one's resources."""
    first: Dict[str, ProtocolResources] = {}
    for runner in runners:
        key = json.dumps([runner.protocol.identity(), runner.options.data_root, str(runner.device)], sort_keys=True)
        runner.resources = first.setdefault(key, runner.resources)
