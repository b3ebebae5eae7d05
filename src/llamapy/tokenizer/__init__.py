"""Tokenizers with llama.cpp's semantics: SentencePiece ("llama") and byte-level BPE ("gpt2") from GGUF.

    tok = Tokenizer.from_gguf(GGUFReader(path))
    ids = tok.encode("Hello", add_special=True, parse_special=False)   # llama_tokenize
    text = tok.decode(ids)                                             # llama_detokenize
    stream = tok.stream(); stream.feed(id) -> text of completed characters
"""
from __future__ import annotations

import codecs
import os
import re

from ..gguf import GGUFReader
from .bpe import BpeEncoder, bpe_piece
from .spm import SpmEncoder, byte_token_value, spm_piece
from .vocab import (
    ATTR_BYTE,
    ATTR_CONTROL,
    ATTR_NORMAL,
    ATTR_UNKNOWN,
    ATTR_USER_DEFINED,
    Vocab,
)

__all__ = ["Tokenizer", "StreamDecoder", "Vocab"]

_HIDDEN = ATTR_UNKNOWN | ATTR_CONTROL                # rendered only when asked for special text
_RAW = ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED  # rendered as their literal text

# llama.cpp's clean_spaces passes (HF clean_up_tokenization_spaces), applied to the decoded bytes.
_SPACE_BEFORE_PUNCT = re.compile(rb" (?=[?!.,])")
_SPACE_BEFORE_CONTRACTION = re.compile(rb" (?='(?:s|m|re|ve))")


class Tokenizer:
    def __init__(self, vocab: Vocab):
        self.vocab = vocab
        self._encoder = SpmEncoder(vocab) if vocab.kind == "spm" else BpeEncoder(vocab)
        self._pieces: dict[int, bytes] = {}  # rendered tokens, filled as they are first decoded

    @classmethod
    def from_gguf(cls, reader) -> "Tokenizer":
        """From a GGUFReader (or a path to a .gguf file)."""
        if isinstance(reader, (str, os.PathLike)):
            reader = GGUFReader(reader)
        return cls(Vocab(reader))

    # -- properties ----------------------------------------------------------------------------

    @property
    def n_vocab(self) -> int:
        return self.vocab.n_tokens

    @property
    def bos_id(self) -> int | None:
        return self.vocab.special_ids["bos"]

    @property
    def eos_id(self) -> int | None:
        return self.vocab.special_ids["eos"]

    @property
    def eot_id(self) -> int | None:
        return self.vocab.special_ids["eot"]

    @property
    def add_bos(self) -> bool:
        return self.vocab.add_bos

    @property
    def add_eos(self) -> bool:
        return self.vocab.add_eos

    def is_eog(self, token_id: int) -> bool:
        """Whether generating `token_id` ends generation (EOS, EOT, <|im_end|>, ...)."""
        return token_id in self.vocab.eog_ids

    # -- encoding ------------------------------------------------------------------------------

    def encode(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Token ids of `text`, as llama_tokenize.

        add_special: add BOS/EOS as the vocabulary asks (tokenizer.ggml.add_bos_token/add_eos_token).
        parse_special: control-token texts such as "<|im_start|>" become their ids; otherwise they are
        tokenized as plain text. User-defined tokens are always matched whole.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode() needs a str, not {type(text).__name__}")
        vocab = self.vocab
        out: list[int] = []
        if add_special and vocab.add_bos:
            out.append(self._required("bos"))
        fragments = vocab.partition(text, parse_special)
        if vocab.kind == "spm":
            # SentencePiece adds its dummy prefix space at the start and after every special token.
            prev_special = True
            for frag in fragments:
                if type(frag) is int:
                    out.append(frag)
                    prev_special = True
                else:
                    self._encoder.encode(" " + frag if vocab.add_space_prefix and prev_special else frag, out)
                    prev_special = False
        else:
            for frag in fragments:
                if type(frag) is int:
                    out.append(frag)
                else:
                    self._encoder.encode(frag, out)
        if add_special and vocab.add_eos:
            out.append(self._required("eos"))
        return out

    def _required(self, name: str) -> int:
        tid = self.vocab.special_ids[name]
        if tid is None:
            raise ValueError(f"the vocabulary asks for a {name.upper()} token but has none")
        return tid

    # -- decoding ------------------------------------------------------------------------------

    def token_to_piece(self, token_id: int, special: bool = False, lstrip: int = 0) -> bytes:
        """The bytes one token stands for, as llama_token_to_piece.

        Control and unknown tokens are empty unless `special`; byte tokens (<0x0A>) are that byte;
        up to `lstrip` leading spaces are dropped.
        """
        vocab = self.vocab
        if not 0 <= token_id < vocab.n_tokens:
            raise ValueError(f"token id {token_id} out of range [0, {vocab.n_tokens})")
        if vocab.attrs[token_id] & _HIDDEN and not special:
            return b""
        piece = self._pieces.get(token_id)
        if piece is None:
            piece = self._pieces[token_id] = self._render(token_id)
        while lstrip > 0 and piece[:1] == b" ":
            piece = piece[1:]
            lstrip -= 1
        return piece

    def _render(self, token_id: int) -> bytes:
        vocab = self.vocab
        attr, text = vocab.attrs[token_id], vocab.tokens[token_id]
        if attr & _RAW:
            return text.encode("utf-8")
        if attr & ATTR_NORMAL:
            return spm_piece(text) if vocab.kind == "spm" else bpe_piece(text)
        if attr & ATTR_BYTE and vocab.kind == "spm":
            return bytes([byte_token_value(text)])
        return b""  # unused / undefined tokens render as nothing

    def detokenize(self, ids, remove_special: bool = False, unparse_special: bool = False) -> bytes:
        """Bytes of a token sequence, as llama_detokenize.

        remove_special: drop a leading BOS / trailing EOS the vocabulary would have added.
        unparse_special: render control tokens as their text.
        """
        vocab = self.vocab
        ids = list(ids)
        remove_space = vocab.add_space_prefix  # undo SentencePiece's dummy prefix on the first token
        if remove_special and vocab.add_bos and ids and ids[0] == vocab.special_ids["bos"]:
            remove_space = False
            ids = ids[1:]
        if remove_special and vocab.add_eos and ids and ids[-1] == vocab.special_ids["eos"]:
            ids = ids[:-1]
        parts = []
        for tid in ids:
            parts.append(self.token_to_piece(tid, unparse_special, 1 if remove_space else 0))
            remove_space = False
        data = b"".join(parts)
        if vocab.clean_spaces:
            data = _SPACE_BEFORE_PUNCT.sub(b"", data)
            data = data.replace(b" ' ", b"'")
            data = _SPACE_BEFORE_CONTRACTION.sub(b"", data)
        return data

    def decode(self, ids, special: bool = False, remove_special: bool = False) -> str:
        """Text of a token sequence (invalid UTF-8 becomes U+FFFD); see detokenize()."""
        return self.detokenize(ids, remove_special, special).decode("utf-8", errors="replace")

    def stream(self, special: bool = False, strip_prefix_space: bool = False) -> "StreamDecoder":
        """An incremental decoder for generated tokens."""
        return StreamDecoder(self, special, strip_prefix_space)


class StreamDecoder:
    """Turns tokens into text as they come, holding back bytes of an unfinished UTF-8 character.

    A stream usually continues a prompt, so SentencePiece's prefix space is kept unless
    `strip_prefix_space` (then the first token loses one leading space, as in decode()).
    """

    def __init__(self, tokenizer: Tokenizer, special: bool = False, strip_prefix_space: bool = False):
        self._tokenizer = tokenizer
        self._special = special
        self._lstrip = 1 if strip_prefix_space and tokenizer.vocab.add_space_prefix else 0
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token_id: int) -> str:
        """Text completed by this token (may be empty while a multi-byte character is pending)."""
        piece = self._tokenizer.token_to_piece(token_id, self._special, self._lstrip)
        self._lstrip = 0
        return self._utf8.decode(piece)

    def flush(self) -> str:
        """Whatever is still pending (an incomplete character becomes U+FFFD)."""
        return self._utf8.decode(b"", final=True)
