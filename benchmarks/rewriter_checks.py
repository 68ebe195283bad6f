"""How many of an LLM rewriter's paraphrases and translations of real CoTs pass their checks, and why the rest fail.

    python benchmarks/rewriter_checks.py --cache PATH [--copy-cache SRC] [--n 40] [--model MODEL]
        [--rewriter MODEL] [--languages fr,de] [--model-arg K=V ...] [--rows OUT.jsonl]

The model's own baseline GSM8K CoTs (`pipeline.baseline`, through an engine over the call
cache at --cache; --copy-cache first copies another run's cache there, read only, so its
answered calls are reused and it is never written), items whose baseline failed or hit its
budget dropped as the audit drops them; then the rewrites the `paraphrase` and `translation`
probes ask for (their own `rewrite_requests`, resolved by the pipeline's `resolve_rewrites`:
exactly the audit's requests), rewritten by --rewriter (default: the model itself, Qwen
rewriting its own CoTs). Printed per kind (paraphrase; translation and its round trip per
language): asked, passed, pass share with a Wilson 95% CI, the first failed check and the
count per failed check, how many rewrites ran to the token budget without closing </text>,
how many translations still read as English, and a few examples per failed check.
`uptime` before and after, and the wall time.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from faithcheck.audit.pipeline import baseline, resolve_rewrites  # noqa: E402
from faithcheck.backends import load_backend  # noqa: E402
from faithcheck.engine.cache import CallCache, check_cache_path  # noqa: E402
from faithcheck.engine.engine import Engine  # noqa: E402
from faithcheck.errors import BadInput  # noqa: E402
from faithcheck.probes import AuditOptions, ProbeContext, get_probes  # noqa: E402
from faithcheck.rewriters import load_rewriter  # noqa: E402
from faithcheck.rewriters.checks import UNTRANSLATED_MIN  # noqa: E402
from faithcheck.rewriters.llm import LLMRewriter, paraphrase_prompt, translate_prompt  # noqa: E402
from faithcheck.scoring.stats import wilson  # noqa: E402
from faithcheck.tasks import configure_task, get_task, task_options  # noqa: E402

# The order each rewriter path tests its checks in (rewriters/llm.py), so "first failed" is the reason it gives.
ORDER = {
    "paraphrase": ("returned", "changed", "numbers_preserved", "similarity"),
    "translate": ("returned", "numbers_preserved", "changed", "translated", "round_trip_returned", "round_trip_numbers",
                  "round_trip_similarity"),
    "back_translate": ("returned", "round_trip_returned", "numbers_preserved", "similarity"),
}
# Common English function words that are not also common French or German words: a text still in
# English after "translation" keeps about as many of them as its original.
ENGLISH = frozenset("the and is of to he she so has have for each total they are with that was it her his "
                    "which then we this after how many there".split())
WORD = re.compile(r"[^\W\d_]+")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def english_share(text: str) -> float:
    words = [w.lower() for w in WORD.findall(text)]
    return sum(w in ENGLISH for w in words) / len(words) if words else 0.0


def failed_checks(kind: str, checks: dict) -> list[str]:
    """The checks a rewrite failed, in the order the rewriter tests them (a rewrite the
    rewriter could not produce at all carries only its `reason`)."""
    sim_ok = lambda v: v is None or v >= checks.get("similarity_min", 0)  # noqa: E731 - None: no embedder, skipped
    if kind == "paraphrase":
        if "numbers_preserved" not in checks:
            return ["returned"]
        got = {"changed": checks["changed"], "numbers_preserved": checks["numbers_preserved"],
               "similarity": sim_ok(checks["semantic_similarity"])}
    elif kind == "translate":
        if "numbers_preserved" not in checks:
            return ["returned"]
        back = bool(checks["round_trip_text"])
        kept = checks.get("source_words_kept")
        got = {"numbers_preserved": checks["numbers_preserved"], "changed": checks["changed"],
               "translated": kept is None or kept < UNTRANSLATED_MIN, "round_trip_returned": back,
               "round_trip_numbers": back and checks["round_trip_numbers_preserved"],
               "round_trip_similarity": back and sim_ok(checks["round_trip_similarity"])}
    else:
        if "via" not in checks:
            return ["round_trip_returned" if "back" in checks.get("reason", "") else "returned"]
        got = {"numbers_preserved": checks["numbers_preserved"], "similarity": sim_ok(checks["semantic_similarity"])}
    return [name for name in ORDER[kind] if name in got and not got[name]]


def finish_reasons(rewriter, rows: list[dict]) -> None:
    """Each row's `finish` from the rewriter's own cached calls (looked up, never computed):
    "length" means the rewrite ran to the token budget without closing </text>."""
    if not isinstance(rewriter, LLMRewriter):
        return
    engine = rewriter.engine
    for row in rows:
        text = row["original"].strip()
        if row["kind"] == "paraphrase":
            prompt = paraphrase_prompt(text)
        elif row["kind"] == "translate":
            prompt = translate_prompt(text, row["lang"])
        elif row["checks"].get("via"):
            prompt = translate_prompt(row["checks"]["via"], "en", source=row["lang"])
        else:
            continue
        req = rewriter.request(prompt, rewriter.budget(text))  # its exact request: the cache key it used
        got = engine.cache.get_many(engine.backend.identity.cache_key, [req.key()])
        row["finish"] = got[req.key()].finish_reason if got else None


def show(text: str, limit: int = 160) -> str:
    text = text.strip()
    cut = text[:limit] + ("…" if len(text) > limit else "")
    return json.dumps(cut, ensure_ascii=False)


def report(rows: list[dict], examples: int) -> None:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        label = row["kind"] if row["kind"] == "paraphrase" else f"{row['kind']}:{row['lang']}"
        groups.setdefault(label.replace("back_translate", "round_trip"), []).append(row)
    print(f"\n{'kind':18} {'asked':>5} {'passed':>6}  pass share [95% CI]      budget hit  still English")
    for label, group in groups.items():
        passed = sum(r["ok"] for r in group)
        est = wilson(passed, len(group))
        hit = sum(r.get("finish") == "length" for r in group)
        translated = label.startswith("translate")
        english = str(sum(r["looks_english"] for r in group)) if translated else "-"
        english_passed = f" ({sum(r['looks_english'] and r['ok'] for r in group)} passed)" if translated else ""
        print(f"{label:18} {len(group):>5} {passed:>6}  {est.estimate:.2f} [{est.ci_low:.2f}, {est.ci_high:.2f}]"
              f"        {hit:>5}  {english}{english_passed}")
    for label, group in groups.items():
        bad = [r for r in group if not r["ok"]]
        if not bad:
            continue
        first = Counter(r["failed"][0] for r in bad if r["failed"])
        each = Counter(name for r in bad for name in r["failed"])
        print(f"\n== {label}: {len(bad)} failed; first failed check: {dict(first.most_common())}; "
              f"every failed check: {dict(each.most_common())}")
        for name, _ in each.most_common():
            for r in [r for r in bad if name in r["failed"]][:examples]:
                sim = r["checks"].get("semantic_similarity", r["checks"].get("round_trip_similarity"))
                print(f"  [{name}] item {r['item_id']} sim={sim} finish={r.get('finish')} reason={r['checks'].get('reason')!r}")
                print(f"     original: {show(r['original'])}")
                print(f"     rewrite:  {show(r['rewrite'])}")
                if r["kind"] == "translate" and r["checks"].get("round_trip_text"):
                    print(f"     back:     {show(r['checks']['round_trip_text'])}")


def copy_cache(src: Path, dst: Path) -> None:
    """SQLite's own backup of `src` (opened read only, so a run still writing it is not disturbed) into `dst`."""
    if not src.is_file():
        raise SystemExit(f"--copy-cache {src}: no such file")
    if dst.exists():
        print(f"--cache {dst} exists: using it as it is (not copying {src} again)")
        return
    source, target = sqlite3.connect(f"file:{src}?mode=ro", uri=True), sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    print(f"copied {src} -> {dst}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, required=True, help="call cache (SQLite) for the baseline and the rewrites")
    ap.add_argument("--copy-cache", type=Path, help="copy this cache into --cache first (when --cache does not exist)")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="", help="the model whose CoTs are rewritten (default: llamacpp: Qwen2.5-Coder-0.5B)")
    ap.add_argument("--model-arg", action="append", default=[])
    ap.add_argument("--rewriter", default="", help="the rewriter (default: the model itself)")
    ap.add_argument("--rewriter-arg", action="append", default=[])
    ap.add_argument("--task", default="gsm8k")
    ap.add_argument("--languages", default="", help="translation languages, comma-separated (default: the probe's)")
    ap.add_argument("--examples", type=int, default=3, help="examples printed per failed check")
    ap.add_argument("--rows", type=Path, help="write every rewrite with its checks here (JSONL), to read by hand")
    args = ap.parse_args()
    if args.n < 1:
        raise SystemExit(f"--n {args.n}: expected an integer >= 1")
    if not args.model:
        from faithcheck.pretrained import qwen_gguf

        args.model = f"llamacpp:{qwen_gguf()}"
    rewriter_spec = args.rewriter or args.model

    print(f"load at start: {uptime()}", flush=True)
    started = time.time()
    try:
        check_cache_path(args.cache)
    except BadInput as exc:
        raise SystemExit(str(exc)) from None
    if args.copy_cache:
        copy_cache(args.copy_cache, args.cache)
    task = get_task(args.task)
    backend = load_backend(args.model, args.model_arg)
    configure_task(task, task_options([]), backend)
    cache = CallCache(args.cache)
    engine = Engine(backend, cache, progress=False, label=args.model)
    items = list(task.load(args.n, args.seed).items)
    t0 = time.time()
    traces = baseline(engine, task, items)
    print(f"baseline: {len(traces)} CoTs, {engine.stats.cache_hits} from the cache, {engine.stats.model_calls} computed "
          f"({time.time() - t0:.0f} s)", flush=True)
    by_id = {t.item_id: t for t in traces}
    kept = [i for i in items if not (by_id[i.id].failed_call or by_id[i.id].budget_hit)]
    print(f"items kept: {len(kept)} of {len(items)} (the audit drops a failed baseline call or a CoT cut by its budget)")

    rewriter = load_rewriter(rewriter_spec, args.rewriter_arg, engine)
    langs = tuple(x for x in args.languages.split(",") if x) or None
    ctx = ProbeContext(task, args.seed, backend.count_tokens, rewriter, 1, AuditOptions(languages=langs))
    probes = get_probes(["paraphrase", "translation"])
    requests = {r.key(): (item.id, r) for p in probes for item in kept for r in p.rewrite_requests(item, by_id[item.id], ctx)}
    t0 = time.time()
    rewrites = resolve_rewrites(probes, kept, by_id, ctx, rewriter)
    rewrite_s = time.time() - t0
    rows = []
    for key, rw in rewrites.items():
        item_id, req = requests[key]
        failed = failed_checks(req.kind, rw.checks)
        if (not failed) != rw.ok:
            print(f"WARNING: item {item_id} {req.kind}: ok={rw.ok} but failed checks {failed} (checks {rw.checks})")
        original = "".join(req.steps)
        rows.append({"item_id": item_id, "kind": req.kind, "lang": req.lang, "ok": rw.ok, "failed": failed,
                     "original": original, "rewrite": "" if set(rw.checks) == {"reason"} else rw.text, "checks": rw.checks,
                     "looks_english": req.kind == "translate" and failed[:1] != ["returned"]
                     and english_share(rw.text) >= 0.5 * english_share(original)})
    finish_reasons(rewriter, rows)
    stats = rewriter.engine.stats if isinstance(rewriter, LLMRewriter) else None
    if stats is not None:
        print(f"rewriter {rewriter_spec}: {stats.unique} distinct calls, {stats.cache_hits} from the cache, "
              f"{stats.model_calls} computed, {stats.generated_tokens:,} tokens generated, {stats.seconds:.0f} s in model "
              f"calls ({rewrite_s:.0f} s for the rewrites, checks included)")
    report(rows, args.examples)
    if args.rows:
        with open(args.rows, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        print(f"\nrows: {args.rows}")
    rewriter.close()
    backend.close()
    cache.close()
    print(f"\nwall {time.time() - started:.0f} s; load at end: {uptime()}")


if __name__ == "__main__":
    main()
