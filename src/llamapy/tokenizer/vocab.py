"""A GGUF vocabulary as llama.cpp loads it: tokens, scores, attributes, special ids and flags."""
from __future__ import annotations

import warnings
from array import array
from functools import cached_property

import numpy as np

from .pretok import pre_tokenizer_flags

# llama.cpp's token attributes (bit flags; LSTRIP/RSTRIP only come from per-model rules).
ATTR_UNDEFINED = 0
ATTR_UNKNOWN = 1 << 0
ATTR_UNUSED = 1 << 1
ATTR_NORMAL = 1 << 2
ATTR_CONTROL = 1 << 3
ATTR_USER_DEFINED = 1 << 4
ATTR_BYTE = 1 << 5
ATTR_LSTRIP = 1 << 7
ATTR_RSTRIP = 1 << 8

# GGUF `tokenizer.ggml.token_type` (0 undefined, 1 normal, 2 unknown, 3 control, 4 user-defined,
# 5 unused, 6 byte) -> attribute; other values are undefined.
_TYPE_TO_ATTR = np.array([ATTR_UNDEFINED, ATTR_NORMAL, ATTR_UNKNOWN, ATTR_CONTROL,
                          ATTR_USER_DEFINED, ATTR_UNUSED, ATTR_BYTE], dtype=np.int64)

# Special-id keys, in llama.cpp's order (the deprecated FIM keys come last and win when present).
_SPECIAL_KEYS = (
    ("bos", "bos_token_id"), ("eos", "eos_token_id"), ("eot", "eot_token_id"), ("eom", "eom_token_id"),
    ("unk", "unknown_token_id"), ("sep", "seperator_token_id"), ("pad", "padding_token_id"),
    ("mask", "mask_token_id"), ("fim_pre", "fim_pre_token_id"), ("fim_suf", "fim_suf_token_id"),
    ("fim_mid", "fim_mid_token_id"), ("fim_pad", "fim_pad_token_id"), ("fim_rep", "fim_rep_token_id"),
    ("fim_sep", "fim_sep_token_id"), ("fim_pre", "prefix_token_id"), ("fim_suf", "suffix_token_id"),
    ("fim_mid", "middle_token_id"),
)

# Ids llama.cpp finds by text when the file does not name them; such tokens are forced to CONTROL.
_DETECT_BY_TEXT = (
    ("eot", ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
             "<EOT>", "_<EOT>", "<｜end▁of▁sentence｜>", "<end_of_utterance>")),
    ("eom", ("<|eom_id|>",)),
    ("fim_pre", ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
                 "<|code_prefix|>")),
    ("fim_suf", ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
                 "<|code_suffix|>")),
    ("fim_mid", ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
                 "<|code_middle|>")),
    ("fim_pad", ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>")),
    ("fim_rep", ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>")),
    ("fim_sep", ("<|file_sep|>",)),
)
# Texts that end generation (also forced to CONTROL).
_EOG_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>",
              "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>", "</s>")
# gpt-oss (harmony) structural tokens that llama.cpp always renders.
_ALWAYS_RENDERED = ("<|channel|>", "<|message|>", "<|start|>", "<|constrain|>")

_ASCII_SPACE = " \t\n\v\f\r"  # C isspace() in the "C" locale: what llama.cpp strips around special tokens


class Vocab:
    """Everything about the vocabulary that the encoders and the decoder share.

    `kind` is "spm" or "bpe"; `bpe_pre` names the BPE pre-tokenizer. Special ids are ints or None.
    """

    def __init__(self, reader):
        model = reader.get("tokenizer.ggml.model")
        if model == "llama":
            self.kind = "spm"
            special = {"bos": 1, "eos": 2, "unk": 0}
            self.add_bos, self.add_space_prefix, self.clean_spaces, self.ignore_merges = True, True, False, False
            self.bpe_pre = self.bpe_pre_chain = None
        elif model == "gpt2":
            self.kind = "bpe"
            special = {"bos": 11, "eos": 11}
            self.bpe_pre = reader.get("tokenizer.ggml.pre")
            if not self.bpe_pre:
                warnings.warn("BPE vocabulary without tokenizer.ggml.pre: using the 'default' pre-tokenizer "
                              "(llama.cpp: generation quality will be degraded)", stacklevel=3)
                self.bpe_pre = "default"
            flags = pre_tokenizer_flags(self.bpe_pre)
            self.bpe_pre_chain = flags.chain
            self.add_bos, self.clean_spaces = flags.add_bos, flags.clean_spaces
            self.ignore_merges, self.add_space_prefix = flags.ignore_merges, False
            if flags.no_bos:
                special["bos"] = None
        else:
            raise ValueError(f"unsupported tokenizer model {model!r} (tokenizer.ggml.model); "
                             "llamapy handles 'llama' (SentencePiece) and 'gpt2' (byte-level BPE)")
        self.model = model
        self.add_space_prefix = bool(reader.get("tokenizer.ggml.add_space_prefix", self.add_space_prefix))

        tokens = reader.get("tokenizer.ggml.tokens")
        if tokens is None:
            raise ValueError("GGUF file without a vocabulary (tokenizer.ggml.tokens)")
        tokens = list(tokens)
        if "" in tokens:  # llama.cpp renames empty tokens so every text stays unique and non-empty
            tokens = [t or f"[EMPTY_{i}]" for i, t in enumerate(tokens)]
        self.tokens: list[str] = tokens
        self.n_tokens = len(tokens)
        self.token_to_id: dict[str, int] = {t: i for i, t in enumerate(tokens)}  # later duplicates win

        scores = reader.get("tokenizer.ggml.scores")
        # float32 storage (1 MB instead of 10 MB of Python floats for a 262k vocabulary); indexing still
        # gives the same Python floats that .tolist() would.
        self.scores: array = array("f", np.asarray(scores, dtype=np.float32).tobytes()) if scores is not None \
            else array("f", bytes(4 * self.n_tokens))
        types = reader.get("tokenizer.ggml.token_type")
        if types is None:
            self.attrs: list[int] = [ATTR_NORMAL] * self.n_tokens
        else:
            types = np.asarray(types, dtype=np.int64)
            known = (types >= 0) & (types < len(_TYPE_TO_ATTR))
            self.attrs = np.where(known, _TYPE_TO_ATTR[np.where(known, types, 0)], ATTR_UNDEFINED).tolist()

        self._merges = reader.get("tokenizer.ggml.merges") if self.kind == "bpe" else None
        if self.kind == "bpe" and self._merges is None:
            raise ValueError("BPE vocabulary without tokenizer.ggml.merges")

        self._load_special_ids(reader, special)
        self.add_bos = bool(reader.get("tokenizer.ggml.add_bos_token", self.add_bos))
        self.add_eos = bool(reader.get("tokenizer.ggml.add_eos_token", False))
        self._detect_special_by_text()
        self.special_tokens = self._special_token_cache()
        self._apply_model_rules(str(reader.get("general.name", "")).lower())

    # -- loading -------------------------------------------------------------------------------

    def _load_special_ids(self, reader, special):
        ids = dict.fromkeys(name for name, _ in _SPECIAL_KEYS)
        ids.update(special)
        for name, key in _SPECIAL_KEYS:
            value = reader.get(f"tokenizer.ggml.{key}")
            if value is not None and 0 <= int(value) < self.n_tokens:  # out-of-range ids keep the default
                ids[name] = int(value)
        self.special_ids: dict[str, int | None] = ids

    def _force_control(self, tid):
        self.attrs[tid] |= ATTR_CONTROL

    def _detect_special_by_text(self):
        ids = self.special_ids
        for name, texts in _DETECT_BY_TEXT:
            if ids[name] is not None:
                continue
            # llama.cpp takes whichever match its hash map yields first; the lowest id agrees on our models.
            found = [self.token_to_id[t] for t in texts if t in self.token_to_id]
            if found:
                ids[name] = min(found)
                self._force_control(ids[name])
        eog = {ids[n] for n in ("fim_pad", "fim_rep", "fim_sep") if ids[n] is not None}
        for text in _EOG_TEXTS:
            tid = self.token_to_id.get(text)
            if tid is not None:
                eog.add(tid)
                self._force_control(tid)
        for text in _ALWAYS_RENDERED:
            if text in self.token_to_id:
                self.attrs[self.token_to_id[text]] = ATTR_USER_DEFINED
        eog.update(ids[n] for n in ("eos", "eot", "eom") if ids[n] is not None)
        # Harmony vocabularies end turns with <|return|>/<|call|>; their <|end|> is plain text.
        end = self.token_to_id.get("<|end|>")
        if end in eog and {"<|return|>", "<|call|>"} <= {self.tokens[t] for t in eog}:
            eog.discard(end)
            self.attrs[end] = ATTR_USER_DEFINED
        self.eog_ids: frozenset[int] = frozenset(eog)

    def _special_token_cache(self) -> list[int]:
        """Control, user-defined and unknown tokens, longest text (in UTF-8 bytes) first."""
        mask = ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN
        ids = [i for i, a in enumerate(self.attrs) if a & mask]
        ids.sort(key=lambda i: -len(self.tokens[i].encode()))
        return ids

    def _apply_model_rules(self, model_name: str):
        # llama.cpp's per-model attribute tweaks: Phi-3 eats whitespace after its special tokens.
        if "phi-3" in model_name or "phi3" in model_name:
            for tid in self.special_tokens:
                self.attrs[tid] |= ATTR_RSTRIP
            for text, on in (("</s>", True), ("<unk>", False), ("<s>", False), ("<|endoftext|>", False)):
                tid = self.token_to_id.get(text)
                if tid is not None:
                    self.attrs[tid] = self.attrs[tid] | ATTR_RSTRIP if on else self.attrs[tid] & ~ATTR_RSTRIP

    # -- lookups -------------------------------------------------------------------------------

    @cached_property
    def bpe_ranks(self) -> dict[str, int]:
        """Merge rank keyed by the merge line "left right" (first occurrence wins, as in llama.cpp).

        Byte-level symbols never contain U+0020, so looking up `left + " " + right` is exact.
        """
        merges = self._merges
        n = len(merges)
        return dict(zip(reversed(merges), range(n - 1, -1, -1)))

    def byte_to_token(self, byte: int) -> int | None:
        """SPM byte fallback: the <0xXX> token, else the single-character token, else unk."""
        tid = self.token_to_id.get(f"<0x{byte:02X}>")
        if tid is None and byte < 0x80:
            tid = self.token_to_id.get(chr(byte))
        return self.special_ids["unk"] if tid is None else tid

    # -- special-token partition ---------------------------------------------------------------

    def partition(self, text: str, parse_special: bool) -> list:
        """Split `text` around special-token texts: a list of str (raw text) and int (token id).

        llama.cpp's rule: each special token in turn (longest first) splits every raw fragment
        left so far. Control/unknown tokens only count with `parse_special`; user-defined ones always.
        """
        if not text:
            return []
        frags: list = [text]
        skip = 0 if parse_special else (ATTR_CONTROL | ATTR_UNKNOWN)
        tokens, attrs = self.tokens, self.attrs
        for tid in self.special_tokens:
            attr = attrs[tid]
            piece = tokens[tid]
            if attr & skip or piece not in text:
                continue
            out = []
            for frag in frags:
                if type(frag) is int or piece not in frag:
                    out.append(frag)
                    continue
                start, end = 0, len(frag)
                while (match := frag.find(piece, start, end)) >= 0:
                    left_end = match
                    if attr & ATTR_LSTRIP:
                        while left_end > start and frag[left_end - 1] in _ASCII_SPACE:
                            left_end -= 1
                    if left_end > start:
                        out.append(frag[start:left_end])
                    out.append(tid)
                    start = match + len(piece)
                    if attr & ATTR_RSTRIP:
                        while start < end and frag[start] in _ASCII_SPACE:
                            start += 1
                if start < end:
                    out.append(frag[start:end])
            frags = out
        return frags
