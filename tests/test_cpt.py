"""CPT (bench.methods.cpt), its clustering (bench.model.clustering) and the global-ETF baseline, against values
computed by hand or with explicit loops, on tiny models and hand-made vectors."""
import itertools
import math
import statistics

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.core.errors import ConfigError
from bench.model.clustering import METHODS, best_partition, cluster_classes, clusters_for, kmeans, silhouette
from bench.model.method import ClassInfo
from bench.methods.cpt import CPT, CPTConfig, Output, cc_loss, cluster_targets, etf_gram, rs_loss, tetf_loss
from bench.methods.cpt_tables import TABLES, reported_rows
from bench.methods.global_etf import GlobalETF, GlobalETFConfig
from bench.methods.ivlp import IVLP, IVLPConfig

TINY = dict(text_depth=2, vision_depth=2)  # the tiny model has 2 layers per tower


@pytest.fixture(scope="module")
def backbone():
    """The smoke model's shapes with random weights: CPT needs no trained CLIP here (and it is fast)."""
    from bench.model.backbone import ClipBackbone, create_open_clip

    return ClipBackbone(*create_open_clip("bench-tiny-vit", None))


def images(n=4, size=32, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def tetf_by_loops(vectors, labels):
    """‖C_m − G*_m‖_F² averaged over clusters with at least two members, entry by entry."""
    g = [[a / math.sqrt(sum(b * b for b in v)) for a in v] for v in vectors]
    totals = []
    for m in sorted(set(labels)):
        members = [i for i, c in enumerate(labels) if c == m]
        k = len(members)
        if k < 2:
            continue
        total = 0.0
        for i, j in itertools.product(members, members):
            cos = sum(a * b for a, b in zip(g[i], g[j]))
            total += (cos - (1.0 if i == j else -1.0 / (k - 1))) ** 2
        totals.append(total)
    return sum(totals) / len(totals) if totals else 0.0


# --- the losses ---------------------------------------------------------------------------------

def test_etf_gram_for_three_points_and_its_spectrum():
    third = -0.5
    assert torch.allclose(etf_gram(3), torch.tensor([[1, third, third], [third, 1, third], [third, third, 1]]))
    for k in (2, 3, 7):
        eig = torch.linalg.eigvalsh(etf_gram(k).double())
        assert torch.allclose(eig, torch.tensor([0.0] + [k / (k - 1)] * (k - 1), dtype=torch.float64), atol=1e-6)


@pytest.mark.parametrize("k", [3, 5])
def test_optimising_the_tetf_term_alone_reaches_a_simplex_etf(k):
    torch.manual_seed(0)
    vectors = torch.nn.Parameter(F.normalize(torch.randn(k, 8), dim=-1))
    target, mask, count = cluster_targets([0] * k)
    optimizer = torch.optim.Adam([vectors], lr=0.05)
    for _ in range(600):
        loss = tetf_loss(vectors, target, mask, count)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    g = F.normalize(vectors.detach(), dim=-1)
    gram = g @ g.t()
    assert torch.allclose(gram.diagonal(), torch.ones(k), atol=1e-5)
    assert torch.allclose(gram[~torch.eye(k, dtype=torch.bool)], torch.full((k * k - k,), -1 / (k - 1)), atol=1e-3)


VECTORS = [[3.0, 0.0], [0.0, 2.0], [1.0, 0.0], [2.0, 0.0], [0.0, 5.0], [1.0, 1.0]]
LABELS = [0, 0, 1, 1, 1, 2]  # a pair, a triple and a singleton


def test_tetf_on_hand_made_vectors():
    # pair: C = I against [[1,-1],[-1,1]] -> 2; triple (x, x, y): off-diagonals 1.5, 1.5, 0.5, 0.5, 0.5, 0.5 -> 5.5
    assert tetf_by_loops(VECTORS, LABELS) == pytest.approx(3.75)
    value = tetf_loss(torch.tensor(VECTORS), *cluster_targets(LABELS))
    assert value.item() == pytest.approx(3.75, abs=1e-6)


def test_singleton_clusters_give_zero_tetf():
    target, mask, count = cluster_targets([0, 1, 2])
    assert count == 0 and not mask.any()
    assert tetf_loss(torch.randn(3, 4), target, mask, count).item() == 0.0
    _, _, count = cluster_targets([0, 0, 1])
    assert count == 1  # the singleton is not counted in the mean


def test_cc_and_rs_on_hand_made_vectors():
    f = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    g = torch.tensor([[0.0, 1.0], [1.0, 1.0], [5.0, 0.0]])
    labels = torch.tensor([1, 1, 0])  # class 2 is absent from the batch
    fn, gn = [v / torch.linalg.norm(v) for v in f], [v / torch.linalg.norm(v) for v in g]
    per_class = {c: [float(((fn[i] - gn[c]) ** 2).sum()) for i in range(3) if labels[i] == c] for c in (0, 1)}
    expected = statistics.fmean(statistics.fmean(d) for d in per_class.values())
    # class 1: |(1,0) - (.707,.707)|^2 = 2 - 1.414 twice; class 0: |(.6,.8) - (0,1)|^2 = 0.4
    assert expected == pytest.approx(((2 - math.sqrt(2)) + 0.4) / 2)
    assert cc_loss(f, g, labels).item() == pytest.approx(expected, abs=1e-6)
    anchors = torch.tensor([[0.0, 3.0], [1.0, 0.0], [0.0, 1.0]])
    an = [v / torch.linalg.norm(v) for v in anchors]
    rs = statistics.fmean(sum(abs(float(a - b)) for a, b in zip(gn[c], an[c])) for c in range(3))
    # class 1: |(.707,.707) - (1,0)|_1 = (1 - .707) + .707 = 1; class 2: |(1,0) - (0,1)|_1 = 2 (sums, not means)
    assert rs == pytest.approx((0 + 1 + 2) / 3, rel=1e-6)
    assert rs_loss(g, anchors).item() == pytest.approx(rs, abs=1e-6)


# --- clustering ---------------------------------------------------------------------------------

@pytest.mark.parametrize("classes, clusters", [(24, 2), (40, 3), (19, 1), (8, 1), (1000, 63), (500, 31),
                                               (199, 12), (98, 6), (50, 3), (5, 1)])
def test_cluster_count_rounds_half_up(classes, clusters):
    assert clusters_for(classes, 16) == clusters


def directions(per_cluster=6, clusters=3, dims=16, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dims))
    x = np.concatenate([c + noise * rng.normal(size=(per_cluster, dims)) for c in centers])
    order = rng.permutation(len(x))
    return x[order], [int(i) for i in np.repeat(np.arange(clusters), per_cluster)[order]]


@pytest.mark.parametrize("method", METHODS)
def test_every_clustering_finds_separated_clusters(method):
    x, truth = directions()
    found = cluster_classes(x, num_clusters=3, method=method)
    assert len(set(found)) == 3
    assert all((found[i] == found[j]) == (truth[i] == truth[j]) for i, j in itertools.combinations(range(len(x)), 2))


def test_partition_is_deterministic_for_the_seed_grid():
    x = np.random.default_rng(1).normal(size=(40, 12))
    first, again = best_partition(x), best_partition(torch.tensor(x))
    assert first == again and len(set(first.labels)) == 3
    scores = {seed: silhouette(x, kmeans(x, 3, seed)) for seed in range(10)}
    assert first.silhouette == max(scores.values())
    assert first.seed == min(s for s, v in scores.items() if v == first.silhouette)  # ties: lowest seed
    assert best_partition(x[:19]).labels == [0] * 19 and best_partition(x[:19]).silhouette is None


def test_empty_clusters_are_refilled_deterministically():
    x = np.array([[1.0, 0.0]] * 4 + [[0.0, 1.0]])  # only two distinct rows for three clusters
    runs = [kmeans(x, 3, seed=s) for s in (0, 0, 5)]
    assert runs[0] == runs[1] and all(sorted(set(r)) == [0, 1, 2] for r in runs)
    assert kmeans(x, 5, seed=0) == [0, 1, 2, 3, 4]  # one cluster per row


def test_spectral_clustering_splits_a_block_diagonal_affinity_for_every_seed():
    # three groups on disjoint coordinates: cosines across groups are 0, so the affinity has three
    # blocks and its top three eigenvectors are the block indicators (rows equal within a group)
    rng = np.random.default_rng(3)
    x = np.zeros((15, 9))
    for g, size in enumerate((4, 5, 6)):
        rows = slice(sum((4, 5, 6)[:g]), sum((4, 5, 6)[: g + 1]))
        x[rows, 3 * g: 3 * g + 3] = rng.uniform(0.05, 1.0, size=(size, 3))
    truth = [0] * 4 + [1] * 5 + [2] * 6
    assert all(kmeans(x, 3, seed, "spectral_cosine") == truth for seed in range(10))
    assert kmeans(x, 3, 0, "cosine_kmeans") != truth  # spherical k-means on the raw rows, from a bad start


def test_kmedoids_by_hand():
    # unit vectors at angles 0, 10, 20 and 100, 110, 125 degrees: medoids 10 and 110 (the summed
    # 1 - cos to the others is smallest there), every row nearest its own group's medoid
    angles = np.radians([0, 10, 20, 100, 110, 125])
    x = np.stack([np.cos(angles), np.sin(angles)], 1)
    assert all(kmeans(x, 2, seed, "kmedoids_cosine") == [0, 0, 0, 1, 1, 1] for seed in range(10))


def test_kmedoids_ends_at_a_fixed_point():
    """Each cluster's best member (smallest summed 1 - cos, found by brute force) is the medoid, and
    every row is nearest its own cluster's medoid."""
    x = np.random.default_rng(2).normal(size=(30, 6))
    labels = kmeans(x, 4, seed=1, method="kmedoids_cosine")
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    dist = 1 - unit @ unit.T
    medoids = {}
    for c in set(labels):
        members = [i for i in range(30) if labels[i] == c]
        medoids[c] = min(members, key=lambda m: (sum(dist[m, j] for j in members), m))
    for i in range(30):
        nearest = min(dist[i, m] for m in medoids.values())
        assert dist[i, medoids[labels[i]]] == pytest.approx(nearest, abs=1e-12)


def test_cosine_silhouette_by_hand():
    # a, b = (1,0), (.6,.8); c, d = (-1,0), (-.6,.8): within-cluster distance 0.4 for all;
    # a, c: mean distance to the other cluster (2 + 1.6)/2 = 1.8; b, d: (1.6 + 0.72)/2 = 1.16
    x = [[1.0, 0.0], [0.6, 0.8], [-2.0, 0.0], [-0.6, 0.8]]
    expected = (2 * (1.8 - 0.4) / 1.8 + 2 * (1.16 - 0.4) / 1.16) / 4
    assert silhouette(x, [0, 0, 1, 1]) == pytest.approx(expected, abs=1e-12)
    # a singleton scores 0: a, b form a cluster, c and d are alone
    a_b = (min(2, 1.6) - 0.4) / min(2, 1.6) + (min(1.6, 0.72) - 0.4) / min(1.6, 0.72)
    assert silhouette(x, [0, 0, 1, 2]) == pytest.approx(a_b / 4, abs=1e-12)


# --- the methods --------------------------------------------------------------------------------

def test_cpt_with_zero_weights_is_ivlp(backbone, class_info):
    torch.manual_seed(0)
    ivlp = IVLP(backbone, class_info, IVLPConfig(**TINY))
    torch.manual_seed(0)
    cpt = CPT(backbone, class_info, CPTConfig(**TINY, lambda_tetf=0, lambda_cc=0, lambda_rs=0))
    x, labels = images(), torch.tensor([0, 3, 3, 9])
    cpt.eval(), ivlp.eval()
    assert torch.equal(cpt(x), ivlp(x))  # eval mode: plain logits
    cpt.train(), ivlp.train()
    out = cpt(x)
    assert isinstance(out, Output) and torch.equal(out.logits, ivlp(x))
    assert torch.equal(cpt.loss(out, labels), ivlp.loss(ivlp(x), labels))


def test_cpt_loss_adds_the_weighted_terms(backbone, class_info):
    cfg = CPTConfig(**TINY, cluster_size=4)  # 10 classes / 4 = 2.5 -> 3 clusters
    cpt = CPT(backbone, class_info, cfg).train()
    assert cpt.record_fields()["num_clusters"] == 3 and len(cpt.record_fields()["clusters"]) == 10
    anchors = F.normalize(backbone.encode_text(backbone.tokenize([f"a photo of a {c}." for c in class_info.classnames])))
    assert torch.allclose(cpt.anchors, anchors, atol=1e-6)
    assert cpt.partition == cluster_classes(anchors, cluster_size=4)
    x, labels = images(), torch.tensor([0, 3, 3, 9])
    out = cpt(x)
    loss = cpt.loss(out, labels)
    out = Output(*(t.detach() for t in out))
    assert torch.allclose(out.image.norm(dim=-1), torch.ones(4)) and torch.allclose(out.text.norm(dim=-1), torch.ones(10))
    expected = (F.cross_entropy(out.logits, labels)
                + 0.25 * tetf_by_loops(out.text.tolist(), cpt.partition)
                + 0.15 * statistics.fmean([float((out.image[0] - out.text[0]).pow(2).sum()),
                                           float((out.image[1:3] - out.text[3]).pow(2).sum(1).mean()),
                                           float((out.image[3] - out.text[9]).pow(2).sum())])
                + 0.10 * float((out.text - anchors).abs().sum(1).mean()))
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)


def test_cpt_classifies_new_classes_without_clusters(backbone, class_info):
    cpt = CPT(backbone, class_info, CPTConfig(**TINY)).eval()
    cpt.use_label_space(ClassInfo(["zebra", "kiwi", "fern"], [0, 0, 0]))
    assert cpt(images()).shape == (4, 3)


@pytest.mark.parametrize("method", METHODS)
def test_cpt_clustering_choice_is_an_option(backbone, class_info, method):
    cpt = CPT(backbone, class_info, CPTConfig(**TINY, cluster_size=4, clustering=method))
    assert cpt.partition == cluster_classes(cpt.anchors, cluster_size=4, method=method)
    assert cpt.record_fields()["num_clusters"] == 3


def test_cpt_options_are_checked(backbone, class_info):
    with pytest.raises(ConfigError, match="num_clusters"):
        CPT(backbone, class_info, CPTConfig(**TINY, num_clusters=11))
    from bench.config.protocol import load_protocol

    with pytest.raises(ConfigError, match="clustering.*spectral_cosine"):  # the choices are named
        load_protocol("smoke").resolve("cpt", {"clustering": "dbscan"})
    with pytest.raises(ConfigError, match="anchor_template"):
        CPTConfig(anchor_template="a {} {}").validate("method cpt")


def test_global_etf_uses_one_cluster_and_no_shift_term(backbone, class_info):
    method = GlobalETF(backbone, class_info, GlobalETFConfig(**TINY)).train()
    assert method.partition == [0] * 10 and method.weights == (0.25, 0.15, 0.0) and method.anchors is None
    assert not hasattr(GlobalETFConfig(), "lambda_rs")
    x, labels = images(), torch.tensor([1, 1, 2, 5])
    out = method(x)
    loss = method.loss(out, labels)
    out = Output(*(t.detach() for t in out))
    cc = statistics.fmean([float((out.image[:2] - out.text[1]).pow(2).sum(1).mean()),
                           float((out.image[2] - out.text[2]).pow(2).sum()), float((out.image[3] - out.text[5]).pow(2).sum())])
    expected = F.cross_entropy(out.logits, labels) + 0.25 * tetf_by_loops(out.text.tolist(), [0] * 10) + 0.15 * cc
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)


@pytest.mark.parametrize("cls, cfg", [(CPT, CPTConfig()), (GlobalETF, GlobalETFConfig())])
def test_trainable_parameters_at_vit_b16(vit_b16, cls, cfg):
    method = cls(vit_b16, ClassInfo(["cat", "dog"], [5, 1]), cfg)
    assert sum(p.numel() for p in method.trainable_parameters()) == 46_080  # 9·4·512 + 9·4·768


@pytest.mark.parametrize("method", TABLES)
def test_transcribed_averages_match_the_printed_ones(method):
    """Each row of CPT Tables 2-4 as typed: its printed Avg is the mean of its cells (a typo shows here)."""
    for b2n, xd, dg in TABLES[method].values():
        for text, first, tol in ((b2n, 0, 0.0051), (xd, 1, 0.0101), (dg, 1, 0.0051)):  # 11 HMs, 10 targets, 4 shifts
            if text:
                *cells, printed = map(float, text.split())
                assert statistics.fmean(cells[first:]) == pytest.approx(printed, abs=tol), (method, text)


def test_reported_numbers_are_keyed_by_our_protocols():
    from bench.config.catalog import available_protocols, match_protocols

    reported = CPT.card.reported
    assert all(match_protocols(p) if "*" in p else p in available_protocols() for p in reported)
    assert len(reported) == 3 * (11 + 1 + 1)  # per tau: 11 datasets, the printed Avg, XD/DG
    assert reported["b2n_cpt/imagenet/tau1"].metrics == {"hm": 73.92}
    assert reported["b2n_cpt/*/tau0.06"].metrics == {"hm": 72.47}
    xd = reported["xd_dg_cpt/tau0.25"].metrics
    assert (xd["imagenet"], xd["eurosat"], xd["xd_mean"], xd["imagenet_r"], xd["dg_mean"]) == (69.89, 50.16, 66.76, 76.89, 60.16)
    assert "68.70" in reported_rows("npt")["xd_dg_cpt/tau0.06"].note  # NPT's Table 3 vs Table 4 source
    assert not GlobalETF.card.reported  # an NPT-style stand-in: NPT's numbers are on NPT's own card


def test_a_baseline_printed_in_table_4_only_has_its_source_and_shifts():
    metrics = reported_rows("cocoop")["xd_dg_cpt/tau0.25"].metrics
    assert metrics == {"imagenet": 68.43, "imagenet_v2": 62.21, "imagenet_sketch": 46.89, "imagenet_a": 48.56,
                       "imagenet_r": 75.64, "dg_mean": 58.33}


def test_table5_clustering_rows_are_on_the_card():
    """methods_spec §12.4 Table 5 (H, std over seeds), one ablation row per clustering value and tau."""
    from bench.methods.cpt import CARD

    rows = {(a.protocol, a.settings["clustering"]): (a.metrics["hm"], a.note) for a in CARD.ablations
            if a.table == "CPT Table 5"}
    assert len(rows) == 8
    assert rows[("b2n_cpt/imagenet/tau0.25", "cosine_kmeans")] == (72.62, "std over seeds 0.35 at τ = 0.25")
    assert rows[("b2n_cpt/imagenet/tau0.25", "spectral_cosine")] == (71.72, "std over seeds 0.74 at τ = 0.25")
    assert rows[("b2n_cpt/imagenet/tau0.06", "kmedoids_cosine")] == (71.49, "std over seeds 1.32 at τ = 0.06")
    assert rows[("b2n_cpt/imagenet/tau0.06", "euclidean_kmeans")] == (71.52, "std over seeds 0.66 at τ = 0.06")


def test_table1_rows_are_on_the_card_and_row5_is_cpts_own_average():
    """methods_spec §12.4 Table 1 (B2N HM / XD avg / DG avg): rows (1) and (5); row (5) is CPT itself, so it
    equals the mean of its Table 2 HMs and the printed Avg of Tables 3-4."""
    from statistics import fmean

    from bench.config.catalog import match_protocols
    from bench.methods.cpt import CARD

    rows = {(a.protocol, tuple(a.settings.values())): a.metrics for a in CARD.ablations if a.table == "CPT Table 1"}
    assert rows[("b2n_cpt/*/tau0.25", (0.0, 0.0, 0.0))] == {"hm": 70.35}
    assert rows[("xd_dg_cpt/tau0.06", (0.0, 0.0, 0.0))] == {"xd_mean": 63.84, "dg_mean": 57.03}
    assert rows[("xd_dg_cpt/tau0.25", (0.25, 0.15, 0.10))] == {"xd_mean": 66.76, "dg_mean": 60.16}
    # rows (2)-(4), their losses inferred (TETF; TETF + CC; TETF + RS) and said to be in the note
    assert rows[("b2n_cpt/*/tau0.25", (0.25, 0.0, 0.0))] == {"hm": 72.03}
    assert rows[("xd_dg_cpt/tau0.06", (0.25, 0.15, 0.0))] == {"xd_mean": 65.49, "dg_mean": 58.56}
    assert rows[("b2n_cpt/*/tau0.06", (0.25, 0.0, 0.10))] == {"hm": 71.93}
    notes = [a.note for a in CARD.ablations if a.table == "CPT Table 1" and "inferred" in a.note]
    assert len(rows) == 20 and len(notes) == 12  # 5 rows x 2 taus x (B2N, XD/DG); rows (2)-(4) inferred
    for tau in ("tau0.25", "tau0.06"):
        own = fmean(CARD.reported[p].metrics["hm"] for p in match_protocols(f"b2n_cpt/*/{tau}"))
        assert round(own, 2) == rows[(f"b2n_cpt/*/{tau}", (0.25, 0.15, 0.10))]["hm"]
        xd = CARD.reported[f"xd_dg_cpt/{tau}"].metrics
        assert rows[(f"xd_dg_cpt/{tau}", (0.25, 0.15, 0.10))] == {"xd_mean": xd["xd_mean"], "dg_mean": xd["dg_mean"]}
