"""Methods that fit themselves on frozen image features instead of the engine's epoch loop.

A closed-form or full-batch method (LFA: a Procrustes solution refined by full-batch steps) sets
``fit_views`` on its class (``"five_crop"``, :data:`bench.model.transforms.VIEWS`) and has
``trains = False``: no optimiser, scheduler or checkpoint of the engine acts on it, so only its own
options (its ``Config``: iterations, learning rate, ...) and the recipe's evaluation fields enter the
cell key.  After ``prepare()``, the runner computes the raw frozen features of every training image
under that view through the protocol's feature cache (deterministic crops: caching them changes
nothing but time) and calls ``method.fit(features [N, crops, D], labels [N], seed)`` once::

    fit_own(runner, method, spaces.train, recipe, seed)     # nothing for a method without fit_views
"""
from __future__ import annotations

import torch

from bench.model.transforms import view_transform


def fit_own(runner, method, dataset, recipe, seed: int) -> None:
    """Fit ``method`` on the frozen features of ``dataset``'s images under its ``fit_views`` view, if it
    names one (``runner``: the :class:`bench.engine.runner.Runner` whose caches and backbone it uses)."""
    view = getattr(type(method), "fit_views", None)
    if view is None:
        return
    transform = view_transform(view, runner.protocol.transforms, runner.backbone().image_size)
    cached = runner.cached(recipe, dataset, transform, 1, f"train {view}", seed)
    device = runner.backbone().device
    method.fit(cached.features[:, 0].to(device), torch.as_tensor(cached.labels, device=device), seed)
