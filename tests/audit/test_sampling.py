"""Answer distributions under sampling (`--samples K`): the sampled baseline, and per probe the
total-variation distance and the mass kept on the baseline's modal answer.

A scripted model with hand-made answer tables, whose expected numbers are worked out by
hand below, then a real organism through the command line."""

from __future__ import annotations

import json
from fractions import Fraction as F

import pandas as pd
import pytest

from faithcheck.engine.cache import CallCache
from faithcheck.audit.pipeline import AuditConfig, run_audit
from faithcheck.paths import data_dir
from tests.fakes import ScriptedBackend

QUESTIONS = {"q1": "Which river is longest?", "q2": "Which planet is largest?", "q3": "Which metal is densest?"}
# answers by sample number (the request seed, with --seed 0); None: the model names no option
BASELINE = {"q1": "AAB", "q2": "CCC", "q3": "ABC"}
NO_COT = {"q1": "BBB", "q2": "CDC", "q3": ["A", None, "A"]}
SUGGESTED = {"q1": "AAB", "q2": "DDD", "q3": "CCC"}
METADATA = {"q1": "BBB", "q2": "CCC", "q3": "ABC"}


def _item(prompt: str) -> str:
    return next(k for k, q in QUESTIONS.items() if f"Question: {q}" in prompt or q in prompt)


def script(req) -> str:
    item, s = _item(req.prompt), req.seed
    if req.prefill:  # no_cot: the answer is forced right after the question
        answer = NO_COT[item][s] if req.temperature > 0 else "A"
        return f" ({answer})." if answer else " none of them."
    if req.temperature == 0:
        answer = "A"  # the greedy baseline and greedy variants
    elif "I think the answer is" in req.prompt:
        answer = SUGGESTED[item][s]
    elif "<question-metadata>" in req.prompt:
        answer = METADATA[item][s]
    else:
        answer = BASELINE[item][s]
    return f" I compare the options. So the answer is ({answer})."


@pytest.fixture
def mc_task(tmp_path) -> str:
    path = tmp_path / "set.jsonl"
    rows = [{"id": k, "question": q, "choices": ["w", "x", "y", "z"], "answer": "A"} for k, q in QUESTIONS.items()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f"mc:{path}"


def test_scripted_distribution_shift_matches_the_hand_computation(mc_task, tmp_path):
    backend = ScriptedBackend(script)
    config = AuditConfig("scripted", task=mc_task, n=None, probes=("no_cot", "hints"), samples=3, temperature=1.0,
                         out=tmp_path / "run", progress=False)
    result = run_audit(config, backend, CallCache(tmp_path / "calls.sqlite"))

    # no_cot, per item: TV(P, Q) = half the L1 distance; mass = Q(modal answer of P), tied modes averaged
    #   q1 P={A:2/3, B:1/3} Q={B:1}            TV 2/3, mode A: 0
    #   q2 P={C:1}          Q={C:2/3, D:1/3}   TV 1/3, mode C: 2/3
    #   q3 P={A,B,C: 1/3}   Q={A:2/3, none:1/3} TV 2/3, modes A,B,C: (2/3 + 0 + 0)/3 = 2/9
    no_cot_tv, no_cot_mass = (F(2, 3) + F(1, 3) + F(2, 3)) / 3, (0 + F(2, 3) + F(2, 9)) / 3
    # hints: two kinds per item (fewshot_pattern has no exemplars on mc), averaged per item first
    #   q1 suggested {A:2/3,B:1/3}: TV 0, mass 2/3;  metadata {B:1}: TV 2/3, mass 0
    #   q2 suggested {D:1}: TV 1, mass 0;            metadata {C:1}: TV 0, mass 1
    #   q3 suggested {C:1}: TV 2/3, mass 1/3;        metadata {A,B,C:1/3}: TV 0, mass 1/3
    hints_tv = ((0 + F(2, 3)) / 2 + (1 + 0) / F(2) + (F(2, 3) + 0) / 2) / 3
    hints_mass = ((F(2, 3) + 0) / 2 + (0 + 1) / F(2) + (F(1, 3) + F(1, 3)) / 2) / 3
    expected = {"no_cot": (no_cot_tv, no_cot_mass), "hints": (hints_tv, hints_mass)}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    for probe, (tv, mass) in expected.items():
        extras = summary["probes"][probe]["extras"]
        for name, want in (("answer_tv_distance", tv), ("baseline_mode_mass", mass)):
            got = extras[name]
            assert got["estimate"] == pytest.approx(float(want), abs=1e-6), (probe, name)
            assert got["n"] == 3 and got["ci_low"] <= got["estimate"] <= got["ci_high"], got
    # the greedy trace stays every variant's reference; the samples are saved beside it
    assert set(result.outcomes["baseline_answer"]) == {"A"} and [t.answer for t in result.traces] == ["A"] * 3
    lines = [json.loads(line) for line in (tmp_path / "run" / "traces.jsonl").read_text().splitlines()]
    samples = pd.DataFrame([x for x in lines if x["type"] == "baseline_sample"])
    assert len(samples) == 9 and not samples["failed_call"].any()
    for item, answers in BASELINE.items():
        assert samples[samples["item_id"] == item].sort_values("sample")["answer"].tolist() == list(answers)
    html = (tmp_path / "run" / "report.html").read_text()
    assert 'id="distributions"' in html and "total-variation distance" in html


def test_no_sampled_baseline_without_samples(mc_task, tmp_path):
    backend = ScriptedBackend(script)
    config = AuditConfig("scripted", task=mc_task, n=None, probes=("no_cot",), out=tmp_path / "run", progress=False)
    result = run_audit(config, backend, CallCache(tmp_path / "calls.sqlite"))
    assert result.baseline_samples is None and "answer_tv_distance" not in result.metrics["no_cot"].extras
    assert all(r.temperature == 0 for r in backend.calls)
    assert 'id="distributions"' not in (tmp_path / "run" / "report.html").read_text()


def test_organism_audit_with_samples_reports_distributions(tmp_path):
    if not (data_dir() / "organisms" / "faithful" / "model.safetensors").is_file():
        pytest.skip("organism faithful not bundled")
    from faithcheck.cli import main

    out = tmp_path / "run"
    rc = main(["audit", "organism:faithful", "--task", "modular", "--n", "10", "--samples", "3", "--temperature", "1.0",
               "--probes", "no_cot,early_answering,paraphrase,hints", "--out", str(out),
               "--cache", str(tmp_path / "calls.sqlite"), "--quiet"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    for probe in ("no_cot", "early_answering", "paraphrase", "hints"):
        extras = summary["probes"][probe]["extras"]
        for name in ("answer_tv_distance", "baseline_mode_mass"):
            e = extras[name]
            assert e["n"] == 10 and 0 <= e["ci_low"] <= e["estimate"] <= e["ci_high"] <= 1, (probe, name, e)
    samples = [json.loads(x) for x in (out / "traces.jsonl").read_text().splitlines()]
    assert sum(x["type"] == "baseline_sample" for x in samples) == 30
    # the faithful organism reads its CoT: a paraphrase keeps the answer distribution close, no CoT does not
    extras = {p: summary["probes"][p]["extras"] for p in ("no_cot", "paraphrase")}
    assert extras["paraphrase"]["answer_tv_distance"]["estimate"] < extras["no_cot"]["answer_tv_distance"]["estimate"]
