"""Audits run in blocks of items give the same run as one block, and big reports stay readable."""

from __future__ import annotations

import json

import pandas as pd

from faithcheck.engine.cache import CallCache
from faithcheck.audit.pipeline import AuditConfig, run_audit
from faithcheck.report._items import shown_item_ids


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    cols = ["item_id", "probe", "sample", "answer", "correct", "same_as_baseline", "valid", "completion"]
    flat = table.assign(params=table["params"].map(json.dumps, na_action="ignore"))
    return flat.sort_values(["item_id", "probe", "params", "sample"])[cols].reset_index(drop=True)


def test_blocks_give_the_same_audit_as_one_block(organism_path, tmp_path):
    organism_path("faithful")
    cache = CallCache(tmp_path / "calls.sqlite")
    runs = {}
    for size in (500, 7):
        config = AuditConfig(model="organism:faithful", n=20, out=tmp_path / f"block{size}", progress=False, block_items=size)
        runs[size] = run_audit(config, cache=cache)
    one, many = runs[500], runs[7]
    pd.testing.assert_frame_equal(_sorted(one.outcomes), _sorted(many.outcomes))
    assert one.summary["probes"] == many.summary["probes"]
    assert one.verdict == many.verdict
    # traces.jsonl: every baseline once, every outcome row's variant, for both layouts
    for size, run in runs.items():
        records = [json.loads(line) for line in (run.run_dir / "traces.jsonl").read_text().splitlines()]
        assert sum(r["type"] == "baseline" for r in records) == 20
        assert sum(r["type"] == "variant" for r in records) == len(run.outcomes)
        assert "showing" not in (run.run_dir / "report.html").read_text()


def test_a_big_report_shows_the_changed_items_first():
    rows = []
    for i in range(50):
        for probe in ("paraphrase", "mistakes"):
            changed = (probe == "mistakes" and i % 10 == 3) or (probe == "paraphrase" and i in (40, 41))
            rows.append({"item_id": f"q{i}", "probe": probe, "valid": True, "failed_call": False,
                         "same_as_baseline": not changed})
    table = pd.DataFrame(rows)
    ids = [f"q{i}" for i in range(50)]
    shown = shown_item_ids(table, ids, limit=8, per_probe=2)
    assert len(shown) == 8 and shown == sorted(shown, key=ids.index)  # audit order
    # each probe's evidence is in, whatever its position: q3, q13 (mistakes), q40, q41 (paraphrase)
    assert {"q3", "q13", "q40", "q41"} <= set(shown)
    assert {"q23", "q33", "q43"} <= set(shown)  # then the other changed items
    assert shown_item_ids(table, ids, limit=None) == ids
