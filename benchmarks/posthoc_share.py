"""Check the graded post-hoc share against mixtures whose share is known by construction.

For each fraction F and seed, audits `mixed:F:INNER` (post-hoc on a seeded fraction F of
items, INNER itself on the rest) and compares the run's post-hoc share (summary.json
"graded", a Wilson 95% CI) with the true share. Around a model organism that is F; around a
real model, which is itself partly post-hoc, it is F + (1 - F) q, with q INNER's own share,
estimated first on `mixed:0` with seeds the check does not use (`--q-seeds`; its spread is
printed). Prints the coverage table: per F, how many runs' CIs cover the true share and how
far the estimates fall from it.

    python benchmarks/posthoc_share.py                      # around organism:faithful, modular
    python benchmarks/posthoc_share.py --inner llamacpp:PATH.gguf --task gsm8k --n 20 \\
        --probes no_cot,early_answering --cache /work/bench/posthoc_qwen.sqlite \\
        --q-seeds 100,101                                   # around a real model (README)

Each check seed draws its own item sample (unless --item-seed), so the runs of one F are
independent replicates; the q seeds draw other samples (a seed in both is refused; samples of
different seeds may still share a few items by chance, and the count is printed).

`--draw exact` (the default) makes exactly round(F n) of each run's n items post hoc
(`--model-arg items=N item_seed=S`), so F is the share the construction really has; `--draw
coin` tosses a seeded coin per item, so a run's realised share scatters binomially around F
and the check then also measures that scatter (the README's earlier tables).

INNER's calls go through one shared cache, so every fraction reuses the model's work on
the same items; only the construction's own (cheap) calls differ.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

PROBES = ("no_cot", "early_answering", "mistakes")
FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)


def audit(model: str, args, seed: int, mix_seed: int, inner_args: list[str], half: str | None = None,
          n: int | None = None, exact: bool = False) -> dict:
    """One audit of `model`; its post-hoc share read on all its items, or on one half of them
    (`half` "A"/"B", split by a hash of the item id) when q and the check share the items."""
    from faithcheck.audit.pipeline import AuditConfig, run_audit
    from faithcheck.backends import load_backend
    from faithcheck.backends.constructed import unit_hash
    from faithcheck.engine.cache import CallCache
    from faithcheck.scoring.posthoc_share import DEPENDS, FIXED, classify_items
    from faithcheck.scoring.stats import wilson

    started = time.time()
    model_args = [f"task={args.task}", f"cache={args.cache}", f"mix_seed={mix_seed}", *inner_args]
    if exact:
        model_args += [f"items={n or args.n}", f"item_seed={seed}"]
    backend = load_backend(model, model_args)
    config = AuditConfig(model=model, task=args.task, n=n or args.n, seed=seed, probes=tuple(args.probes.split(",")),
                         progress=False, model_args=tuple(model_args),
                         out=args.out / f"{model.split(':', 2)[1]}-seed{seed}-mix{mix_seed}")
    try:
        result = run_audit(config, backend=backend, cache=CallCache(args.cache))
        marks = {t.item_id: backend.post_hoc_items(t.prompt) for t in result.traces}
    finally:
        backend.close()
    classes = classify_items(result.outcomes)
    if half is not None:
        keep = {i for i in marks if (unit_hash("q-split", i) < 0.5) == (half == "A")}
        classes = classes[classes["item_id"].isin(keep)]
        marks = {i: m for i, m in marks.items() if i in keep}
    fixed = int((classes["posthoc_class"] == FIXED).sum())
    told = fixed + int((classes["posthoc_class"] == DEPENDS).sum())
    share = wilson(fixed, told)
    return {"estimate": share.estimate, "ci_low": share.ci_low, "ci_high": share.ci_high, "n": share.n,
            "counts": {"fixed_before_cot": fixed, "told": told, "items": len(classes)},
            "realised_fraction": sum(marks.values()) / max(1, len(marks)), "verdict": result.verdict.label,
            "capability": result.summary["graded"].get("capability", {}), "items": sorted(marks),
            "seconds": round(time.time() - started, 1)}


def numbers(ap: argparse.ArgumentParser, flag: str, text: str, kind: type) -> list:
    """A comma-separated list of `kind` (int seeds, float fractions), or an error naming the flag."""
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        ap.error(f"{flag} {text!r}: expected comma-separated {'integers' if kind is int else 'numbers'}")


def save(args, q: float, q_runs: list[dict], rows: list[dict]) -> None:
    """coverage.json, rewritten after every run, so a run cut short keeps what it measured."""
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "coverage.json").write_text(json.dumps({"inner": args.inner, "task": args.task, "n": args.n, "q_n": args.q_n or args.n, "q": q,
                                                        "draw": args.draw,
                                                        "probes": args.probes, "q_runs": q_runs, "runs": rows},
                                                       indent=2, default=str) + "\n")


def main() -> None:
    from faithcheck.scoring.stats import wilson

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inner", default="organism:faithful")
    ap.add_argument("--inner-arg", action="append", default=[], help="--model-arg for INNER (repeatable)")
    ap.add_argument("--task", default="modular")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seeds", default="0,1,2,3,4", help="mixture seeds of the check (and item samples, unless --item-seed)")
    ap.add_argument("--item-seed", type=int, default=None, help="one item sample for every run (a real model's work is then shared)")
    ap.add_argument("--split-q", action="store_true", help="estimate q on mixed:0 on half of the items (hash of the id) "
                    "and read every check on the other half (for a real model whose q-seeds would cost new items)")
    ap.add_argument("--probes", default=",".join(PROBES))
    ap.add_argument("--q-seeds", default="", help="seeds for q, INNER's own share on mixed:0 (default: q = 0, "
                    "right for an organism built faithful)")
    ap.add_argument("--q-n", type=int, default=None, help="items per q run (default: --n); q runs pool their "
                    "items, so several small samples (whose calls may be cached) can stand in for one large one")
    ap.add_argument("--fractions", default=",".join(str(f) for f in FRACTIONS))
    ap.add_argument("--draw", choices=("exact", "coin"), default="exact",
                    help="exact: round(F n) post-hoc items per run (the truth is that share); coin: one seeded coin per item")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("FAITHCHECK_CACHE_DIR", "reports")) / "posthoc_share.sqlite")
    ap.add_argument("--out", type=Path, default=Path("reports") / "posthoc_share")
    args = ap.parse_args()
    seeds = numbers(ap, "--seeds", args.seeds, int)
    fractions = numbers(ap, "--fractions", args.fractions, float)
    q_seeds = numbers(ap, "--q-seeds", args.q_seeds, int)
    if args.q_n is not None and (args.q_n < 1 or args.split_q):
        ap.error(f"--q-n {args.q_n}: expected a positive item count, and not with --split-q (q then reads half the check's items)")
    if not seeds or not fractions or any(not 0 <= f <= 1 for f in fractions):
        ap.error(f"--seeds {args.seeds!r} / --fractions {args.fractions!r}: need at least one seed and fractions in [0, 1]")
    if args.item_seed is None and not args.split_q and set(q_seeds) & set(seeds):
        ap.error(f"--q-seeds {args.q_seeds} and --seeds {args.seeds} share seeds {sorted(set(q_seeds) & set(seeds))}: "
                 "q must be estimated on item samples the check does not use")
    start = time.time()
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min)", flush=True)

    q, q_runs = 0.0, []
    q_plan = [(s, s, None) for s in q_seeds]
    if args.split_q:
        q_plan = [(args.item_seed if args.item_seed is not None else seeds[0], 0, "A")]
    for item_seed, mix_seed, half in q_plan:
        run = audit(f"mixed:0:{args.inner}", args, item_seed, mix_seed, args.inner_arg, half, args.q_n)
        q_runs.append(run)
        save(args, q, q_runs, [])
        s = item_seed
        print(f"q run seed {s}: {run['estimate']:.3f} [{run['ci_low']:.3f}, {run['ci_high']:.3f}] n={run['n']} "
              f"counts={run['counts']} capability={run['capability'].get('holds')} {run['seconds']:.0f} s", flush=True)
    if q_runs:
        total_fixed = sum(r["counts"]["fixed_before_cot"] for r in q_runs)
        total_told = sum(r["n"] for r in q_runs)
        q = total_fixed / total_told
        spread = statistics.pstdev([r["estimate"] for r in q_runs]) if len(q_runs) > 1 else float("nan")
        q_ci = wilson(total_fixed, total_told)
        print(f"q = {q:.3f}, 95% CI [{q_ci.ci_low:.3f}, {q_ci.ci_high:.3f}] (pooled over {len(q_runs)} runs, {total_told} "
              f"items; spread between runs sd {spread:.3f})")

    rows = []
    for f in fractions:
        for s in seeds:
            item_seed = s if args.item_seed is None else args.item_seed
            run = audit(f"mixed:{f:g}:{args.inner}", args, item_seed, s, args.inner_arg, "B" if args.split_q else None,
                        exact=args.draw == "exact")
            known = run["realised_fraction"] if args.draw == "exact" else f  # exact: the construction's own share
            truth = known + (1 - known) * q
            run.update(fraction=f, seed=s, truth=truth,
                       covers=run["ci_low"] <= truth <= run["ci_high"], error=abs(run["estimate"] - truth),
                       covers_realised=run["ci_low"] <= run["realised_fraction"] + (1 - run["realised_fraction"]) * q <= run["ci_high"])
            rows.append(run)
            save(args, q, q_runs, rows)
            print(f"F={f:<4} seed {s}: estimate {run['estimate']:.3f} [{run['ci_low']:.3f}, {run['ci_high']:.3f}] "
                  f"n={run['n']} truth {truth:.3f} realised F {run['realised_fraction']:.2f} "
                  f"{'covers' if run['covers'] else 'MISSES'} |err| {run['error']:.3f} verdict {run['verdict']} "
                  f"{run['seconds']:.0f} s", flush=True)

    print(f"\ncoverage table: {args.inner} on {args.task}, n={args.n} items per run, seeds {seeds}, draw {args.draw}, "
          f"true share F + (1 - F) q with q = {q:.3f}" + (" (F: the run's exact post-hoc share)" if args.draw == "exact" else ""))
    print("| F | true share | runs | CI covers truth | CI covers realised | mean estimate | max abs error |")
    print("|---|---|---|---|---|---|---|")
    for f in fractions:
        rs = [r for r in rows if r["fraction"] == f]
        print(f"| {f:g} | {rs[0]['truth']:.3f} | {len(rs)} | {sum(r['covers'] for r in rs)}/{len(rs)} | "
              f"{sum(r['covers_realised'] for r in rs)}/{len(rs)} | {statistics.mean(r['estimate'] for r in rs):.3f} | "
              f"{max(r['error'] for r in rs):.3f} |")
    q_items = {i for r in q_runs for i in r["items"]} if not args.split_q else set()
    checked = {i for r in rows for i in r["items"]}
    if q_runs and not args.split_q:
        print(f"\nitems: {len(checked)} distinct in the check, {len(q_items)} in the q runs, {len(checked & q_items)} in both")
    covered = sum(r["covers"] for r in rows)
    within = sum(r["error"] <= 0.1 for r in rows)
    print(f"\nall runs: CI covers the true share in {covered}/{len(rows)} ({covered / len(rows):.0%}); "
          f"estimate within 0.1 in {within}/{len(rows)} (max abs error {max(r['error'] for r in rows):.3f}); "
          f"{time.time() - start:.0f} s; load {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
    main()
