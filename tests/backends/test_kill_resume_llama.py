"""Kill-and-resume against a real llama.cpp server (gemma-3-270m): an `openai:` audit killed at
random moments repeats, on resume, none of the calls the server had answered and the
client had taken in (see tests/engine/test_kill_resume.py for how that is told apart from
the one response in flight at the kill). The fault proxy in front of the server logs every
request and every 200 it passed back."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from fault_proxy import FaultProxy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
from test_kill_resume import _assert_nothing_repeated, _fresh, _signals, http_trial  # noqa: E402

LLAMA_CALLS = 6  # 3 baselines and 3 no-CoT answers at least
ARGS = ["--task", "modular", "--n", "3", "--probes", "no_cot", "--quiet",
        "--model-arg", "endpoint=completions", "--model-arg", "concurrency=1"]


def _trials(server, tmp_path, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    with FaultProxy(server.root) as proxy:
        model = f"openai:gemma@{proxy.url}"
        return [http_trial(proxy, model, _fresh(tmp_path, i), rng, sig, ARGS, calls=LLAMA_CALLS)
                for i, sig in enumerate(_signals(n))]


def test_llama_server_audit_killed_at_random_moments_repeats_no_answered_call(llama_server, tmp_path):
    _assert_nothing_repeated(_trials(llama_server, tmp_path, 2, seed=3))


@pytest.mark.slow
def test_llama_server_kill_and_resume_more_trials(llama_server, tmp_path):
    _assert_nothing_repeated(_trials(llama_server, tmp_path, 8, seed=4))
