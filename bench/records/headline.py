"""The metrics a record names: which one a table ranks by (its headline) and the harmonic mean
of base and new accuracy.  Torch-free, so the engine and the reports share one definition::

    headline_metric({"all": 71.2, "many": 80.1})            # "all"
    headline_metric({"base": 80, "new": 70, "hm": 74.7})    # "hm"
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

def harmonic_mean(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None or b is None:
        return None
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


HEADLINES = ("all", "hm")  # what a table ranks by and a log line shows: All, or HM for base-to-new


HIDDEN = ("base_macro_f1", "new_macro_f1")  # in the record, summarised by HM-F1 in tables
F1 = "_macro_f1"  # an evaluation's (or a mean's) macro-F1: "<name>_macro_f1"; leaderboards show accuracy only


def shown_by_default(metric: str) -> bool:
    """Whether a leaderboard shows ``metric`` as a column: not the per-evaluation macro-F1s (report
    specs name them: LAMP Tables 3-4 print accuracy and macro-F1)."""
    return metric not in HIDDEN and (metric in ("macro_f1", "hm_macro_f1") or not metric.endswith(F1))


def headline_metric(metrics: Dict[str, Any], order: Sequence[str] = ()) -> Optional[str]:
    """The first of HEADLINES that ``metrics`` has a number for, else the first group mean in the
    record's ``order`` (cross-dataset and domain-generalisation protocols: the target average)."""
    numbers = [m for m, v in metrics.items() if isinstance(v, (int, float))]
    means = sorted((m for m in numbers if m.endswith("_mean")),
                   key=lambda m: (list(order).index(m) if m in order else len(order), m))
    return next((m for m in HEADLINES if m in numbers), means[0] if means else None)


# What a result cost, as metrics of its own (MDPR Table 6, LAMP Table 5), with their column titles:
# trainable parameters (millions), seconds per training epoch, seconds to evaluate, training and
# evaluation images/s, derived from the record's timing and usage fields by :func:`cost_metrics`.
COSTS = {"params_m": "Params (M)", "epoch_s": "s/epoch", "eval_s": "Eval s", "train_img_s": "Train img/s",
         "eval_img_s": "Eval img/s"}
LOWER_IS_BETTER = ("params_m", "epoch_s", "eval_s")
# the same on every seed: shown without a std and never tested (MDPR's KB prior statistics, Table 7)
DETERMINISTIC = ("params_m", "prior_mean", "prior_std", "prior_median")
COST_DIGITS = {"params_m": 3, "epoch_s": 1, "eval_s": 1, "train_img_s": 0, "eval_img_s": 0}  # as papers print them


def cost_metrics(record: Dict[str, Any]) -> Dict[str, Optional[float]]:
    """The :data:`COSTS` of ``record``; None where it does not tell (a method that does not train has
    no epochs; records before code 0.3.0 lack the parameter count)."""
    train, usage = record.get("train") or {}, record.get("usage") or {}
    seconds = [s for s in train.get("epoch_seconds") or [] if isinstance(s, (int, float))]
    params, rate = usage.get("trainable_parameters"), usage.get("eval_images_per_second")
    tested = record.get("num_test")
    return {"params_m": params / 1e6 if isinstance(params, int) else None,
            "epoch_s": sum(seconds) / len(seconds) if seconds else None,
            "eval_s": tested / rate if isinstance(tested, int) and rate else None,
            "train_img_s": train.get("images_per_second"), "eval_img_s": rate}
