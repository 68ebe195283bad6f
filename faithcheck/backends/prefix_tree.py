"""Plan a batch of prompts as a prefix tree, so that each distinct prefix is computed once.

An audit asks a model about many near-copies of one text: every variant of an item shares
the few-shot prompt and question, the K cut points of early answering share the CoT up to
each cut, a planted mistake shares everything before its step. `Trie` holds the token rows
of one batch; `plan` walks it and says what to compute:

- `Extend(parent, nodes)`: a chain of tokens shared by more requests than fit one pass
  (the few-shot prompt, an item's question and CoT) is computed once and kept as a cached
  prefix, from which every request below it branches;
- `Row(prefix, roots, requests)`: the subtrees under a cached prefix that fit one pass are
  computed together in a single packed forward pass (a tree-shaped attention mask, positions
  = depth), then their requests decode as one batch from their own cached paths.

The planner is pure Python; `faithcheck.backends.hf` executes the plan with transformers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


class Trie:
    """Token rows as a prefix tree. Node ids are assigned in insertion order, so a parent's
    id is always smaller than its children's; `-1` is the (virtual) root."""

    def __init__(self, rows: list[list[int]]):
        self.token: list[int] = []
        self.parent: list[int] = []
        self.depth: list[int] = []
        self.children: list[dict[int, int]] = []
        self.ends: list[list[int]] = []
        self.roots: dict[int, int] = {}
        self.end_node: list[int] = []
        for r, row in enumerate(rows):
            if not row:
                raise ValueError(f"row {r} is empty: every request needs at least one token")
            kids, node = self.roots, -1
            for tok in row:
                nxt = kids.get(tok)
                if nxt is None:
                    nxt = len(self.token)
                    self.token.append(tok)
                    self.parent.append(node)
                    self.depth.append(0 if node < 0 else self.depth[node] + 1)
                    self.children.append({})
                    self.ends.append([])
                    kids[tok] = nxt
                node, kids = nxt, self.children[nxt]
            self.ends[node].append(r)
            self.end_node.append(node)
        # subtree sizes (nodes) and request counts, children before parents
        self.size = [1] * len(self.token)
        self.leaves = [len(e) for e in self.ends]
        for n in range(len(self.token) - 1, -1, -1):
            p = self.parent[n]
            if p >= 0:
                self.size[p] += self.size[n]
                self.leaves[p] += self.leaves[n]

    def __len__(self) -> int:
        return len(self.token)

    def subtree(self, root: int) -> Iterator[int]:
        """Nodes under `root` (itself included), parents before children."""
        stack = [root]
        while stack:
            n = stack.pop()
            yield n
            stack.extend(reversed(self.children[n].values()))


@dataclass(frozen=True)
class Extend:
    """Compute `nodes` (a chain, each the parent of the next) on top of cached prefix `parent`
    (0: the empty prefix) and keep the result as cached prefix `handle`."""

    handle: int
    parent: int
    nodes: tuple[int, ...]


@dataclass(frozen=True)
class Row:
    """Compute the subtrees under `roots` in one packed pass on top of cached prefix `prefix`
    (which ends at trie node `prefix_node`, -1 for the empty prefix), then decode `requests`."""

    prefix: int
    prefix_node: int
    roots: tuple[int, ...]
    requests: tuple[int, ...]


@dataclass(frozen=True)
class Release:
    handle: int


def plan(trie: Trie, max_tokens: int, max_requests: int) -> Iterator[Extend | Row | Release]:
    """The steps that compute every node of `trie` about once, with at most `max_tokens` nodes
    and `max_requests` requests in one packed pass.

    Only a chain shared by requests that cannot all sit in one row is computed on its own;
    the rest is packed. Cached prefixes are released as soon as the planner leaves them, so
    memory holds one root-to-node chain of prefixes at a time."""
    counter = iter(range(1, 1 << 62))

    def below(handle: int, node: int, kids: list[int], ending: list[int]) -> Iterator[Extend | Row | Release]:
        roots: list[int] = []
        requests: list[int] = list(ending)
        tokens = 0
        while len(requests) > max_requests:  # many requests ending exactly at this node
            yield Row(handle, node, (), tuple(requests[:max_requests]))
            requests = requests[max_requests:]
        for c in kids:
            if trie.size[c] > max_tokens or trie.leaves[c] > max_requests:
                yield from descend(handle, c)
                continue
            if (roots or requests) and (tokens + trie.size[c] > max_tokens or len(requests) + trie.leaves[c] > max_requests):
                yield Row(handle, node, tuple(roots), tuple(requests))
                roots, requests, tokens = [], [], 0
            roots.append(c)
            tokens += trie.size[c]
            requests.extend(r for n in trie.subtree(c) for r in trie.ends[n])
        if roots or requests:
            yield Row(handle, node, tuple(roots), tuple(requests))

    def descend(handle: int, node: int) -> Iterator[Extend | Row | Release]:
        chain = [node]
        while len(trie.children[chain[-1]]) == 1 and not trie.ends[chain[-1]]:
            chain.append(next(iter(trie.children[chain[-1]].values())))
        new = next(counter)
        end = chain[-1]
        yield Extend(new, handle, tuple(chain))
        yield from below(new, end, list(trie.children[end].values()), trie.ends[end])
        yield Release(new)

    roots = list(trie.roots.values())
    if len(roots) == 1 and not trie.ends[roots[0]] and len(trie.children[roots[0]]) == 1:
        # the prefix every row shares (a few-shot prompt) is its own step, so that a runner
        # can keep it for the next batch, whatever the limits
        yield from descend(0, roots[0])
    else:
        yield from below(0, -1, roots, [])
