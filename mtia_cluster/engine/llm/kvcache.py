"""KV-cache blocks of a replica: free blocks plus an optional prefix cache.

Blocks are *used* (held by running requests), *cached* (left by finished requests, reusable,
evictable) or *free*. Cached blocks count as available to every allocation: when free blocks
run out, cache entries are evicted least recently cached first. Two keying rules share one
LRU order:

* **Block keys** (traces with ``prefix_blocks`` hash chains): a request carries one key per
  full KV block of its prompt that the chain covers (:func:`block_keys`); equal keys mean
  equal tokens from the prompt's start to the block's end. Full keyed blocks are shared as
  soon as they are computed (reference counted, as vLLM's prefix cache): a later request
  whose leading keys are present reuses them without new memory, and a block whose last
  holder finishes or is preempted becomes a cached entry of one block (a holder's blocks are
  cached deepest first, so its chain is evicted from the tail). A request that computes a
  block another one registered meanwhile adopts the registered copy (its own is freed).
* **Sessions** (no chain): a finished request's full blocks are cached as its session's
  entry (replacing the older one); the session's next request takes the entry.

For KV-aware routing the pool also keeps, per hash id, how many of its keys it holds (held or
cached) and records each id's appearance and disappearance (``events``, drained by the cell
for its load reports): what Dynamo's KV events and llm-d's precise prefix scorer read.

The reference scheduler implements the same rules on its own (the test oracle
`tests/engine_llm/llm_reference.py`); the two are checked against each other.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence

import numpy as np

Key = Hashable


def blocks_for(tokens: int, block_size: int) -> int:
    """Blocks holding `tokens` tokens."""
    return -(-tokens // block_size)


def block_keys(
    hashes: Sequence[int], hash_tokens: int, prompt_tokens: int, block_size: int
) -> list[tuple[int, int]]:
    """Keys of the full KV blocks of a prompt covered by its hash chain.

    `hashes[m]` identifies the prompt's tokens ``[0, (m + 1) * hash_tokens)`` (a hash chain:
    Mooncake's ``hash_ids``); the last hash block may be partial (it then ends at the
    prompt's end). KV block ``j`` (tokens ``[j * bs, (j + 1) * bs)``) is keyed by
    ``(hashes[m], j)`` with ``m`` the hash block holding its last token, so equal keys mean
    equal tokens from the start to the block's end, for any two block sizes.
    """
    covered = min(prompt_tokens, len(hashes) * hash_tokens)
    last = range(block_size - 1, covered, block_size)  # each full block's last token
    return [(int(hashes[t // hash_tokens]), j) for j, t in enumerate(last)]


class BlockPool:
    """Block accounting with an LRU prefix cache (see module doc)."""

    __slots__ = (
        "block_size",
        "cache",
        "cached",
        "enabled",
        "events",
        "free",
        "hashes",
        "num_blocks",
        "refs",
        "shared",
    )

    def __init__(self, num_blocks: int, block_size: int, prefix_caching: bool) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enabled = prefix_caching
        self.free = num_blocks
        self.cached = 0
        # evictable entries, least recently cached first: session -> blocks, block key -> 1
        self.cache: OrderedDict[Key, int] = OrderedDict()
        self.refs: dict[Key, int] = {}  # keyed blocks held by running requests -> holders
        self.shared = 0  # sum of (holders - 1) over refs: blocks held more than once
        self.hashes: dict[int, int] = {}  # hash id -> its keys held or cached
        self.events: list[tuple[int, int]] = []  # (hash id, +1 appeared / -1 gone), in order

    def take_events(self) -> list[tuple[int, int]]:
        """The events since the last call (the cell's load reports drain them)."""
        events, self.events = self.events, []
        return events

    def lost_events(self) -> list[tuple[int, int]]:
        """Of a cache that is gone (its replica failed): the events not yet reported, then
        every hash id it held leaving."""
        return self.events + [(h, -1) for h in self.hashes]

    @property
    def available(self) -> int:
        """Blocks an allocation may take (free + evictable cached)."""
        return self.free + self.cached

    @property
    def used(self) -> int:
        return self.num_blocks - self.free - self.cached

    def alloc(self, need: int) -> None:
        """Take `need` (<= available) blocks, evicting the oldest cache entries first."""
        while self.free < need:
            key, size = self.cache.popitem(last=False)
            self.cached -= size
            self.free += size
            if isinstance(key, tuple):
                self._gone(key[0])
        self.free -= need

    def _gone(self, h: int) -> None:
        n = self.hashes[h] - 1
        if n:
            self.hashes[h] = n
        else:
            del self.hashes[h]
            self.events.append((h, -1))

    # ----------------------------------------------------------------- session rule
    def hit_blocks(self, session: int, tokens: int) -> int:
        """Cached blocks reusable by a request of `session` with `tokens` tokens to compute.

        At least one token is always left to compute (it produces the next token's logits).
        """
        if not self.enabled or session < 0:
            return 0
        size = self.cache.get(session)
        if size is None:
            return 0
        return min(size, (tokens - 1) // self.block_size)

    def take(self, session: int, blocks: int) -> None:
        """A request reuses `blocks` of its session's entry; the entry's rest is freed."""
        size = self.cache.pop(session)
        self.cached -= size
        self.free += size - blocks

    def release(self, session: int, computed: int) -> None:
        """A finished request's blocks: its full blocks cached for its session, or freed."""
        held = blocks_for(computed, self.block_size)
        if not self.enabled or session < 0:
            self.free += held
            return
        full = computed // self.block_size
        old = self.cache.pop(session, 0)
        self.cached += full - old
        self.free += old + held - full
        if full:
            self.cache[session] = full

    def older_than(self, session: int) -> int:
        """Cached blocks evicted before `session`'s entry."""
        total = 0
        for other, size in self.cache.items():
            if other == session:
                return total
            total += size
        raise KeyError(session)

    # ----------------------------------------------------------------- block-key rule
    def chain_hit(self, keys: list[tuple[int, int]], tokens: int) -> tuple[int, int]:
        """(reusable leading blocks, how many of them are held by running requests) for a
        request with `keys` and `tokens` tokens to compute (at least one stays to compute).
        Held blocks come first: a holder holds every block before the ones it holds."""
        cap = min(len(keys), (tokens - 1) // self.block_size)
        refs, cache = self.refs, self.cache
        hit = shared = 0
        while hit < cap:
            key = keys[hit]
            if key in refs:
                shared += 1
            elif key not in cache:
                break
            hit += 1
        return hit, shared

    def acquire(self, keys: list[tuple[int, int]], hit: int) -> None:
        """A request admitted with `hit` reused blocks holds them (cached ones leave the LRU)."""
        refs, cache = self.refs, self.cache
        for key in keys[:hit]:
            n = refs.get(key)
            if n:
                refs[key] = n + 1
                self.shared += 1
            else:
                del cache[key]
                self.cached -= 1
                refs[key] = 1

    def register(self, keys: list[tuple[int, int]], lo: int, hi: int) -> None:
        """Blocks lo..hi-1 of a request were just computed: shared from now on (a block
        already registered by another request is adopted and the request's copy freed)."""
        refs, cache = self.refs, self.cache
        for key in keys[lo:hi]:
            n = refs.get(key)
            if n:
                refs[key] = n + 1
                self.shared += 1
                self.free += 1
            elif key in cache:
                del cache[key]
                self.cached -= 1
                refs[key] = 1
                self.free += 1
            else:
                refs[key] = 1
                h = key[0]
                n = self.hashes.get(h, 0)
                if not n:
                    self.events.append((h, 1))
                self.hashes[h] = n + 1

    def release_chain(self, keys: list[tuple[int, int]], computed: int) -> None:
        """A request holding `computed` tokens' blocks finishes or is preempted: its own
        blocks are freed, its keyed blocks released (cached, deepest first, when unheld)."""
        held = min(computed // self.block_size, len(keys))
        self.free += blocks_for(computed, self.block_size) - held
        refs, cache = self.refs, self.cache
        for j in range(held - 1, -1, -1):
            key = keys[j]
            n = refs[key] - 1
            if n:
                refs[key] = n
                self.shared -= 1
            else:
                del refs[key]
                cache[key] = 1
                self.cached += 1

    def older_than_any(self, keys: set[Key]) -> int:
        """Cached blocks evicted before the first entry in `keys` (all, if none is cached)."""
        total = 0
        for other, size in self.cache.items():
            if other in keys:
                return total
            total += size
        return total


def chains_to_keys(
    chains: np.ndarray, prompts: np.ndarray, block_size: int
) -> list[list[tuple[int, int]] | None] | None:
    """Per request, :func:`block_keys` of its chain (``traces.columns.PrefixChain``: a
    ``block_tokens`` and ``hashes``), None for a request without one; None if none has."""
    entries = chains.tolist()
    if all(c is None for c in entries):
        return None
    return [
        None if c is None else block_keys(c.hashes, c.block_tokens, p, block_size)
        for c, p in zip(entries, prompts.tolist(), strict=True)
    ]
