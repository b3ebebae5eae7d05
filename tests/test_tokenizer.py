"""Tokenizers against llama.cpp's own test vectors (tests/data/tokenizer/ggml-vocab-*.gguf{,.inp,.out}),
special-token handling, decoding and streaming, and refusal of bad input."""
from __future__ import annotations

from pathlib import Path

import pytest

from llamapy.gguf import GGUFReader, GGUFWriter
from llamapy.tokenizer import StreamDecoder, Tokenizer

DATA = Path(__file__).parent / "data" / "tokenizer"
VOCABS = ("llama-spm", "phi-3", "gpt-2", "llama-bpe", "qwen2", "starcoder", "deepseek-coder")
SEPARATOR = "\n__ggml_vocab_test__\n"

_tokenizers: dict[str, Tokenizer] = {}


def vocab(name: str) -> Tokenizer:
    if name not in _tokenizers:
        _tokenizers[name] = Tokenizer.from_gguf(GGUFReader(DATA / f"ggml-vocab-{name}.gguf"))
    return _tokenizers[name]


def vector_cases() -> list:
    cases = []
    for name in VOCABS:
        texts = (DATA / f"ggml-vocab-{name}.gguf.inp").read_text(encoding="utf-8").split(SEPARATOR)
        if texts[-1] == "":  # the file ends with a separator
            texts.pop()
        expected = (DATA / f"ggml-vocab-{name}.gguf.out").read_text(encoding="utf-8").split("\n")
        for i, text in enumerate(texts):
            ids = [int(t) for t in expected[i].split()]
            cases.append(pytest.param(name, text, ids, id=f"{name}-{i}"))
    return cases


@pytest.mark.parametrize("name, text, expected", vector_cases())
def test_llama_cpp_vectors(name, text, expected):
    # llama.cpp's test-tokenizer-0: no BOS, special-token texts not parsed
    assert vocab(name).encode(text, add_special=False, parse_special=False) == expected


def test_vector_files_have_all_cases():
    counts = {}
    for param in vector_cases():
        counts[param.values[0]] = counts.get(param.values[0], 0) + 1
    assert counts == dict.fromkeys(VOCABS, 46)


# ---- flags and special tokens --------------------------------------------------------------------

def test_vocab_flags_and_defaults():
    spm, gpt2, llama3 = vocab("llama-spm"), vocab("gpt-2"), vocab("llama-bpe")
    assert (spm.vocab.kind, spm.add_bos, spm.vocab.add_space_prefix, spm.bos_id, spm.eos_id) == \
        ("spm", True, True, 1, 2)
    assert (gpt2.vocab.kind, gpt2.add_bos, gpt2.vocab.clean_spaces, gpt2.bos_id) == ("bpe", False, True, 50256)
    assert (llama3.add_bos, llama3.vocab.ignore_merges) == (True, True)  # the llama3 family's defaults
    assert spm.encode("Hello") == [1, 15043]
    assert spm.encode("Hello", add_special=False) == [15043]
    assert spm.encode("") == [1] and spm.encode("", add_special=False) == []
    assert gpt2.encode("Hello") == gpt2.encode("Hello", add_special=False)


# Expected ids below come from llama.cpp (llama-cpp-python 0.3.36) on the same vocabularies.
@pytest.mark.parametrize("name, text, parsed, plain", [
    ("llama-spm", "<s>Hello</s> world",
     [1, 1, 15043, 2, 29871, 3186], [1, 529, 29879, 29958, 10994, 829, 29879, 29958, 3186]),
    ("llama-spm", "Hi <unk> there", [1, 6324, 29871, 0, 29871, 727], [1, 6324, 529, 2960, 29958, 727]),
    # Phi-3's special tokens swallow the whitespace after them (rstrip)
    ("phi-3", "<|user|> Hi <|end|>\n \t<|assistant|>  ok</s>  x",
     [1, 32010, 6324, 29871, 32007, 32001, 3431, 2, 921],
     [1, 529, 29989, 1792, 29989, 29958, 6324, 529, 29989, 355, 29989, 29958, 13, 29871, 12, 29966, 29989,
      465, 22137, 29989, 29958, 29871, 3431, 829, 29879, 29958, 29871, 921]),
    ("phi-3", " <|end|> \n a", [1, 259, 32007, 263], [1, 29871, 529, 29989, 355, 29989, 29958, 29871, 13, 263]),
])
def test_parse_special(name, text, parsed, plain):
    tok = vocab(name)
    assert tok.encode(text, parse_special=True) == parsed
    assert tok.encode(text, parse_special=False) == plain


def test_user_defined_tokens_match_without_parse_special():
    # deepseek-coder's user-defined tokens ("õ", ...) are split out even as plain text
    tok = vocab("deepseek-coder")
    assert tok.encode("aõb", add_special=False) == tok.encode("a", add_special=False) + [32000] + \
        tok.encode("b", add_special=False)


def test_eog_tokens():
    assert vocab("llama-spm").is_eog(2)
    qwen = vocab("qwen2")
    assert qwen.is_eog(151643) and qwen.is_eog(151645) and not qwen.is_eog(151644)


# ---- decoding -------------------------------------------------------------------------------------

def test_decode_spm_leading_space_and_special_tokens():
    tok = vocab("llama-spm")
    ids = tok.encode("Hello world")
    assert tok.decode(ids) == " Hello world"  # BOS renders empty and takes the one-space strip
    assert tok.decode(ids[1:]) == "Hello world"
    assert tok.decode(ids, special=True) == "<s> Hello world"
    assert tok.decode(ids, remove_special=True) == " Hello world"  # llama.cpp keeps the space here
    assert tok.decode(tok.encode("ü", add_special=False)) == "ü"


def test_decode_byte_fallback():
    tok = vocab("llama-spm")
    ids = tok.encode("🦙", add_special=False)
    assert all(tok.vocab.tokens[i].startswith("<0x") for i in ids[1:])
    assert tok.token_to_piece(ids[-1]) == "🦙".encode()[-1:]
    assert tok.decode(ids) == "🦙"


def test_decode_clean_spaces_gpt2():
    tok = vocab("gpt-2")
    ids = tok.encode("Hello , world . ' quote ' it 's I 've", add_special=False)
    assert tok.decode(ids) == "Hello, world.'quote'it's I've"


@pytest.mark.parametrize("name", ["qwen2", "deepseek-coder", "llama-spm"])
def test_round_trip_on_vectors(name):
    # vocabularies without clean_spaces give back exactly the text they encoded
    tok = vocab(name)
    for param in vector_cases():
        if param.values[0] == name:
            text = param.values[1]
            assert tok.decode(tok.encode(text, add_special=False)) == text


def test_stream_decoder_waits_for_complete_characters():
    tok = vocab("llama-spm")
    ids = tok.encode("a🦙b", add_special=False)
    stream = tok.stream()
    assert isinstance(stream, StreamDecoder)
    pieces = [stream.feed(i) for i in ids]
    assert "".join(pieces) + stream.flush() == " a🦙b"  # a stream keeps SentencePiece's prefix space
    assert "" in pieces and "🦙" in pieces  # nothing is emitted until the 4th byte arrives
    stripped = tok.stream(strip_prefix_space=True)
    assert "".join(stripped.feed(i) for i in ids) == "a🦙b"


def test_stream_flush_replaces_incomplete_character():
    tok = vocab("llama-spm")
    stream = tok.stream()
    assert stream.feed(tok.vocab.token_to_id["<0xF0>"]) == ""
    assert stream.flush() == "\ufffd"


# ---- bad input --------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [b"bytes", None, 42, ["list"]])
def test_encode_rejects_non_str(bad):
    with pytest.raises(TypeError):
        vocab("gpt-2").encode(bad)


def test_token_id_out_of_range():
    tok = vocab("gpt-2")
    for bad in (-1, tok.n_vocab):
        with pytest.raises(ValueError, match="out of range"):
            tok.token_to_piece(bad)


def _tiny_vocab(tmp_path, model, pre=None):
    writer = GGUFWriter(tmp_path / "vocab.gguf")
    writer.add("general.architecture", "llama")
    writer.add("tokenizer.ggml.model", model)
    if pre is not None:
        writer.add("tokenizer.ggml.pre", pre)
    writer.add("tokenizer.ggml.tokens", ["a", "b", "ab"])
    writer.add("tokenizer.ggml.merges", ["a b"])
    return GGUFReader(writer.write())


def test_unknown_tokenizer_model(tmp_path):
    with pytest.raises(ValueError, match="'bert'"):
        Tokenizer.from_gguf(_tiny_vocab(tmp_path, "bert"))


def test_unknown_pre_tokenizer(tmp_path):
    with pytest.raises(ValueError, match="'no-such-pre'"):
        Tokenizer.from_gguf(_tiny_vocab(tmp_path, "gpt2", "no-such-pre"))


def test_tiny_bpe_vocab(tmp_path):
    tok = Tokenizer.from_gguf(_tiny_vocab(tmp_path, "gpt2", "gpt-2"))
    assert tok.encode("abba") == [2, 1, 0]  # "ab" merged, the rest as single characters
    assert tok.decode([2, 1, 0]) == "abba"
