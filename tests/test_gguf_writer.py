"""GGUFWriter: byte-identical copies of the reference models, files the gguf package reads back, exact value
types, alignment, atomic writes and refusal of bad input."""
from __future__ import annotations

import hashlib
import os

import gguf
import numpy as np
import pytest

from llamapy.gguf import (
    GGMLType,
    GGUFArray,
    GGUFError,
    GGUFReader,
    GGUFValueType,
    GGUFWriter,
    copy_gguf,
)

V = GGUFValueType


def sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def test_copy_of_reference_model_is_byte_identical(reference_model, tmp_path):
    out = copy_gguf(GGUFReader(reference_model), tmp_path / "copy.gguf")
    assert out == tmp_path / "copy.gguf"
    assert os.path.getsize(out) == os.path.getsize(reference_model)
    assert sha256(out) == sha256(reference_model)
    assert sorted(os.listdir(tmp_path)) == ["copy.gguf"]    # no temporary file left behind


def test_from_reader_then_modify(reference_model, tmp_path):
    """A copy with one more key is still a valid file with the same tensors."""
    source = GGUFReader(reference_model)
    writer = GGUFWriter.from_reader(source, tmp_path / "edited.gguf")
    writer.add("llamapy.note", "edited")
    copy = GGUFReader(writer.write())
    assert copy.get("llamapy.note") == "edited"
    assert list(copy.fields)[:-1] == list(source.fields)
    assert [(t.name, t.type, t.shape, t.n_bytes) for t in copy.tensors] == \
           [(t.name, t.type, t.shape, t.n_bytes) for t in source.tensors]
    np.testing.assert_array_equal(copy.tensors[-1].data, source.tensors[-1].data)


# ---- a small file read back by the gguf package ------------------------------------------------

def small_tensors(rng):
    return {
        "f32": (np.arange(12, dtype=np.float32).reshape(3, 4), GGMLType.F32, (4, 3)),
        "f16": (rng.standard_normal(64).astype(np.float16), GGMLType.F16, (64,)),
        "q8_0": (rng.integers(0, 256, size=(2, 34), dtype=np.uint8), GGMLType.Q8_0, (32, 2)),
        "q4_k": (rng.integers(0, 256, size=3 * 144, dtype=np.uint8).tobytes(), GGMLType.Q4_K, (256, 3)),
    }


@pytest.fixture
def small_file(tmp_path):
    rng = np.random.default_rng(0)
    tensors = small_tensors(rng)
    path = tmp_path / "small.gguf"
    with GGUFWriter(path) as w:
        w.add("general.architecture", "llama")
        w.add("general.name", "tiny ☃")
        w.add("llama.block_count", 2, V.UINT32)
        w.add("llama.rope.freq_base", 10000.0, V.FLOAT32)
        w.add("llama.big", 2**40, V.UINT64)
        w.add("llama.neg", -3, V.INT64)
        w.add("tokenizer.ggml.add_bos_token", True)
        w.add("tokenizer.ggml.tokens", ["<s>", "</s>", "héllo", ""])
        w.add("tokenizer.ggml.scores", np.array([0, -1, -2.5, 3], dtype=np.float32))
        w.add("tokenizer.ggml.token_type", [1, 3, 1, 1], V.ARRAY, V.INT32)
        for name, (data, ggml_type, shape) in tensors.items():
            w.add_tensor(name, data, type=ggml_type, shape=shape)
    return path, tensors


def test_gguf_package_reads_our_file(small_file):
    path, tensors = small_file
    oracle = gguf.GGUFReader(path)
    fields = oracle.fields
    assert fields["general.architecture"].contents() == "llama"
    assert fields["general.name"].contents() == "tiny ☃"
    assert fields["llama.block_count"].types == [V.UINT32] and fields["llama.block_count"].contents() == 2
    assert fields["llama.rope.freq_base"].types == [V.FLOAT32] and fields["llama.rope.freq_base"].contents() == 1e4
    assert fields["llama.big"].types == [V.UINT64] and fields["llama.big"].contents() == 2**40
    assert fields["llama.neg"].types == [V.INT64] and fields["llama.neg"].contents() == -3
    assert fields["tokenizer.ggml.add_bos_token"].contents() is True
    assert fields["tokenizer.ggml.tokens"].types == [V.ARRAY, V.STRING]
    assert fields["tokenizer.ggml.tokens"].contents() == ["<s>", "</s>", "héllo", ""]
    assert fields["tokenizer.ggml.scores"].contents() == [0, -1, -2.5, 3]
    assert fields["tokenizer.ggml.token_type"].types == [V.ARRAY, V.INT32]
    assert fields["tokenizer.ggml.token_type"].contents() == [1, 3, 1, 1]
    assert [t.name for t in oracle.tensors] == list(tensors)
    for tensor in oracle.tensors:
        data, ggml_type, shape = tensors[tensor.name]
        assert tensor.tensor_type == ggml_type
        assert tuple(int(d) for d in tensor.shape) == shape
        assert tensor.data_offset % 32 == 0
        expected = data if isinstance(data, bytes) else np.ascontiguousarray(data).tobytes()
        assert tensor.data.tobytes() == expected


def test_our_reader_reads_our_file(small_file):
    path, tensors = small_file
    reader = GGUFReader(path)
    assert reader.fields["tokenizer.ggml.add_bos_token"].type == V.BOOL
    assert reader.fields["general.name"].value == "tiny ☃"
    assert reader.fields["tokenizer.ggml.scores"].element_type == V.FLOAT32
    np.testing.assert_array_equal(reader.tensor("f32").data, tensors["f32"][0])
    np.testing.assert_array_equal(reader.tensor("f16").data, tensors["f16"][0])
    np.testing.assert_array_equal(reader.tensor("q8_0").data, tensors["q8_0"][0])
    assert reader.tensor("q4_k").data.tobytes() == tensors["q4_k"][0]
    # rewriting what we read gives the same bytes
    assert copy_gguf(reader, path.with_name("again.gguf")).read_bytes() == path.read_bytes()


def test_layout_matches_llama_cpp(small_file):
    """Header fields, data start and every tensor offset are where llama.cpp puts them, padding is zero."""
    path, _ = small_file
    content = path.read_bytes()
    assert content[:4] == b"GGUF"
    assert int.from_bytes(content[4:8], "little") == 3
    assert int.from_bytes(content[8:16], "little") == 4          # tensors
    assert int.from_bytes(content[16:24], "little") == 10        # key/values
    reader = GGUFReader(path)
    position = reader.data_offset
    for tensor in reader.tensors:
        assert tensor.data_offset == position + (-position % 32)
        assert not any(content[position:tensor.data_offset])
        position = tensor.data_offset + tensor.n_bytes
    assert len(content) == position + (-position % 32) and not any(content[position:])


# ---- exact value types ---------------------------------------------------------------------------

ALL_SCALARS = [
    ("u8", 255, V.UINT8), ("i8", -128, V.INT8), ("u16", 65535, V.UINT16), ("i16", -32768, V.INT16),
    ("u32", 2**32 - 1, V.UINT32), ("i32", -2**31, V.INT32), ("f32", 0.25, V.FLOAT32), ("bool", False, V.BOOL),
    ("str", "text", V.STRING), ("u64", 2**64 - 1, V.UINT64), ("i64", -2**63, V.INT64), ("f64", 1e-300, V.FLOAT64),
]


def test_every_value_type_roundtrips(tmp_path):
    path = tmp_path / "types.gguf"
    with GGUFWriter(path) as w:
        for key, value, vtype in ALL_SCALARS:
            w.add(key, value, vtype)
        for element_type in (V.UINT8, V.INT8, V.UINT16, V.INT16, V.UINT32, V.INT32, V.FLOAT32, V.UINT64,
                             V.INT64, V.FLOAT64):
            w.add(f"arr.{element_type.name}", [1, 2, 3], V.ARRAY, element_type)
        w.add("arr.BOOL", [True, False], V.ARRAY, V.BOOL)
        w.add("arr.STRING", ["x", "yz"], V.ARRAY, V.STRING)
        w.add("arr.empty", [], V.ARRAY, V.STRING)
        w.add("arr.nested", [GGUFArray(V.INT16, [1, -1]), GGUFArray(V.STRING, ["s"]),
                             GGUFArray(V.ARRAY, [GGUFArray(V.UINT8, [5])])], V.ARRAY, V.ARRAY)
    reader = GGUFReader(path)
    for key, value, vtype in ALL_SCALARS:
        field = reader.fields[key]
        assert (field.type, field.value) == (vtype, value), key
    for name, field in reader.fields.items():
        if name.startswith("arr.") and name not in ("arr.nested", "arr.empty"):
            assert field.type == V.ARRAY and field.element_type.name == name[4:]
            assert list(field.value) in ([1, 2, 3], [True, False], ["x", "yz"])
    assert reader.fields["arr.empty"].element_type == V.STRING and reader.get("arr.empty") == []
    nested = reader.get("arr.nested")
    assert nested[0].element_type == V.INT16 and nested[0].values.tolist() == [1, -1]
    assert nested[1] == GGUFArray(V.STRING, ["s"])
    assert nested[2].values[0].element_type == V.UINT8 and nested[2].values[0].values.tolist() == [5]
    # the gguf package agrees on the scalar types and values
    oracle = gguf.GGUFReader(path)
    for key, value, vtype in ALL_SCALARS:
        assert oracle.fields[key].types == [vtype] and oracle.fields[key].contents() == value, key
    assert oracle.fields["arr.UINT16"].types == [V.ARRAY, V.UINT16]
    # and copying preserves every byte
    assert copy_gguf(reader, tmp_path / "copy.gguf").read_bytes() == path.read_bytes()


def test_inferred_types(tmp_path):
    path = tmp_path / "inferred.gguf"
    with GGUFWriter(path) as w:
        w.add("bool", True)
        w.add("int", 5)
        w.add("big", 2**40)
        w.add("huge", 2**64 - 1)
        w.add("float", 1.5)
        w.add("str", "s")
        w.add("strs", ["a", "b"])
        w.add("ints", [1, 2**40])
        w.add("floats", [1, 2.5])
        w.add("np", np.array([1, 2], dtype=np.uint16))
        w.add("np_scalar", np.float64(2.0))
        w.add("nested", [[1, 2], ["a"]])
    types = {k: (f.type, f.element_type) for k, f in GGUFReader(path).fields.items()}
    assert types == {
        "bool": (V.BOOL, None), "int": (V.INT32, None), "big": (V.INT64, None), "huge": (V.UINT64, None),
        "float": (V.FLOAT32, None), "str": (V.STRING, None), "strs": (V.ARRAY, V.STRING),
        "ints": (V.ARRAY, V.INT64), "floats": (V.ARRAY, V.FLOAT32), "np": (V.ARRAY, V.UINT16),
        "np_scalar": (V.FLOAT64, None), "nested": (V.ARRAY, V.ARRAY),
    }


def test_tensor_types_inferred_from_numpy(tmp_path):
    path = tmp_path / "t.gguf"
    arrays = {"f32": np.ones((2, 3), np.float32), "f16": np.ones(4, np.float16), "i32": np.arange(5, dtype=np.int32),
              "f64": np.zeros((1, 2, 2), np.float64), "i8": np.arange(3, dtype=np.int8)}
    with GGUFWriter(path) as w:
        for name, array in arrays.items():
            w.add_tensor(name, array)
        w.add_tensor("q", np.zeros((2, 34), np.uint8), type=GGMLType.Q8_0)    # shape (32, 2) from the row bytes
        w.add_tensor("noncontig", np.arange(12, dtype=np.float32).reshape(3, 4).T)
    reader = GGUFReader(path)
    for name, array in arrays.items():
        assert reader.tensor(name).shape == tuple(reversed(array.shape))
        np.testing.assert_array_equal(reader.tensor(name).data, array)
    assert reader.tensor("q").shape == (32, 2) and reader.tensor("q").type == GGMLType.Q8_0
    np.testing.assert_array_equal(reader.tensor("noncontig").data, np.arange(12, dtype=np.float32).reshape(3, 4).T)


# ---- alignment and version --------------------------------------------------------------------

def test_custom_alignment_adds_the_key(tmp_path):
    path = tmp_path / "a64.gguf"
    with GGUFWriter(path, alignment=64) as w:
        w.add_tensor("a", np.ones(3, np.float32))
        w.add_tensor("b", np.ones(5, np.float32))
    reader = GGUFReader(path)
    assert reader.alignment == 64 and reader.fields["general.alignment"].type == V.UINT32
    assert [t.data_offset % 64 for t in reader.tensors] == [0, 0] and reader.data_offset % 64 == 0
    assert gguf.GGUFReader(path).alignment == 64
    assert path.stat().st_size % 64 == 0


def test_alignment_key_sets_alignment(tmp_path):
    path = tmp_path / "a16.gguf"
    with GGUFWriter(path) as w:
        w.add("general.alignment", 16, V.UINT32)
        w.add_tensor("a", np.ones(3, np.float32))
        w.add_tensor("b", np.ones(1, np.float32))
    reader = GGUFReader(path)
    assert reader.alignment == 16 and reader.tensor("b").data_offset - reader.data_offset == 16


def test_version_2(tmp_path):
    path = tmp_path / "v2.gguf"
    with GGUFWriter(path, version=2) as w:
        w.add("k", 1, V.UINT8)
    assert GGUFReader(path).version == 2


# ---- atomic writes -------------------------------------------------------------------------------

def test_exception_inside_with_writes_nothing(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"previous contents")
    with pytest.raises(RuntimeError):
        with GGUFWriter(path) as w:
            w.add("k", 1)
            raise RuntimeError("interrupted")
    assert path.read_bytes() == b"previous contents"
    assert os.listdir(tmp_path) == ["model.gguf"]


def test_failed_replace_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep").write_text("x")
    writer = GGUFWriter(target)
    writer.add("k", 1)
    with pytest.raises(OSError):
        writer.write()
    assert sorted(os.listdir(tmp_path)) == ["taken"] and os.listdir(target) == ["keep"]


def test_overwrites_existing_file(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"old")
    with GGUFWriter(path) as w:
        w.add("k", "new")
    assert GGUFReader(path).get("k") == "new"


# ---- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, vtype, element_type", [
    ("k", 300, V.UINT8, None),
    ("k", -1, V.UINT32, None),
    ("k", 2**64, V.UINT64, None),
    ("k", 2, V.BOOL, None),
    ("k", 5, V.STRING, None),
    ("k", [1, 300], V.ARRAY, V.UINT8),
    ("k", [1.5], V.ARRAY, V.INT32),
    ("k", [True, 2], V.ARRAY, V.BOOL),
    ("k", [], V.ARRAY, None),
    ("k", [1, "a"], None, None),
    ("k", object(), None, None),
    ("k", np.zeros((2, 2), np.float32), V.ARRAY, V.FLOAT32),
    ("general.alignment", 32, V.UINT64, None),
    ("general.alignment", 48, V.UINT32, None),
])
def test_bad_values_are_refused(tmp_path, key, value, vtype, element_type):
    writer = GGUFWriter(tmp_path / "x.gguf")
    with pytest.raises(GGUFError):
        writer.add(key, value, vtype, element_type)


def test_bad_tensors_and_duplicates_are_refused(tmp_path):
    writer = GGUFWriter(tmp_path / "x.gguf")
    writer.add("k", 1)
    with pytest.raises(GGUFError, match="duplicate metadata key"):
        writer.add("k", 2)
    writer.add_tensor("t", np.ones(4, np.float32))
    with pytest.raises(GGUFError, match="duplicate tensor name"):
        writer.add_tensor("t", np.ones(4, np.float32))
    with pytest.raises(GGUFError, match="needs 68 bytes"):
        writer.add_tensor("q", bytes(60), type=GGMLType.Q8_0, shape=(32, 2))
    with pytest.raises(GGUFError, match="block size"):
        writer.add_tensor("q", bytes(34), type=GGMLType.Q8_0, shape=(16, 2))
    with pytest.raises(GGUFError, match="pass type="):
        writer.add_tensor("u", np.ones(4, np.uint32))
    with pytest.raises(GGUFError, match="bad shape"):
        writer.add_tensor("five", np.ones(1, np.float32), shape=(1, 1, 1, 1, 1))
    for bad in (0, 3, 2**32, -32):
        with pytest.raises(GGUFError):
            GGUFWriter(tmp_path / "y.gguf", alignment=bad)
    with pytest.raises(GGUFError):
        GGUFWriter(tmp_path / "y.gguf", version=1)
