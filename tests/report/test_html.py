"""The run report: rendered only from saved tables, every measure present, model text escaped."""

from __future__ import annotations

import json
import re
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from faithcheck.errors import BadInput
from faithcheck.report._items import word_diff
from faithcheck.report.html import render_run



class _Tags(HTMLParser):
    """Every start tag with its attributes, and every <script> body, as a browser's tokenizer sees them."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def _parse(html: str) -> _Tags:
    p = _Tags()
    p.feed(html)
    return p


def test_report_written_beside_tables(tmp_path: Path, make_run) -> None:
    run = make_run(tmp_path / "run")
    out = render_run(run)
    assert out == run / "report.html" and out.is_file()
    html = out.read_text()
    for section in ('id="accuracy"', 'id="probe-early_answering"', 'id="probe-mistakes"', 'id="rewrites"',
                    'id="probe-hints"', 'id="items"'):
        assert section in html, f"report lacks the {section} section"
    assert html.count("<svg") >= 3, "expected accuracy, early-answering and mistakes plots inline"
    assert "Post-hoc rationalization" in html and "AOC is low" in html


def test_headline_rates_show_n_and_ci(tmp_path: Path, make_run) -> None:
    html = render_run(make_run(tmp_path / "run", n_items=12)).read_text()
    # CoT accuracy 0.66 [0.40, 0.85] n=12, as saved in summary.json
    assert re.search(r"0\.660</span>\s*<span class=\"ci\">\[0\.400, 0\.850\]</span>\s*<span class=\"ci\">n=12", html)
    # rewrites: how many failed their checks
    assert "failed checks" in html


def test_model_text_is_escaped_and_never_markup(malicious_run: Path) -> None:
    html = render_run(malicious_run).read_text()
    parsed = _parse(html)
    assert len(parsed.scripts) == 1 and "__pwned" not in parsed.scripts[0], "only the report's own script may exist"
    assert not any(tag == "img" for tag, _ in parsed.tags)
    assert not any("onerror" in attrs for _, attrs in parsed.tags)
    assert not any((attrs.get("href") or "").lower().startswith("javascript:") for _, attrs in parsed.tags)
    assert not any(tag == "textarea" for tag, _ in parsed.tags)
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    assert "&lt;/textarea&gt;" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;a href=&#34;javascript:alert(1)&#34;&gt;" in html
    assert "&lt;script&gt;window.__pwned=4&lt;/script&gt;" in html, "the model name is untrusted too"
    assert "&lt;b&gt;not bold&lt;/b&gt;" in html, "verdict text is escaped"


def test_content_security_policy_allows_only_own_script(malicious_run: Path) -> None:
    html = render_run(malicious_run).read_text()
    policy = unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1))
    assert "default-src 'none'" in policy and "script-src 'sha256-" in policy
    assert "http" not in policy, "no network source may be allowed"


def test_self_contained(tmp_path: Path, make_run) -> None:
    html = render_run(make_run(tmp_path / "run")).read_text()
    parsed = _parse(html)
    for tag, attrs in parsed.tags:
        for key in ("src", "href"):
            value = attrs.get(key) or ""
            assert not value.startswith(("http:", "https:", "//")), f"<{tag} {key}={value}> reaches the network"
    assert "<link" not in html


def test_items_open_to_baseline_beside_variants(tmp_path: Path, make_run) -> None:
    html = render_run(make_run(tmp_path / "run", n_items=3)).read_text()
    assert html.count('<details class="item"') == 3
    # the paraphrase replaced "Step" by "Stage": marked removed on the left, inserted on the right
    assert '<span class="del">Step</span>' in html and '<span class="ins">Stage</span>' in html
    assert '<span class="cont">Answer: 12</span>' in html


def test_a_big_run_shows_changed_items_first_and_says_how_many(tmp_path: Path, make_run, monkeypatch) -> None:
    import faithcheck.report.html as html_module

    monkeypatch.setattr(html_module, "REPORT_ITEMS", 4)
    # answers change on odd items only (same = even items)
    html = render_run(make_run(tmp_path / "run", n_items=12)).read_text()
    assert html.count('<details class="item"') == 4
    assert "showing 4 of 12 items" in html
    shown = re.findall(r'<details class="item" id="item-\d+" data-changed="(\d)"', html)
    assert shown == ["1"] * 4


def test_word_diff_segments() -> None:
    left, right = word_diff("a b c", "a x c")
    assert left == [("same", "a "), ("del", "b"), ("same", " c")]
    assert right == [("same", "a "), ("ins", "x"), ("same", " c")]
    assert "".join(t for _, t in left) == "a b c" and "".join(t for _, t in right) == "a x c"


def test_renders_from_csv_when_parquet_missing(tmp_path: Path, make_run) -> None:
    run = make_run(tmp_path / "run")
    (run / "outcomes.parquet").unlink()
    assert "m-000" in render_run(run).read_text()


def test_missing_summary_is_bad_input(tmp_path: Path, make_run) -> None:
    run = make_run(tmp_path / "run")
    (run / "summary.json").unlink()
    with pytest.raises(BadInput, match="summary.json"):
        render_run(run)


def test_saved_tables_readable_by_pandas(tmp_path: Path, make_run, malicious_cot) -> None:
    run = make_run(tmp_path / "run", cot=malicious_cot)
    render_run(run)
    a, b = pd.read_parquet(run / "outcomes.parquet"), pd.read_csv(run / "outcomes.csv")
    assert len(a) == len(b) and list(a.columns) == list(b.columns)
    assert json.loads(a["params"].iloc[0]) == {"fraction": 0.0, "k": 0}


def test_hint_kinds_judge_and_distributions_are_shown_escaped(tmp_path: Path, make_run) -> None:
    run = make_run(tmp_path / "run", n_items=12)
    summary = json.loads((run / "summary.json").read_text())
    est = {"estimate": 0.25, "ci_low": 0.1, "ci_high": 0.5, "n": 12, "method": "bootstrap"}
    hints = summary["probes"]["hints"]
    hints["extras"].update({"follow_rate.suggested": est, "follow_rate.<i>odd</i>": {**est, "estimate": None, "n": 0},
                            "verbalization_judge": est, "verbalization_judge_all": est, "judge_keyword_agreement": est})
    hints["counts"].update({"not_applicable.suggested": 0, "not_applicable.<i>odd</i>": 12, "judged": 12, "judge_failed": 2})
    summary["probes"]["paraphrase"]["extras"].update({"answer_tv_distance": est, "baseline_mode_mass": {**est, "estimate": 0.75}})
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "manifest.json").write_text(json.dumps({"seed": 0, "config": {"samples": 5, "temperature": 0.7}}))
    html = render_run(run).read_text()
    kinds = html[html.index('id="hint-kinds"'):]
    assert "&lt;i&gt;odd&lt;/i&gt;" in kinds and "<i>odd</i>" not in html
    assert "not applicable to 12 items" in kinds and "all items" in kinds
    assert "The LLM judge read 12 CoTs; 2 gave no yes/no answer." in html
    dist = html[html.index('id="distributions"'):]
    assert "5 samples per item at temperature 0.7" in dist
    assert re.search(r"<td>paraphrase</td><td class=\"num\"><span class=\"val\">0\.250</span>.*?0\.750", dist)


def test_curves_are_drawn_at_the_measured_fractions_only(tmp_path: Path, make_run) -> None:
    """The report draws scoring's points where the CoT was cut, and computes no statistic itself."""
    import faithcheck.report.html as html_mod
    from faithcheck.report._rundata import load_run
    from faithcheck.report.html import probe_curve

    run = load_run(make_run(tmp_path / "run"))
    saved = run.summary["probes"]["early_answering"]["curve"]
    points = probe_curve(run, "early_answering")
    assert [p.x for p in points] == [c["fraction"] for c in saved] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [(p.y, p.low, p.high) for p in points] == [
        (c["same_as_baseline"]["estimate"], c["same_as_baseline"]["ci_low"], c["same_as_baseline"]["ci_high"]) for c in saved]
    source = Path(html_mod.__file__).read_text() + Path(html_mod.__file__).with_name("_plots.py").read_text()
    for statistic in ("bootstrap_mean", "binomtest", "wilson(", "linspace(", "groupby(", "scipy"):
        assert statistic not in source, f"report/html.py or _plots.py computes {statistic}; scoring owns every number"


def test_p_values_print_below_1e_6_never_0(tmp_path: Path, make_run) -> None:
    run = make_run(tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    summary["probes"]["paraphrase"].update(p_value=1.7e-18, p_adjusted=1e-300)
    (run / "summary.json").write_text(json.dumps(summary))
    html = render_run(run).read_text()
    # the rewrites table's p (Holm), and the all-probes table's p and p (Holm)
    assert html.count("&lt;1e-6") >= 3, "a p-value below 1e-6 must print as <1e-6"
