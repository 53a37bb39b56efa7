from bench.leaderboard import aggregate, format_cell, markdown_table


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
