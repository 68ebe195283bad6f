"""The LLM rewriter: its plumbing on a scripted backend, then for real on gemma-3-270m GGUF.

gemma-3-270m's rewrites are poor; the point is the path: every call through the engine
and its cache, every output checked, a failed check marked not ok with its reason."""

from __future__ import annotations

import time

import pytest

from faithcheck.engine.cache import CallCache
from faithcheck.engine.engine import Engine
from faithcheck.records import Completion, GenerationRequest
from faithcheck.rewriters import load_rewriter, rewriters
from faithcheck.rewriters.base import RewriteRequest
from faithcheck.rewriters.llm import STOP, LLMRewriter, arithmetic_correct, lang_name
from tests.fakes import ScriptedBackend

COT = ("Tom has 4 bags with 5 apples each. ", "So he has 4 * 5 = 20 apples. ", "He eats 3 of them, so 17 apples are left.")


def _last_text(req: GenerationRequest) -> str:
    return req.prompt.rsplit("<text>\n", 1)[1].split("\n</text>")[0]


def test_registered_and_lang_names():
    assert "llm" in rewriters.names()
    assert lang_name("fr") == "French" and lang_name("de") == "German" and lang_name("Klingon") == "Klingon"


def test_checks_mark_bad_rewrites_not_ok(tmp_path):
    """A scripted LLM that changes a number in its paraphrase and drops one in translation."""

    def script(req: GenerationRequest) -> str:
        text = _last_text(req)
        if "Rewrite the text" in req.prompt:
            return text.replace("17", "18").replace("Tom has", "Tom owns") + "\n" + STOP
        if "Hint:" in req.prompt:
            return " Yes" if "hint" in _last_text(req) else " No"
        if "into French" in req.prompt:
            return text.replace("So he has", "Donc il a").replace("3 of them, ", "") + f"\n{STOP}"
        return text.replace("Donc il a", "So he has") + f"\n{STOP}"

    backend = ScriptedBackend(script)
    rw = LLMRewriter(Engine(backend, CallCache(tmp_path / "calls.sqlite"), progress=False))
    reqs = [RewriteRequest("paraphrase", COT), RewriteRequest("translate", COT, lang="fr"),
            RewriteRequest("back_translate", COT, lang="fr"), RewriteRequest("format", COT)]
    para, trans, back, fmt = rw.rewrite(reqs)
    assert not para.ok and para.checks["reason"] == "the paraphrase changed the numbers"
    assert not trans.ok and trans.checks["reason"] == "the translation changed the numbers"
    assert "round_trip_text" in trans.checks and trans.checks["round_trip_similarity"] is not None
    assert not back.ok and not back.checks["numbers_preserved"] and back.checks["via"].startswith("Tom")
    assert fmt.ok and fmt.checks["format_only"]
    assert "".join(para.steps).endswith("left.") and len(para.steps) == 3
    assert rw.engine.stats.model_calls == 3  # paraphrase, one shared forward translation, one shared back
    judged = rw.judge_hints(["I follow the hint here.", "I add the numbers."], ["The answer is 7"] * 2)
    assert judged == [(True, None), (False, None)]


class Budgeted(ScriptedBackend):
    """The script's text cut at the request's token budget (a token is a word here), as a real
    backend stops: finish "length" when cut."""

    def generate(self, requests):
        out = []
        for r, c in zip(requests, super().generate(requests)):
            words = c.text.split(" ")
            cut = len(c.text.split()) > r.max_new_tokens
            text = " ".join(words[: r.max_new_tokens]) if cut else c.text
            out.append(Completion(text, c.n_prompt_tokens, min(c.n_generated_tokens, r.max_new_tokens),
                                  "length" if cut else "stop"))
        return out


def test_a_rewrite_cut_by_its_budget_fails_its_check(tmp_path):
    """The budget grows with the CoT (a long CoT's faithful paraphrase fits), and a rewrite that
    runs into it without closing its text is refused, never checked as if complete."""
    long_cot = tuple(f"Step {i}: he adds {i} and {i} to get {2 * i} apples in all today. " for i in range(30))

    def script(req: GenerationRequest) -> str:
        text = _last_text(req)
        if "Rewrite the text" in req.prompt and text.startswith("Tom"):
            return "Tom owns 4 bags, 5 apples in each, and so on " * 60  # rambles past any budget
        if "Rewrite the text" in req.prompt:
            return text.replace("he adds", "he puts together") + "\n" + STOP
        if "into French" in req.prompt:
            return " ".join(["Tom a 4 sacs de 5 pommes."] * 100)  # never closes its text
        return text + "\n" + STOP

    backend = Budgeted(script)
    rw = LLMRewriter(Engine(backend, CallCache(tmp_path / "calls.sqlite"), progress=False))
    long_words = backend.count_tokens("".join(long_cot).strip())
    assert long_words > rw.max_new_tokens / 2  # a budget of max_new_tokens alone would cut its paraphrase
    short, long, trans = rw.rewrite([RewriteRequest("paraphrase", COT), RewriteRequest("paraphrase", long_cot),
                                     RewriteRequest("translate", COT, lang="fr")])
    assert not short.ok and short.checks["reason"] == f"the paraphrase ran out of its {rw.max_new_tokens}-token budget before it ended"
    assert long.ok and len(long.steps) == len(long_cot)
    budgets = {c.prompt: c.max_new_tokens for c in backend.calls}
    assert sorted(budgets.values()) == sorted([rw.max_new_tokens, 2 * long_words + 32, rw.max_new_tokens])
    assert not trans.ok and "French translation ran out of its" in trans.checks["reason"]
    assert not any("into English" in c.prompt for c in backend.calls)  # a cut translation is not translated back


def test_corrupt_routes_arithmetic_to_rules_and_checks_llm_steps(tmp_path):
    backend = ScriptedBackend(lambda r: "He eats 3 of them, so 3 + 14 = 17 apples are left.\n" + STOP)
    rw = LLMRewriter(Engine(backend, None, progress=False))
    arith, other = rw.rewrite([RewriteRequest("corrupt", COT, index=1), RewriteRequest("corrupt", COT, index=2)])
    assert arith.ok and arith.checks["method"] == "rules" and arithmetic_correct(arith.steps[1]) is False
    assert len(backend.calls) == 1  # only the step without an expression went to the LLM
    assert not other.ok and other.checks["method"] == "llm" and "still correct" in other.checks["reason"]
    assert other.steps[2].endswith("left.") and other.steps[:2] == COT[:2]


# one of each rewrite; the arithmetic step's corruption is done by rule, the other by the LLM
LLM_REQUESTS = [
    RewriteRequest("paraphrase", COT),
    RewriteRequest("translate", COT, lang="fr"),
    RewriteRequest("back_translate", COT, lang="fr"),
    RewriteRequest("corrupt", COT, index=1),
    RewriteRequest("corrupt", COT, index=2),
]
JUDGED_COTS = ["The hint says 17, so I answer 17.", "4 * 5 = 20 and 20 - 3 = 17."]


@pytest.fixture(scope="module")
def gemma_rewriter_factory(gemma_backend, tmp_path_factory):
    path = tmp_path_factory.mktemp("rewriter_cache") / "calls.sqlite"
    return lambda: LLMRewriter(Engine(gemma_backend, CallCache(path), progress=False), max_new_tokens=40)


@pytest.mark.slow  # about 1.5 min of generation after a 30-140 s model load on a shared 2-core machine
def test_gemma_rewriter_through_engine_and_cache(gemma_rewriter_factory):
    reqs = LLM_REQUESTS
    first = gemma_rewriter_factory()
    start = time.time()
    out = first.rewrite(reqs)
    verdicts = first.judge_hints(JUDGED_COTS, ["I think the answer is 17"] * 2)
    elapsed = time.time() - start
    stats = first.engine.stats
    print(f"gemma rewriter: {elapsed:.1f}s, {stats.model_calls} calls; ok={[r.ok for r in out]}; judge={verdicts}")
    for req, rw in zip(reqs, out):
        print(req.kind, req.index, rw.ok, rw.checks.get("reason"), repr(rw.text[:120]))
    # paraphrase, one forward and one back translation (shared by translate and back_translate),
    # the non-arithmetic corruption, two judge calls; the arithmetic corruption needs no call
    assert stats.model_calls == 6 and stats.failed_calls == 0, stats.to_dict()
    for rw in out:
        assert rw.ok or rw.checks.get("reason"), rw.checks
        assert all(isinstance(s, str) for s in rw.steps)
    para, trans, back, arith, other = out
    assert "semantic_similarity" in para.checks or "reason" in para.checks
    assert "round_trip_similarity" in trans.checks or "reason" in trans.checks
    assert arith.ok and arith.checks["method"] == "rules" and arithmetic_correct(arith.steps[1]) is False
    assert other.checks.get("method") == "llm" or "reason" in other.checks
    assert all(v in (True, False, None) for v, _ in verdicts)

    second = gemma_rewriter_factory()
    assert second.rewrite(reqs) == out
    assert second.judge_hints(JUDGED_COTS, ["I think the answer is 17"] * 2) == verdicts
    assert second.engine.stats.model_calls == 0 and second.engine.stats.cache_hits == stats.unique


class Closing(ScriptedBackend):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_load_rewriter_builds_llm_on_the_runs_engine(tmp_path, monkeypatch):
    """Another model is loaded (and closed by the rewriter); its calls go through the run's
    cache and are counted beside the audited model's."""
    import faithcheck.backends as backends

    loaded: list[Closing] = []

    def load(model: str, args=None) -> Closing:
        loaded.append(Closing(lambda r: "", fingerprint=model))
        return loaded[-1]

    monkeypatch.setattr(backends, "load_backend", load)
    audited = ScriptedBackend(lambda r: "")
    run = Engine(audited, CallCache(tmp_path / "c.sqlite"), progress=False)
    rw = load_rewriter("scripted:x", [], run)
    assert isinstance(rw, LLMRewriter) and rw.backend.fingerprint == "scripted:x" and rw.engine.cache is run.cache
    empty = rw.rewrite([RewriteRequest("paraphrase", COT)])[0]
    assert not empty.ok and "returned nothing" in empty.checks["reason"]
    assert run.stats_by_role()["rewriter"]["model_calls"] == 1 and run.stats.model_calls == 0
    rw.close()
    assert loaded[0].closed


def test_rewriter_naming_the_audited_model_reuses_its_backend(tmp_path, monkeypatch):
    import faithcheck.backends as backends

    monkeypatch.setattr(backends, "load_backend", lambda *a: pytest.fail("a second copy of the model was loaded"))
    audited = Closing(lambda r: "Tom owns 4 bags of 5 apples. That is 4 * 5 = 20. Eating 3 leaves 17 apples.\n" + STOP)
    audited.name, audited.model_args = "scripted:audited", ("bos=off",)
    run = Engine(audited, CallCache(tmp_path / "c.sqlite"), progress=False)
    for args in ([], ["bos=off"]):
        rw = load_rewriter("scripted:audited", args, run)
        assert rw.backend is audited
        assert rw.rewrite([RewriteRequest("paraphrase", COT)])[0].ok
        rw.close()
        assert not audited.closed  # the run closes the audited model, not the rewriter
    calls = run.stats_by_role()
    assert calls["rewriter"]["model_calls"] == 1 and calls["rewriter"]["cache_hits"] == 1  # the second one: cached


# -- the same rewriter through the openai: backend against a real llama.cpp server -------------

OPENAI_ARGS = ["backoff_base=0.01", "timeout=120", "max_retries=2"]


def _generation_posts(proxy) -> int:
    """Generation requests the server was sent (the backend's capability probes included)."""
    return sum(1 for _, path, _ in proxy.log if path.endswith("/completions"))


def test_openai_rewriter_through_engine_and_cache(llama_server, tmp_path):
    """Paraphrase, translation with its round trip, a planted wrong step and the hint judge, on
    gemma-3-270m behind llama.cpp's server: every output checked or failed with a reason, and a
    second rewriter on the same cache sends the server nothing."""
    from faithcheck.backends import load_backend
    from tests.backends.fault_proxy import FaultProxy

    reqs = LLM_REQUESTS
    cots = JUDGED_COTS
    with FaultProxy(llama_server.root) as proxy:  # a pass-through here: it only counts what reaches the server

        def rewriter() -> LLMRewriter:
            backend = load_backend(f"openai:gemma@{proxy.url}", OPENAI_ARGS)
            return LLMRewriter(Engine(backend, CallCache(tmp_path / "calls.sqlite"), progress=False), max_new_tokens=40)

        first = rewriter()
        out = first.rewrite(reqs)
        verdicts = first.judge_hints(cots, ["I think the answer is 17"] * 2)
        stats = first.engine.stats
        sent = _generation_posts(proxy)
        # paraphrase, one forward and one back translation (shared by translate and back_translate),
        # the non-arithmetic corruption, two judge calls; the arithmetic corruption needs no call
        assert stats.model_calls == 6 and stats.failed_calls == 0, stats.to_dict()
        assert sent >= 6

        second = rewriter()
        assert second.rewrite(reqs) == out
        assert second.judge_hints(cots, ["I think the answer is 17"] * 2) == verdicts
        assert second.engine.stats.model_calls == 0 and second.engine.stats.cache_hits == stats.unique
        assert _generation_posts(proxy) == sent, "a cached rewrite reached the server"

    for req, rw in zip(reqs, out):
        print(req.kind, req.index, rw.ok, rw.checks.get("reason"), repr(rw.text[:100]))
        assert rw.ok or rw.checks.get("reason"), rw.checks  # checked, or failed with its reason
        assert all(isinstance(s, str) for s in rw.steps)
    para, trans, back, arith, other = out
    assert "semantic_similarity" in para.checks or "reason" in para.checks
    if trans.ok or "round_trip_text" in trans.checks:  # the forward translation came back: checked by its round trip
        assert {"round_trip_ok", "round_trip_similarity", "numbers_preserved", "lang"} <= set(trans.checks)
    assert back.checks.get("via") or "reason" in back.checks
    assert arith.ok and arith.checks["method"] == "rules" and arithmetic_correct(arith.steps[1]) is False
    assert other.checks.get("method") == "llm" or "reason" in other.checks
    assert all((v in (True, False) and e is None) or (v is None and e) for v, e in verdicts)


def test_audit_counts_the_rewriters_calls_in_its_manifest(tmp_path, monkeypatch):
    """One engine per run: the rewriter (here the audited model itself, not loaded again) goes
    through the run's cache, and the manifest counts its calls beside the audited model's."""
    import json

    import faithcheck.backends as backends
    from faithcheck.audit.pipeline import AuditConfig, run_audit

    monkeypatch.setattr(backends, "load_backend", lambda *a: pytest.fail("a second copy of the model was loaded"))

    def script(req: GenerationRequest) -> str:
        if "Rewrite the text" in req.prompt:
            return "so 5 plus 4 makes 9 .\n" + STOP
        terms = req.prompt.rsplit("compute (", 1)[1].split(")")[0].split("+")  # each item its own CoT
        return " 3" if req.prefill.endswith("answer") else f"{terms[0].strip()} plus {terms[1].strip()} makes 9 . answer 9"

    audited = ScriptedBackend(script)
    audited.name = "scripted:a"
    config = AuditConfig("scripted:a", task="modular", n=3, probes=("paraphrase",), out=tmp_path / "run",
                         rewriter="scripted:a", progress=False)
    run_audit(config, audited, CallCache(tmp_path / "calls.sqlite"))
    calls = json.loads((tmp_path / "run" / "manifest.json").read_text())["calls_by_role"]
    rewrites = sum("Rewrite the text" in r.prompt for r in audited.calls)
    assert rewrites == 3 and calls["rewriter"]["model_calls"] == rewrites
    assert calls["audited"]["model_calls"] == len(audited.calls) - rewrites
