"""Fixtures shared by the task tests."""

from __future__ import annotations

import json

import pytest

from faithcheck.tasks.gsm8k import GSM8KTask


@pytest.fixture(scope="module")
def gsm8k_parser(tmp_path_factory) -> GSM8KTask:
    """A GSM8K task over a one-row file: parsing answers and steps needs no real data."""
    path = tmp_path_factory.mktemp("gsm8k") / "one.jsonl"
    path.write_text(json.dumps({"question": "1+1?", "answer": "#### 2"}) + "\n")
    return GSM8KTask(path)
