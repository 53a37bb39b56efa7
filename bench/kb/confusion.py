"""The confusing class of each class, for MDPR's Differential-Features prompts (methods_spec §7.3, REC A7).

With labelled training images (long-tailed protocols), from zero-shot CLIP's confusions on them::

    Kh[i, j] = #{x in train_i : argmax p(.|x) = j},   Ks[i, j] = sum_{x in train_i} p(j|x)
    partner(i) = argmax_{j != i} (Kh[i, j], Ks[i, j], -j)     (lexicographic)

falling back to the nearest zero-shot text embedding when class ``i`` has no confusions at all.  Without
them (base-to-new: new classes have no labelled images), the nearest text embedding for every class::

    partners, source = pool_partners(backbone, classes, train_images)   # None: base-to-new, text only
    partners = extend_partners(backbone, partners, other_dataset_classes)  # text neighbours among them
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch.utils.data import DataLoader, Dataset


def text_partners(classnames: Sequence[str], text: torch.Tensor) -> Dict[str, str]:
    """Each class's nearest other class by cosine of normalised text features (ties: lower index)."""
    if len(classnames) < 2:
        return {name: name for name in classnames}
    sim = text.double() @ text.double().t()
    sim.fill_diagonal_(-float("inf"))
    return {name: classnames[int(sim[i].argmax())] for i, name in enumerate(classnames)}


def zeroshot_partners(classnames: Sequence[str], text: torch.Tensor, probabilities: torch.Tensor,
                      labels: torch.Tensor) -> Dict[str, str]:
    """``probabilities`` ``[N, C]``: zero-shot softmax of the training images, ``labels`` their classes."""
    c = len(classnames)
    hard = torch.zeros(c, c, dtype=torch.float64)
    hard.index_put_((labels.long(), probabilities.argmax(1).long()), torch.ones(len(labels), dtype=torch.float64),
                    accumulate=True)
    soft = torch.zeros(c, c, dtype=torch.float64).index_add_(0, labels.long(), probabilities.double())
    nearest = text_partners(classnames, text)
    partners = {}
    for i, name in enumerate(classnames):
        others = [j for j in range(c) if j != i]
        if not others or (hard[i, others].sum() == 0 and soft[i, others].sum() == 0):
            partners[name] = nearest[name]
            continue
        best = max(others, key=lambda j: (hard[i, j].item(), soft[i, j].item(), -j))
        partners[name] = classnames[best]
    return partners


@torch.no_grad()
def zeroshot_probabilities(backbone, images: Dataset, text: torch.Tensor, batch_size: int = 128):
    """Zero-shot softmax ``[N, C]`` (scale ``s``) and labels of ``images`` (test transform applied)."""
    probs: List[torch.Tensor] = []
    labels: List[torch.Tensor] = []
    for x, y in DataLoader(images, batch_size=batch_size, shuffle=False):
        feats = backbone.encode_image(x.to(backbone.device), normalize=True)
        logits = backbone.logit_scale * feats.float() @ text.to(feats.device).float().t()
        probs.append(logits.softmax(-1).cpu())
        labels.append(torch.as_tensor(y))
    return torch.cat(probs), torch.cat(labels)


def template_features(backbone, classnames: Sequence[str], template: str = "a photo of a {}.") -> torch.Tensor:
    """Normalised frozen text features of ``template`` for each class (CPU, float32)."""
    return backbone.encode_texts([template.format(c) for c in classnames]).float().cpu()


def pool_partners(backbone, pool: Sequence[str], train_images: Optional[Dataset] = None) -> Tuple[Dict[str, str], str]:
    """Partners of the training dataset's classes (``pool``: training and new classes) and how they
    were found: zero-shot confusions on ``train_images`` (every class has labelled images), else
    (base-to-new) the nearest text neighbour."""
    text = template_features(backbone, pool)
    if train_images is None:
        return text_partners(pool, text), "text-nearest"
    probs, labels = zeroshot_probabilities(backbone, train_images, text)
    return zeroshot_partners(pool, text, probs, labels), "zeroshot-train"


def extend_partners(backbone, known: Mapping[str, str], names: Sequence[str]) -> Dict[str, str]:
    """``known``, plus a partner for each of ``names`` it lacks: its nearest text neighbour among ``names``
    (another dataset's classes have no labelled images here)."""
    if all(n in known for n in names):
        return dict(known)
    near = text_partners(list(names), template_features(backbone, names))
    return {**known, **{n: near[n] for n in names if n not in known}}
