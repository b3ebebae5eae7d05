"""Truncated, corrupt and hostile GGUF files: each must fail fast with one GGUFError and a one-line message.

Never point the gguf package's reader at these files: it hangs or runs out of memory on some of them.
"""
from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest

from conftest import RawGGUF as R
from llamapy.gguf import GGUFError, GGUFReader

BIG = 2**63


def valid_file() -> bytes:
    """A small valid file with scalars, strings, arrays and three tensors (F32, Q8_0, Q4_K)."""
    kvs = [
        R.kv("general.architecture", R.STRING, "llama"),
        R.kv("llama.block_count", R.UINT32, 2),
        R.kv("llama.rope.freq_base", R.FLOAT32, 10000.0),
        R.kv("tokenizer.ggml.add_bos_token", R.BOOL, 1),
        R.kv("tokenizer.ggml.tokens", R.ARRAY, raw=R.array(R.STRING, ["<s>", "</s>", "a", "bc"])),
        R.kv("tokenizer.ggml.scores", R.ARRAY, raw=R.array(R.FLOAT32, [0.0, -1.0, -2.0, -3.0])),
        R.kv("general.alignment", R.UINT32, 32),
    ]
    infos = [
        R.tensor_info("output_norm.weight", (8,), 0, 0),       # F32: 32 bytes
        R.tensor_info("blk.0.attn_q.weight", (32, 2), 8, 32),  # Q8_0: 2 rows x 34 bytes = 68 -> pad to 96
        R.tensor_info("blk.0.ffn_up.weight", (256,), 12, 128),  # Q4_K: 144 bytes
    ]
    data = bytes(range(32)) + bytes(68) + bytes(28) + bytes(144) + bytes(16)
    return R.file(kvs, infos, data)


def one_tensor_file(dims, type_id=0, offset=0, *, n_dims=None, kvs=(), alignment=32, data=b"\0" * 64) -> bytes:
    return R.file(list(kvs), [R.tensor_info("blk.0.attn_q.weight", dims, type_id, offset, n_dims)], data,
                  alignment=alignment if alignment and alignment < 4096 else 32)


def expect_error(tmp_path: Path, content: bytes, match: str, *, limit_s: float = 1.0) -> str:
    """Write `content`, read it, and require a fast GGUFError whose one-line message matches `match`."""
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    start = time.perf_counter()
    with pytest.raises(GGUFError, match=match) as info:
        GGUFReader(path)
    assert time.perf_counter() - start < limit_s
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert message.startswith(str(path) + ": ")
    return message


def test_valid_file_is_valid(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(valid_file())
    reader = GGUFReader(path)
    assert [t.name for t in reader.tensors] == ["output_norm.weight", "blk.0.attn_q.weight", "blk.0.ffn_up.weight"]
    assert reader.get("tokenizer.ggml.tokens") == ["<s>", "</s>", "a", "bc"]


# ---- not GGUF at all ---------------------------------------------------------------------------

def test_empty_file(tmp_path):
    expect_error(tmp_path, b"", "not a GGUF file")


@pytest.mark.parametrize("content", [b"G", b"GGU", b"GGML" + bytes(20), b"hello world, this is text\n",
                                     b"\x7fELF" + bytes(60), b"PK\x03\x04" + bytes(100)])
def test_not_gguf(tmp_path, content):
    expect_error(tmp_path, content, "not a GGUF file")


@pytest.mark.parametrize("version, match", [
    (1, "version 1 is not supported"),
    (4, "unsupported GGUF version 4"),
    (0, "unsupported GGUF version 0"),
    (2**32 - 1, "unsupported GGUF version"),
    (0x03000000, "big-endian"),
])
def test_bad_versions(tmp_path, version, match):
    expect_error(tmp_path, R.file([R.kv("a", R.UINT8, 1)], version=version), match)


# ---- truncation ------------------------------------------------------------------------------

def test_truncated_at_every_metadata_offset_and_in_data(tmp_path):
    content = valid_file()
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    data_offset = GGUFReader(path).data_offset
    cuts = list(range(data_offset)) + [data_offset, data_offset + 1, data_offset + 31, data_offset + 100,
                                       len(content) - 17]   # (the last 16 bytes are padding, not data)
    for cut in cuts:
        path.write_bytes(content[:cut])
        start = time.perf_counter()
        with pytest.raises(GGUFError) as info:
            GGUFReader(path)
        assert time.perf_counter() - start < 1.0
        message = str(info.value)
        assert "\n" not in message, cut
        assert any(word in message for word in ("truncated", "not a GGUF", "past end of file", "cannot fit")), \
            (cut, message)


def test_truncated_tensor_data_message(tmp_path):
    content = valid_file()
    message = expect_error(tmp_path, content[:-20], "extends past end of file")
    assert "'blk.0.ffn_up.weight' data [" in message and f"(size {len(content) - 20})" in message


# ---- hostile counts and lengths: must fail fast and without allocating --------------------------

def expect_cheap_error(tmp_path, content: bytes, match: str) -> str:
    tracemalloc.start()
    try:
        message = expect_error(tmp_path, content, match)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"allocated {peak} bytes"
    return message


@pytest.mark.parametrize("length", [BIG, 2**64 - 1, 2**40, 1000])
def test_huge_key_length(tmp_path, length):
    expect_cheap_error(tmp_path, R.file([R.string("key", length=length) + R.u32(R.UINT8) + b"\1"]), "truncated")


@pytest.mark.parametrize("length", [BIG, 2**40])
def test_huge_string_value_length(tmp_path, length):
    kv = R.string("general.name") + R.u32(R.STRING) + R.string("x", length=length)
    expect_cheap_error(tmp_path, R.file([kv]), "truncated.*'general.name'")


@pytest.mark.parametrize("element_type", [R.UINT8, R.INT32, R.FLOAT64, R.STRING, R.ARRAY])
@pytest.mark.parametrize("length", [BIG, 2**64 - 1, 2**40])
def test_huge_array_length(tmp_path, element_type, length):
    kv = R.kv("tokenizer.ggml.tokens", R.ARRAY, raw=R.array(element_type, [], length=length))
    message = expect_cheap_error(tmp_path, R.file([kv]), f"array length {length}")
    assert "'tokenizer.ggml.tokens'" in message


def test_huge_string_in_string_array(tmp_path):
    raw = R.u32(R.STRING) + R.u64(3) + R.string("ok") + R.string("x", length=BIG) + R.string("z")
    expect_cheap_error(tmp_path, R.file([R.kv("tokenizer.ggml.tokens", R.ARRAY, raw=raw)]),
                       r"truncated.*tokens'\[1\]")


def test_huge_inner_array_length(tmp_path):
    raw = R.u32(R.ARRAY) + R.u64(2) + R.array(R.INT8, [1]) + R.array(R.INT64, [], length=2**62)
    expect_cheap_error(tmp_path, R.file([R.kv("nested", R.ARRAY, raw=raw)]), r"'nested'\[1\] has array length")


@pytest.mark.parametrize("count", [2**60, 2**64 - 1, 1000])
def test_huge_kv_count(tmp_path, count):
    expect_cheap_error(tmp_path, R.file([R.kv("a", R.UINT8, 1)], n_kv=count), f"metadata count {count}")


@pytest.mark.parametrize("count", [2**60, 2**64 - 1, 1000])
def test_huge_tensor_count(tmp_path, count):
    expect_cheap_error(tmp_path, R.file([R.kv("a", R.UINT8, 1)], n_tensors=count), f"tensor count {count}")


def test_deeply_nested_arrays(tmp_path):
    # 100k levels cost 1.2 MB of file; the reader must refuse without recursing that deep.
    depth = 100_000
    raw = b"".join(R.u32(R.ARRAY) + R.u64(1) for _ in range(depth)) + R.u32(R.UINT8) + R.u64(0)
    expect_error(tmp_path, R.file([R.kv("deep", R.ARRAY, raw=raw)]), "nests arrays deeper than")


def test_moderately_nested_arrays_are_fine(tmp_path):
    raw = R.u32(R.ARRAY) + R.u64(1) + R.u32(R.ARRAY) + R.u64(1) + R.array(R.UINT8, [7])
    path = tmp_path / "model.gguf"
    path.write_bytes(R.file([R.kv("nested", R.ARRAY, raw=raw)]))
    assert GGUFReader(path).get("nested")[0].values[0].values.tolist() == [7]


# ---- bad values ------------------------------------------------------------------------------

@pytest.mark.parametrize("type_id", [13, 99, 2**32 - 1])
def test_unknown_value_type(tmp_path, type_id):
    expect_error(tmp_path, R.file([R.string("weird") + R.u32(type_id) + R.u64(0)]), f"unknown value type {type_id}")


def test_unknown_array_element_type(tmp_path):
    raw = R.u32(77) + R.u64(1) + b"\0" * 8
    expect_error(tmp_path, R.file([R.kv("arr", R.ARRAY, raw=raw)]), "'arr' has unknown value type 77")


def test_duplicate_keys(tmp_path):
    kvs = [R.kv("general.name", R.STRING, "a"), R.kv("general.name", R.STRING, "b")]
    expect_error(tmp_path, R.file(kvs), "duplicate metadata key 'general.name'")


def test_invalid_utf8(tmp_path):
    expect_error(tmp_path, R.file([R.kv(b"bad\xff", R.UINT8, 1)]), "not valid UTF-8")
    raw = R.array(R.STRING, [b"ok", b"\xc3"])
    expect_error(tmp_path, R.file([R.kv("tokens", R.ARRAY, raw=raw)]), r"'tokens'\[1\].*not valid UTF-8")


def test_bad_bool(tmp_path):
    expect_error(tmp_path, R.file([R.kv("flag", R.BOOL, 2)]), "'flag' is a bool with byte value 2")
    expect_error(tmp_path, R.file([R.kv("flags", R.ARRAY, raw=R.array(R.BOOL, [0, 1, 7]))]), "bool byte")


def test_names_with_newlines_stay_on_one_line(tmp_path):
    kvs = [R.kv("evil\nkey", R.STRING, "a"), R.kv("evil\nkey", R.STRING, "b")]
    message = expect_error(tmp_path, R.file(kvs), "duplicate metadata key")
    assert "evil\\nkey" in message


# ---- alignment -------------------------------------------------------------------------------

@pytest.mark.parametrize("alignment, match", [
    (0, "not a non-zero power of two"),
    (3, "not a non-zero power of two"),
    (96, "not a non-zero power of two"),
    (2**31 + 1, "not a non-zero power of two"),
    (2**31, "past end of file"),
])
def test_bad_alignment(tmp_path, alignment, match):
    kvs = [R.kv("general.alignment", R.UINT32, alignment)]
    expect_error(tmp_path, one_tensor_file((4,), kvs=kvs, alignment=alignment), match)


def test_alignment_of_wrong_type(tmp_path):
    kvs = [R.kv("general.alignment", R.UINT64, 32)]
    expect_error(tmp_path, one_tensor_file((4,), kvs=kvs), "general.alignment must be a uint32")


# ---- tensor infos ----------------------------------------------------------------------------

@pytest.mark.parametrize("n_dims", [5, 2**31, 2**32 - 1])
def test_too_many_dims(tmp_path, n_dims):
    expect_cheap_error(tmp_path, one_tensor_file((4,), n_dims=n_dims), f"has {n_dims} dimensions")


@pytest.mark.parametrize("dims, type_id, match", [
    ((2**42 + 1,), 0, "past end of file"),
    ((2**42 + 1,), 2, "not a multiple of Q4_0's block size 32"),
    ((2**32, 2**32), 0, "overflows int64"),
    ((2**62, 4), 0, "overflows int64"),
    ((2**63,), 0, "overflows int64"),
    ((2**64 - 1,), 0, "overflows int64"),
    ((2**16, 2**16, 2**16, 2**16), 0, "overflows int64"),
    ((2**20, 2**20, 2**20), 0, "past end of file"),
    ((33,), 8, "row length 33 is not a multiple of Q8_0's block size 32"),
    ((100, 2), 12, "not a multiple of Q4_K's block size 256"),
])
def test_bad_dimensions(tmp_path, dims, type_id, match):
    expect_cheap_error(tmp_path, one_tensor_file(dims, type_id), match)


@pytest.mark.parametrize("type_id", [4, 5, 31, 99, 2**32 - 1])
def test_unknown_tensor_type(tmp_path, type_id):
    expect_error(tmp_path, one_tensor_file((4,), type_id), f"unknown tensor type id {type_id}")


def test_misaligned_offset(tmp_path):
    expect_error(tmp_path, one_tensor_file((4,), offset=16), "offset 16 is not a multiple of the alignment 32")


@pytest.mark.parametrize("offset", [64, 2**40, 2**64 - 32])
def test_offset_past_end(tmp_path, offset):
    expect_error(tmp_path, one_tensor_file((4,), offset=offset), "extends past end of file")


def test_overlapping_tensors(tmp_path):
    infos = [R.tensor_info("a", (16,), 0, 0), R.tensor_info("b", (4,), 0, 32), R.tensor_info("c", (8,), 0, 32)]
    expect_error(tmp_path, R.file([], infos, bytes(128)), "overlaps tensor")


def test_duplicate_tensor_names(tmp_path):
    infos = [R.tensor_info("w", (4,), 0, 0), R.tensor_info("w", (4,), 0, 32)]
    expect_error(tmp_path, R.file([], infos, bytes(64)), "duplicate tensor name 'w'")


def test_huge_tensor_name(tmp_path):
    info = R.string("w", length=BIG) + R.u32(1) + R.u64(4) + R.u32(0) + R.u64(0)
    expect_cheap_error(tmp_path, R.file([], [info], bytes(32)), "truncated: length of tensor #0|truncated: name")


# ---- random corruption -----------------------------------------------------------------------

def test_random_corruption_never_escapes(tmp_path):
    """Flipped bytes anywhere give a valid reader or a GGUFError, never another exception or a hang."""
    content = valid_file()
    path = tmp_path / "model.gguf"
    rng = random.Random(1234)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(1500):
        mutated = bytearray(content)
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(mutated))
            mutated[position] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        path.write_bytes(mutated)
        start = time.perf_counter()
        try:
            GGUFReader(path)
            outcomes["ok"] += 1
        except GGUFError as e:
            assert "\n" not in str(e)
            outcomes["error"] += 1
        assert time.perf_counter() - start < 1.0
    assert outcomes["ok"] and outcomes["error"]


# ---- a CLI-like process on a hostile file ------------------------------------------------------

@pytest.mark.parametrize("content", [
    R.file([R.kv("tokenizer.ggml.tokens", R.ARRAY, raw=R.array(R.STRING, [], length=BIG))]),
    one_tensor_file((2**32, 2**32)),
    R.file([R.kv("a", R.UINT8, 1)], n_kv=2**60),
])
def test_subprocess_exits_cleanly(tmp_path, content):
    path = tmp_path / "hostile.gguf"
    path.write_bytes(content)
    code = textwrap.dedent(f"""
        from llamapy.gguf import GGUFReader
        GGUFReader({str(path)!r})
    """)
    src = Path(__file__).resolve().parent.parent / "src"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("llamapy.gguf.reader.GGUFError: ")
