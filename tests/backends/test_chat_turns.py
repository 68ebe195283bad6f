"""Earlier chat turns (system prompt, few-shot exemplars) reach an OpenAI-compatible server as
messages, or as plain text before the prompt on a completions endpoint; an edited CoT is an
open assistant turn (continue_final_message)."""

from __future__ import annotations

from faithcheck.backends.openai import OpenAIBackend, OpenAIConfig
from faithcheck.records import GenerationRequest

TURNS = (("system", "Be brief."), ("user", "Question: 1 + 1?"), ("assistant", "1 + 1 = 2. The answer is 2."))


def test_chat_endpoint_sends_turns_then_the_open_assistant_turn():
    backend = OpenAIBackend("m", ("http://127.0.0.1:9",), OpenAIConfig(endpoint="chat"))
    body = backend._body("chat", GenerationRequest("Question: 2 + 2?", "2 + 2 =", 8, context=TURNS), "2 + 2 =", 8)
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    assert body["messages"][-1]["content"] == "2 + 2 =" and body["continue_final_message"] is True
    assert backend.chat and backend.takes_turns


def test_completions_endpoint_gets_the_turns_as_text():
    backend = OpenAIBackend("m", ("http://127.0.0.1:9",), OpenAIConfig(endpoint="completions"))
    body = backend._body("completions", GenerationRequest("Q2", "A2", 8, context=TURNS), "A2", 8)
    assert body["prompt"] == "Be brief.\n\nQuestion: 1 + 1?\n\n1 + 1 = 2. The answer is 2.\n\nQ2A2"
    assert not backend.chat


def test_turns_change_the_cache_key_and_no_turns_keep_the_old_one():
    import hashlib

    from faithcheck.records import canonical_json

    plain = GenerationRequest("p", "x", 8, ("\n",))
    before_turns = {"prompt": "p", "prefill": "x", "max_new_tokens": 8, "stop": ["\n"], "temperature": 0.0}
    assert plain.key() == hashlib.sha256(canonical_json(before_turns).encode()).hexdigest()  # caches stay valid
    assert GenerationRequest("p", "x", 8, ("\n",), context=TURNS).key() != plain.key()
