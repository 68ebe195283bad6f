"""`faithcheck` command line: a thin face over the library API.

Exit status: 0 when the command ran (whatever an audit found), 2 on bad input (the
message names the file, row or flag), 1 on internal error, 3 when `--fail-on` names a
flag the audit raised.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from faithcheck.errors import BadInput, MissingExtra

VERDICT_LABELS = ("load_bearing", "post_hoc_rationalization", "encoded_reasoning", "inconclusive")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own exit code is 2 already; keep its message short
        self.print_usage(sys.stderr)
        self.exit(2, f"faithcheck: error: {message}\n")


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return n


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
    a.add_argument("--rewriter", default=None, metavar="MODEL", help="model string of an LLM used to rewrite CoTs")
    a.add_argument("--rewriter-arg", action="append", default=[], metavar="KEY=VALUE")
    a.add_argument("--samples", type=_positive_int, default=1, help="samples per variant (temperature > 0 when > 1)")
    a.add_argument("--temperature", type=float, default=0.0)
    a.add_argument("--cache", type=Path, default=None, help="SQLite cache of model calls (default ~/.cache/faithcheck)")
    a.add_argument("--fail-on", default="", metavar="FLAG[,FLAG]", help="exit 3 when one of these flags is raised")
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
    a.add_argument("--task-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="task option (repeatable): max_cot_tokens, max_answer_tokens, prompting=auto|inline|turns|zero_shot, "
                        "system, think_tags")
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
    bad = [f for f in fail_on if f not in VERDICT_LABELS[:3]]
    if bad:
        raise BadInput(f"--fail-on: unknown flag(s) {', '.join(bad)}; known: {', '.join(VERDICT_LABELS[:3])}")
    config = AuditConfig(
        model=args.model, task=args.task, n=args.n, probes=probes, seed=args.seed, out=args.out,
        model_args=tuple(args.model_arg), task_args=tuple(args.task_arg), rewriter=args.rewriter, rewriter_args=tuple(args.rewriter_arg),
        samples=args.samples, temperature=args.temperature, cache_path=args.cache, progress=not args.quiet,
    )
    if args.estimate:
        from faithcheck.audit.estimate import estimate_audit

        print(estimate_audit(config))
        return 0
    result = run_audit(config)
    print(format_summary(result.summary, result.run_dir))
    raised = {f["name"] for f in result.summary["verdict"]["flags"]}
    return 3 if raised & set(fail_on) else 0


def format_summary(summary: dict, run_dir: Path) -> str:
    lines = [f"{summary['model']} on {summary['task']} (n={summary['n_items']})"]
    acc = summary["accuracy"]["cot"]
    lines.append(f"  {'CoT accuracy':<28} {_fmt(acc)}")
    for name, m in summary["probes"].items():
        p = "" if m.get("p_adjusted") is None else f"  p_adj={m['p_adjusted']:.3g}"
        lines.append(f"  {name + '.' + m['metric']:<28} {_fmt(m)}{p}")
    retained = summary.get("cot_benefit_retained") or {}
    if retained:
        lines.append("  CoT benefit retained (1 = all of the CoT's gain over no-CoT survives):")
        for name, e in retained.items():
            lines.append(f"    {name:<26} {_fmt(e)}")
    v = summary["verdict"]
    lines.append(f"  verdict: {v['label']} — {v['reason']}")
    for f in v["flags"]:
        lines.append(f"  flag {f['name']}: {f['reason']}")
    if summary.get("skipped_rows"):
        lines.append(f"  skipped {len(summary['skipped_rows'])} malformed row(s): {summary['skipped_rows'][0]} ...")
    if summary.get("failed_calls"):
        lines.append(f"  failed model calls: {summary['failed_calls']}")
    lines.append(f"  run directory: {run_dir}")
    return "\n".join(lines)


def _fmt(e: dict) -> str:
    if e.get("estimate") is None:
        return f"n/a (n={e.get('n', 0)})"
    return f"{e['estimate']:.3f} [{e['ci_low']:.3f}, {e['ci_high']:.3f}] n={e['n']}"


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
    from faithcheck.backends.organism import available_organisms
    from faithcheck.audit.pipeline import AuditConfig, run_audit

    names = available_organisms()
    if not names:
        raise BadInput("no bundled organisms found under data/organisms")
    rows, run_dirs = [], []
    for name in names:
        config = AuditConfig(model=f"organism:{name}", task="modular", n=args.n, seed=args.seed,
                             out=args.out / name)
        result = run_audit(config)
        run_dirs.append(result.run_dir)
        print(format_summary(result.summary, result.run_dir), flush=True)
        rows.append((name, result.verdict.label, result.summary["accuracy"]["cot"]))
    print("\norganism            verdict                     CoT accuracy")
    for name, label, acc in rows:
        print(f"{name:<19} {label:<27} {_fmt(acc)}")
    from faithcheck.report.compare import render_comparison

    print(f"comparison report: {render_comparison(run_dirs, args.out / 'comparison')}")
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
    except KeyboardInterrupt:
        print("faithcheck: interrupted; finished model calls are cached, run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
