"""Systems the seed papers compare against that the suite does not run yet: cards with their printed
numbers (checked here against values typed from the papers' tables), listed as "reported only",
refused by `bench run`, left out of `--method all`, and shown by reports as paper rows."""
import fnmatch
import re

import pytest

from bench.cli import main
from bench.core.registry import METHODS, REPORTED, all_cards
from bench.plugins import load_builtins

load_builtins()

# (card, protocol, metric, the number as printed), typed from LAMP Tables 1, 3, 4, 9 and 10 (methods_spec §12.3)
PRINTED = [
    ("lfa", "b2n_lamp/caltech101/imb10", "hm", 95.69), ("lfa", "b2n_lamp/caltech101/imb10", "hm_macro_f1", 90.72),
    ("lfa", "b2n_lamp/*/imb50", "hm_macro_f1", 65.41),
    ("tcp_la", "b2n_lamp/eurosat/imb20", "hm", 84.51), ("tcp_la", "b2n_lamp/eurosat/imb20", "hm_macro_f1", 72.35),
    ("tcp_la", "b2n_lamp/ucf101/imb100", "hm", 79.03), ("tcp_la", "xd_dg_lamp/imb100", "dtd", 49.20),
    ("mma_la", "b2n_lamp/oxford_flowers/imb200", "hm", 81.35), ("mma_la", "b2n_lamp/*/imb10", "hm", 78.95),
    ("mma_la", "xd_dg_lamp/imb100", "imagenet_r_macro_f1", 65.96),
    ("coop_la", "b2n_lamp/imagenet/imb10", "hm", 68.05), ("cocoop_la", "b2n_lamp/*/imb50", "hm", 73.32),
    ("maple_la", "b2n_lamp/*/imb100", "hm", 76.30), ("candle", "b2n_lamp/fgvc_aircraft/imb100", "hm", 37.90),
    ("candle", "b2n_lamp/sun397/imb20", "hm_macro_f1", 70.11), ("lamp", "b2n_lamp/*/imb20", "hm_macro_f1", 74.57),
    # LAMP Table 2 (balanced 16-shot base-to-new; TCP and MMA re-aligned, methods_spec §12.3)
    ("coop", "b2n_cpt/dtd/tau1", "new", 41.18), ("cocoop", "b2n_cpt/*/tau1", "hm", 75.44),
    ("tcp", "b2n_cpt/stanford_cars/tau1", "base", 80.80), ("tcp", "b2n_cpt/*/tau1", "hm", 79.26),
    ("mma", "b2n_cpt/eurosat/tau1", "new", 82.34), ("mma", "b2n_cpt/*/tau1", "base", 83.20),
    ("candle", "b2n_cpt/fgvc_aircraft/tau1", "hm", 39.96), ("lamp", "b2n_cpt/imagenet/tau1", "new", 71.60),
    # CPT Tables 2-4
    ("coprompt", "b2n_cpt/fgvc_aircraft/tau0.25", "hm", 29.56), ("npt", "b2n_cpt/*/tau0.06", "hm", 71.76),
    ("dekg", "b2n_cpt/eurosat/tau1", "hm", 87.42), ("dpc", "xd_dg_cpt/tau0.06", "xd_mean", 63.95),
    ("dpc", "xd_dg_cpt/tau1", "imagenet_sketch", 49.55), ("dekg", "xd_dg_cpt/tau0.25", "imagenet", 69.46),
    ("maple", "b2n_cpt/dtd/tau0.06", "hm", 47.37), ("maple", "xd_dg_cpt/tau0.06", "imagenet_a", 48.47),
    ("cocoop", "xd_dg_cpt/tau0.25", "dg_mean", 58.33), ("cpt", "b2n_cpt/*/tau1", "hm", 80.28),
    # MDPR Tables 2-3
    ("plotpp", "cifar100_lt_ir50", "few", 57.00), ("lasp", "cifar100_lt_ir100", "many", 76.49),
    ("textrefiner", "places_lt", "few", 22.79), ("textrefiner", "cifar100_lt_ir10", "medium", 65.55),
    ("cprfl", "cifar100_lt_ir100", "all", 68.20),
    # LAMP Tables 12-15 (balanced 1/2/4/8-shot base-to-new, HM)
    ("mma", "b2n_fs/fgvc_aircraft/shots4", "hm", 37.57), ("mma", "b2n_fs/ucf101/shots8", "hm", 92.37),
    ("mma", "b2n_fs/*/shots2", "hm", 72.08), ("coop", "b2n_fs/*/shots1", "hm", 67.56),
    ("cocoop", "b2n_fs/*/shots8", "hm", 72.96), ("maple", "b2n_fs/*/shots4", "hm", 75.37),
    ("lamp", "b2n_fs/*/shots2", "hm", 74.42), ("lamp", "b2n_fs/stanford_cars/shots8", "hm", 93.77),
]


@pytest.mark.parametrize("method, protocol, metric, printed", PRINTED)
def test_the_cards_hold_the_numbers_the_papers_print(method, protocol, metric, printed):
    assert all_cards()[method].reported[protocol].metrics[metric] == printed


def test_every_row_of_lamp_table_1_is_on_a_card_for_each_imbalance():
    rows = ["coop_la", "cocoop_la", "lfa", "maple_la", "tcp_la", "mma_la", "candle", "lamp"]  # the paper's order
    cards = all_cards()
    for imb in (10, 20, 50):
        for method in rows:
            held = {p for p in cards[method].reported if p.startswith("b2n_lamp/") and p.endswith(f"/imb{imb}")}
            assert len(held) == 12, (method, imb)  # 11 datasets and the printed Average


def test_a_reported_only_method_is_listed_refused_by_run_and_left_out_of_all(capsys, tmp_path):
    assert set(REPORTED.names()) >= {"dpc", "npt"} and not set(REPORTED.names()) & set(METHODS.names())
    assert main(["list", "methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    npt = next(i for i, line in enumerate(lines) if line.split()[0] == "npt")
    assert "reported only" in lines[npt] and "Neural Collapse Anchored Prompt Tuning" in lines[npt + 1]
    assert main(["run", "--protocol", "smoke", "--method", "npt", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bench: error: method 'npt' is reported only")
    assert main(["plan", "--protocol", "smoke", "--method", "all", "--results-dir", str(tmp_path)]) == 0
    assert "npt" not in capsys.readouterr().out


@pytest.mark.parametrize("name", REPORTED.names())
def test_every_reported_only_card_cites_its_paper_code_and_spec(name):
    card = REPORTED.get(name).card
    cited = re.search(r"[\w.-]+/[\w.-]+:\S+@[0-9a-f]{40}", card.code) or card.code.startswith("no public code")
    assert card.paper and cited and card.spec.startswith("spec_")
    assert card.reported and not card.recipes  # numbers to show, nothing to train


# Averages the papers print that are not the mean of their own row (the card's note says so): LAMP Table 2's
# re-assembled MMA row (methods_spec §12.3) and MMA's 8-shot row of LAMP Table 15 (spec_lamp_baselines §2.4).
INCONSISTENT = {("mma", "b2n_cpt/*/tau1", "hm"), ("mma", "b2n_fs/*/shots8", "hm")}


def test_each_printed_average_is_the_mean_of_the_printed_row():
    """A typo in a typed number shows here: every average a card files under a table's glob is the
    mean of the same card's numbers on the glob's protocols, to the paper's rounding."""
    from bench.config.catalog import available_protocols

    checked = 0
    for name, card in all_cards().items():
        tables = {"": {p: r.metrics for p, r in card.reported.items()}}  # and a second paper's rows (ablations)
        for a in card.ablations:
            tables.setdefault(a.table, {}).update({a.protocol: a.metrics} if not a.settings else {})
        for held in tables.values():
            for glob, printed_row in held.items():
                members = fnmatch.filter(available_protocols(), glob) if "*" in glob else []
                rows = [held[p] for p in members if p in held]
                for metric, printed in printed_row.items():
                    own = [row.get(metric) for row in rows]
                    if len(own) >= 10 and None not in own and (name, glob, metric) not in INCONSISTENT:
                        mean = sum(own) / len(own)  # rounded to 2 decimals (Table 1), or cut (Tables 9 and 10)
                        assert abs(printed - mean) < 0.0051 or 0 <= mean - printed < 0.01, (name, glob, metric, mean)
                        checked += 1
    # LAMP Tables 1 (8 rows x 3 imbalances, HM-A and HM-M), 9 and 10, 2 (7 rows, base/new/HM); CPT Table 2 (6 x 3)
    assert checked >= 2 * 8 * 3 + 5 * 2 + 7 * 3 - 1 + 6 * 3


def test_the_coverage_list_names_a_shipped_report_for_every_seed_table(capsys):
    """`bench list seeds`: 25 tables (each to a shipped spec, or MDPR Table 7 to `bench kb stats`) and 8
    figures; every shipped seed-table spec is listed under its paper."""
    from bench.config.catalog import available_reports
    from bench.reporting.coverage import KB_STATS, SEED_PAPERS
    from bench.reporting.reportspec import load_spec

    named = [spec for paper in SEED_PAPERS.values() for _, _, specs in paper.items for spec in specs]
    assert set(named) - {KB_STATS} <= set(available_reports())
    assert set(available_reports()) - set(named) == {"leaderboard", "smoke"}  # not a seed paper's
    items = [item for paper in SEED_PAPERS.values() for item, _, _ in paper.items]
    assert sum(i.startswith("Table") for i in items) == 25 and sum(i.startswith("Figure") for i in items) == 8
    assert main(["list", "seeds"]) == 0
    out = capsys.readouterr().out
    assert "    Table 12  lamp_b2n_shots1" in out and "    Table 7   mdpr_table7, bench kb stats" in out
    assert out.rstrip().endswith("25 of 25 tables and 8 of 8 figures render from a shipped spec or command "
                                 "(bench report SPEC; a figure's with --plots DIR)")
    figures = [spec for paper in SEED_PAPERS.values() for item, _, specs in paper.items if item.startswith("Figure")
               for spec in specs]
    assert all(load_spec(spec).figure is not None for spec in figures)  # each drawn, not only tabled


# Each seed table's rows as the paper prints them, in its order (typed from methods_spec §12), and its extra rows.
PAPER_ROWS = {
    "lamp_b2n_imb10": ["coop_la", "cocoop_la", "lfa", "maple_la", "tcp_la", "mma_la", "candle", "lamp"],
    "lamp_b2n_imb100": ["maple_la", "tcp_la", "mma_la", "candle", "lamp"],
    "lamp_b2n_balanced": ["coop", "cocoop", "maple", "tcp", "mma", "candle", "lamp"],
    "lamp_b2n_shots4": ["coop", "cocoop", "maple", "mma", "lamp"],
    "xd_dg_lamp": ["coop_la", "cocoop_la", "maple_la", "tcp_la", "mma_la", "candle", "lamp"],
    "lamp_table5": ["maple_la", "mma_la", "lamp"],
    "cpt_b2n_tau0.25": ["maple", "coprompt", "npt", "dekg", "dpc", "cpt"],
    "xd_dg_cpt_tau1": ["cocoop", "maple", "coprompt", "npt", "dekg", "dpc", "cpt"],
    "mdpr_cifar100_lt": ["zeroshot", "coop", "cocoop", "maple", "plotpp", "lasp", "textrefiner", "cprfl", "candle",
                         "mdpr_coop", "mdpr_maple"],
    "mdpr_imagenet_places": ["zeroshot", "coop", "cocoop", "maple", "textrefiner", "candle", "mdpr_coop", "mdpr_maple"],
}


@pytest.mark.parametrize("name, rows", PAPER_ROWS.items())
def test_a_seed_tables_spec_prints_the_papers_rows_in_its_order(name, rows):
    from bench.reporting.reportspec import load_spec

    spec = load_spec(name)
    assert [r.method for r in spec.rows] == rows
    assert not {r.method for r in spec.extra_rows} & set(rows)  # ours beside them only with --rows all
    if name.startswith(("lamp_b2n", "cpt_b2n")):
        assert "zeroshot" in [r.method for r in spec.extra_rows]


def test_lamps_protocols_and_the_five_run_tables_have_five_seeds():
    """LAMP averages 5 runs everywhere; CPT Table 5 prints std over 5 seeds."""
    from bench.config.protocol import load_protocol
    from bench.reporting.reportspec import load_spec

    for protocol in ("b2n_lamp/dtd/imb10", "xd_dg_lamp/imb100", "b2n_fs/dtd/shots1"):
        assert load_protocol(protocol).seeds == [1, 2, 3, 4, 5], protocol
    assert load_protocol("b2n_cpt/dtd/tau0.25").seeds == [1, 2, 3]
    assert load_spec("cpt_table5").seeds == load_spec("lamp_b2n_balanced").seeds == [1, 2, 3, 4, 5]
