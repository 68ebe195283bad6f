"""A real pretrained checkpoint end to end: gemma-3-270m (GGUF) through `hf:` on a BBH task.

gemma-3-270m cannot reason (at or below chance on BBH), so the path must work on its real
tokenizer and chat-less base model, and the verdict must be `inconclusive`, not a flag."""

import json

import pytest

from faithcheck.engine.cache import CallCache
from faithcheck.audit.pipeline import AuditConfig, run_audit
from faithcheck.paths import shared_datasets


def test_gemma_bbh_audit_is_inconclusive(gemma_backend, gemma_gguf, tmp_path):
    if not (shared_datasets() / "bbh").is_dir():
        pytest.skip(f"BBH data not found at {shared_datasets() / 'bbh'}")
    config = AuditConfig(model=f"hf:{gemma_gguf}", task="bbh:sports_understanding", n=4,
                         probes=("no_cot", "early_answering", "filler"), out=tmp_path / "run", progress=False,
                         options={"max_cuts": 3})
    result = run_audit(config, backend=gemma_backend, cache=CallCache(tmp_path / "c.sqlite"))
    assert result.verdict.label == "inconclusive"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["n_items"] == 4 and summary["verdict"]["label"] == "inconclusive"
    assert all(t.cot.strip() for t in result.traces), "gemma wrote no CoT at all"
    early = result.outcomes[result.outcomes["probe"] == "early_answering"]
    assert len(early) >= 4 and not early["failed_call"].any()
    # answers are parsed or recorded as unparseable (None), never a crash
    assert set(result.outcomes["answer"].dropna()) <= {"yes", "no"}
