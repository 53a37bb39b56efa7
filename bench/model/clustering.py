"""Clustering of frozen class features: CPT's cluster-invariant space (methods_spec §9.2).

The four choices of CPT's Table 5, each seeded, and the cosine silhouette that picks the best
of several seeds:

- ``cosine_kmeans``: spherical k-means (assign by the largest cosine, centroid = normalised mean);
- ``euclidean_kmeans``: k-means on the raw features;
- ``spectral_cosine``: Ng-Jordan-Weiss spectral clustering of the affinity ``max(cos, 0)``
  (zero diagonal): the top-k eigenvectors of ``D^-1/2 A D^-1/2``, rows normalised, then k-means;
- ``kmedoids_cosine``: k-medoids on ``1 - cos`` (alternating assignment and medoid update).

k-means++ (k-medoids++) initialisation, at most 300 iterations.  Everything runs in float64
numpy on the CPU, so a partition depends only on the features and the seed, not on the device::

    labels = cluster_classes(text_features)                      # 16 classes per cluster
    labels = cluster_classes(text_features, num_clusters=3, method="kmedoids_cosine")
    choice = best_partition(text_features, num_clusters=3)       # labels, seed, silhouette
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, List, Optional

import numpy as np
import torch

from bench.core.errors import BenchError

METHODS = ("cosine_kmeans", "euclidean_kmeans", "spectral_cosine", "kmedoids_cosine")
MAX_ITER = 300


@dataclass(frozen=True)
class Partition:
    labels: List[int]  # cluster id per row, numbered by first appearance
    seed: int  # the k-means seed that produced it
    silhouette: Optional[float]  # cosine silhouette; None when it was not needed (1 or K clusters)


def round_half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


def clusters_for(num_rows: int, cluster_size: int) -> int:
    """``max(1, round_half_up(K / cluster_size))``: 24 -> 2, 40 -> 3, 19 -> 1 at size 16."""
    return max(1, round_half_up(Fraction(num_rows, cluster_size)))


def _as_array(features) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().double().numpy()
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise BenchError(f"clustering needs a non-empty [rows, dims] feature matrix, got shape {x.shape}")
    return x


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _distances(x: np.ndarray, centers: np.ndarray, spherical: bool) -> np.ndarray:
    """Rows x centers: 1 - cos for spherical k-means, squared Euclidean distance otherwise."""
    if spherical:
        return 1.0 - x @ centers.T
    sq = (x * x).sum(1)[:, None] - 2.0 * x @ centers.T + (centers * centers).sum(1)[None, :]
    return np.maximum(sq, 0.0)


def _plus_plus(x: np.ndarray, k: int, rng: np.random.Generator, spherical: bool) -> List[int]:
    """k-means++ rows: the first uniformly, each next one with probability ∝ distance to the nearest."""
    chosen = [int(rng.integers(len(x)))]
    nearest = _distances(x, x[chosen], spherical)[:, 0]
    for _ in range(1, k):
        weights = np.maximum(nearest, 0.0)
        weights[chosen] = 0.0
        if weights.sum() <= 0:  # every remaining row coincides with a center: pick one uniformly
            weights = np.ones(len(x))
            weights[chosen] = 0.0
        pick = int(rng.choice(len(x), p=weights / weights.sum()))
        chosen.append(pick)
        nearest = np.minimum(nearest, _distances(x, x[pick : pick + 1], spherical)[:, 0])
    return chosen


def _fill_empty(x, centers, labels, spherical) -> np.ndarray:
    """Give each empty cluster (in id order) the row farthest from its own center, taken from a
    cluster with more than one row; ties go to the lowest row index."""
    labels = labels.copy()
    counts = np.bincount(labels, minlength=len(centers))
    for empty in np.flatnonzero(counts == 0):
        own = _distances(x, centers, spherical)[np.arange(len(x)), labels]
        own[counts[labels] <= 1] = -np.inf
        row = int(np.argmax(own))
        counts[labels[row]] -= 1
        labels[row], counts[empty] = empty, 1
    return labels


def _centers(x, labels, k, spherical) -> np.ndarray:
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, labels, x)
    means = sums / np.bincount(labels, minlength=k)[:, None]
    return _normalise(means) if spherical else means


def kmeans(features, k: int, seed: int, method: str = "cosine_kmeans", max_iter: int = MAX_ITER) -> List[int]:
    """Cluster the rows of ``features`` into ``k`` non-empty clusters by ``method`` (one of
    :data:`METHODS`, k-means or not); deterministic for a seed."""
    if method not in METHODS:
        raise BenchError(f"unknown clustering '{method}' (choices: {', '.join(METHODS)})")
    x = _as_array(features)
    if not 1 <= k <= len(x):
        raise BenchError(f"cannot make {k} clusters of {len(x)} rows")
    rng = np.random.default_rng(seed)
    if method == "kmedoids_cosine":
        return _renumber(_kmedoids(_normalise(x), k, rng, max_iter))
    if method == "spectral_cosine":
        x, method = _spectral_embedding(_normalise(x), k), "euclidean_kmeans"
    spherical = method == "cosine_kmeans"
    return _renumber(_lloyd(_normalise(x) if spherical else x, k, rng, spherical, max_iter))


def _lloyd(x, k, rng, spherical, max_iter) -> np.ndarray:
    centers, labels = x[_plus_plus(x, k, rng, spherical)].copy(), None
    for _ in range(max_iter):
        new = _fill_empty(x, centers, np.argmin(_distances(x, centers, spherical), axis=1), spherical)
        if labels is not None and np.array_equal(new, labels):
            break
        labels, centers = new, _centers(x, new, k, spherical)
    return labels


def _spectral_embedding(x: np.ndarray, k: int) -> np.ndarray:
    """Rows of the top-k eigenvectors of the normalised cosine affinity, each scaled to unit length."""
    affinity = np.clip(x @ x.T, 0.0, None)
    np.fill_diagonal(affinity, 0.0)
    scale = 1.0 / np.sqrt(np.maximum(affinity.sum(1), 1e-12))
    _, vectors = np.linalg.eigh(scale[:, None] * affinity * scale[None, :])  # eigenvalues ascending
    return _normalise(vectors[:, -k:])


def _kmedoids(x: np.ndarray, k: int, rng, max_iter) -> np.ndarray:
    """Alternate: assign each row to its nearest medoid (1 - cos), then make each cluster's medoid
    the member with the smallest summed distance to the others (ties: the lowest row)."""
    dist = np.clip(1.0 - x @ x.T, 0.0, 2.0)
    medoids = np.array(_plus_plus(x, k, rng, spherical=True))
    for _ in range(max_iter):
        labels = np.argmin(dist[:, medoids], axis=1)
        labels[medoids] = np.arange(k)  # a medoid stays in its own cluster even when rows coincide
        new = np.array([members[np.argmin(dist[np.ix_(members, members)].sum(1))]
                        for members in (np.flatnonzero(labels == c) for c in range(k))])
        if np.array_equal(new, medoids):
            break
        medoids = new
    return labels


def _renumber(labels: np.ndarray) -> List[int]:
    """Cluster ids in order of first appearance, so equal partitions compare equal."""
    order = {}
    return [order.setdefault(int(c), len(order)) for c in labels]


def silhouette(features, labels: Iterable[int]) -> float:
    """Mean cosine silhouette (sklearn's ``silhouette_score(metric='cosine')``): per row
    ``(b - a) / max(a, b)`` with ``a`` the mean distance to the rest of its cluster and ``b`` the
    smallest mean distance to another cluster; rows of singleton clusters score 0."""
    x = _normalise(_as_array(features))
    labels = np.asarray(list(labels))
    ids, labels = np.unique(labels, return_inverse=True)
    if not 2 <= len(ids) <= len(x) - 1:
        raise BenchError(f"the silhouette needs 2 to {len(x) - 1} clusters, got {len(ids)}")
    dist = np.clip(1.0 - x @ x.T, 0.0, 2.0)
    np.fill_diagonal(dist, 0.0)
    onehot = np.eye(len(ids))[labels]
    sums, sizes = dist @ onehot, onehot.sum(0)
    rows = np.arange(len(x))
    own_size = sizes[labels]
    a = sums[rows, labels] / np.maximum(own_size - 1, 1)
    means = sums / sizes[None, :]
    means[rows, labels] = np.inf
    b = means.min(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.nan_to_num((b - a) / np.maximum(a, b))
    s[own_size == 1] = 0.0
    return float(s.mean())


def best_partition(features, cluster_size: int = 16, num_clusters: Optional[int] = None,
                   seeds: Iterable[int] = range(10), method: str = "cosine_kmeans") -> Partition:
    """The partition (by ``method``) with the highest cosine silhouette over ``seeds`` (ties: the first
    seed); with one cluster, or one per row, the first seed's partition."""
    x = _as_array(features)
    k = clusters_for(len(x), cluster_size) if num_clusters is None else num_clusters
    seeds = list(seeds)
    if not seeds:
        raise BenchError("clustering needs at least one seed")
    if not 1 <= k <= len(x):
        raise BenchError(f"cannot make {k} clusters of {len(x)} classes")
    if k in (1, len(x)):
        return Partition(kmeans(x, k, seeds[0], method), seeds[0], None)
    best = None
    for seed in seeds:
        labels = kmeans(x, k, seed, method)
        score = silhouette(x, labels)
        if best is None or score > best.silhouette:
            best = Partition(labels, seed, score)
    return best


def cluster_classes(features, cluster_size: int = 16, num_clusters: Optional[int] = None,
                    seeds: Iterable[int] = range(10), method: str = "cosine_kmeans") -> List[int]:
    """Cluster id per class (methods_spec §9.2); see :func:`best_partition`."""
    return best_partition(features, cluster_size, num_clusters, seeds, method).labels
