"""The reference models' tokenizers against llama.cpp: ids, detokenized bytes and pieces recorded by
scripts/make_tokenizer_refs.py in tests/data/tokenizer/reference_<model>.json."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pytest

from llamapy.models import model_path
from llamapy.tokenizer import Tokenizer

DATA = Path(__file__).parent / "data" / "tokenizer"
MODELS = ("smollm2", "gemma3")


@lru_cache(maxsize=None)
def reference(model: str) -> dict:
    return json.loads((DATA / f"reference_{model}.json").read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def tokenizer(model: str) -> Tokenizer:
    return Tokenizer.from_gguf(model_path(model))


def cases():
    return [pytest.param(model, i, id=f"{model}-{i}")
            for model in MODELS for i in range(len(reference(model)["cases"]))]


def test_reference_covers_enough_texts():
    for model in MODELS:
        assert len(reference(model)["cases"]) >= 60


@pytest.mark.parametrize("model", MODELS)
def test_special_ids_and_flags(model):
    tok, meta = tokenizer(model), reference(model)["meta"]
    assert tok.n_vocab == meta["n_tokens"]
    assert (tok.bos_id, tok.eos_id, tok.eot_id) == (meta["bos"], meta["eos"], meta["eot"])
    assert (tok.add_bos, tok.add_eos) == (meta["add_bos"], meta["add_eos"])
    assert sorted(tok.vocab.eog_ids) == meta["eog"]


@pytest.mark.parametrize("model, index", cases())
def test_encode_matches_llama_cpp(model, index):
    tok, case = tokenizer(model), reference(model)["cases"][index]
    for add_special in (False, True):
        for parse_special in (False, True):
            expected = case[f"ids_add{int(add_special)}_parse{int(parse_special)}"]
            assert tok.encode(case["text"], add_special, parse_special) == expected, (add_special, parse_special)


@pytest.mark.parametrize("model, index", cases())
def test_detokenize_matches_llama_cpp(model, index):
    tok, case = tokenizer(model), reference(model)["cases"][index]
    ids = case["ids_add1_parse1"]
    for remove_special in (False, True):
        for unparse_special in (False, True):
            expected = bytes.fromhex(case[f"detok_rm{int(remove_special)}_unparse{int(unparse_special)}"])
            assert tok.detokenize(ids, remove_special, unparse_special) == expected


@pytest.mark.parametrize("model, index", cases())
def test_round_trip(model, index):
    tok, text = tokenizer(model), reference(model)["cases"][index]["text"]
    if tok.vocab.kind == "spm":  # SentencePiece cannot tell a literal "▁" from an escaped space
        text = text.replace("\u2581", " ")
    assert tok.decode(tok.encode(text, add_special=False)) == text
    assert tok.decode(tok.encode(text)) == text  # BOS renders as nothing; neither vocab adds a prefix space


@pytest.mark.parametrize("model", MODELS)
def test_token_to_piece_matches_llama_cpp(model):
    tok = tokenizer(model)
    for token, (plain, special) in reference(model)["pieces"].items():
        assert tok.token_to_piece(int(token)) == bytes.fromhex(plain), token
        assert tok.token_to_piece(int(token), special=True) == bytes.fromhex(special), token


@pytest.mark.parametrize("model", MODELS)
def test_stream_matches_decode(model):
    tok = tokenizer(model)
    for case in reference(model)["cases"]:
        ids = case["ids_add0_parse0"]
        stream = tok.stream()
        assert "".join(stream.feed(t) for t in ids) + stream.flush() == tok.decode(ids)
