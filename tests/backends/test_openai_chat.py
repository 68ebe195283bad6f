"""The openai: backend prompting chat models on servers.

An edited CoT (prefill) goes, in this order, to the chat endpoint where the server continues
an assistant turn (vLLM's continue_final_message), else to /completions with the chat template
rendered here, else nowhere, with an error naming both; the template renders exactly what
`llamacpp:` renders from the same GGUF, and a prefilled request answers as `llamacpp:` does.
llama.cpp's servers are detected: the C++ server gets `cache_prompt`, both get requests in
prefix order, one slot at a time; nothing else gets a field the OpenAI API does not have.

Servers: fake_openai.py passing for vLLM, llama.cpp's C++ server and a hosted API (fast, no
model), and llama-cpp-python's real server (gemma-3-270m, Qwen2.5-Coder-0.5B-Instruct).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI
from fault_proxy import FaultProxy

from faithcheck.backends import ScoreRequest
from faithcheck.backends._chat_template import BUILTIN, ChatTemplate
from faithcheck.backends.openai import MissingCapability, load
from faithcheck.errors import BadInput
from faithcheck.records import GenerationRequest

TURNS = (("system", "Be brief."), ("user", "Question: 1 + 1?"), ("assistant", "1 + 1 = 2. The answer is 2."))
CHATML = ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQuestion: 1 + 1?<|im_end|>\n"
          "<|im_start|>assistant\n1 + 1 = 2. The answer is 2.<|im_end|>\n<|im_start|>user\nQuestion: 2 + 2?<|im_end|>\n"
          "<|im_start|>assistant\n2 + 2 =")
PREFILLED = GenerationRequest("Question: 2 + 2?", "2 + 2 =", 8, context=TURNS)
COT = "There are 3 boxes with 4 apples each, so 3 * 4 = 12 apples. Tom eats 2, so 12 - 2 = 10 are left. "
QUESTION = "Tom has 3 boxes of 4 apples and eats 2 apples. How many apples are left?"
LLAMA_CPP_PROPS = {"default_generation_settings": {"n_ctx": 4096}, "total_slots": 1,
                   "chat_template": BUILTIN["chatml"], "bos_token": "", "eos_token": "<|im_end|>"}


def make(url: str, *args: str):
    return load(f"m@{url}", ["backoff_base=0.01", "timeout=60", *args])


def early_answering(n: int = 6) -> list[GenerationRequest]:
    """One CoT cut at n points, each followed by a forced answer, shuffled."""
    cuts = [COT[: len(COT) * k // n] for k in range(n)]
    reqs = [GenerationRequest(QUESTION, cut + "The answer is", 6, ("\n",), context=(("system", "Be brief."),))
            for cut in cuts]
    random.Random(0).shuffle(reqs)
    return reqs


def prompts_sent(server: FakeOpenAI) -> list[dict]:
    return [b for p, b in server.bodies if p.endswith("/completions") and b.get("max_tokens") != 1]


# -- configuration -----------------------------------------------------------------------------

def test_template_options_are_validated(tmp_path: Path):
    with pytest.raises(BadInput, match="drop one"):
        load("m@http://127.0.0.1:9/v1", ["endpoint=chat", "chat_template=chatml"])
    with pytest.raises(BadInput, match=r"chat_template=/nonexistent/t\.jinja: expected none, auto, chatml"):
        load("m@http://127.0.0.1:9/v1", ["chat_template=/nonexistent/t.jinja"])
    broken = tmp_path / "broken.jinja"
    broken.write_text("{% for m in messages %}{{ m['content'] }}")
    with pytest.raises(BadInput, match="does not compile"):
        load("m@http://127.0.0.1:9/v1", [f"chat_template={broken}"])
    with pytest.raises(BadInput, match="prompt_cache"):
        load("m@http://127.0.0.1:9/v1", ["prompt_cache=always"])


def test_the_template_is_keyed_and_the_prompt_cache_is_not(tmp_path: Path):
    mine = tmp_path / "mine.jinja"
    mine.write_text(BUILTIN["chatml"])
    with FakeOpenAI() as server:
        keys = {args: make(server.url, *args).identity.cache_key
                for args in [(), ("prompt_cache=off",), ("chat_template=chatml",), (f"chat_template={mine}",)]}
        mine.write_text(BUILTIN["chatml"].replace("assistant", "model"))
        edited = make(server.url, f"chat_template={mine}").identity.cache_key
    assert keys[()] == keys[("prompt_cache=off",)]
    assert len({keys[()], keys[("chat_template=chatml",)], keys[(f"chat_template={mine}",)], edited}) == 4
    assert make("http://127.0.0.1:9/v1", "chat_template=chatml").chat and not make("http://127.0.0.1:9/v1").chat


def test_builtin_formats_render_their_models_conventions():
    chatml = ChatTemplate(BUILTIN["chatml"], "t").render(PREFILLED)
    assert chatml == CHATML
    gemma = ChatTemplate(BUILTIN["gemma"], "t").render(PREFILLED)
    assert gemma == ("<start_of_turn>user\nBe brief.\n\nQuestion: 1 + 1?<end_of_turn>\n<start_of_turn>model\n"
                     "1 + 1 = 2. The answer is 2.<end_of_turn>\n<start_of_turn>user\nQuestion: 2 + 2?<end_of_turn>\n"
                     "<start_of_turn>model\n2 + 2 =")
    llama3 = ChatTemplate(BUILTIN["llama3"], "t").render(GenerationRequest("Hi", "Hello", context=(("system", "S"),)))
    assert llama3 == ("<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>"
                      "\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello")
    with pytest.raises(BadInput, match="roles must alternate"):
        ChatTemplate(BUILTIN["gemma"], "t").render(GenerationRequest("Q", context=(("user", "a"),)))


# -- the order: chat endpoint, else completions with the template, else an error --------------------

def test_chat_endpoint_first_where_it_continues_the_assistant_turn():
    with FakeOpenAI(continue_final_message=True) as vllm:
        backend = make(vllm.url, "chat_template=chatml")
        (c,) = backend.generate([PREFILLED])
        path, body = vllm.bodies[-1]
    assert backend._endpoint == "chat" and c.error is None and c.text
    assert path == "/v1/chat/completions" and body["continue_final_message"] is True
    assert body["messages"][-1] == {"role": "assistant", "content": "2 + 2 ="} and len(body["messages"]) == 5


def test_completions_with_the_template_where_the_chat_endpoint_cannot_prefill():
    with FakeOpenAI() as server:  # ignores continue_final_message, like llama-cpp-python's server
        backend = make(server.url, "chat_template=chatml")
        (c,) = backend.generate([PREFILLED])
        (body,) = prompts_sent(server)
    assert backend._endpoint == "template" and c.error is None and c.text
    assert body["prompt"] == CHATML and body["stop"] == ["<|im_end|>"]


def test_neither_is_an_error_naming_both():
    with FakeOpenAI(completions=False) as server:
        backend = make(server.url, "chat_template=chatml")
        (plain,) = backend.generate([GenerationRequest("Question: 2 + 2?", "", 8)])  # no prefill: the chat endpoint
        with pytest.raises(MissingCapability) as err:
            backend.generate([PREFILLED])
        without_template = make(server.url, "endpoint=chat")
        with pytest.raises(MissingCapability) as err2:
            without_template.generate([PREFILLED])
    assert plain.error is None and backend._endpoint == "chat"
    for e in (err, err2):
        assert "continue_final_message" in str(e.value) and "--model-arg chat_template=" in str(e.value)


def test_auto_takes_the_template_llama_cpp_reports():
    props = {**LLAMA_CPP_PROPS, "chat_template": BUILTIN["gemma"]}
    with FakeOpenAI(props=props) as server:
        backend = make(server.url, "chat_template=auto")
        (c,) = backend.generate([GenerationRequest("Question: 2 + 2?", "2 + 2 =", 8, context=(("system", "S"),))])
        (body,) = prompts_sent(server)
    assert backend._endpoint == "template" and c.error is None
    assert body["prompt"] == "<start_of_turn>user\nS\n\nQuestion: 2 + 2?<end_of_turn>\n<start_of_turn>model\n2 + 2 ="
    with FakeOpenAI() as silent:
        with pytest.raises(MissingCapability, match="does not say which chat template"):
            make(silent.url, "chat_template=auto", "endpoint=completions").generate([PREFILLED])


# -- llama.cpp's prompt cache ----------------------------------------------------------------------

def test_llama_cpp_gets_cache_prompt_and_requests_in_prefix_order():
    reqs = early_answering()
    with FakeOpenAI(props=LLAMA_CPP_PROPS, delay=0.02) as llama:
        out = make(llama.url, "endpoint=completions").generate(reqs)
        sent = prompts_sent(llama)
        at_once = llama.max_in_flight
    assert all(c.error is None for c in out)
    assert all(b["cache_prompt"] is True for b in sent)
    prompts = [b["prompt"] for b in sent]
    assert prompts == sorted(prompts) and len(prompts) == len(reqs) and at_once == 1


def test_llama_cpp_is_known_by_its_models_list_and_prompt_cache_off_sends_nothing_extra():
    with FakeOpenAI(owned_by="llamacpp") as llama:
        make(llama.url, "endpoint=completions").generate(early_answering(3))
        assert all(b["cache_prompt"] is True for b in prompts_sent(llama))
    with FakeOpenAI(props=LLAMA_CPP_PROPS, delay=0.02) as llama:
        make(llama.url, "endpoint=completions", "prompt_cache=off").generate(early_answering())
        assert not [b for b in prompts_sent(llama) if "cache_prompt" in b] and llama.max_in_flight > 1


def test_a_hosted_api_gets_nothing_beyond_the_openai_api():
    with FakeOpenAI(strict=True, delay=0.02) as hosted:  # answers 400 to a field it does not know
        backend = make(hosted.url, "endpoint=completions")
        out = backend.generate(early_answering())
        sent = prompts_sent(hosted)
    assert all(c.error is None for c in out) and backend.server.kind == "other"
    assert not [b for b in sent if set(b) - {"model", "prompt", "max_tokens", "temperature", "stop"}]
    assert hosted.max_in_flight > 1  # concurrency as configured


def test_llama_cpp_python_server_gets_one_request_at_a_time_and_no_cache_prompt(llama_server):
    with FaultProxy(llama_server.root) as proxy:
        backend = make(proxy.url, "endpoint=completions", "concurrency=8")
        reqs = [GenerationRequest("Count: one, two, three,", s, 2) for s in ["", " four", " four, five", " six"]]
        out = backend.generate(reqs)
        received, answered = list(proxy.received), list(proxy.answered)
    assert all(c.error is None for c in out)
    assert backend.server.kind == "llama-cpp-python" and backend.server.slots == 1
    assert "cache_prompt" not in backend._body("completions", reqs[0], "", 2)
    posts = [(t, k) for t, p, k in received if p.endswith("/completions")][-len(reqs):]
    done = [(t, k) for t, p, k in answered if p.endswith("/completions")][-len(reqs):]
    assert all(posts[j + 1][0] >= done[j][0] for j in range(len(reqs) - 1))  # never two at once


# -- against llama.cpp on the real GGUFs ----------------------------------------------------------------

@pytest.fixture(scope="module")
def qwen_inprocess(qwen_gguf: Path):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    from faithcheck.backends import load_backend

    backend = load_backend(f"llamacpp:{qwen_gguf}", ["threads=1", "n_ctx=2048"])
    yield backend
    backend.close()


RENDERED = [
    GenerationRequest(QUESTION),
    GenerationRequest(QUESTION, "Let me think step by step."),
    GenerationRequest("Question: 2 + 2?", "2 + 2 =", context=TURNS),
    GenerationRequest("Question: 2 + 2?", context=(("user", "Q1"), ("assistant", "A1"))),
]


def test_the_template_renders_what_llamacpp_renders(qwen_inprocess, tmp_path: Path):
    own = tmp_path / "qwen.jinja"
    own.write_text(qwen_inprocess.template)
    from_file = make("http://127.0.0.1:9/v1", f"chat_template={own}", "endpoint=completions")
    chatml = make("http://127.0.0.1:9/v1", "chat_template=chatml", "endpoint=completions")
    for req in RENDERED:
        assert from_file._body("template", req, req.prefill, 8)["prompt"] == qwen_inprocess.render(req)
    # the built-in ChatML is Qwen's template wherever a system prompt is given (else Qwen adds its own)
    with_system = [r for r in RENDERED if r.context and r.context[0][0] == "system"]
    assert with_system and all(chatml._body("template", r, r.prefill, 8)["prompt"] == qwen_inprocess.render(r)
                               for r in with_system)


def test_builtin_gemma_is_what_llama_cpp_python_renders_for_gemma(llama_server):
    """The gemma GGUF has no template of its own; llama-cpp-python's `--chat_format gemma` is an
    independent rendering of the same format (without a system turn, which it drops)."""
    req = GenerationRequest("What is 2 + 2?", "", 2, context=(("user", "What is 1 + 1?"), ("assistant", "2")))
    (chat,) = make(llama_server.url, "endpoint=chat").generate([req])
    (ours,) = make(llama_server.url, "endpoint=completions", "chat_template=gemma").generate([req])
    assert chat.error is None and ours.error is None
    assert (ours.n_prompt_tokens, ours.text) == (chat.n_prompt_tokens, chat.text)


def test_a_prefilled_assistant_turn_is_continued(llama_server):
    """Greedy: the chat endpoint's own answer, cut after its first words and prefilled through
    /completions with the template, goes on exactly as it did (the turn is left open)."""
    req = GenerationRequest("What is the capital of France? Answer in one sentence.", "", 8)
    (whole,) = make(llama_server.url, "endpoint=chat").generate([req])
    cut = whole.text.index(" ", whole.text.index(" ", 1) + 1)  # after two words
    prefill = whole.text[:cut]
    backend = make(llama_server.url, "chat_template=gemma")
    (rest,) = backend.generate([GenerationRequest(req.prompt, prefill, 3)])
    assert backend._endpoint == "template" and whole.error is None and rest.error is None
    assert rest.text.strip() and whole.text.startswith(prefill + rest.text), (whole.text, prefill, rest.text)


@pytest.mark.slow  # about 20 s: Qwen's server warms up on its first call (8 s here), then both generate
def test_a_prefill_through_completions_and_chatml_answers_as_llamacpp_does(qwen_server, qwen_inprocess):
    system = (("system", "You are a careful assistant."),)
    reqs = [GenerationRequest(q, cot + " The answer is", 4, ("\n",), context=system) for q, cot in [
        ("A pen costs $2 and a book costs $5. How much do 3 pens and 2 books cost?", "3 pens cost 3 * 2 = 6 dollars."),
        ("There are 30 students and 18 are girls. How many boys are there?", "30 - 18 ="),
    ]]
    backend = make(qwen_server.url, "chat_template=chatml")
    out = backend.generate(reqs)
    assert backend._endpoint == "template" and backend.server.kind == "llama-cpp-python"
    assert all(c.error is None for c in out)
    assert [c.text for c in out] == [c.text for c in qwen_inprocess.generate(reqs)]
    assert [c.n_prompt_tokens for c in out] == [len(qwen_inprocess.tokens(r)) for r in reqs]


def test_scoring_goes_through_the_template_too(llama_server):
    """Log-probabilities are of the continuation after the chat-formatted prompt: the greedy
    answer there scores above the alternatives."""
    backend = make(llama_server.url, "endpoint=completions", "chat_template=gemma")
    prompt = "What is the capital of France? Answer with one word."
    (first,) = backend.generate([GenerationRequest(prompt, "", 1)])
    candidates = [first.text] + [c for c in ("London", "banana") if c != first.text]
    scores = backend.loglikelihood([ScoreRequest(prompt, "", c) for c in candidates])
    assert backend._endpoint == "template" and first.text.strip()
    assert all(s < 0 for s in scores) and max(range(len(scores)), key=scores.__getitem__) == 0, (candidates, scores)
