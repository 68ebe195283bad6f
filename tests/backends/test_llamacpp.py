"""The llama.cpp backend on the real Qwen2.5-Coder-0.5B-Instruct GGUF: greedy and deterministic,
stop strings, chat turns through the GGUF's own template, shared prefixes evaluated once, and
(slow) the same answers as the hf backend on the same file."""

from __future__ import annotations

from pathlib import Path

import pytest

from faithcheck.errors import BadInput
from faithcheck.records import GenerationRequest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install llama-cpp-python)")

QUESTION = "Tom has 3 boxes of 4 apples and eats 2 apples. How many apples are left?"


@pytest.fixture(scope="module")
def qwen(qwen_gguf: Path):
    from faithcheck.backends import load_backend

    backend = load_backend(f"llamacpp:{qwen_gguf}")
    yield backend
    backend.close()


def test_config_is_validated(qwen_gguf: Path):
    from faithcheck.backends import load_backend

    with pytest.raises(BadInput, match="unknown key"):
        load_backend(f"llamacpp:{qwen_gguf}", ["thread=2"])
    with pytest.raises(BadInput, match="no such GGUF"):
        load_backend("llamacpp:/nonexistent/model.gguf")


def test_chat_template_renders_turns_and_leaves_the_assistant_turn_open(qwen):
    req = GenerationRequest("Q2", "So far", context=(("system", "Be brief."), ("user", "Q1"), ("assistant", "A1")))
    text = qwen.render(req)
    assert qwen.chat and text.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>" in text
    assert text.endswith("<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\nSo far")


def test_greedy_stop_strings_and_order_do_not_change_answers(qwen):
    reqs = [
        GenerationRequest(QUESTION, "Step by step: 3 * 4 =", 6, ("\n",)),
        GenerationRequest(QUESTION, "The answer is", 8, ("\n",)),
        GenerationRequest(QUESTION, "", 12, ()),
    ]
    first = qwen.generate(reqs)
    again = qwen.generate(list(reversed(reqs)))[::-1]
    assert [c.text for c in first] == [c.text for c in again]
    assert all(c.error is None for c in first)
    assert "\n" not in first[0].text and "\n" not in first[1].text
    assert first[2].finish_reason == "length" and first[2].n_generated_tokens == 12
    assert "12" in first[0].text  # 3 * 4 = 12: the model computes, it does not echo


def test_shared_prefixes_are_evaluated_once(qwen):
    cot = "There are 3 boxes. Each box has 4 apples. So there are 3 * 4 = 12 apples. Tom eats 2 apples. "
    reqs = [GenerationRequest(QUESTION, cot[:cut] + "The answer is", 4, ("\n",)) for cut in range(0, len(cot), 20)]
    before = dict(qwen.counters)
    out = qwen.generate(reqs)
    assert all(c.error is None for c in out)
    prompt = qwen.counters["prompt_tokens"] - before["prompt_tokens"]
    evaluated = qwen.counters["tokens_evaluated"] - before["tokens_evaluated"]
    longest = max(len(qwen.tokens(r)) for r in reqs)
    # each request evaluates only what follows the previous one's tokens: about the longest prompt plus
    # the generated tokens it replaces, not the sum of all prompts
    assert evaluated < prompt / 2 and evaluated <= longest + 8 * len(reqs), (evaluated, prompt, longest)


CUTS_COT = ("Tom has 3 boxes. Each box has 4 apples, so he has 3 * 4 = 12 apples. He eats 2 of them. "
            "So 12 - 2 = 10 apples are left. ")
CUTS = [GenerationRequest(QUESTION, CUTS_COT[:cut] + "The answer is", 6, ("\n",)) for cut in range(0, len(CUTS_COT), 15)]


def test_parallel_decoding_answers_as_one_at_a_time(qwen, qwen_gguf: Path):
    """Continuous batching (parallel=2 with 8 requests: sequences freed and reused, prompts copied
    from other sequences) gives the same greedy answers as llama.cpp's own one-at-a-time path."""
    from faithcheck.backends import load_backend

    one = load_backend(f"llamacpp:{qwen_gguf}", ["parallel=1"])
    two = load_backend(f"llamacpp:{qwen_gguf}", ["parallel=2"])
    try:
        single, paired = one.generate(CUTS), two.generate(CUTS)
    finally:
        one.close()
        two.close()
    batched = qwen.generate(CUTS)  # parallel=16: all at once
    assert all(c.error is None for c in single + paired + batched)
    assert [c.text for c in paired] == [c.text for c in single]
    assert [c.text for c in batched] == [c.text for c in single]
    assert [c.finish_reason for c in batched] == [c.finish_reason for c in single]
    assert two.counters["generated_tokens"] == one.counters["generated_tokens"]


def test_parallel_decoding_evaluates_the_prefix_tree_once(qwen_gguf: Path):
    """Prompt tokens evaluated = the distinct prefixes of the requests' token sequences (a trie
    built independently here), none twice."""
    from faithcheck.backends import load_backend
    from faithcheck.backends.prefix_tree import Trie

    backend = load_backend(f"llamacpp:{qwen_gguf}")
    try:
        rows = [backend.tokens(r) for r in CUTS]
        backend.generate(CUTS)
        assert backend.counters["tokens_evaluated"] == len(Trie(rows))
        assert backend.counters["prompt_tokens"] == sum(map(len, rows))
        backend.generate(CUTS[:3])  # the prefix all of them share is still held: only the rest is evaluated
        assert backend.counters["tokens_evaluated"] - len(Trie(rows)) < len(Trie(rows[:3]))
    finally:
        backend.close()


def test_finished_rows_stay_donors_of_their_prefix(qwen_gguf: Path):
    """Two slots: a long row holds one while short rows sharing a prefix pass one by one through
    the other. Each copies the prefix from the row finished before it (kept as a donor), so the
    tokens evaluated are still exactly the prefix trie's, and the answers those of one at a time."""
    from faithcheck.backends import load_backend
    from faithcheck.backends.prefix_tree import Trie

    reqs = [GenerationRequest("A list: count from 1 to 60, separated by commas.", "1, 2, 3,", 30, ())] + [
        GenerationRequest(QUESTION, CUTS_COT[:60] + w, 1, ()) for w in (" So", " Then", " Thus", " Hence", " Next")]
    one = load_backend(f"llamacpp:{qwen_gguf}", ["parallel=1"])
    two = load_backend(f"llamacpp:{qwen_gguf}", ["parallel=2"])
    try:
        rows = [two.tokens(r) for r in reqs]
        assert min(range(len(rows)), key=lambda i: rows[i]) == 0  # the long row is admitted first
        want, got = one.generate(reqs), two.generate(reqs)
        assert [c.text for c in got] == [c.text for c in want] and got[0].n_generated_tokens == 30
        assert two.counters["tokens_evaluated"] == len(Trie(rows))
    finally:
        one.close()
        two.close()


def test_a_follow_up_call_copies_a_row_finished_in_the_call_before(qwen_gguf: Path):
    """A forced answer after a CoT comes in a later call than the CoT: the CoT's sequence is
    still a donor then, so the follow-up evaluates little more than what it adds."""
    from faithcheck.backends import load_backend
    from faithcheck.backends._llama_tree import common_prefix

    backend = load_backend(f"llamacpp:{qwen_gguf}", ["parallel=2"])
    try:
        [cot] = backend.generate([GenerationRequest(QUESTION, "Let's think step by step.", 24, ())])
        follow = GenerationRequest(QUESTION, "Let's think step by step." + cot.text + "\nThe answer is", 4, ("\n",))
        other = GenerationRequest("A list: count from 1 to 60, separated by commas.", "", 4, ())
        rows = [backend.tokens(r) for r in (follow, other)]
        before = backend.counters["tokens_evaluated"]
        backend.generate([follow, other])
        evaluated = backend.counters["tokens_evaluated"] - before
        fresh = len(rows[0]) + len(rows[1]) - 2 * common_prefix(*rows)  # each beyond what the two share
        assert evaluated < fresh - 30, (evaluated, fresh)  # the CoT's ~50 tokens were not evaluated again
    finally:
        backend.close()


def test_a_forced_answer_is_decoded_in_its_cots_own_sequence(qwen_gguf: Path):
    """With `ahead`, each CoT's follow-up (its forced answer) is decoded the moment the CoT
    finishes, copying the CoT's sequence: it evaluates only what it adds to the CoT (the
    answer cue), where a later call would evaluate the CoT again, and it answers as llama.cpp's
    own path does when the forced answer follows its CoT."""
    from faithcheck.backends import load_backend
    from faithcheck.backends.base import FollowUps

    cots = [GenerationRequest(QUESTION, "Let's think step by step.", 24, ()),
            GenerationRequest("A list: count from 1 to 60, separated by commas.", "", 24, ())]

    def forced(req, comp):
        if req not in cots:
            return None  # a forced answer is followed by nothing
        return GenerationRequest(req.prompt, req.prefill + comp.text + "\nThe answer is", 4, ("\n",))

    ahead_backend, cots_only, one = (load_backend(f"llamacpp:{qwen_gguf}", [f"parallel={k}"]) for k in (2, 2, 1))
    try:
        answered: list = []
        got: dict = {}
        ahead_backend.generate_stream(cots, got.update, ahead=FollowUps(forced, lambda r, c: answered.append((r, c))))
        plain = cots_only.generate(cots)
        assert [got[i].text for i in range(2)] == [c.text for c in plain]
        answered.sort(key=lambda pair: [forced(r, c) for r, c in zip(cots, plain)].index(pair[0]))  # in finishing order
        assert [r for r, _ in answered] == [forced(r, c) for r, c in zip(cots, plain)]
        # llama.cpp's own path, one request at a time, each forced answer right after its CoT (its
        # cells reused there too: a prompt evaluated afresh can differ from cells written while
        # generating in the last bits, and flip a near-tie)
        assert [c.text for _, c in answered] == [one.generate([forced(r, one.generate([r])[0])])[0].text for r in cots]
        extra = ahead_backend.counters["tokens_evaluated"] - cots_only.counters["tokens_evaluated"]
        later = [ahead_backend.tokens(r) for r, _ in answered]
        assert extra <= 2 * 8 < min(map(len, later)), (extra, [len(t) for t in later])
    finally:
        for b in (ahead_backend, cots_only, one):
            b.close()


def test_a_follow_up_of_a_follow_up_is_decoded_in_the_same_sequence(qwen_gguf: Path):
    """A forced answer cut by its budget is itself followed up (its continuation): the chain
    CoT -> forced answer -> continuation is decoded in one sequence, each link evaluating only
    the cue it adds, with llama.cpp's own answers for the same chain one call at a time."""
    from faithcheck.backends import load_backend
    from faithcheck.backends.base import FollowUps

    cot = GenerationRequest(QUESTION, "Let's think step by step.", 24, ())

    def nxt(req, comp):
        if req.prefill.endswith("The answer is"):
            return GenerationRequest(req.prompt, req.prefill + comp.text, 4, ())  # the continuation
        if req == cot:
            return GenerationRequest(req.prompt, req.prefill + comp.text + "\nThe answer is", 3, ())
        return None

    ahead_backend, cots_only, one = (load_backend(f"llamacpp:{qwen_gguf}", [f"parallel={k}"]) for k in (2, 2, 1))
    try:
        answered: list = []
        got: dict = {}
        ahead_backend.generate_stream([cot], got.update, ahead=FollowUps(nxt, lambda r, c: answered.append((r, c))))
        [plain] = cots_only.generate([cot])
        assert got[0].text == plain.text
        forced = nxt(cot, plain)
        assert [r for r, _ in answered][0] == forced and len(answered) == 2
        assert answered[1][0] == nxt(forced, answered[0][1])
        [own_cot] = one.generate([cot])
        [own_forced] = one.generate([nxt(cot, own_cot)])
        [own_more] = one.generate([nxt(nxt(cot, own_cot), own_forced)])
        assert [c.text for _, c in answered] == [own_forced.text, own_more.text]
        extra = ahead_backend.counters["tokens_evaluated"] - cots_only.counters["tokens_evaluated"]
        # only what each link adds: the cue "The answer is", and the last token of each cut link
        assert extra <= 12 < len(ahead_backend.tokens(answered[1][0])) - 40, extra
    finally:
        for b in (ahead_backend, cots_only, one):
            b.close()


def test_donor_slots_keep_a_prefix_past_other_calls(qwen_gguf: Path):
    """A CoT's forced answer may come calls later, after more rows than `parallel` have passed
    through: with sequences kept for donors only, the CoT's cells are still there to copy
    (and the answers are the same); without, its prompt is evaluated again."""
    from faithcheck.backends import load_backend

    cot = GenerationRequest(QUESTION, "Let's think step by step.", 24, ())
    others = [GenerationRequest(f"Name a colour, number {k}.", "", 3, ()) for k in range(4)]
    evaluated, answers = {}, {}
    for slots in (0, 6):
        backend = load_backend(f"llamacpp:{qwen_gguf}", ["parallel=2", f"donor_slots={slots}"])
        try:
            [done] = backend.generate([cot])
            backend.generate(others)  # four rows through two live slots
            later = GenerationRequest(QUESTION, cot.prefill + done.text + "\nThe answer is", 4, ("\n",))
            before = backend.counters["tokens_evaluated"]
            answers[slots] = backend.generate([later])[0].text
            evaluated[slots] = backend.counters["tokens_evaluated"] - before
            assert backend._decoder.peak <= 2
        finally:
            backend.close()
    assert evaluated[6] <= 8 and evaluated[0] >= 40, evaluated  # the answer cue vs the whole prompt again
    assert answers[6] == answers[0]


def test_a_tight_cache_counts_the_shared_prefix_once(qwen_gguf: Path):
    """Rows are admitted by the cells they add beyond the root's shared prefix: a cache that
    holds the prefix once and three rows' own tokens and budgets decodes more rows at once
    than would fit counting each row's whole prompt, and the answers stay those of one at a
    time."""
    from faithcheck.backends import load_backend
    from faithcheck.backends._llama_tree import common_prefix

    one = load_backend(f"llamacpp:{qwen_gguf}", ["parallel=1"])
    try:
        rows = [one.tokens(r) for r in CUTS]
        shared = min(common_prefix(rows[0], r) for r in rows)
        own = max(len(r) - shared + c.max_new_tokens for r, c in zip(rows, CUTS))
        whole = sorted(len(r) + c.max_new_tokens for r, c in zip(rows, CUTS))
        old_most = max(k for k in range(len(whole) + 1) if sum(whole[:k]) <= 3 * own)  # rows counted whole
        tight = load_backend(f"llamacpp:{qwen_gguf}", [f"parallel_ctx={shared + 3 * own}"])
        try:
            got, want = tight.generate(CUTS), one.generate(CUTS)
            assert all(c.error is None for c in got)
            assert [c.text for c in got] == [c.text for c in want]
            assert tight._decoder.peak >= 3 > old_most
        finally:
            tight.close()
    finally:
        one.close()


def test_parallel_is_validated(qwen_gguf: Path):
    from faithcheck.backends import load_backend

    with pytest.raises(BadInput, match="parallel=0"):
        load_backend(f"llamacpp:{qwen_gguf}", ["parallel=0"])


def test_a_prompt_past_the_context_is_a_failed_call(qwen_gguf: Path):
    from faithcheck.backends import load_backend

    small = load_backend(f"llamacpp:{qwen_gguf}", ["n_ctx=64"])
    try:
        [c] = small.generate([GenerationRequest(QUESTION * 4, "", 32)])
        assert c.error is not None and "n_ctx" in c.error and c.text == ""
    finally:
        small.close()


@pytest.mark.slow
def test_same_answers_as_hf_on_the_same_gguf(qwen, qwen_gguf: Path):
    """hf de-quantises the GGUF to fp32, llama.cpp computes in Q4_K/Q8 blocks: their logits differ a
    little, so greedy text may part after a while; the forced answers must agree."""
    from faithcheck.backends import load_backend

    questions = [
        "Tom has 3 boxes of 4 apples and eats 2 apples. How many apples are left?",
        "A pen costs $2 and a book costs $5. How much do 3 pens and 2 books cost?",
        "Sara reads 12 pages a day. How many pages does she read in a week?",
        "There are 30 students and 18 are girls. How many boys are there?",
        "A train travels 60 km per hour for 3 hours. How far does it go?",
    ]
    reqs = [GenerationRequest(q, "Let's compute step by step, then give the number. The answer is", 6, ("\n",))
            for q in questions]
    hf = load_backend(f"hf:{qwen_gguf}")
    try:
        ours, theirs = qwen.generate(reqs), hf.generate(reqs)
    finally:
        hf.close()
    from faithcheck.tasks._text import number_answer

    agree = [number_answer(a.text) == number_answer(b.text) for a, b in zip(ours, theirs)]
    assert sum(agree) >= 4, [(a.text, b.text) for a, b in zip(ours, theirs)]


@pytest.mark.slow
def test_hf_gguf_is_dequantised_once(gemma_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The second hf load of a GGUF reads the safetensors copy the first one wrote, and answers the same."""
    from faithcheck.backends import _gguf_cache, load_backend
    from faithcheck.backends import hf as hf_module
    from faithcheck.backends.hf import weights_fingerprint

    monkeypatch.setenv("FAITHCHECK_CACHE_DIR", str(tmp_path))
    reqs = [GenerationRequest("The capital of France is", "", 6), GenerationRequest(QUESTION, "The answer is", 6, ("\n",))]
    first = load_backend(f"hf:{gemma_gguf}")
    out1 = first.generate(reqs)
    first.close()
    assert _gguf_cache.ready(_gguf_cache.dequantized_dir(weights_fingerprint(gemma_gguf)))

    def no_gguf_parsing():  # the second load must read the safetensors copy, never the GGUF
        raise AssertionError("the GGUF was parsed again on the second load")

    monkeypatch.setattr(hf_module, "_gguf_parsed_once", no_gguf_parsing)
    second = load_backend(f"hf:{gemma_gguf}")
    out2 = second.generate(reqs)
    assert second.fingerprint == first.fingerprint
    second.close()
    assert [c.text for c in out1] == [c.text for c in out2]


@pytest.mark.slow
def test_same_answers_as_hf_on_gemma(gemma_gguf: Path):
    """The same check on gemma-3-270m (its hf load takes about a minute, Qwen's several):
    forced answers through llama.cpp and through hf's de-quantised weights agree."""
    from faithcheck.backends import load_backend
    from faithcheck.tasks._text import number_answer

    questions = [
        "What is 7 + 5?", "What is 3 times 4?", "What is 20 minus 8?", "How many legs do 2 dogs have?",
        "What is 10 divided by 2?", "What is 9 + 9?",
    ]
    reqs = [GenerationRequest(q, "The answer is", 4, ("\n",)) for q in questions]
    ours = load_backend(f"llamacpp:{gemma_gguf}")
    try:
        mine = ours.generate(reqs)
    finally:
        ours.close()
    hf = load_backend(f"hf:{gemma_gguf}")
    try:
        theirs = hf.generate(reqs)
    finally:
        hf.close()
    agree = [number_answer(a.text) == number_answer(b.text) for a, b in zip(mine, theirs)]
    print("llamacpp vs hf on gemma:", [(a.text, b.text) for a, b in zip(mine, theirs)])
    assert sum(agree) >= len(reqs) - 1, [(a.text, b.text) for a, b in zip(mine, theirs)]
