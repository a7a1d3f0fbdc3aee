"""KV-cache blocks of a replica: free blocks plus an optional per-session prefix cache.

Blocks are *used* (held by running requests), *cached* (full blocks a finished request left
under its ``session_id``, reusable by the session's next request) or *free*. Cached blocks
count as available to every allocation: when free blocks run out, whole session entries are
evicted least recently cached first. The reference scheduler implements the same rules on
its own (:mod:`._reference`); the two are checked against each other.
"""

from __future__ import annotations

from collections import OrderedDict


def blocks_for(tokens: int, block_size: int) -> int:
    """Blocks holding `tokens` tokens."""
    return -(-tokens // block_size)


class BlockPool:
    """Block accounting with LRU session entries (see module doc)."""

    __slots__ = ("block_size", "cache", "cached", "enabled", "free", "num_blocks")

    def __init__(self, num_blocks: int, block_size: int, prefix_caching: bool) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enabled = prefix_caching
        self.free = num_blocks
        self.cached = 0
        self.cache: OrderedDict[int, int] = OrderedDict()  # session -> blocks, oldest first

    @property
    def available(self) -> int:
        """Blocks an allocation may take (free + evictable cached)."""
        return self.free + self.cached

    @property
    def used(self) -> int:
        return self.num_blocks - self.free - self.cached

    def alloc(self, need: int) -> None:
        """Take `need` (<= available) blocks, evicting the oldest session entries first."""
        while self.free < need:
            _, size = self.cache.popitem(last=False)
            self.cached -= size
            self.free += size
        self.free -= need

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
