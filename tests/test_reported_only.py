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
    assert set(REPORTED.names()) >= {"lfa", "tcp_la", "mma_la"} and not set(REPORTED.names()) & set(METHODS.names())
    assert main(["list", "methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    tcp = next(i for i, line in enumerate(lines) if line.split()[0] == "tcp_la")
    assert "reported only" in lines[tcp] and "TCP: Textual-based Class-aware Prompt tuning" in lines[tcp + 1]
    assert main(["run", "--protocol", "smoke", "--method", "tcp_la", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bench: error: method 'tcp_la' is reported only")
    assert main(["plan", "--protocol", "smoke", "--method", "all", "--results-dir", str(tmp_path)]) == 0
    assert "tcp_la" not in capsys.readouterr().out


@pytest.mark.parametrize("name", REPORTED.names())
def test_every_reported_only_card_cites_its_paper_code_and_spec(name):
    card = REPORTED.get(name).card
    assert card.paper and re.search(r"[\w.-]+/[\w.-]+:\S+@[0-9a-f]{40}", card.code) and card.spec.startswith("spec_")
    assert card.reported and not card.recipes  # numbers to show, nothing to train


def test_each_printed_average_is_the_mean_of_the_printed_row():
    """A typo in a typed number shows here: every average a card files under a table's glob is the
    mean of the same card's numbers on the glob's protocols, to the paper's rounding."""
    from bench.config.catalog import available_protocols

    checked = 0
    for name, card in all_cards().items():
        for glob, entry in card.reported.items():
            members = fnmatch.filter(available_protocols(), glob) if "*" in glob else []
            rows = [card.reported[p].metrics for p in members if p in card.reported]
            for metric, printed in entry.metrics.items():
                own = [row.get(metric) for row in rows]
                if len(own) >= 10 and None not in own:  # Tables 9 and 10 print 10 of the 11 datasets
                    mean = sum(own) / len(own)  # rounded to 2 decimals (Table 1), or cut (Tables 9 and 10)
                    assert abs(printed - mean) < 0.0051 or 0 <= mean - printed < 0.01, (name, glob, metric, mean)
                    checked += 1
    assert checked >= 2 * 8 * 3 + 5 * 2  # LAMP Tables 1 (8 rows x 3 imbalances, HM-A and HM-M), 9 and 10
