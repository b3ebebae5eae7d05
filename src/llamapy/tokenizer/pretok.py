"""BPE pre-tokenizers: `tokenizer.ggml.pre` -> the regex chain llama.cpp splits text with.

Each regex of a chain splits every fragment the previous ones produced; text between matches is
kept as a fragment of its own (llama.cpp's `unicode_regex_split`). The `regex` module's \\s,
\\p{L}, \\p{N}, \\p{P} are the Unicode White_Space property and general categories, the same sets
llama.cpp's tables and its collapsed std::regex use.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import regex

_CONTRACTIONS_CI = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3 = (_CONTRACTIONS_CI + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
           r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = (_CONTRACTIONS_CI + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_CJK = "[一-龥ࠀ-一가-퟿]+"
_BLOOM = " ?[^(\\s|.,!?…。，、।۔،)]+"
# Tekken spells "upper-ish then lower-ish letters" with lookaheads (std::regex lacks \p{Lu}).
_UPPERISH, _LOWERISH = r"(?:(?=[\p{L}])[^a-z])", r"(?:(?=[\p{L}])[^A-Z])"
_TEKKEN = (rf"[^\r\n\p{{L}}\p{{N}}]?{_UPPERISH}*{_LOWERISH}+|[^\r\n\p{{L}}\p{{N}}]?{_UPPERISH}+{_LOWERISH}*"
           r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# llama.cpp's ASCII table for \p{S} lacks '~' (a math symbol): DeepSeek-V3 treats it as neither P nor S.
_SYM = r"[\p{S}--~]"
# DeepSeek-LLM's letter class; the escapes are Greek/letterlike code points that NFC would rewrite.
_DEEPSEEK_LLM_LETTERS = (
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅ"
    "Ὀ-Ὅὐ-ὗὙὛὝὟ-\u1f7dᾀ-ᾴᾶ-ᾼ\u1fbeῂ-ῄῆ-ῌῐ-\u1fd3ῖ-\u1fdbῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\u2126ℨ\u212a-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎ"
    "ↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+"
)

_CHAINS = {
    "default": (r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", "[0-9][0-9][0-9]"),
    "gpt2": (_GPT2,),
    "llama3": (_LLAMA3,),
    "qwen2": (_QWEN2,),
    "starcoder": (r"\p{N}", _GPT2),
    "falcon": (r"[\p{P}\$\+<=>\^~\|`]+", _GPT2, "[0-9][0-9][0-9]"),
    "deepseek-llm": ("[\r\n]", _DEEPSEEK_LLM_LETTERS, "\\s?[!-/:-~！-／：-～‘-‟　-。]+", r"\s+$", _CJK, r"\p{N}+"),
    "deepseek-coder": ("[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", _CJK, r"\p{N}"),
    "deepseek-v3": (r"\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+",
                    r"(?V1)[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+"
                    rf"|[^\r\n\p{{L}}\p{{P}}{_SYM}]?[\p{{L}}\p{{M}}]+| ?[\p{{P}}{_SYM}]+[\r\n]*"
                    r"|\s*[\r\n]+|\s+(?!\S)|\s+"),
    "bloom": (_BLOOM,),
    "viking": (_BLOOM, r"\p{N}"),
    "tekken": (_TEKKEN,),
}


@dataclass(frozen=True)
class PreTokenizer:
    chain: str                   # key of _CHAINS
    add_bos: bool = False        # the family's BOS default (a GGUF add_bos_token key still wins)
    clean_spaces: bool = True    # decode drops spaces before punctuation (HF clean_up_tokenization_spaces)
    ignore_merges: bool = False  # a pre-token that is already a token is emitted whole
    no_bos: bool = False         # the family has no BOS token


def _names(chain, names, **flags):
    return {name: PreTokenizer(chain, **flags) for name in names}


# `tokenizer.ggml.pre` names llama.cpp knows, with its per-name flags.
_PRE = {
    **_names("default", ["default"]),
    **_names("llama3", ["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0",
                        "lfm2"], add_bos=True, ignore_merges=True),
    **_names("llama3", ["dbrx", "smaug-bpe"]),
    **_names("llama3", ["chatglm-bpe", "glm4"], no_bos=True),
    **_names("deepseek-llm", ["deepseek-llm"], clean_spaces=False),
    **_names("deepseek-coder", ["deepseek-coder"], clean_spaces=False),
    **_names("deepseek-v3", ["deepseek-v3"], clean_spaces=False),
    **_names("falcon", ["falcon"]),
    **_names("gpt2", ["gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "mpt",
                      "olmo", "jais", "exaone4", "a.x-4.0", "mellum"]),
    **_names("starcoder", ["starcoder", "refact", "codeshell", "exaone", "minerva-7b"]),
    **_names("starcoder", ["command-r", "smollm"], clean_spaces=False),
    **_names("qwen2", ["stablelm2", "megrez"]),
    **_names("qwen2", ["qwen2", "deepseek-r1-qwen", "kormo"], clean_spaces=False),
    **_names("bloom", ["bloom", "gpt3-finnish"]),
    **_names("bloom", ["poro-chat"], clean_spaces=False),
    **_names("viking", ["viking"], clean_spaces=False),
    **_names("tekken", ["tekken"], add_bos=True, clean_spaces=False, ignore_merges=True),
}


def pre_tokenizer_flags(name: str) -> PreTokenizer:
    try:
        return _PRE[name]
    except KeyError:
        raise ValueError(f"unknown BPE pre-tokenizer {name!r} (tokenizer.ggml.pre); known: "
                         f"{', '.join(sorted(_PRE))}") from None


@lru_cache(maxsize=None)
def _compiled(chain: str) -> tuple:
    # One capture group around the whole pattern makes re.split return matches and the gaps between.
    return tuple(regex.compile(f"({expr})").split for expr in _CHAINS[chain])


def pre_tokenize(text: str, chain: str) -> list[str]:
    """Split `text` into the words BPE merges within, in order."""
    words = [text]
    for split in _compiled(chain):
        if len(words) == 1:
            words = [w for w in split(words[0]) if w]
        else:
            words = [w for word in words for w in split(word) if w]
    return words
