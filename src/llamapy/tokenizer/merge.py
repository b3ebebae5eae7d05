"""The merge loop SentencePiece and byte-level BPE share: repeatedly join the best adjacent pair."""
from __future__ import annotations

import heapq
from typing import Callable, Optional


def merge_pairs(sym: list[str], priority: Callable[[str, str], Optional[tuple]]) -> list[str]:
    """Merge adjacent symbols, best pair first, until no pair is mergeable; returns the final symbols.

    priority(left, right) is a sort key (lower merges first) or None when the pair cannot merge. Ties go
    to the leftmost pair, as both llama.cpp tokenizers do. Symbols live in a linked list so a merge is
    O(log n) with the heap.
    """
    n = len(sym)
    if n < 2:
        return sym
    nxt = list(range(1, n + 1))
    nxt[-1] = -1
    prv = list(range(-1, n - 1))
    heap = [(key, i, sym[i] + sym[i + 1]) for i in range(n - 1)
            if (key := priority(sym[i], sym[i + 1])) is not None]
    heapq.heapify(heap)
    while heap:
        _, left, merged = heapq.heappop(heap)
        right = nxt[left]
        # Stale entries: either side was merged away or grew since the pair was queued.
        if right < 0 or not sym[left] or sym[left] + sym[right] != merged:
            continue
        sym[left], sym[right] = merged, ""
        nxt[left] = nxt[right]
        if nxt[left] >= 0:
            prv[nxt[left]] = left
        for a, b in ((prv[left], left), (left, nxt[left])):
            if a >= 0 and b >= 0 and (key := priority(sym[a], sym[b])) is not None:
                heapq.heappush(heap, (key, a, sym[a] + sym[b]))
    return [s for s in sym if s]
