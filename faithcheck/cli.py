"""`faithcheck` command line: a thin face over the library API.

Exit status: 0 when the command ran (whatever an audit found), 2 on bad input (the
message names the file, row or flag), 1 on internal error, 3 when `--fail-on` names a
flag the audit raised, 4 when the model could not be measured (an unreachable server, or
failed model calls past the threshold: any baseline call, or more than `--max-failed-share`
of all calls; it takes precedence over 3, so `--fail-on` never passes such a run), 130
on Ctrl-C (the message says what the cache kept).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

from faithcheck.errors import EXIT_UNMEASURED, BadInput, Interrupted, MissingExtra, ModelUnavailable
from faithcheck.scoring.labels import FLAGS



class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own exit code is 2 already; keep its message short
        self.print_usage(sys.stderr)
        self.exit(2, f"faithcheck: error: {message}\n")


def _checked(parse, ok, expected: str):
    """An argparse type: `parse` the value, then require `ok`; the message says what was expected."""

    def convert(value: str):
        try:
            x = parse(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}") from None
        if not ok(x):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}")
        return x

    return convert


_positive_int = _checked(int, lambda n: n > 0, "a positive integer")
_temperature = _checked(float, lambda t: math.isfinite(t) and t >= 0, "a finite number >= 0")
_share = _checked(float, lambda x: 0 <= x <= 1, "a share between 0 and 1")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="faithcheck", description="Chain-of-thought faithfulness audits.")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("audit", help="audit a model on a task with faithfulness probes")
    a.add_argument("model", help="hf:PATH | llamacpp:PATH.gguf | vllm:ID | openai:MODEL@URL | organism:NAME")
    a.add_argument("--task", default="modular", help="modular | gsm8k | bbh:SUBTASK | mc:PATH (default: modular)")
    a.add_argument("--n", type=_positive_int, default=100, help="number of items (default 100)")
    a.add_argument("--probes", default=None, help="comma-separated probe names (default: all)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--out", type=Path, default=None, help="run directory (default reports/<model>-<task>-<date>/)")
    a.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE", help="backend option (repeatable)")
    a.add_argument("--task-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="task option (repeatable): max_cot_tokens, max_answer_tokens, prompting=auto|inline|turns|zero_shot, "
                        "system, think_tags")
    a.add_argument("--rewriter", default=None, metavar="MODEL", help="model string of an LLM used to rewrite CoTs")
    a.add_argument("--rewriter-arg", action="append", default=[], metavar="KEY=VALUE")
    a.add_argument("--samples", type=_positive_int, default=1, help="samples per variant (temperature > 0 when > 1)")
    a.add_argument("--temperature", type=_temperature, default=0.0)
    a.add_argument("--cache", type=Path, default=None, help="SQLite cache of model calls (default ~/.cache/faithcheck)")
    a.add_argument("--fail-on", default="", metavar="FLAG[,FLAG]", help="exit 3 when one of these flags is raised")
    a.add_argument("--max-failed-share", type=_share, default=0.05, metavar="SHARE",
                   help="exit 4 (not measured) when more than this share of model calls fail, or any baseline "
                        "call does (default 0.05)")
    a.add_argument("-v", "--verbose", action="store_true", help="log each retry of a model call")
    a.add_argument("--estimate", action="store_true", help="print the cost of the audit and run nothing")
    a.add_argument("--quiet", action="store_true", help="no progress bar")

    sub.add_parser("list", help="tasks, probes, backends and organisms")

    d = sub.add_parser("demo", help="audit every bundled organism on the modular task and compare them")
    d.add_argument("--n", type=_positive_int, default=100)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", type=Path, default=Path("reports") / "demo")

    r = sub.add_parser("report", help="(re)render report.html from a run directory's saved tables")
    r.add_argument("run_dir", type=Path)

    c = sub.add_parser("compare", help="comparison report across runs on the same task")
    c.add_argument("run_dirs", type=Path, nargs="+")
    c.add_argument("--out", type=Path, required=True)

    o = sub.add_parser("organisms", help="train or check the bundled model organisms")
    osub = o.add_subparsers(dest="organisms_command", required=True)
    t = osub.add_parser("train", help="re-train organisms from their recipes")
    t.add_argument("names", nargs="*", help="organisms to train (default: all)")
    t.add_argument("--out", type=Path, default=None, help="directory to write NAME/ into (default data/organisms)")
    t.add_argument("--steps", type=_positive_int, default=None, help="override the recipe's step count")
    ch = osub.add_parser("check", help="measure each organism's defining behaviour on the held-out set")
    ch.add_argument("names", nargs="*")
    ch.add_argument("--n", type=_positive_int, default=300)
    ch.add_argument("--dir", type=Path, default=None, help="where the organisms are (default: bundled)")
    ch.add_argument("--write-cards", action="store_true", help="write the measured table into each README.md")
    return p


def _cmd_audit(args) -> int:
    from faithcheck.audit.pipeline import AuditConfig, run_audit
    from faithcheck.probes import DEFAULT_PROBES

    probes = tuple(x.strip() for x in args.probes.split(",") if x.strip()) if args.probes else DEFAULT_PROBES
    fail_on = [f.strip() for f in args.fail_on.split(",") if f.strip()]
    bad = [f for f in fail_on if f not in FLAGS]
    if bad:
        raise BadInput(f"--fail-on: unknown flag(s) {', '.join(bad)}; known: {', '.join(FLAGS)}")
    config = AuditConfig(
        model=args.model, task=args.task, n=args.n, probes=probes, seed=args.seed, out=args.out,
        model_args=tuple(args.model_arg), task_args=tuple(args.task_arg), rewriter=args.rewriter, rewriter_args=tuple(args.rewriter_arg),
        samples=args.samples, temperature=args.temperature, cache_path=args.cache, progress=not args.quiet,
        max_failed_share=args.max_failed_share,
    )
    _log_to_stderr(args.verbose)
    if args.estimate:
        from faithcheck.audit.estimate import estimate_audit

        print(estimate_audit(config))
        return 0
    result = run_audit(config)
    print(format_summary(result.summary, result.run_dir, _backend_counters(result.run_dir)))
    if result.measurement is not None and not result.measurement.measured:
        print(f"faithcheck: not measured: {result.measurement.reason} (exit {EXIT_UNMEASURED})", file=sys.stderr)
        return EXIT_UNMEASURED
    raised = {f["name"] for f in result.summary["verdict"]["flags"]}
    return 3 if raised & set(fail_on) else 0


def _backend_counters(run_dir: Path) -> dict:
    import json

    try:
        return json.loads((run_dir / "manifest.json").read_text()).get("backend") or {}
    except (OSError, ValueError):
        return {}


def _log_to_stderr(verbose: bool) -> None:
    """Warnings (a call still waiting past warn_after) always; each retry too with -v."""
    logger = logging.getLogger("faithcheck")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("faithcheck: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.WARNING)


def format_summary(summary: dict, run_dir: Path, backend_counters: dict | None = None) -> str:
    from faithcheck.scoring.stats import format_p

    lines = [f"{summary['model']} on {summary['task']} (n={summary['n_items']})"]
    acc = summary["accuracy"]["cot"]
    lines.append(f"  {'CoT accuracy':<28} {_fmt(acc)}")
    for name, m in summary["probes"].items():
        p = "" if m.get("p_adjusted") is None else f"  p_adj={format_p(m['p_adjusted'])}"
        unparsed = (m.get("counts") or {}).get("unparseable")
        tail = f"  ({unparsed} unparseable)" if unparsed else ""
        lines.append(f"  {name + '.' + m['metric']:<28} {_fmt(m)}{p}{tail}")
    retained = summary.get("cot_benefit_retained") or {}
    if retained:
        lines.append("  CoT benefit retained (1 = all of the CoT's gain over no-CoT survives):")
        for name, e in retained.items():
            lines.append(f"    {name:<26} {_fmt(e)}")
    for note in summary.get("notes") or []:
        lines.append(f"  note: {note}")
    v = summary["verdict"]
    lines.append(f"  verdict: {v['label']} — {v['reason']}")
    for f in v["flags"]:
        lines.append(f"  flag {f['name']}: {f['reason']}")
    if summary.get("skipped_rows"):
        lines.append(f"  skipped {len(summary['skipped_rows'])} malformed row(s): {summary['skipped_rows'][0]} ...")
    if summary.get("failed_calls"):
        lines.append(f"  failed model calls: {summary['failed_calls']} (left out of every rate, never scored as wrong)")
    m = summary.get("measurement") or {}
    if m and not m.get("measured", True):
        lines.append(f"  NOT MEASURED: {m['reason']}")
    c = backend_counters or {}
    if c.get("retries"):
        causes = ", ".join(f"{k.removeprefix('retries_after_')}: {v}" for k, v in sorted(c.items())
                           if k.startswith("retries_after_"))
        lines.append(f"  retried model calls: {c['retries']} ({causes}; {c.get('retry_wait_seconds', 0):.1f} s "
                     "waiting; -v logs each)")
    lines.append(f"  run directory: {run_dir}")
    return "\n".join(lines)


def _fmt(e: dict) -> str:
    if e.get("estimate") is None:
        return f"n/a (n={e.get('n', 0)})"
    if e.get("ci_low") is None:
        return f"{e['estimate']:.3f} (no interval) n={e['n']}"
    mark = " (degenerate sample)" if e.get("degenerate") else ""
    return f"{e['estimate']:.3f} [{e['ci_low']:.3f}, {e['ci_high']:.3f}] n={e['n']}{mark}"


def _cmd_list(_args) -> int:
    from faithcheck.backends import backends
    from faithcheck.backends.organism import available_organisms
    from faithcheck.probes import probes
    from faithcheck.tasks import tasks

    for title, reg in (("tasks", tasks), ("probes", probes), ("backends", backends)):
        print(f"{title}:")
        for e in reg.entries():
            print(f"  {e.name:<18} {e.summary}")
    print("organisms:")
    for name in available_organisms():
        print(f"  organism:{name}")
    return 0


def _cmd_demo(args) -> int:
    from faithcheck.demo import run_demo

    run_demo(args.n, args.seed, args.out)
    return 0


def _cmd_organisms(args) -> int:
    from faithcheck.organisms import cli as organisms_cli

    return organisms_cli.run(args)


def _cmd_report(args) -> int:
    from faithcheck.report.html import render_run

    print(render_run(args.run_dir))
    return 0


def _cmd_compare(args) -> int:
    from faithcheck.report.compare import render_comparison

    print(render_comparison(args.run_dirs, args.out))
    return 0


COMMANDS = {"audit": _cmd_audit, "list": _cmd_list, "demo": _cmd_demo, "organisms": _cmd_organisms, "report": _cmd_report,
            "compare": _cmd_compare}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (BadInput, MissingExtra) as e:
        print(f"faithcheck: error: {e}", file=sys.stderr)
        return 2
    except ModelUnavailable as e:
        print(f"faithcheck: not measured: {e}", file=sys.stderr)
        return EXIT_UNMEASURED
    except Interrupted as e:
        print(f"faithcheck: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("faithcheck: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
