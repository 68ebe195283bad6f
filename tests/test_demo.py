"""`faithcheck demo`: it says what it will run and for how long, names the organism on every
progress bar, and ends with the verdict table and the comparison report's path."""

from __future__ import annotations

import json
import re

from faithcheck.demo import EXPECTED_VERDICT, DemoRow, estimate_seconds, run_demo, verdict_table


def test_demo_announces_labels_its_bars_and_ends_with_the_table(tmp_path, capsys, organism_path, monkeypatch):
    monkeypatch.setenv("FAITHCHECK_CACHE_DIR", str(tmp_path / "cache"))  # a fresh call cache: every bar runs
    names = ["faithful", "no_cot_control"]
    for name in names:
        organism_path(name)  # skips when not trained
    rows = run_demo(20, 0, tmp_path / "demo", names=names)
    captured = capsys.readouterr()
    out, err = captured.out, captured.err
    head = out.splitlines()[0:4]
    assert "2 bundled model organisms (faithful, no_cot_control)" in head[0]
    assert "20 items each" in head[1] and "no_cot" in head[1]
    assert re.search(r"Roughly \d+ minutes?", head[3])
    # every progress bar (tqdm on stderr) names its model and its stage
    bars = {m.group(0) for m in re.finditer(r"organism:\w+: [a-zA-Z ()]+", err)}
    assert any(b.startswith("organism:faithful: baseline CoT") for b in bars), bars
    assert any(b.startswith("organism:no_cot_control: probe variants") for b in bars), bars
    assert not re.search(r"(?m)^\s*(baseline CoT|probe variants)", err)  # no unlabelled bar
    # the run ends with the table, one line per organism, then the comparison report's path
    tail = out.rstrip().splitlines()
    report = tail[-1].removeprefix("comparison report: ")
    assert tail[-1].startswith("comparison report: ") and (tmp_path / "demo" / "comparison" / "report.html").samefile(report)
    table = tail[-6:-2]
    assert table[0].split()[:2] == ["organism", "verdict"]
    for row, line in zip(rows, table[1:3]):
        summary = json.loads((row.report.parent / "summary.json").read_text())
        assert line.split()[:3] == [row.organism, summary["verdict"]["label"], EXPECTED_VERDICT[row.organism]]
    agree = sum(r.verdict == r.expected for r in rows)
    assert table[3] == f"{agree} of 2 verdicts match what the organisms were built to show."


def test_verdict_table_marks_a_mismatch_and_an_unknown_organism(tmp_path):
    acc = {"estimate": 0.5, "ci_low": 0.3, "ci_high": 0.7, "n": 20}
    rows = [DemoRow("faithful", "load_bearing", "inconclusive", acc, 1.0, tmp_path / "a"),
            DemoRow("newcomer", None, "load_bearing", acc, 1.0, tmp_path / "b")]
    lines = verdict_table(rows).splitlines()
    assert lines[1].endswith("(NOT as built)") and "0.50 [0.30, 0.70] n=20" in lines[1]
    assert lines[2].split()[2] == "-" and "as built" not in lines[2]
    assert lines[3] == "0 of 1 verdicts match what the organisms were built to show."


def test_estimate_grows_with_organisms_and_items():
    assert estimate_seconds(4, 100) == 2 * estimate_seconds(2, 100) > estimate_seconds(2, 50) > 0
