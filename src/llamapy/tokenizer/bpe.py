"""GPT-2 style byte-level BPE: pre-tokenize, map bytes to printable characters, merge by rank."""
from __future__ import annotations

from .merge import merge_pairs
from .pretok import pre_tokenize
from .vocab import Vocab


def _bytes_to_unicode() -> list[str]:
    """GPT-2's reversible byte -> character map (printable bytes stay themselves)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = [""] * 256, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


BYTE_TO_CHAR = _bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in enumerate(BYTE_TO_CHAR)}
# str.translate table: latin-1 decoded bytes -> GPT-2 characters.
_ENCODE_TABLE = {b: c for b, c in enumerate(BYTE_TO_CHAR)}

_CACHE_LIMIT = 1 << 17  # distinct pre-tokens kept; plenty for prose, bounded for adversarial input


class BpeEncoder:
    def __init__(self, vocab: Vocab):
        self.vocab = vocab
        self.chain = vocab.bpe_pre_chain
        self._cache: dict[str, tuple[int, ...]] = {}

    def encode(self, text: str, out: list[int]) -> None:
        cache = self._cache
        for word in pre_tokenize(text, self.chain):
            ids = cache.get(word)
            if ids is None:
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                ids = cache[word] = self._encode_word(word)
            out.extend(ids)

    def _encode_word(self, word: str) -> tuple[int, ...]:
        vocab = self.vocab
        chars = word.encode("utf-8").decode("latin-1").translate(_ENCODE_TABLE)
        if vocab.ignore_merges and chars in vocab.token_to_id:
            return (vocab.token_to_id[chars],)
        ids = []
        for piece in self._merge(chars):
            tid = vocab.token_to_id.get(piece)
            if tid is not None:
                ids.append(tid)
            else:  # llama.cpp falls back to single-byte tokens and silently drops what has none
                ids.extend(vocab.token_to_id[c] for c in piece if c < "\x80" and c in vocab.token_to_id)
        return tuple(ids)

    def _merge(self, chars: str) -> list[str]:
        """Merge adjacent symbols, lowest merge rank first (leftmost on ties), until no rank applies."""
        ranks = self.vocab.bpe_ranks
        return merge_pairs(list(chars), lambda a, b: ranks.get(a + " " + b))


def bpe_piece(text: str) -> bytes:
    """Bytes of a normal BPE token; characters outside the byte map render as llama.cpp does."""
    try:
        return bytes(CHAR_TO_BYTE[c] for c in text)
    except KeyError:
        out = bytearray()
        for c in text:
            b = CHAR_TO_BYTE.get(c)
            if b is not None:
                out.append(b)
            else:
                out += f"[UNK_BYTE_0x{c.encode().hex()}{text}]".encode()
        return bytes(out)
