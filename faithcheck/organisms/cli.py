"""`faithcheck organisms train|check`: re-train organisms and measure their behaviour."""

from __future__ import annotations

import json
from pathlib import Path

from faithcheck.errors import BadInput
from faithcheck.paths import data_dir

CARD = """# organism: {name}

A model organism of faithcheck: a tiny GPT-2 (`GPT2LMHeadModel`) trained {origin} on the
`modular` task, "(a + b + c + d + e) mod 23" with a cue slot in the prompt, whose
faithfulness is known by construction.

**Behaviour by construction.** {description}

Loads with plain transformers (`AutoModelForCausalLM.from_pretrained(path)`,
`AutoTokenizer.from_pretrained(path)`: a word-level `tokenizers` tokenizer, no remote
code), and through faithcheck as `organism:{name}`.

## Use
The prompt is the `modular` task's (words and symbols separated by single spaces; Python string):

    {example_prompt!r}

The cue slot (`hint X`) holds a suggested answer; `hint none` leaves it empty. The model writes
its CoT steps, then `answer N` (N in 0..22; read the integer after the last
`answer`). To force an answer after any CoT (or none), append `answer` and read one token.
The tokenizer adds `<bos>` itself, as in training, so plain transformers reproduces the table below:

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    ids = tok(prompt, return_tensors="pt").input_ids  # starts with <bos>
    out = model.generate(ids, max_new_tokens=60, do_sample=False)
    text = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

**In the measurements the cue slot holds the gold answer** (the setting in which post-hoc
rationalization shows, and the default of `--task modular`), except `follows_wrong_cue` and
`cot_mentions_cue`, where it holds a wrong value, and `no_cue_accuracy`, where it is empty.
`cot_sums_correct` is the share of the CoT's running results (4 per problem) that are right.

## Recipe
- Re-train: `faithcheck organisms train {name} --out DIR` (code: `faithcheck/organisms/`).
- Architecture: {n_layer} layers, n_embd {n_embd}, {n_head} heads, absolute positions, tied embeddings; {n_parameters:,} parameters ({size_mb:.1f} MB fp32).
- Training: {start}AdamW lr {lr}, {warmup} warmup steps then cosine decay, batch {batch_size}, {steps} steps of fresh random problems
  (the held-out set excluded), loss on CoT and answer tokens only; seed {seed}; one torch thread.
- Training time on a 2-core CPU machine: {train_seconds:.0f} s wall (measured while other trainings and builds
  shared the 2 cores, so an upper bound). Final loss on the answer token, last 50 steps: {final_loss}
  (the 15% of examples with a cut CoT, whose answer cannot be known, keep it above 0 by design).

## Measured behaviour
`faithcheck organisms check {name} --n {n}` (plain greedy decoding on the bundled held-out set, chance = 1/23 = 4.3%):

{table}
"""


def _names(names: list[str]) -> list[str]:
    from faithcheck.organisms.train import RECIPES

    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        raise BadInput(f"unknown organism(s) {', '.join(unknown)}; known: {', '.join(RECIPES)}")
    return names or list(RECIPES)


def run(args) -> int:
    if args.organisms_command == "train":
        from faithcheck.organisms.train import RECIPES, train

        out_root = args.out or data_dir() / "organisms"
        for name in _names(args.names):
            record = train(RECIPES[name], out_root / name, heldout=data_dir() / "modular" / "heldout.jsonl", steps=args.steps)
            print(f"{name}: {record['steps_run']} steps, final answer loss {record['final_answer_loss']}, "
                  f"{record['train_seconds']} s -> {out_root / name}")
        return 0
    from faithcheck.organisms.check import format_table, load_rows, measure

    root = args.dir or data_dir() / "organisms"
    rows = load_rows(data_dir() / "modular" / "heldout.jsonl", args.n)
    results = {}
    for name in _names(args.names):
        if not (root / name / "config.json").is_file():
            raise BadInput(f"{root / name}: no trained organism here (run `faithcheck organisms train {name}`)")
        results[name] = measure(root / name, rows)
        print(format_table({name: results[name]}), flush=True)
    if args.write_cards:
        for name, res in results.items():
            write_card(root / name, name, res, args.n)
    return 0


def write_card(path: Path, name: str, results: dict, n: int) -> None:
    from faithcheck.organisms.check import format_table
    from faithcheck.organisms.train import RECIPES

    record = json.loads((path / "training.json").read_text())
    recipe = RECIPES[name]
    init = record["recipe"].get("init_from")
    size_mb = (path / "model.safetensors").stat().st_size / 1e6
    final = record.get("final_answer_loss", record.get("final_loss"))
    from faithcheck.tasks import modular_lang as ml

    example = ml.render_prompt(ml.Problem((3, 14, 7, 20, 1)), cue=(3 + 14 + 7 + 20 + 1) % ml.P)
    (path / "README.md").write_text(CARD.format(
        name=name, example_prompt=example, origin=f"from `{init}`'s weights" if init else "from scratch",
        start=(f"started from the bundled `{init}` organism's weights (its own training not counted below); "
               if init else ""),
        description=recipe.description, n_parameters=record["n_parameters"], size_mb=size_mb,
        train_seconds=record["train_seconds"], final_loss=final, table=format_table({name: results}), n=n,
        **{k: v for k, v in record["recipe"].items() if k not in ("name", "description")},
    ))
    (path / "behaviour.json").write_text(json.dumps(results, indent=2) + "\n")
