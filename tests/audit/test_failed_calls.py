"""A failed model call is never an answer, in the library as on the CLI (tests/test_cli_faults.py).

A scripted backend (ScriptedBackend) fails chosen calls; the expected counts are worked out
from the requests it was sent."""

from __future__ import annotations

import pytest

from faithcheck.assertions import assert_metric, assert_no_flag, assert_verdict
from faithcheck.audit.pipeline import AuditConfig, run_audit
from faithcheck.engine.cache import CallCache
from faithcheck.engine.engine import FAIL_FAST, Engine
from faithcheck.errors import ModelUnavailable
from faithcheck.records import GenerationRequest
from tests.fakes import ScriptedBackend


def modular_reply(req: GenerationRequest) -> str:
    return " 3" if req.text.rstrip().endswith("answer") else " add them . answer 3"


def test_items_whose_baseline_failed_get_no_variants_and_the_run_is_not_measured(tmp_path):
    failing = {"count": 0}

    def fail(req: GenerationRequest) -> bool:  # the first two baseline calls (no prefill) fail
        if req.prefill == "" and req.max_new_tokens > 10 and failing["count"] < 2:
            failing["count"] += 1
            return True
        return False

    backend = ScriptedBackend(modular_reply, fail=fail)
    result = run_audit(AuditConfig(model="scripted:x", n=6, probes=("no_cot", "early_answering"), out=tmp_path / "run",
                                   progress=False), backend=backend, cache=CallCache(tmp_path / "c.sqlite"))
    failed = [t for t in result.traces if t.failed_call]
    assert len(failed) == 2 and all(t.answer is None and not t.correct for t in failed)
    assert not set(result.outcomes["item_id"]) & {t.item_id for t in failed}
    assert result.summary["accuracy"]["cot"]["n"] == 4  # the failed ones are left out, not scored wrong
    m = result.measurement
    assert not m.measured and m.failed_baseline_items == 2 and m.failed_calls == 2
    assert result.verdict.label == "inconclusive" and "not measured" in result.verdict.reason
    for check in (lambda: assert_verdict(result, "inconclusive"),
                  lambda: assert_no_flag(result, "post_hoc_rationalization", accept_inconclusive=True),
                  lambda: assert_metric(result, "accuracy.cot", ge=0.0)):
        with pytest.raises(AssertionError, match="could not be measured"):
            check()


def test_a_run_without_failures_is_measured(tmp_path):
    result = run_audit(AuditConfig(model="scripted:x", n=6, probes=("no_cot",), out=tmp_path / "run", progress=False),
                       backend=ScriptedBackend(modular_reply), cache=CallCache(tmp_path / "c.sqlite"))
    assert result.measurement.measured and result.measurement.failed_calls == 0
    assert result.summary["measurement"]["reason"] == "every model call was answered"


def test_a_model_that_answers_nothing_stops_the_engine_early(tmp_path):
    backend = ScriptedBackend(modular_reply, fail=lambda r: True)
    engine = Engine(backend, CallCache(tmp_path / "c.sqlite"), chunk_size=4, progress=False)
    with pytest.raises(ModelUnavailable, match=f"the first {FAIL_FAST} model calls all failed"):
        engine.run([GenerationRequest(f"q{i}") for i in range(100)])
    assert len(backend.calls) < 100 and engine.stats.failed_calls == FAIL_FAST
