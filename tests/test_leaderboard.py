from bench.reporting.leaderboard import aggregate, format_cell, markdown_table


def rec(method, seed, all_, key="k1" * 32, **metrics):
    return {"method": method, "seed": seed, "key": key, "metrics": {"all": all_, **metrics}}


def test_mean_and_sample_std():
    rows = aggregate([rec("coop", 1, 80.0), rec("coop", 2, 82.0), rec("coop", 3, 84.0)])
    assert len(rows) == 1
    mean, std, n = rows[0].stat("all")
    assert (mean, n) == (82.0, 3)
    assert abs(std - 2.0) < 1e-12  # sample std (n - 1)
    assert format_cell(rows[0].stat("all")) == "82.00 ± 2.00"
    assert format_cell(None) == "–"
    assert format_cell((70.5, 0.0, 1)) == "70.50"


def test_table_sorted_best_first_with_only_present_columns():
    records = [
        rec("zeroshot", 1, 70.0, many=80.0, few=None),
        rec("coop", 1, 80.0, many=90.0, few=60.0),
        rec("coop", 2, 84.0, many=94.0, few=62.0),
    ]
    table = markdown_table(aggregate(records))
    lines = table.splitlines()
    assert lines[0] == "| Method | Seeds | All | Many | Few |"
    assert lines[1] == "|---|---|---:|---:|---:|"
    assert lines[2] == "| coop | 2 | 82.00 ± 2.83 | 92.00 ± 2.83 | 61.00 ± 1.41 |"
    assert lines[3] == "| zeroshot | 1 | 70.00 | 80.00 | – |"


def test_several_configs_of_one_method_are_told_apart():
    records = [rec("coop", 1, 80.0, key="a" * 64), rec("coop", 1, 70.0, key="b" * 64)]
    table = markdown_table(aggregate(records), digits=1)
    assert "| coop [aaaaaaaa] | 1 | 80.0 |" in table
    assert "| coop [bbbbbbbb] | 1 | 70.0 |" in table


def test_rows_are_labelled_by_what_differs():
    from bench.reporting.leaderboard import config_label, split_by_config

    ident = {"dataset": {"name": "d", "imbalance_ratio": 100}}
    refs = {"coop": {"": {"n_ctx": 16}, "train": {"lr": 0.001, "epochs": 20}}}

    def record(n_ctx=16, lr=0.001, ratio=100, version="0.2.0", num_workers=4):
        return {"method": "coop", "key": f"{n_ctx}{lr}{ratio}{version}", "code_version": version,
                "config": {"protocol": {"dataset": {"name": "d", "imbalance_ratio": ratio}},
                           "method": {"n_ctx": n_ctx}, "train": {"lr": lr, "epochs": 20, "num_workers": num_workers}}}

    label = lambda r: config_label(r, ident, "0.2.0", refs)  # noqa: E731
    assert label(record()) == "coop"
    assert label(record(num_workers=8)) == "coop"  # machine settings are not a config
    assert label(record(n_ctx=4, lr=0.01)) == "coop (n_ctx=4, train.lr=0.01)"
    assert label(record(ratio=50, version="0.1.0")) == "coop (protocol dataset.imbalance_ratio=50, code 0.1.0)"
    current, other = split_by_config([record(), record(ratio=50), record(version="0.1.0")], ident, "0.2.0")
    assert len(current) == 1 and len(other) == 2


def test_a_base_to_new_table_prints_both_averages_the_papers_use():
    """LAMP/CPT average the per-dataset HMs; the MaPLe README takes the HM of mean base and mean new."""
    from bench.reporting.leaderboard import Row, across_protocols

    def row(base, new):
        hm = 2 * base * new / (base + new)
        return Row("coop", "k", [1], {"base": [base], "new": [new], "hm": [hm]})

    text = across_protocols({"b2n/dtd/imb10": [row(80.0, 40.0)], "b2n/eurosat/imb10": [row(90.0, 60.0)]})
    header, _, line = text.splitlines()
    assert header == "| Method | dtd | eurosat | Mean base | Mean new | Mean HM | HM of means |"
    mean_hm = (2 * 80 * 40 / 120 + 2 * 90 * 60 / 150) / 2          # 62.67
    hm_of_means = 2 * 85 * 50 / 135                                   # 62.96
    assert line == f"| coop | 53.33 | 72.00 | 85.00 | 50.00 | {mean_hm:.2f} | {hm_of_means:.2f} |"


def test_a_method_missing_from_a_table_cell_gets_no_average():
    from bench.reporting.leaderboard import Row, across_protocols

    rows = {"t/a": [Row("zs", "k", [1], {"all": [50.0]}), Row("coop", "k2", [1], {"all": [60.0]})],
            "t/b": [Row("zs", "k", [1], {"all": [70.0]})]}
    lines = across_protocols(rows).splitlines()
    assert lines[0] == "| Method | a | b | Mean |"
    assert "| zs | 50.00 | 70.00 | 60.00 |" in lines and "| coop | 60.00 | – | – |" in lines


def test_cross_dataset_tables_show_each_evaluation_then_group_means_in_the_protocols_order():
    from bench.reporting.leaderboard import Row, aggregate, markdown_table

    order = ["source", "other_b", "other_a", "xd_mean", "dg_mean"]
    metrics = {"dg_mean": 40.0, "few": 10.0, "other_a": 60.0, "other_b": 50.0, "source": 70.0, "xd_mean": 55.0}
    rows = aggregate([{"method": "coop", "key": "k", "seed": 1, "metrics": metrics, "column_order": order}])
    assert isinstance(rows[0], Row) and rows[0].headline == (55.0, 0.0, 1)  # the first group mean: XD
    header = markdown_table(rows).splitlines()[0]
    assert header == "| Method | Seeds | source | other_b | other_a | XD mean | DG mean | Few |"
