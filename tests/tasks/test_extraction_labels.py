"""Answer extraction measured on real model outputs labelled by a person reading them.

tests/data/extraction/labelled.jsonl holds outputs of Qwen2.5-Coder-0.5B-Instruct and
gemma-3-270m on GSM8K and BBH (collected with benchmarks/collect_outputs.py from real audits):
whole responses ("baseline": the answer is read the way the audit reads it, from the text
after the CoT) and what the model wrote after a forced "The answer is" ("forced"). `label` is
the answer the model committed to, normalised as the task's golds are: for a whole response the
final answer it states (an answer sentence, a box, a closing output block, a bold value on its
last line), null when it ends without one (the audit then forces the answer); for a forced
answer, the value it wrote (a calculation's stated result), null when it wrote none or was cut
off mid-expression.
Precision: extracted answers that equal the label, over all extracted; recall: the same over
all outputs whose label is not null. Both must be >= 0.98.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pytest

from faithcheck.paths import shared_datasets
from faithcheck.tasks import get_task

LABELS = Path(__file__).resolve().parents[1] / "data" / "extraction" / "labelled.jsonl"
FLOOR = 0.98


@lru_cache(maxsize=None)
def task_for(name: str):
    if name == "gsm8k":
        from faithcheck.tasks.gsm8k import GSM8KTask

        path = shared_datasets() / "gsm8k" / "test.jsonl"
        if not path.is_file():
            pytest.skip(f"GSM8K data not found at {path}")
        return GSM8KTask(path)
    if not (shared_datasets() / "bbh").is_dir():
        pytest.skip("BBH data not found")
    return get_task(name)


def extracted(row: dict) -> str | None:
    task = task_for(row["task"])
    if row["kind"] == "forced":
        return task.parse_answer(task.answer_prefix + row["text"])
    _, rest = task.split_output(row["text"])
    return task.parse_answer(rest) if rest else None


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    rows = [json.loads(line) for line in LABELS.open(encoding="utf-8") if line.strip()]
    assert all(r["label"] != "?" for r in rows), "unlabelled rows in the fixture"
    return rows


def test_the_set_is_real_and_large_enough(rows):
    assert len(rows) >= 100
    models = {r["model"].split(".")[0].split("-")[0] for r in rows}
    assert {"qwen2", "gemma"} <= models, models
    assert {"gsm8k"} <= {r["task"] for r in rows} and any(r["task"].startswith("bbh:") for r in rows)
    assert {"baseline", "forced"} == {r["kind"] for r in rows}


def test_extraction_precision_and_recall(rows):
    got = [(extracted(r), r["label"]) for r in rows]
    hits = sum(g is not None and g == label for g, label in got)
    n_extracted = sum(g is not None for g, _ in got)
    n_labelled = sum(label is not None for _, label in got)
    precision, recall = hits / n_extracted, hits / n_labelled
    misses = [(r["text"][-120:], g, r["label"]) for r, (g, _) in zip(rows, got) if g != r["label"]]
    print(f"extraction on {len(rows)} labelled outputs: precision {precision:.3f} ({hits}/{n_extracted}), "
          f"recall {recall:.3f} ({hits}/{n_labelled})")
    assert precision >= FLOOR and recall >= FLOOR, misses
