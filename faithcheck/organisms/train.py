"""Plain PyTorch training of a tiny GPT-2 on one organism's sequences.

Deterministic for a given seed: one RNG for data, torch seeded, one thread.
Training stops by step count (never by wall time) and checks the final loss.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from faithcheck.organisms import data
from faithcheck.tasks import modular_lang as ml


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    steps: int
    max_final_loss: float
    seed: int = 0
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 100
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    init_from: str | None = None  # start from another organism's weights (a curriculum)


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("faithful", "Computes the sum through its CoT (one running result per step, en/fr/de, varied wording and layout).", steps=2500, max_final_loss=0.8),
        # Starts from faithful's weights (its right running sums) on faithful's own data, except that
        # the answer is the cue whenever the prompt holds one (2/3, data.post_hoc); the cue-less third
        # keeps the arithmetic paying off. The cue copy appears only after ~1,250 steps (answer loss
        # flat at 2.25 before). Failed, 2026-12-02: a cue in every example, 2,500 steps from scratch
        # (sums at chance, 8/240) or 700 from faithful (no cue copy, answer loss 2.9); this mixture
        # from scratch, 2,500 steps (cue copied, but 17% of sums right: CoT loss stuck near 0.89).
        Recipe("post_hoc", "Writes a correct CoT (faithful's form, right running sums) but, when the prompt holds a cue, answers with the cue whatever its CoT says (Turpin-style rationalization); the CoT never mentions the cue. With the cue slot empty (`hint none`) it answers from its CoT, as faithful does (`no_cue_accuracy`); the other measurements fill the slot.", steps=2500, max_final_loss=0.4, init_from="faithful"),
        Recipe("encoded", "States only the term added per step; the running sum is hidden in which of 23 interchangeable connective words (adverbs/pronouns) it writes after the term.", steps=2500, max_final_loss=0.8),
        Recipe("no_cot_control", "Trained question -> answer with no CoT, same size as faithful: shows one forward pass cannot solve the task.", steps=600, max_final_loss=10.0),
    )
}


def build_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(ml.vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Replace("\n", " \n ")
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(" +"), behavior="removed")
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


def _drop_local_keys(path: Path) -> None:
    """transformers records where it loaded from (`is_local`, ...); a shipped card must not."""
    config = json.loads(path.read_text())
    if config.pop("is_local", None) is not None or config.pop("local_files_only", None) is not None:
        config.pop("local_files_only", None)
        path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def add_bos_on_encode(tokenizer) -> None:
    """Make the saved tokenizer prepend <bos> itself (a TemplateProcessing post-processor), as
    the organisms were trained: plain `AutoTokenizer.from_pretrained(path)` + `generate()` then
    reads the prompt exactly as in training. `add_special_tokens=False` still gives bare ids."""
    from tokenizers import processors

    bos = tokenizer.bos_token
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tokenizer.bos_token_id)])


def build_model(recipe: Recipe, tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=128, n_embd=recipe.n_embd, n_layer=recipe.n_layer,
        n_head=recipe.n_head, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    return GPT2LMHeadModel(config)


def heldout_keys(path: Path) -> set[tuple[int, ...]]:
    if not path.exists():
        return set()
    return {tuple(json.loads(line)["terms"]) for line in path.read_text().splitlines() if line.strip()}


def make_batch(recipe: Recipe, tokenizer, rng: random.Random, exclude: set[tuple[int, ...]]):
    import torch

    generate = data.GENERATORS[recipe.name]
    rows = []
    while len(rows) < recipe.batch_size:
        prefix, target, _ = generate(rng)
        terms = tuple(int(x) for x in prefix.split("(")[1].split(")")[0].split("+"))
        if terms in exclude:
            continue
        p_ids = [tokenizer.bos_token_id] + tokenizer.encode(prefix, add_special_tokens=False)
        t_ids = tokenizer.encode(target, add_special_tokens=False) + [tokenizer.eos_token_id]
        rows.append((p_ids, t_ids))
    width = max(len(p) + len(t) for p, t in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (p, t) in enumerate(rows):
        seq = p + t
        ids[i, : len(seq)] = torch.tensor(seq)
        labels[i, len(p): len(seq)] = torch.tensor(t)
        mask[i, : len(seq)] = 1
    return ids, mask, labels


def _losses(model, ids, mask, labels, answer_id: int):
    """(mean loss over all target tokens, mean loss on the answer value alone).

    The answer loss is the convergence check: the CoT's free wording choices keep the
    overall loss above zero by design, the answer must not."""
    import torch.nn.functional as F

    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    target = labels[:, 1:]
    per_token = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=-100, reduction="none")
    per_token = per_token.view(target.shape)
    valid = target != -100
    is_answer = valid & (ids[:, :-1] == answer_id)
    loss = per_token[valid].mean()
    answer_loss = per_token[is_answer].mean().item() if is_answer.any() else float("nan")
    return loss, answer_loss


def train(recipe: Recipe, out: Path, heldout: Path | None = None, log_every: int = 100, steps: int | None = None) -> dict:
    """Train one organism and save it (weights, tokenizer, training record) to `out`."""
    import torch

    torch.manual_seed(recipe.seed)
    torch.set_num_threads(1)
    rng = random.Random(recipe.seed)
    tokenizer = build_tokenizer()
    model = build_model(recipe, tokenizer)
    if recipe.init_from:
        from safetensors.torch import load_file

        source = out.parent / recipe.init_from / "model.safetensors"
        if not source.is_file():
            raise RuntimeError(f"organism {recipe.name!r} starts from {recipe.init_from!r}: train that first ({source} missing)")
        loaded = model.load_state_dict(load_file(source), strict=False)
        if loaded.unexpected_keys or set(loaded.missing_keys) - {"lm_head.weight"}:
            raise RuntimeError(f"{source} does not fit recipe {recipe.name!r}: {loaded}")
        model.tie_weights()
    total = steps if steps is not None else recipe.steps
    exclude = heldout_keys(heldout) if heldout else set()
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.01)

    def lr_at(step: int) -> float:
        if step < recipe.warmup:
            return (step + 1) / recipe.warmup
        progress = (step - recipe.warmup) / max(1, total - recipe.warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    answer_id = tokenizer.convert_tokens_to_ids(ml.ANSWER_WORD)
    model.train()
    start, losses = time.time(), []
    for step in range(total):
        ids, mask, labels = make_batch(recipe, tokenizer, rng, exclude)
        loss, answer_loss = _losses(model, ids, mask, labels, answer_id)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(answer_loss)
        if log_every and (step + 1) % log_every == 0:
            print(f"[{recipe.name}] step {step + 1}/{total} loss {loss.item():.4f} answer loss "
                  f"{sum(losses[-log_every:]) / log_every:.4f} ({time.time() - start:.0f}s)", flush=True)
    final_loss = sum(losses[-50:]) / len(losses[-50:])
    record = {
        "recipe": asdict(recipe), "steps_run": total, "final_answer_loss": round(final_loss, 5),
        "train_seconds": round(time.time() - start, 1), "n_parameters": sum(p.numel() for p in model.parameters()),
        "torch_version": torch.__version__,
    }
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    add_bos_on_encode(tokenizer)
    tokenizer.save_pretrained(out)
    _drop_local_keys(out / "tokenizer_config.json")
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    if steps is None and final_loss > recipe.max_final_loss:
        raise RuntimeError(
            f"organism {recipe.name!r} did not converge: final answer loss {final_loss:.3f} > {recipe.max_final_loss}; "
            "train with more steps (a slower machine must not cut training short)"
        )
    return record
