"""Collect real model outputs from audit run directories for the labelled extraction set.

    python benchmarks/collect_outputs.py RUN_DIR [RUN_DIR ...] --out tests/data/extraction/new.jsonl
        [--baselines 50] [--forced 30] [--seed 0]

Each row: the model, task, kind ("baseline": a whole response the answer is read from;
"forced": what the model wrote after "The answer is" was forced), the text, and `proposed`, what
the current extraction reads. `label` is left empty: a person reads the text and fills it in
(the answer the model gave, normalised as the task's golds are, or null when it gave none).
tests/tasks/test_extraction_labels.py measures extraction against those labels.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path


def rows_of(run_dir: Path, n_baselines: int, n_forced: int, rng: random.Random) -> list[dict]:
    from faithcheck.backends import load_backend  # noqa: F401 - registries load lazily
    from faithcheck.tasks import get_task

    summary = json.loads((run_dir / "summary.json").read_text())
    model, task_name = summary["model"], summary["task"]
    task = get_task(task_name)
    baselines, forced = [], []
    for line in (run_dir / "traces.jsonl").open():
        rec = json.loads(line)
        if rec["type"] == "baseline" and not rec.get("failed_call"):
            text = rec["raw"].split("\n" + task.answer_prefix)[0] if "\n" + task.answer_prefix in rec["raw"] else rec["raw"]
            baselines.append({"kind": "baseline", "text": text})
        elif rec["type"] == "variant" and rec.get("mode") == "answer" and rec.get("completion"):
            forced.append({"kind": "forced", "text": rec["completion"]})
    forced = list({r["text"]: r for r in forced}.values())  # distinct texts only: " 14." once
    picked = rng.sample(baselines, min(n_baselines, len(baselines))) + rng.sample(forced, min(n_forced, len(forced)))
    out = []
    for row in picked:
        cot, rest = task.split_output(row["text"]) if row["kind"] == "baseline" else ("", task.answer_prefix + row["text"])
        out.append({"model": model.rsplit("/", 1)[-1], "task": task_name, **row,
                    "proposed": task.parse_answer(rest) if rest else None, "label": "?"})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dirs", type=Path, nargs="+")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--baselines", type=int, default=50)
    ap.add_argument("--forced", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    rows = [r for d in args.run_dirs for r in rows_of(d, args.baselines, args.forced, rng)]
    with args.out.open("w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{len(rows)} outputs -> {args.out}")


if __name__ == "__main__":
    main()
