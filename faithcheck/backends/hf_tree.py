"""Execute a prefix-tree plan (`prefix_tree.plan`) with a transformers model.

A `Row` is one packed forward pass over the row's subtrees, on top of a cached prefix:
the tokens sit in one sequence, each attends to its ancestors only (a tree-shaped 4D mask)
and takes its depth as position id, so every token sees exactly what it would see in its
own sequence. Its requests then branch off: each one's key/value path is gathered into a
left-padded batch cache (requests of several rows fill one batch) and the backend decodes
greedily from the last prompt token, exactly as for a plain left-padded batch. Models with
sliding-window layers (Gemma 3) get their own windowed mask per layer type. The prompt every
batch shares (a few-shot prefix) is kept between batches.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from faithcheck.backends.prefix_tree import Extend, Release, Row, Trie, plan

if TYPE_CHECKING:
    from faithcheck.backends._hf_passes import ModelPasses

Layers = list[tuple[Any, Any]]  # (keys, values) per layer, shape [1, heads, length, head_dim]
_MASKABLE = ("sdpa", "eager")
_KEEP_MIN = 16  # shorter shared prefixes are not worth keeping between batches
_PACK_REQUESTS = 1 << 20  # requests of one packed pass: unbounded (tokens bound it)


def unsupported_reason(model: Any) -> str | None:
    """Why the packed path cannot run on `model`, or None when it can (then verified on load)."""
    config = model.config.get_text_config()
    impl = getattr(model.config, "_attn_implementation", None)
    if impl not in _MASKABLE:
        return f"attention implementation {impl!r} takes no custom 4D mask (needs {' or '.join(_MASKABLE)})"
    kinds = set(getattr(config, "layer_types", None) or ["full_attention"])
    if not kinds <= {"full_attention", "sliding_attention"}:
        return f"layer types {sorted(kinds)} are not handled"
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder models are not handled"
    return None


class TreeRunner:
    """Runs a batch of token rows along their prefix tree. Its whole interface to the backend
    is a `ModelPasses`: the model, `forward(**inputs)` (which drops the optional inputs the
    model does not take) and the shared `counters`."""

    def __init__(self, passes: ModelPasses, keep_tokens: int = 8192):
        self.passes = passes
        self.model = passes.model
        config = self.model.config.get_text_config()
        self.window = getattr(config, "sliding_window", None) if getattr(config, "use_sliding_window", True) else None
        types = getattr(config, "layer_types", None)
        self.per_type = bool(types) and "sliding_attention" in types
        # prefixes kept across batches (least recently used dropped first), in tokens
        self._kept: OrderedDict[tuple[int, ...], Layers] = OrderedDict()
        self.keep_tokens = keep_tokens

    # --- one forward pass --------------------------------------------------------------

    def _mask(self, allowed: Any, q_pos: Any, k_pos: Any) -> Any:
        """Additive float masks (what both sdpa and eager accept) from a boolean [q, k] mask."""
        import torch

        dtype = self.model.dtype
        low = torch.finfo(dtype).min

        def additive(ok: Any) -> Any:
            return torch.zeros(ok.shape, dtype=dtype).masked_fill(~ok, low)[None, None].to(self.model.device)

        if self.window is None:
            return additive(allowed)
        windowed = allowed & (q_pos[:, None] - k_pos[None, :] < self.window)
        if self.per_type:
            return {"full_attention": additive(allowed), "sliding_attention": additive(windowed)}
        return additive(windowed)

    def forward(self, prefix: Layers, tokens: list[int], depths: list[int], allowed: Any) -> Layers:
        """Keys and values of `prefix` followed by `tokens`, where token i attends to the whole
        prefix and to the tree tokens marked in row i of `allowed` ([n, n] bool)."""
        import torch
        from transformers import DynamicCache

        cache = DynamicCache()
        for layer, (k, v) in enumerate(prefix):
            cache.update(k, v, layer)
        n, n_prefix = len(tokens), (prefix[0][0].shape[-2] if prefix else 0)
        q_pos = torch.tensor(depths, dtype=torch.long)
        k_pos = torch.cat([torch.arange(n_prefix), q_pos])
        full = torch.cat([torch.ones(n, n_prefix, dtype=torch.bool), allowed], dim=1)
        with torch.inference_mode():
            out = self.passes.forward(
                input_ids=torch.tensor([tokens], device=self.model.device),
                attention_mask=self._mask(full, q_pos, k_pos),
                past_key_values=cache, use_cache=True,
                position_ids=q_pos[None].to(self.model.device),
                logits_to_keep=1,  # only keys and values are wanted here
            )
        self.passes.counters["tokens_computed"] += n
        self.passes.counters["packed_passes"] += 1
        return [(layer.keys, layer.values) for layer in self.passes.kv_cache(out).layers]

    @staticmethod
    def ancestry(trie: Trie, nodes: list[int]) -> tuple[Any, dict[int, int]]:
        """[n, n] bool: row i marks node i and its ancestors among `nodes` (parents first)."""
        import torch

        index = {node: i for i, node in enumerate(nodes)}
        allowed = torch.zeros(len(nodes), len(nodes), dtype=torch.bool)
        for i, node in enumerate(nodes):
            j = index.get(trie.parent[node])
            if j is not None:
                allowed[i] = allowed[j]
            allowed[i, i] = True
        return allowed, index

    # --- a batch of requests -----------------------------------------------------------

    def run(self, rows: list[list[int]], max_tokens: int, max_requests: int, decode: Any) -> None:
        """Compute `rows` along the prefix tree; `decode(request_ids, cache)` is called for each
        batch of at most `max_requests` requests, with a left-padded batch cache holding all
        but each request's last token."""
        trie = Trie(rows)
        prefixes: dict[int, Layers] = {0: []}
        paths: dict[int, tuple[int, ...]] = {0: ()}
        # A packed pass is bounded by tokens only. Requests wait until a full batch of them
        # (from one or several packed passes) can decode together.
        pending: list[tuple[int, Layers, Any]] = []

        def flush() -> None:
            if pending:
                decode([r for r, _, _ in pending], self._batch_cache([(layers, path) for _, layers, path in pending]))
                pending.clear()

        for step in plan(trie, max_tokens, _PACK_REQUESTS):
            if isinstance(step, Extend):
                path = paths[step.parent] + tuple(trie.token[n] for n in step.nodes)
                prefixes[step.handle], paths[step.handle] = self._extend(trie, prefixes[step.parent], paths[step.parent], step, path), path
            elif isinstance(step, Release):
                del paths[step.handle]
                del prefixes[step.handle]
            else:
                layers, request_paths = self._row(trie, prefixes[step.prefix], step, rows)
                for r in step.requests:
                    pending.append((r, layers, request_paths[r]))
                    if len(pending) >= max_requests:
                        flush()
        flush()

    def _extend(self, trie: Trie, parent: Layers, parent_path: tuple[int, ...], step: Extend, path: tuple[int, ...]) -> Layers:
        """The chain of `step` on top of `parent`, starting from the longest prefix of `path` kept
        from an earlier batch (the few-shot prompt every stage of an audit shares)."""
        start, layers = len(parent_path), parent
        for key, kept in self._kept.items():
            if start < len(key) <= len(path) and path[: len(key)] == key:
                start, layers = len(key), kept
        if path[:start] in self._kept:
            self._kept.move_to_end(path[:start])
        if start < len(path):
            nodes = list(step.nodes[start - len(parent_path):])
            allowed, _ = self.ancestry(trie, nodes)
            layers = self.forward(layers, [trie.token[n] for n in nodes], [trie.depth[n] for n in nodes], allowed)
        else:
            self.passes.counters["tokens_reused"] += len(path) - len(parent_path)
        if len(path) >= _KEEP_MIN and path not in self._kept:
            self._kept[path] = layers
            while sum(map(len, self._kept)) > self.keep_tokens and len(self._kept) > 1:
                self._kept.popitem(last=False)
        return layers

    def _row(self, trie: Trie, prefix: Layers, row: Row, rows: list[list[int]]) -> tuple[Layers, dict[int, Any]]:
        """The row's packed pass, and each request's path in it: the cache positions of every
        token of its row but the last."""
        import torch

        n_prefix = prefix[0][0].shape[-2] if prefix else 0
        nodes = [n for root in row.roots for n in trie.subtree(root) if trie.children[n]]
        layers = prefix
        allowed, index = self.ancestry(trie, nodes)
        if nodes:
            layers = self.forward(prefix, [trie.token[n] for n in nodes], [trie.depth[n] for n in nodes], allowed)
        paths = {}
        for r in row.requests:
            end = trie.end_node[r]
            if end == row.prefix_node:
                path = torch.arange(n_prefix - 1)
            else:
                parent = trie.parent[end]
                path = torch.arange(n_prefix)
                if parent != row.prefix_node:
                    path = torch.cat([path, n_prefix + allowed[index[parent]].nonzero()[:, 0]])
            if len(path) != len(rows[r]) - 1:
                raise RuntimeError(f"prefix tree: request path has {len(path)} tokens, expected {len(rows[r]) - 1}")
            paths[r] = path
        return layers, paths

    def _batch_cache(self, paths: list[tuple[Layers, Any]]) -> Any:
        """A left-padded batch cache of the given paths, each in its own packed pass's keys and
        values (None when every path is empty)."""
        from transformers import DynamicCache

        width = max(len(p) for _, p in paths)
        if width == 0:
            return None
        cache = DynamicCache(config=self.model.config)
        for layer in range(len(paths[0][0])):
            k0, v0 = paths[0][0][layer]
            kb = k0.new_zeros(len(paths), k0.shape[1], width, k0.shape[-1])
            vb = v0.new_zeros(len(paths), v0.shape[1], width, v0.shape[-1])
            for i, (layers, path) in enumerate(paths):
                if len(path):
                    index = path.to(k0.device)
                    kb[i, :, width - len(path):] = layers[layer][0][0].index_select(1, index)
                    vb[i, :, width - len(path):] = layers[layer][1][0].index_select(1, index)
            cache.update(kb, vb, layer)
        return cache
