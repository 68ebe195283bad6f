"""`--estimate` on an empty, a half-full and a full cache, checked against the audit it predicts.

The estimate is exact (calls and prompt tokens) for items whose baseline is cached, runs as
many baselines as its window allows, and gives the other items stand-in CoTs; its figures
are compared with the audit's own engine counts from the run's manifest."""

from __future__ import annotations

import json
import time

import pytest

import faithcheck.audit.estimate as estimate
from faithcheck.audit.estimate import estimate_audit
from faithcheck.audit.pipeline import AuditConfig, run_audit
from faithcheck.backends import load_backend
from faithcheck.engine.cache import CallCache
from faithcheck.paths import data_dir, shared_datasets
from faithcheck.records import Completion
from tests.fakes import ScriptedBackend

PROBES = ("no_cot", "early_answering", "mistakes", "format_control", "paraphrase", "hints")


def config(tmp, n, out=None, model="organism:faithful", **kw):
    return AuditConfig(model, n=n, probes=PROBES, out=out, progress=False, cache_path=tmp / "calls.sqlite", **kw)


def audit(tmp, n):
    backend = load_backend("organism:faithful")
    try:
        result = run_audit(config(tmp, n, tmp / f"run{n}"), backend, CallCache(tmp / "calls.sqlite"))
    finally:
        backend.close()
    return json.loads((result.run_dir / "manifest.json").read_text())["engine"]


def close(a, b, rel=0.25):
    return abs(a - b) <= max(2, rel * b)


@pytest.fixture
def organism():
    if not (data_dir() / "organisms" / "faithful" / "model.safetensors").is_file():
        pytest.skip("organism faithful not bundled")


def test_an_empty_cache_with_time_for_every_baseline_is_counted_exactly(tmp_path, organism, monkeypatch):
    monkeypatch.setattr(estimate, "WINDOW", 600.0)  # every baseline fits, however loaded the machine
    empty = estimate_audit(config(tmp_path, 8))
    assert (empty.exact_items, empty.calibration_items, empty.extrapolated_items) == (0, 8, 0)
    assert empty.calls_cached == 0 and empty.calls_computed_now > 0 and empty.point.seconds > 0
    run = audit(tmp_path, 8)
    # the audit computes exactly the calls the estimate said were left, with their prompt tokens
    assert run["model_calls"] == empty.calls_to_compute, (run, str(empty))
    assert run["unique"] == empty.calls_total
    assert run["prompt_tokens"] == empty.prompt_tokens_to_compute
    assert close(run["generated_tokens"], empty.generated_tokens_to_compute, rel=0.1)
    text = str(empty)
    assert "8 whose baseline this estimate computed" in text and "time estimate:      ~" in text


def test_stand_in_cots_for_items_the_window_left_unknown(tmp_path, organism, monkeypatch):
    """One CoT sampled, no further baselines: seven items get stand-in CoTs, and the calls the
    audit makes fall inside the estimate's range, near its point."""
    monkeypatch.setattr(estimate, "_more_baselines", lambda *a, **k: None)
    est = estimate_audit(config(tmp_path, 8))
    assert (est.exact_items, est.calibration_items, est.extrapolated_items) == (0, 1, 7)
    assert est.low.calls <= est.point.calls <= est.high.calls
    assert est.low.seconds <= est.point.seconds <= est.high.seconds
    run = audit(tmp_path, 8)
    assert est.low.calls <= run["model_calls"] <= est.high.calls, (run, str(est))
    assert close(run["model_calls"], est.calls_to_compute), (run, str(est))
    assert close(run["prompt_tokens"], est.prompt_tokens_to_compute), (run, str(est))
    assert "given a stand-in CoT" in str(est) and "~" in str(est)


def test_half_full_and_full_cache(tmp_path, organism):
    # half-full: an audit of the first 4 items ran; those are looked up exactly
    audit(tmp_path, 4)
    half = estimate_audit(config(tmp_path, 8))
    assert half.exact_items == 4 and half.calls_cached > 0
    assert half.calibration_items + half.extrapolated_items == 4
    full_run = audit(tmp_path, 8)
    # the audit computes what the estimate said was still to compute, and as many calls in all
    assert close(full_run["model_calls"], half.calls_to_compute), (full_run, str(half))
    assert close(full_run["unique"], half.calls_total), (full_run, str(half))
    # full: every call cached; exact counts, nothing to compute, a sentence instead of a time
    full = estimate_audit(config(tmp_path, 8))
    text = str(full)
    assert full.calls_to_compute == 0 and full.calls_computed_now == 0 and full.exact_items == 8
    assert full.calls_cached == full_run["unique"]
    assert full.minutes is None and "none needed" in text and "%" not in text and "~" not in text


COT_STEP = "We add 3 and 4 to get 7. "


class SlowWriter(ScriptedBackend):
    """Writes a 160-word CoT (then its answer) for a question, a number for a forced answer,
    1 ms per word, cut at the request's token budget (words are its tokens)."""

    def __init__(self):
        super().__init__(lambda r: "", fingerprint="slow-writer:v1")

    def generate(self, requests):
        out = []
        for r in requests:
            self.calls.append(r)
            words = ("7" if r.prefill.rstrip().endswith("The answer is") else COT_STEP * 20 + "The answer is 7.").split(" ")
            kept = words[:r.max_new_tokens]
            time.sleep(0.001 * len(kept))
            out.append(Completion(" ".join(kept), len(r.text.split()), len(kept),
                                  "length" if len(kept) < len(words) else "stop"))
        return out


@pytest.mark.skipif(not (shared_datasets() / "gsm8k" / "test.jsonl").is_file(), reason="GSM8K data missing")
def test_a_cot_longer_than_the_window_allows_gives_a_range_and_no_point(tmp_path, monkeypatch):
    """The sampled CoT is still going when its cap is reached: no point estimate, a range from
    a CoT as long as the sample to one as long as the budget, and the sample is not cached as
    the audit's call."""
    monkeypatch.setattr(estimate, "WINDOW", 0.2)
    backend = SlowWriter()
    monkeypatch.setattr(estimate, "load_backend", lambda model, args: backend)
    est = estimate_audit(config(tmp_path, 5, model="slow:writer", task="gsm8k", task_args=("max_cot_tokens=400",)))
    assert est.point is None and est.minutes is None and est.calls_to_compute is None
    assert est.cut_sample is not None and 2 * estimate.FIRST_CAP <= est.cut_sample < 161
    assert est.low.calls <= est.high.calls and est.low.generated_tokens < est.high.generated_tokens
    assert est.low.seconds < est.high.seconds
    text = str(est)
    assert "no point estimate" in text and "time estimate:      between" in text
    assert f"still going at {est.cut_sample}" in text and "412-token budget" in text
