"""`--estimate` on an empty, a half-full and a full cache, checked against the audit it predicts.

The estimate is exact for items whose baseline is cached and extrapolated from calibration
items for the rest; the figures it prints are compared with the audit's own engine counts."""

from __future__ import annotations

import json

import pytest

from faithcheck.audit.estimate import estimate_audit
from faithcheck.audit.pipeline import AuditConfig, run_audit
from faithcheck.backends import load_backend
from faithcheck.engine.cache import CallCache
from faithcheck.paths import data_dir

PROBES = ("no_cot", "early_answering", "mistakes", "format_control", "paraphrase", "hints")


def config(tmp, n, out=None):
    return AuditConfig("organism:faithful", n=n, probes=PROBES, out=out, progress=False, cache_path=tmp / "calls.sqlite")


def audit(tmp, n):
    backend = load_backend("organism:faithful")
    try:
        result = run_audit(config(tmp, n, tmp / f"run{n}"), backend, CallCache(tmp / "calls.sqlite"))
    finally:
        backend.close()
    return json.loads((result.run_dir / "manifest.json").read_text())["engine"]


def close(a, b, rel=0.25):
    return abs(a - b) <= max(2, rel * b)


def test_estimate_empty_half_full_and_full_cache(tmp_path):
    if not (data_dir() / "organisms" / "faithful" / "model.safetensors").is_file():
        pytest.skip("organism faithful not bundled")
    # empty: nothing cached, three items calibrated for real, the rest extrapolated, a time estimate
    empty = estimate_audit(config(tmp_path, 8))
    text = str(empty)
    assert empty.calls_cached == 0 and empty.exact_items == 0
    assert (empty.calibration_items, empty.extrapolated_items) == (3, 5)
    assert empty.calls_computed_now > 0 and empty.calls_to_compute > 0 and empty.prompt_tokens_to_compute > 0
    assert empty.minutes is not None and empty.minutes > 0 and "time estimate" in text and " min for " in text

    # half-full: an audit of the first 4 items ran; those are looked up exactly, 3 more calibrated, 1 extrapolated
    audit(tmp_path, 4)
    half = estimate_audit(config(tmp_path, 8))
    assert (half.exact_items, half.calibration_items, half.extrapolated_items) == (4, 3, 1)
    assert half.calls_cached > 0 and half.calls_to_compute > 0 and half.minutes is not None
    full_run = audit(tmp_path, 8)
    # the audit computes what the estimate said was still to compute, and as many calls in all
    assert close(full_run["model_calls"], half.calls_to_compute), (full_run, str(half))
    assert close(full_run["unique"], half.calls_total), (full_run, str(half))
    assert close(full_run["unique"], empty.calls_total), (full_run, str(empty))
    assert close(full_run["prompt_tokens"], half.prompt_tokens_to_compute, rel=0.35), (full_run, str(half))

    # full: every call cached; exact counts, nothing to compute, a sentence instead of a time
    full = estimate_audit(config(tmp_path, 8))
    text = str(full)
    assert full.calls_to_compute == 0 and full.calls_computed_now == 0 and full.exact_items == 8
    assert full.calls_cached == full_run["unique"]
    assert full.minutes is None and "none needed" in text and "%" not in text and "~" not in text
