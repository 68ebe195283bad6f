"""`faithcheck audit --estimate`: what an audit will cost, before paying for it.

Exact for what can be known before any call (items, baseline requests, cache holdings);
the rest (variants depend on the CoTs the model writes) is extrapolated from a short
calibration run on a few items, whose calls are cached and so not wasted.
"""

from __future__ import annotations

import time
from dataclasses import replace

from faithcheck.backends import load_backend
from faithcheck.audit.pipeline import baseline, baseline_samples, expand_samples, resolve_rewrites
from faithcheck.engine.answering import resolve
from faithcheck.engine.cache import CallCache, default_cache_path
from faithcheck.engine.engine import Engine
from faithcheck.probes import ProbeContext, get_probes
from faithcheck.records import GenerationRequest
from faithcheck.tasks import get_task

CALIBRATION_ITEMS = 3


def estimate_audit(config) -> str:
    from faithcheck.rewriters import load_rewriter

    task = get_task(config.task)
    probe_objs = get_probes(list(config.probes))
    items = list(task.load(config.n, config.seed).items)
    backend = load_backend(config.model, list(config.model_args))
    cache = CallCache(config.cache_path or default_cache_path())
    try:
        baseline_reqs = [GenerationRequest(task.prompt(i), "", task.max_cot_tokens + task.max_answer_tokens, task.cot_stop)
                    for i in items]
        held = len(cache.get_many(backend.fingerprint, [r.key() for r in baseline_reqs]))
        calib = items[:CALIBRATION_ITEMS]
        engine = Engine(backend, cache, progress=False)
        started = time.time()
        traces = baseline(engine, task, calib)
        baseline_samples(engine, task, calib, config)
        rewriter = load_rewriter(config.rewriter, list(config.rewriter_args), cache)
        ctx = ProbeContext(task, config.seed, backend.count_tokens, rewriter, config.samples, dict(config.options))
        by_id = {t.item_id: t for t in traces}
        ctx = replace(ctx, rewrites=resolve_rewrites(probe_objs, calib, by_id, ctx, rewriter))
        variants = [v for p in probe_objs for i in calib for v in p.variants(i, by_id[i.id], ctx)]
        expanded = expand_samples(variants, config)
        resolve(engine, task, [q for _, q in expanded], "calibration")
        seconds = time.time() - started
        s = engine.stats
        scale = len(items) / max(1, len(calib))
        per_call = seconds / s.model_calls if s.model_calls else None
        calls = int(s.unique * scale)
        lines = [
            f"estimate for {config.model} on {config.task}: {len(items)} items, probes {', '.join(config.probes)}",
            f"  model calls:        ~{calls:,} ({len(baseline_reqs)} baseline CoTs; {held} already in the cache)",
            f"  prompt tokens:      ~{int(s.prompt_tokens * scale):,} (as sent; before prefix sharing)",
            f"  generated tokens:   ~{int(s.generated_tokens * scale):,}",
        ]
        computed = getattr(backend, "counters", {}).get("tokens_computed")
        if computed:
            sent = s.prompt_tokens + s.generated_tokens
            lines.append(f"  computed tokens:    ~{int(computed * scale):,} after prefix sharing "
                         f"({computed / max(1, sent):.0%} of prompt + generated)")
        lines += [
            f"  calibration:        {len(calib)} items, {s.model_calls} calls computed, {s.cache_hits} cached, {seconds:.1f} s",
        ]
        if per_call is not None:
            lines.append(f"  time estimate:      ~{per_call * calls / 60:.1f} min at {per_call * 1000:.0f} ms/call "
                         "(upper bound: the cache and batching only lower it)")
        return "\n".join(lines)
    finally:
        backend.close()


__all__ = ["estimate_audit"]
