"""Probes declare what they contribute, and scoring, the report and the plugin read it from the
registry: every shipped probe's declaration matches what its metrics carry, and a new probe
(the README's "Adding a probe" example) joins the summary, the CoT-benefit table and the
report by declaring it, with no other file touched."""

from __future__ import annotations

import json
import random

import pytest

from faithcheck.audit.pipeline import AuditConfig, run_audit
from faithcheck.engine.cache import CallCache
from faithcheck.probes import DEFAULT_PROBES, contributions, get_probes, probes
from faithcheck.probes.base import (
    EVIDENCE, FORMAT_CONTROL, REWORDING, TRANSLATION, TRUNCATION, Contributes, Probe, accuracy_vs_baseline,
)
from faithcheck.records import Trace, Variant
from faithcheck.registry import Entry
from tests.fakes import ScriptedBackend


def modular_model(req) -> str:
    """Solves `(a+...+e) mod 23` when it has a CoT to read, answers off by one without one."""
    terms = [int(t) for t in req.prompt.rsplit("(", 1)[1].split(")")[0].split("+")]  # any language's prompt
    total = sum(terms) % 23
    if not req.prefill:
        return f"{terms[0]} plus {terms[1]} makes {(terms[0] + terms[1]) % 23} . so it is {total} . answer {total}"
    cot = req.prefill.removesuffix("answer").strip(" .")
    return f" {total}" if cot else f" {(total + 1) % 23}"


# --- the README's worked example, verbatim in spirit: one class, one declaration ------------


class Shuffled(Probe):
    name = "shuffled"
    contributes = Contributes(accuracy_condition="shuffled steps", cot_benefit=True)

    def variants(self, item, trace, ctx):
        steps = list(trace.steps)
        random.Random(f"{ctx.seed}/{item.id}").shuffle(steps)
        return [Variant(item.id, self.name, {}, trace.prompt, ctx.task.force_answer("".join(steps)))]

    def metrics(self, rows, ctx):
        return accuracy_vs_baseline(rows, self.name)


@pytest.fixture
def shuffled_registered(monkeypatch):
    probes.names()  # load the registry before adding to it
    monkeypatch.setitem(probes._entries, "shuffled", Entry("shuffled", Shuffled, "CoT steps shuffled, answer forced"))


def test_a_new_probe_joins_summary_benefit_table_and_report(tmp_path, shuffled_registered):
    config = AuditConfig("scripted", task="modular", n=6, probes=("no_cot", "shuffled"), out=tmp_path / "run",
                         progress=False)
    result = run_audit(config, ScriptedBackend(modular_model), CallCache(tmp_path / "calls.sqlite"))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["accuracy"]["shuffled"]["estimate"] == 1.0 and summary["accuracy"]["no_cot"]["estimate"] == 0.0
    assert summary["accuracy"]["cot"]["estimate"] == 1.0
    # (shuffled - no_cot) / (cot - no_cot) = (1 - 0) / (1 - 0)
    assert summary["cot_benefit_retained"]["shuffled"]["estimate"] == pytest.approx(1.0)
    assert "shuffled steps" in (tmp_path / "run" / "report.html").read_text()
    assert result.metrics["shuffled"].headline.n == 6


def test_declarations_name_known_evidence():
    with pytest.raises(ValueError, match="unknown evidence kind"):
        Contributes(evidence=("vibes",))
    declared = contributions()
    assert set(DEFAULT_PROBES) <= set(declared)
    assert all(set(c.evidence) <= set(EVIDENCE) for c in declared.values())


def test_every_shipped_declaration_matches_its_metrics(tmp_path):
    """Run every default probe once (rule rewriter, scripted model) and read each declaration
    against what its metrics actually carry."""
    config = AuditConfig("scripted", task="modular", n=6, out=tmp_path / "run", progress=False)
    result = run_audit(config, ScriptedBackend(modular_model), CallCache(tmp_path / "calls.sqlite"))
    rewrite_kinds = {(row.probe, bool(row.checks)) for row in result.outcomes.itertuples()}
    for name in DEFAULT_PROBES:
        c, m = contributions()[name], result.metrics[name]
        if not c.curve or m.headline.n:  # a curve needs scored rows
            assert bool(m.curve) == bool(c.curve), name
        if c.accuracy_condition:
            assert m.headline_name == "accuracy", name
        if TRUNCATION in c.evidence:
            assert m.headline_name == "aoc" and "same_at_0" in m.extras, name
        if set(c.evidence) & {REWORDING, TRANSLATION, FORMAT_CONTROL}:
            assert m.headline_name == "same_as_baseline", name
        if c.rewrites:  # its variants carry the rewrite's checks
            assert (name, True) in rewrite_kinds, name


def test_a_probe_may_ask_only_for_the_rewrites_it_declares():
    from faithcheck.audit.pipeline import resolve_rewrites
    from faithcheck.probes import ProbeContext
    from faithcheck.rewriters import load_rewriter
    from faithcheck.rewriters.base import RewriteRequest
    from faithcheck.tasks import get_task

    class Undeclared(Shuffled):
        def rewrite_requests(self, item, trace, ctx):
            return [RewriteRequest("paraphrase", trace.steps)]

    task = get_task("modular")
    item = task.load(1, 0).items[0]
    steps = ("5 plus 4 makes 9 . ",)
    trace = Trace(item.id, task.prompt(item), steps[0], steps, "9", True, steps[0])
    ctx = ProbeContext(task, 0, len)
    with pytest.raises(ValueError, match="'shuffled' asks for a 'paraphrase' rewrite"):
        resolve_rewrites([Undeclared()], [item], {item.id: trace}, ctx, load_rewriter("rules"))
    assert len(resolve_rewrites(get_probes(["paraphrase"]), [item], {item.id: trace}, ctx, load_rewriter("rules"))) == 1
