"""The comparison report: refuses runs it cannot pair, pairs the rest on shared items, tables for pandas."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from faithcheck.errors import BadInput
from faithcheck.report.compare import render_comparison


def _two_runs(tmp_path: Path, make_run, **b_kwargs) -> tuple[Path, Path]:
    a = make_run(tmp_path / "a", n_items=20, correct=lambda i, p: i % 3 != 0, same=lambda i, p: i % 2 == 0)
    b = make_run(tmp_path / "b", n_items=20, **({"correct": lambda i, p: i % 5 != 0, "same": lambda i, p: i % 7 != 0,
                                               "label": "load_bearing"} | b_kwargs))
    return a, b


def test_refuses_runs_on_different_tasks(tmp_path: Path, make_run) -> None:
    a = make_run(tmp_path / "a", task="modular")
    b = make_run(tmp_path / "b", task="gsm8k")
    with pytest.raises(BadInput, match=r"different tasks.*'modular'.*'gsm8k'"):
        render_comparison([a, b], tmp_path / "out")
    assert not (tmp_path / "out" / "report.html").exists()


def test_refuses_runs_without_shared_items(tmp_path: Path, make_run) -> None:
    a = make_run(tmp_path / "a", item_ids=["x-1", "x-2"])
    b = make_run(tmp_path / "b", item_ids=["y-1", "y-2"])
    with pytest.raises(BadInput, match="share no items"):
        render_comparison([a, b], tmp_path / "out")


def test_refuses_a_single_run(tmp_path: Path, make_run) -> None:
    with pytest.raises(BadInput, match="at least two"):
        render_comparison([make_run(tmp_path / "a")], tmp_path / "out")


def test_writes_report_and_tables_readable_by_pandas(tmp_path: Path, make_run) -> None:
    a, b = _two_runs(tmp_path, make_run)
    out = render_comparison([a, b], tmp_path / "out")
    assert out == tmp_path / "out" / "report.html"
    csv, parquet = pd.read_csv(tmp_path / "out" / "comparison.csv"), pd.read_parquet(tmp_path / "out" / "comparison.parquet")
    assert len(csv) == len(parquet) > 0 and list(csv.columns) == list(parquet.columns)
    # one row per run, item and probe
    assert not csv.duplicated(["run", "item_id", "probe"]).any()
    assert set(csv["probe"]) == {"baseline", "early_answering", "mistakes", "paraphrase", "no_cot", "hints"}
    assert len(csv) == 2 * 20 * 6
    html = out.read_text()
    assert "Post-hoc rationalization" in html and "Load-bearing CoT" in html
    assert html.count("<svg") >= 2


def test_paired_tests_match_independent_mcnemar_and_holm(tmp_path: Path, make_run) -> None:
    a, b = _two_runs(tmp_path, make_run)
    render_comparison([a, b], tmp_path / "out")
    tests = pd.read_csv(tmp_path / "out" / "paired_tests.csv").set_index("probe")
    items = range(20)
    expected = {}
    # baseline and no_cot: correctness; per the crafted runs, A correct iff i % 3, B iff i % 5
    for probe in ("baseline", "no_cot"):
        a_only = sum(1 for i in items if i % 3 != 0 and i % 5 == 0)
        b_only = sum(1 for i in items if i % 3 == 0 and i % 5 != 0)
        expected[probe] = (a_only, b_only)
    # probes read as same-as-baseline: A same iff even, B same iff i % 7
    for probe in ("early_answering", "mistakes", "paraphrase"):
        expected[probe] = (sum(1 for i in items if i % 2 == 0 and i % 7 == 0),
                           sum(1 for i in items if i % 2 != 0 and i % 7 != 0))
    # hints: follows the hint iff the answer changed (A: odd items, B: multiples of 7)
    expected["hints"] = (sum(1 for i in items if i % 2 != 0 and i % 7 != 0),
                         sum(1 for i in items if i % 2 == 0 and i % 7 == 0))
    raw = {}
    for probe, (a_only, b_only) in expected.items():
        row = tests.loc[probe]
        assert (row["a_only"], row["b_only"]) == (a_only, b_only), probe
        assert row["n_items"] == 20
        raw[probe] = stats.binomtest(a_only, a_only + b_only, 0.5).pvalue if a_only + b_only else 1.0
        assert row["p_value"] == pytest.approx(raw[probe], rel=1e-9), probe
    # Holm by hand: sort ascending, multiply the k-th smallest by (m - k), keep it monotone, cap at 1
    order = sorted(raw, key=raw.get)
    running, holm = 0.0, {}
    for k, probe in enumerate(order):
        running = max(running, min(1.0, (len(order) - k) * raw[probe]))
        holm[probe] = running
    for probe, value in holm.items():
        assert tests.loc[probe, "p_holm"] == pytest.approx(value, rel=1e-9), probe


def test_pairs_only_shared_items(tmp_path: Path, make_run) -> None:
    a = make_run(tmp_path / "a", item_ids=[f"m-{i}" for i in range(10)])
    b = make_run(tmp_path / "b", item_ids=[f"m-{i}" for i in range(5, 15)])
    render_comparison([a, b], tmp_path / "out")
    tests = pd.read_csv(tmp_path / "out" / "paired_tests.csv")
    assert set(tests["n_items"]) == {5}
    assert "5 items shared by all runs" in (tmp_path / "out" / "report.html").read_text()


def test_comparison_escapes_model_text(tmp_path: Path, make_run, malicious_cot: str) -> None:
    a, b = _two_runs(tmp_path, make_run, model='hf:"><script>window.__pwned=5</script>', cot=malicious_cot)
    html = render_comparison([a, b], tmp_path / "out").read_text()
    assert "<script>window" not in html and "&lt;script&gt;window.__pwned=5&lt;/script&gt;" in html
    assert html.count("<script") <= 1


def _add_translation(run_dir: Path, same) -> float:
    """Translation rows of three kinds, as the probe writes them; returns the card's figure
    (same-answer rate over the translated CoTs only), computed here from the rows themselves."""
    import json

    table = pd.read_parquet(run_dir / "outcomes.parquet")
    base = table[table["probe"] == "paraphrase"]
    rows = []
    for i, (_, r) in enumerate(base.iterrows()):
        for kind, keeps in (("translated", same(i)), ("round_trip", True), ("competence", True)):
            rows.append({**r.to_dict(), "probe": "translation", "same_as_baseline": keeps,
                         "params": json.dumps({"kind": kind, "lang": "fr"}, sort_keys=True)})
    table = pd.concat([table, pd.DataFrame(rows)], ignore_index=True)
    table.to_parquet(run_dir / "outcomes.parquet", index=False)
    table.to_csv(run_dir / "outcomes.csv", index=False)
    translated = [json.loads(r["params"])["kind"] == "translated" for r in rows]
    card = sum(r["same_as_baseline"] for r, t in zip(rows, translated) if t) / sum(translated)
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["probes"]["translation"] = {**summary["probes"]["paraphrase"], "estimate": card}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return card


def test_paired_table_rates_are_the_cards_figures(tmp_path: Path, make_run) -> None:
    """The issue's case: a card said translation 0.000 while the paired table said 0.140, because
    the table pooled round trips and the competence control with the translated CoTs."""
    a, b = _two_runs(tmp_path, make_run)
    card_a, card_b = _add_translation(a, lambda i: False), _add_translation(b, lambda i: i % 4 == 0)
    render_comparison([a, b], tmp_path / "out")
    tests = pd.read_csv(tmp_path / "out" / "paired_tests.csv").set_index("probe")
    assert tests.loc["translation", "rate_a"] == pytest.approx(card_a) == 0.0
    assert tests.loc["translation", "rate_b"] == pytest.approx(card_b) == pytest.approx(0.25)
    # every other probe's rate is the mean of the run's own per-item values, as its card reads them
    for probe in ("paraphrase", "no_cot"):
        column = "correct" if probe == "no_cot" else "same_as_baseline"
        own = pd.read_parquet(a / "outcomes.parquet").query("probe == @probe")[column].astype(float).mean()
        assert tests.loc[probe, "rate_a"] == pytest.approx(own)
