"""Greedy decoding of many requests at once on llama.cpp, continuously batched, prompts shared.

llama.cpp's KV cache is one pool of cells (`kv_unified`), and a cell can belong to several
sequences: `llama_memory_seq_cp` gives a new sequence the cells of a prompt prefix another
sequence already holds, without evaluating them again. Each request runs in a sequence of
its own, and every step is one `llama_decode` of the next token of each live request plus
the not-yet-held part of the prompts admitted into sequences freed by finished requests
(continuous batching). So an item's early-answering cuts, its planted mistakes and its
forced answers evaluate only what they add to each other, as the prefix tree does.

On a CPU a small quantised model is dominated by reading its weights for every step, so
one step for 16 sequences yields many more tokens per second than 16 single steps (the
figures are in benchmarks/engine.py). A sequence reserved as the root holds the prefix
common to all requests of a call (a system prompt, few-shot turns) and keeps it for the
next call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Row:
    """One request as the decoder sees it: its prompt tokens and how to stop."""

    tokens: list[int]
    budget: int
    # called with the generated token ids; True stops the request (a stop string was written)
    stop_text: Callable[[list[int]], bool] | None = None


@dataclass
class Decoded:
    tokens: list[int]
    finish: str  # "stop" (end of turn or stop string) | "length"


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class TreeDecoder:
    """Owns a llama.cpp context with `n_seq` sequences sharing one unified KV cache of
    `n_ctx` cells. `decode(rows)` answers up to `n_seq - 1` rows at once (the last sequence
    id holds the root prefix kept between groups)."""

    def __init__(self, model, n_seq: int, n_ctx: int, n_batch: int, threads: int, eog: set[int],
                 live_max: int | None = None):
        from llama_cpp import llama_cpp as C

        self.C = C
        self._schedule_state(n_seq, n_ctx, n_batch, eog, live_max)
        params = C.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = n_seq
        params.kv_unified = True
        params.n_threads = threads
        params.n_threads_batch = threads
        params.no_perf = True
        self.ctx = C.llama_init_from_model(model, params)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a batched context")
        self.mem = C.llama_get_memory(self.ctx)
        self.n_vocab = C.llama_vocab_n_tokens(C.llama_model_get_vocab(model))
        self.batch = C.llama_batch_init(n_batch, 0, n_seq)

    def _schedule_state(self, n_seq: int, n_ctx: int, n_batch: int, eog: set[int], live_max: int | None = None) -> None:
        """What the scheduling in `run` keeps between calls (no llama.cpp object in it).
        `live_max` rows decode at once (default: every sequence but the root); the other
        sequences only keep finished rows' cells as donors."""
        self.n_seq, self.n_ctx, self.n_batch, self.eog = n_seq, n_ctx, n_batch, eog
        self.live_max = live_max or n_seq - 1
        self.root = n_seq - 1
        self.root_tokens: list[int] = []  # what the root sequence holds, positions 0..len-1
        self.donor_tokens: dict[int, list[int]] = {}  # finished sequences kept from the last group
        self.live: dict[int, tuple[int, list[int]]] = {}  # the current group's sequence -> (row, generated)
        self.evaluated = 0  # prompt tokens actually sent through the model
        self.peak = 0  # most rows decoded at once in one step

    # --- the llama_batch ----------------------------------------------------------------

    def _fill(self, entries: list[tuple[int, int, tuple[int, ...], bool]]) -> None:
        """entries: (token, position, sequence ids, wants logits)."""
        b = self.batch
        for i, (tok, pos, seqs, logits) in enumerate(entries):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = len(seqs)
            for j, s in enumerate(seqs):
                b.seq_id[i][j] = s
            b.logits[i] = 1 if logits else 0
        b.n_tokens = len(entries)

    def _decode(self, entries) -> None:
        self._fill(entries)
        rc = self.C.llama_decode(self.ctx, self.batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc} (KV cache full? raise n_ctx)")

    def _argmax(self, i: int) -> int:
        ptr = self.C.llama_get_logits_ith(self.ctx, i)
        return int(np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).argmax())

    # --- one group ----------------------------------------------------------------------

    def run(self, rows: list[Row], on_done: Callable[[int, Decoded], Row | None]) -> None:
        """Greedy continuations of `rows` (given in token order, each prompt at least one token
        and fitting the cache with its budget); `on_done(i, decoded)` is called for each row
        the moment it finishes. When it returns a Row (a follow-up: a forced answer after the
        CoT just finished), that row is appended to `rows` and admitted before any other, in
        the next step, while the finished row's cells are still held: it copies them and
        evaluates only what it adds. A follow-up that does not begin with the root's shared
        prefix, or cannot fit the cache, is not taken (the caller computes it later).

        Continuous batching: every step is one `llama_decode` (split at n_batch tokens) of the
        next token of each live row plus the prompts of the rows admitted into free sequences.
        A row admitted is first given, by `llama_memory_seq_cp`, the longest prefix of its
        prompt that a sequence in the cache already holds, and evaluates only the rest. A row
        whose prompt shares more with a row admitted in the same step waits one step, to copy
        it from that row instead. A finished row's sequence keeps its cells as a donor until
        its slot or its cells are needed (the oldest donor goes first), so a row admitted after
        the rows it shares a prefix with have finished still copies it; a row whose best donor
        must give up its slot takes that slot over, prefix in place. The root sequence holds the
        rows' common prefix (a system prompt, few-shot turns) and keeps it for the next call."""
        C, mem = self.C, self.mem
        for seq in range(self.n_seq - 1):
            if seq not in self.donor_tokens:
                C.llama_memory_seq_rm(mem, seq, -1, -1)
        empty = [seq for seq in range(self.n_seq - 1) if seq not in self.donor_tokens]  # holding nothing
        shared = self._shared_prefix(rows)
        keep = common_prefix(self.root_tokens, shared)
        C.llama_memory_seq_rm(mem, self.root, keep, -1)
        self.root_tokens = shared
        if keep < len(shared):
            # the rest of the root's prefix from the donor holding most of it (a call of one
            # item's forced answers puts nearly the whole prompt in the root), then evaluated
            src, have = max(((seq, common_prefix(t, shared)) for seq, t in self.donor_tokens.items()),
                            key=lambda x: x[1], default=(None, 0))
            if src is not None and have > keep:
                C.llama_memory_seq_cp(mem, src, self.root, keep, have)
                keep = have
            if keep < len(shared):
                self._step([(shared[p], p, (self.root,), False) for p in range(keep, len(shared))], [])
                self.evaluated += len(shared) - keep
        # sequence -> the tokens its cells hold; the last group's donors stay donors (a forced
        # answer continued, a follow-up after a CoT, shares their prompts), their cells counted whole
        held: dict[int, list[int]] = {self.root: shared, **self.donor_tokens}
        live = self.live = {}  # sequence -> (row, generated tokens); benchmarks/tree_replay.py reads it
        donors: dict[int, int] = {seq: len(t) for seq, t in self.donor_tokens.items()}  # -> cells, oldest first
        budget = self.n_ctx - len(shared) - sum(donors.values())  # cells not promised to a row or a donor

        def drop(seq: int) -> None:
            nonlocal budget
            budget += donors.pop(seq)
            del held[seq]
            C.llama_memory_seq_rm(mem, seq, -1, -1)
            empty.append(seq)

        pending = list(range(len(rows)))
        follow: list[int] = []

        def finished(i: int, decoded: Decoded) -> None:
            extra = on_done(i, decoded)
            if (extra is not None and common_prefix(extra.tokens, shared) == len(shared) < len(extra.tokens)
                    and self._cells(extra, shared) <= self.n_ctx - len(shared)):
                rows.append(extra)
                follow.append(len(rows) - 1)

        while pending or live or follow:
            pending, follow[:] = follow + pending, []
            entries: list[tuple[int, int, tuple[int, ...], bool]] = []
            wants: list[tuple[int, int]] = []  # (entry index, sequence) whose next token is read
            for seq, (i, got) in live.items():
                wants.append((len(entries), seq))
                entries.append((got[-1], len(rows[i].tokens) + len(got) - 1, (seq,), True))
            admitted: list[tuple[int, int]] = []  # (sequence, row)
            later = []
            for i in pending:
                row, need = rows[i].tokens, self._cells(rows[i], shared)
                if ((not empty and not donors) or (admitted and len(entries) > 4 * self.n_batch)
                        or len(live) + len(admitted) >= self.live_max):
                    later.append(i)
                    continue
                src, have = max(((seq, common_prefix(tokens, row)) for seq, tokens in held.items()),
                                key=lambda x: x[1])
                have = min(have, len(row) - 1)
                if any(common_prefix(rows[j].tokens, row) > have for _, j in admitted):
                    later.append(i)  # wait one step for that row's prompt to be in the cache
                    continue
                take_over = src in donors and not empty  # the best donor's slot is the one to use
                if not empty and not take_over:
                    drop(next(iter(donors)))  # a slot: the oldest donor's
                others = [d for d in donors if d != src]  # oldest first
                while need > budget + (donors[src] if take_over else 0) and others:
                    drop(others.pop(0))  # cells: the oldest donors'
                if need > budget + (donors[src] if take_over else 0):
                    later.append(i)  # wait for live rows to finish
                    continue
                if take_over:
                    budget += donors.pop(src)
                    C.llama_memory_seq_rm(mem, src, have, -1)  # its prefix stays in place
                    held[src] = row[:have]  # what it holds until this step is decoded
                    seq = src
                else:
                    seq = empty.pop(0)
                    if have:
                        C.llama_memory_seq_cp(mem, src, seq, 0, have)
                budget -= need
                admitted.append((seq, i))
                wants.append((len(entries) + len(row) - have - 1, seq))
                entries += [(row[p], p, (seq,), p == len(row) - 1) for p in range(have, len(row))]
                self.evaluated += len(row) - have
            pending = later
            if not entries:
                raise RuntimeError(f"a prompt with its budget does not fit the {self.n_ctx}-cell KV cache "
                                   "(raise --model-arg parallel_ctx)")
            for seq, i in admitted:
                held[seq], live[seq] = rows[i].tokens, (i, [])
            self.peak = max(self.peak, len(live))
            for seq, tok in self._step(entries, wants):
                i, got = live[seq]
                if not self._push(i, rows[i], got, tok, finished):
                    del live[seq]
                    fed = got if tok in self.eog else got[:-1]  # the last token appended was never decoded
                    held[seq] = rows[i].tokens + fed
                    cells = len(held[seq]) - len(shared)
                    budget += self._cells(rows[i], shared) - cells
                    donors[seq] = cells
        self.donor_tokens = {seq: held[seq] for seq in donors}

    def _step(self, entries, wants: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Decode `entries` in calls of at most n_batch tokens; the greedy next token at each
        wanted entry, as (sequence, token)."""
        by_entry = dict(wants)
        out = []
        for start in range(0, len(entries), self.n_batch):
            part = entries[start:start + self.n_batch]
            self._decode(part)
            for k in range(len(part)):
                if start + k in by_entry:
                    out.append((by_entry[start + k], self._argmax(k)))
        return out

    @staticmethod
    def _cells(row: Row, shared: list[int]) -> int:
        """Cells a row may add to the cache: its prompt beyond the root's prefix, whose cells
        every sequence shares with the root until the group ends, and its budget. (What it
        shares with another row is counted twice: a bound, never an overcommitment.)"""
        return len(row.tokens) - len(shared) + row.budget

    @staticmethod
    def _shared_prefix(rows: list[Row]) -> list[int]:
        shared = rows[0].tokens[: len(rows[0].tokens) - 1]
        for r in rows[1:]:
            shared = shared[: min(common_prefix(shared, r.tokens), len(r.tokens) - 1)]
        return list(shared)

    def _push(self, s: int, row: Row, got: list[int], tok: int, on_done) -> bool:
        """Append `tok` to row s; False (and `on_done`) when the row is finished."""
        if tok in self.eog:
            on_done(s, Decoded(got, "stop"))
            return False
        got.append(tok)
        if row.stop_text is not None and row.stop_text(got):
            on_done(s, Decoded(got, "stop"))
            return False
        if len(got) >= row.budget:
            on_done(s, Decoded(got, "length"))
            return False
        return True

    def reset(self) -> None:
        """Empty the cache (after a failed decode: what it holds is unknown)."""
        self.C.llama_memory_clear(self.mem, True)
        self.root_tokens = []
        self.donor_tokens = {}

    def close(self) -> None:
        if self.ctx:
            self.C.llama_batch_free(self.batch)
            self.C.llama_free(self.ctx)
            self.ctx = None


__all__ = ["Decoded", "Row", "TreeDecoder", "common_prefix"]
