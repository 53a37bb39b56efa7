"""The numbers CPT's Tables 2-4 print (methods_spec §12.4), per row and tau, as ``Reported`` entries
keyed by our protocols: CPT's own row and the rows of the systems it compares against (MaPLe,
CoPrompt, NPT, DeKg, DPC; CoCoOp in Table 4 only)::

    from bench.methods.cpt_tables import ROWS, reported_rows
    reported_rows(*ROWS["dekg"])["b2n_cpt/eurosat/tau1"].metrics   # {"hm": 87.42}
"""
from __future__ import annotations

from typing import Dict, Optional

from bench.api import Reported

TAUS = ("tau1", "tau0.25", "tau0.06")
DATASETS = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
            "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101")  # the column order of CPT Tables 2-3
SHIFTS = ("imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r")  # CPT Table 4

# Per row, per tau: Table 2 (11 HMs, Avg), Table 3 (source, 10 targets, Avg), Table 4 (source, 4 shifts, Avg),
# each a string of the printed cells in the paper's column order.
TABLES = {
    "cpt": {"tau1": ("73.92 96.53 96.37 77.21 84.69 91.17 40.13 80.50 71.20 87.54 83.83 80.28",
                     "71.40 95.42 91.54 67.38 73.35 87.09 25.49 69.03 48.13 50.74 69.53 67.78",
                     "71.40 64.23 49.40 50.66 77.70 60.50"),
            "tau0.25": ("72.62 96.44 96.16 71.58 79.37 91.13 30.16 77.65 57.74 59.09 77.42 73.58",
                        "69.89 94.56 91.27 66.64 73.09 87.03 23.02 67.54 46.53 50.16 67.82 66.76",
                        "69.89 63.74 49.35 50.64 76.89 60.16"),
            "tau0.06": ("71.58 96.58 95.50 71.27 75.20 91.10 27.99 76.65 57.54 58.03 75.69 72.47",
                        "69.58 94.23 90.82 65.92 72.50 86.86 21.71 66.71 45.42 48.65 66.89 65.97",
                        "69.58 63.43 49.02 48.56 75.46 59.12")},
    "maple": {"tau1": ("73.47 96.02 96.28 73.47 82.56 91.38 36.50 79.75 68.16 82.35 80.77 78.25",
                       "70.72 93.53 90.49 65.57 72.23 86.20 24.74 67.01 46.49 48.06 68.69 66.30",
                       "70.72 64.07 49.15 50.90 76.98 60.27"),
              "tau0.25": ("70.93 95.38 94.22 70.25 76.59 88.71 28.62 75.98 55.15 53.97 75.43 71.38",
                          "69.20 92.63 90.34 65.17 71.54 85.03 21.39 65.57 45.84 47.83 65.34 65.07",
                          "69.20 62.40 47.70 48.98 75.83 58.73"),
              "tau0.06": ("70.10 95.53 94.21 69.29 72.29 89.74 21.89 75.00 47.37 51.10 73.85 69.12",
                          "68.32 92.23 90.07 64.38 70.37 84.77 20.47 64.53 45.17 47.03 64.40 64.34",
                          "67.32 62.33 47.20 48.47 74.47 58.12")},
    "coprompt": {"tau1": ("72.86 95.94 96.33 75.47 84.51 90.95 37.82 79.29 68.93 83.07 80.78 78.72",
                          "70.10 94.40 91.13 66.67 72.60 86.23 25.40 68.92 47.73 49.77 69.43 67.23",
                          "70.10 64.15 48.83 50.58 77.31 60.22"),
                 "tau0.25": ("71.50 94.71 95.24 70.20 77.77 89.35 29.56 76.12 56.58 57.89 75.69 72.24",
                             "69.34 92.64 89.76 65.27 71.89 85.35 22.54 66.24 45.58 49.20 66.42 65.49",
                             "69.34 62.47 48.37 49.60 76.46 59.22"),
                 "tau0.06": ("70.20 94.69 93.64 69.88 73.71 89.27 27.43 75.13 56.42 56.89 74.20 71.04",
                             "68.22 92.35 89.01 64.64 71.02 85.35 21.29 65.38 44.54 47.90 65.53 64.70",
                             "68.22 62.20 48.03 48.56 74.92 58.43")},
    "npt": {"tau1": ("73.82 96.23 96.24 72.49 82.37 91.67 36.46 79.76 68.88 82.12 81.42 78.31",
                     "70.70 94.50 90.64 66.73 72.62 86.21 25.23 68.37 47.63 50.25 68.87 67.11",
                     "70.70 64.23 48.10 49.70 76.89 59.73"),
            "tau0.25": ("72.22 95.66 96.20 70.89 78.58 90.23 29.86 76.88 57.16 58.48 76.65 72.98",
                        "69.40 93.60 90.40 65.95 72.33 86.19 22.78 66.89 46.05 49.67 67.12 66.10",
                        "69.40 63.10 47.83 49.10 76.20 59.06"),
            "tau0.06": ("70.89 95.64 94.56 70.58 74.46 90.20 27.72 75.89 56.98 57.47 74.95 71.76",
                        "68.90 93.31 89.93 65.28 71.77 86.00 21.51 66.07 44.97 48.17 66.20 65.32",
                        "68.70 62.83 47.53 48.07 74.70 58.28")},
    "dekg": {"tau1": ("73.07 96.89 96.09 77.83 84.51 91.14 39.51 80.35 69.70 87.42 84.80 80.12",
                      "72.33 94.73 90.68 66.05 73.20 86.59 25.05 67.19 45.61 51.37 68.78 66.92",
                      "72.33 64.21 48.82 50.62 76.64 60.07"),
             "tau0.25": ("72.08 95.86 95.30 71.12 78.98 90.46 29.91 76.90 57.58 58.61 76.11 72.99",
                         "69.46 93.79 90.02 65.49 72.39 86.59 22.60 66.96 44.57 49.96 67.33 65.97",
                         "69.79 63.34 48.72 50.51 76.37 59.73"),
             "tau0.06": ("70.37 95.20 94.52 70.19 73.78 90.49 27.73 75.24 56.66 57.92 74.42 71.50",
                         "69.42 92.89 89.63 65.07 72.02 85.99 21.35 66.17 44.47 49.90 65.86 65.33",
                         "69.20 62.64 48.38 48.56 75.12 58.68")},
    "dpc": {"tau1": ("73.85 96.50 96.71 78.46 83.59 91.49 40.24 80.76 66.84 84.13 83.21 79.62",
                     "71.42 93.60 90.25 65.70 71.73 86.15 23.90 67.10 46.87 48.68 68.75 66.27",
                     "71.42 64.05 49.55 50.65 77.50 60.44"),
            "tau0.25": ("71.85 95.35 96.26 71.41 78.11 90.00 29.74 77.18 57.08 58.85 76.28 72.92",
                        "69.21 92.63 89.96 64.65 70.36 85.33 21.44 65.75 45.60 45.50 65.76 64.70",
                        "69.71 63.12 49.25 50.64 76.85 59.96"),
            "tau0.06": ("70.62 95.75 94.77 70.37 74.87 90.25 27.75 75.39 56.91 57.38 75.19 71.75",
                        "68.23 91.79 89.09 64.40 70.25 84.68 21.14 65.35 44.17 44.20 64.46 63.95",
                        "69.19 62.77 49.00 48.56 75.27 58.90")},
    "cocoop": {"tau1": (None, None, "71.02 64.07 48.75 50.63 76.18 59.91"),  # Table 4 only
               "tau0.25": (None, None, "68.43 62.21 46.89 48.56 75.64 58.33"),
               "tau0.06": (None, None, "66.21 60.35 46.13 48.25 74.56 57.32")},
}
B2N_NOTE = "τ = min/max class size with a 16-shot cap (τ = 1: balanced 16 shots); HM of base and new accuracy"
B2N_MEAN_NOTE = "the printed Avg: the mean of the 11 datasets' HMs"
XD_NOTE = ("the paper says the cross-dataset source is 'the full ImageNet-1K' yet prints a column per τ; "
           "the XD and DG means are its printed Avg of Tables 3 and 4")
THIRD_PARTY = "CPT's run of this baseline (its setup is not published)"


def _cells(text: Optional[str]):
    return tuple(float(v) for v in text.split()) if text else None


def reported_rows(method: str, note: str = "") -> Dict[str, Reported]:
    """``method``'s rows of CPT Tables 2, 3 and 4 keyed by our protocols: ``b2n_cpt/<dataset>/<tau>``,
    the printed Avg under ``b2n_cpt/*/<tau>``, and ``xd_dg_cpt/<tau>`` (Table 4 alone for CoCoOp)."""
    rows = {}
    for tau, texts in TABLES[method].items():
        b2n, xd, dg = map(_cells, texts)
        joined = "; ".join(filter(None, [B2N_NOTE, note]))
        if b2n:
            rows.update({f"b2n_cpt/{name}/{tau}": Reported("CPT Table 2", {"hm": hm}, joined)
                         for name, hm in zip(DATASETS, b2n)})
            rows[f"b2n_cpt/*/{tau}"] = Reported("CPT Table 2", {"hm": b2n[11]}, f"{joined}; {B2N_MEAN_NOTE}")
        source = {**dict(zip(DATASETS, xd[:11])), "xd_mean": xd[11]} if xd else {"imagenet": dg[0]}
        metrics = {**source, **dict(zip(SHIFTS, dg[1:5])), "dg_mean": dg[5]}
        extra = f"Table 4 prints source accuracy {dg[0]:.2f} for the same model" if xd and dg[0] != xd[0] else ""
        only = "CPT prints this baseline in Table 4 only" if not xd else ""
        rows[f"xd_dg_cpt/{tau}"] = Reported("CPT Tables 3-4" if xd else "CPT Table 4", metrics,
                                            "; ".join(filter(None, [XD_NOTE if xd else "", extra, only, note])))
    return rows
