"""SentencePiece (BPE-style) as llama.cpp runs it: greedy bigram merges by highest token score."""
from __future__ import annotations

from .merge import merge_pairs
from .vocab import Vocab

SPACE = "\u2581"  # SentencePiece's visible space, "▁"


class SpmEncoder:
    def __init__(self, vocab: Vocab):
        self.vocab = vocab

    def encode(self, text: str, out: list[int]) -> None:
        """Append the ids of `text` (spaces not yet escaped, prefix space already added)."""
        vocab = self.vocab
        token_to_id, scores = vocab.token_to_id, vocab.scores

        # Highest score first, leftmost on ties (the heap pops the lowest key).
        def priority(a: str, b: str):
            tid = token_to_id.get(a + b)
            return None if tid is None else -scores[tid]

        sym = merge_pairs(list(text.replace(" ", SPACE)), priority)
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
