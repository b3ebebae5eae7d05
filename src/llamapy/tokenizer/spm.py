"""SentencePiece (BPE-style) as llama.cpp runs it: greedy bigram merges by highest token score."""
from __future__ import annotations

import heapq

from .vocab import Vocab

SPACE = "\u2581"  # SentencePiece's visible space, "▁"


class SpmEncoder:
    def __init__(self, vocab: Vocab):
        self.vocab = vocab

    def encode(self, text: str, out: list[int]) -> None:
        """Append the ids of `text` (spaces not yet escaped, prefix space already added)."""
        vocab = self.vocab
        token_to_id, scores = vocab.token_to_id, vocab.scores
        sym = list(text.replace(" ", SPACE))
        n = len(sym)
        nxt = list(range(1, n + 1))
        if n:
            nxt[-1] = -1
        prv = list(range(-1, n - 1))

        # Heap of (-score, left, merged text): best score first, leftmost on ties.
        heap = []
        for i in range(n - 1):
            tid = token_to_id.get(sym[i] + sym[i + 1])
            if tid is not None:
                heap.append((-scores[tid], i, sym[i] + sym[i + 1]))
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
                if a >= 0 and b >= 0:
                    tid = token_to_id.get(sym[a] + sym[b])
                    if tid is not None:
                        heapq.heappush(heap, (-scores[tid], a, sym[a] + sym[b]))

        for piece in sym:
            if not piece:
                continue
            tid = token_to_id.get(piece)
            if tid is not None:
                out.append(tid)
            else:  # only single characters can be unknown: spell them as byte tokens
                out.extend(vocab.byte_to_token(b) for b in piece.encode("utf-8"))


def spm_piece(text: str) -> bytes:
    """Bytes of a normal SentencePiece token: "▁" back to a space."""
    return text.replace(SPACE, " ").encode("utf-8")


def byte_token_value(text: str) -> int:
    """The byte a "<0xXX>" token stands for."""
    return int(text[3:5], 16)
