"""GGUFReader on the real reference models (checked against llama.cpp's own gguf package) and on
hand-built files covering every value type, tensor type and both supported versions."""
from __future__ import annotations

import mmap
import struct
import time

import gguf
import numpy as np
import pytest

from llamapy.gguf import GGMLType, GGUFArray, GGUFError, GGUFReader, GGUFValueType, ReaderTensor


@pytest.fixture(scope="module")
def both(reference_model):
    """(our reader, the gguf package's reader) for one reference model."""
    return GGUFReader(reference_model), gguf.GGUFReader(reference_model)


def oracle_fields(oracle: gguf.GGUFReader) -> dict:
    # The gguf package adds pseudo-fields for the header (GGUF.version, ...); they are not key/values.
    return {name: f for name, f in oracle.fields.items() if not name.startswith("GGUF.")}


# ---- the real models against the oracle ------------------------------------------------------------

def test_reads_reference_model_fast_without_copying(reference_model):
    start = time.perf_counter()
    reader = GGUFReader(reference_model)
    assert time.perf_counter() - start < 2.0
    for tensor in reader.tensors:
        assert not tensor.data.flags.writeable and not tensor.data.flags.owndata
        assert isinstance(memory_owner(tensor.data), mmap.mmap), tensor.name
    assert isinstance(memory_owner(reader.get("tokenizer.ggml.token_type")), mmap.mmap)


def memory_owner(array: np.ndarray):
    """The object at the end of a view's .base chain: an mmap when the view is zero-copy."""
    while isinstance(array, np.ndarray) and array.base is not None:
        array = array.base
    return array


def test_header_matches_oracle(both):
    ours, oracle = both
    assert ours.version == 3 == int(oracle.fields["GGUF.version"].contents())
    assert ours.alignment == oracle.alignment == 32
    assert ours.data_offset == oracle.data_offset
    assert len(ours.fields) == int(oracle.fields["GGUF.kv_count"].contents())
    assert len(ours.tensors) == int(oracle.fields["GGUF.tensor_count"].contents())


def test_field_names_order_and_types_match_oracle(both):
    ours, oracle = both
    expected = oracle_fields(oracle)
    assert list(ours.fields) == list(expected)
    for name, field in ours.fields.items():
        assert field.name == name
        assert field.type == expected[name].types[0], name
        if field.type == GGUFValueType.ARRAY:
            assert field.element_type == expected[name].types[1], name
        else:
            assert field.element_type is None


def test_scalar_values_match_oracle(both):
    ours, oracle = both
    for name, theirs in oracle_fields(oracle).items():
        field = ours.fields[name]
        if field.type == GGUFValueType.ARRAY:
            continue
        expected = theirs.contents()
        if field.type == GGUFValueType.FLOAT32:
            assert np.float32(field.value) == np.float32(expected), name
        else:
            assert field.value == expected and type(field.value) is type(expected), name


def test_array_values_match_oracle(both):
    ours, oracle = both
    for name, theirs in oracle_fields(oracle).items():
        field = ours.fields[name]
        if field.type != GGUFValueType.ARRAY:
            continue
        assert len(field.value) == len(theirs.data), name
        if field.element_type == GGUFValueType.STRING:
            assert isinstance(field.value, list)
            # every string, straight from the oracle's raw parts (its contents() is slow on big vocabularies)
            expected = [bytes(theirs.parts[i]).decode("utf-8") for i in theirs.data]
            assert field.value == expected, name
        else:
            expected = np.concatenate([theirs.parts[i] for i in theirs.data])
            assert isinstance(field.value, np.ndarray)
            assert field.value.dtype == expected.dtype
            np.testing.assert_array_equal(field.value, expected)


def test_tensor_infos_match_oracle(both):
    ours, oracle = both
    assert [t.name for t in ours.tensors] == [t.name for t in oracle.tensors]
    for mine, theirs in zip(ours.tensors, oracle.tensors):
        assert mine.type == theirs.tensor_type
        assert mine.shape == tuple(int(d) for d in theirs.shape)
        assert mine.n_elements == theirs.n_elements
        assert mine.n_bytes == theirs.n_bytes == mine.data.nbytes
        assert mine.data_offset == theirs.data_offset
        assert mine.data.shape == theirs.data.shape, mine.name
        assert ours.tensor(mine.name) is mine


def test_tensor_data_matches_oracle(both):
    ours, oracle = both
    by_name = {t.name: t for t in oracle.tensors}
    picks = {ours.tensors[0].name, ours.tensors[-1].name}
    for ggml_type in {t.type for t in ours.tensors}:   # one tensor of every type the file uses
        picks.add(next(t.name for t in ours.tensors if t.type == ggml_type))
    for name in picks:
        mine, theirs = ours.tensor(name), by_name[name]
        assert mine.data.dtype == theirs.data.dtype, name
        np.testing.assert_array_equal(mine.data.view(np.uint8), theirs.data.view(np.uint8))


def test_reference_layout_is_contiguous_and_aligned(reference_model):
    """What copy_gguf relies on: tensors in file order, each at the next aligned offset."""
    reader = GGUFReader(reference_model)
    position = reader.data_offset
    for tensor in reader.tensors:
        assert tensor.data_offset == position + (-position % reader.alignment)
        position = tensor.data_offset + tensor.n_bytes
    assert position == reader.file_size


def test_typed_views_of_tensors(reference_model):
    reader = GGUFReader(reference_model)
    for tensor in reader.tensors:
        if tensor.type == GGMLType.F32:
            assert tensor.data.dtype == np.float32
            assert tensor.data.shape == tuple(reversed(tensor.shape))
            assert np.isfinite(tensor.data).all()
        else:
            assert tensor.data.dtype == np.uint8
            assert tensor.data.shape[:-1] == tuple(reversed(tensor.shape[1:]))


def test_lookups(reference_model):
    reader = GGUFReader(reference_model)
    arch = reader.get("general.architecture")
    assert arch in ("llama", "gemma3")
    assert reader.get(f"{arch}.block_count") in (30, 18)
    assert reader.get("no.such.key") is None
    assert reader.get("no.such.key", 7) == 7
    assert isinstance(reader.get("tokenizer.ggml.tokens"), list)
    assert reader.tensor("token_embd.weight").type in (GGMLType.Q8_0, GGMLType.Q5_0, GGMLType.Q6_K,
                                                       GGMLType.Q4_K, GGMLType.Q4_1)
    with pytest.raises(KeyError, match="no tensor named"):
        reader.tensor("nope")
    assert isinstance(reader.tensors[0], ReaderTensor)


# Not a speed test (speed lives in benchmarks/): a guard against decoding the vocabulary one token at a
# time through Python objects, which takes minutes on a 262k vocabulary.
PATHOLOGICAL_LOAD_SECONDS = 10.0


def test_gemma_vocab_decodes_without_pathological_slowness():
    from llamapy.models import model_path
    path = model_path("gemma3")
    start = time.perf_counter()
    reader = GGUFReader(path)
    assert time.perf_counter() - start < PATHOLOGICAL_LOAD_SECONDS
    assert len(reader.get("tokenizer.ggml.tokens")) == 262144
    assert reader.get("tokenizer.ggml.scores").dtype == np.float32


# ---- a hand-built file with every value type ---------------------------------------------------------

def every_value_type_file(raw, *, version: int = 3, alignment: int | None = None):
    R = raw
    kvs = [
        R.kv("u8", R.UINT8, 250), R.kv("i8", R.INT8, -5), R.kv("u16", R.UINT16, 65535),
        R.kv("i16", R.INT16, -300), R.kv("u32", R.UINT32, 4_000_000_000), R.kv("i32", R.INT32, -7),
        R.kv("f32", R.FLOAT32, 0.5), R.kv("bool", R.BOOL, 1), R.kv("str", R.STRING, "héllo ☃"),
        R.kv("u64", R.UINT64, 2**64 - 1), R.kv("i64", R.INT64, -2**63), R.kv("f64", R.FLOAT64, 1e300),
        R.kv("empty_str", R.STRING, ""),
        R.kv("arr.u8", R.ARRAY, raw=R.array(R.UINT8, [1, 2, 3])),
        R.kv("arr.i16", R.ARRAY, raw=R.array(R.INT16, [-1, 2])),
        R.kv("arr.f64", R.ARRAY, raw=R.array(R.FLOAT64, [1.5, -2.25])),
        R.kv("arr.bool", R.ARRAY, raw=R.array(R.BOOL, [1, 0, 1])),
        R.kv("arr.str", R.ARRAY, raw=R.array(R.STRING, ["a", "", "☃"])),
        R.kv("arr.empty", R.ARRAY, raw=R.array(R.INT32, [])),
        R.kv("arr.nested", R.ARRAY, raw=R.array(R.ARRAY, [(R.INT32, [1, 2]), (R.STRING, ["x"]),
                                                           (R.ARRAY, [(R.UINT8, [9])])])),
    ]
    if alignment is not None:
        kvs.append(R.kv("general.alignment", R.UINT32, alignment))
    align = alignment or 32
    tensors = [  # (name, dims, type id, bytes)
        ("f32", (3, 2), 0, np.arange(6, dtype="<f4").tobytes()),
        ("f16", (4,), 1, np.array([1, 2, 3, 4], dtype="<f2").tobytes()),
        ("bf16", (2,), 30, np.array([0x3F80, 0x4000], dtype="<u2").tobytes()),
        ("i8", (5,), 24, bytes([1, 2, 3, 4, 255])),
        ("i16", (1,), 25, np.array([-2], dtype="<i2").tobytes()),
        ("i32", (2, 1, 1), 26, np.array([7, -7], dtype="<i4").tobytes()),
        ("i64", (1,), 27, np.array([2**40], dtype="<i8").tobytes()),
        ("f64", (1, 1, 1, 2), 28, np.array([0.25, 4], dtype="<f8").tobytes()),
        ("q8_0", (64, 3), 8, bytes(range(34 * 2 * 3))),
    ]
    infos, data = [], b""
    for name, dims, type_id, payload in tensors:
        infos.append(R.tensor_info(name, dims, type_id, len(data)))
        data += payload + b"\0" * (-len(payload) % align)
    return R.file(kvs, infos, data, version=version, alignment=align)


@pytest.fixture
def every_type_path(tmp_path, raw_gguf):
    path = tmp_path / "types.gguf"
    path.write_bytes(every_value_type_file(raw_gguf))
    return path


def test_every_value_type(every_type_path):
    reader = GGUFReader(every_type_path)
    expected_scalars = {
        "u8": 250, "i8": -5, "u16": 65535, "i16": -300, "u32": 4_000_000_000, "i32": -7, "f32": 0.5,
        "bool": True, "str": "héllo ☃", "u64": 2**64 - 1, "i64": -2**63, "f64": 1e300, "empty_str": "",
    }
    for key, value in expected_scalars.items():
        assert reader.get(key) == value and type(reader.get(key)) is type(value), key
    assert [f.type.name for f in reader.fields.values()][:13] == [
        "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32", "BOOL", "STRING",
        "UINT64", "INT64", "FLOAT64", "STRING"]
    assert reader.get("arr.u8").dtype == np.uint8 and reader.get("arr.u8").tolist() == [1, 2, 3]
    assert reader.get("arr.i16").tolist() == [-1, 2]
    assert reader.get("arr.f64").tolist() == [1.5, -2.25]
    assert reader.get("arr.bool").dtype == np.bool_ and reader.get("arr.bool").tolist() == [True, False, True]
    assert reader.get("arr.str") == ["a", "", "☃"]
    assert reader.fields["arr.empty"].element_type == GGUFValueType.INT32 and len(reader.get("arr.empty")) == 0
    nested = reader.fields["arr.nested"]
    assert nested.element_type == GGUFValueType.ARRAY
    first, second, third = nested.value
    assert first.element_type == GGUFValueType.INT32 and first.values.tolist() == [1, 2]
    assert second == GGUFArray(GGUFValueType.STRING, ["x"])
    assert third.element_type == GGUFValueType.ARRAY
    assert third.values[0].element_type == GGUFValueType.UINT8 and third.values[0].values.tolist() == [9]


def test_every_tensor_view(every_type_path):
    reader = GGUFReader(every_type_path)
    t = reader.tensor("f32")
    assert t.data.dtype == np.float32 and t.data.shape == (2, 3) and t.data[1, 2] == 5.0
    assert reader.tensor("f16").data.dtype == np.float16 and reader.tensor("f16").data.tolist() == [1, 2, 3, 4]
    assert reader.tensor("bf16").data.dtype == np.uint16
    assert reader.tensor("i8").data.tolist() == [1, 2, 3, 4, -1]
    assert reader.tensor("i16").data.tolist() == [-2]
    assert reader.tensor("i32").data.shape == (1, 1, 2)
    assert reader.tensor("i64").data.tolist() == [2**40]
    assert reader.tensor("f64").data.shape == (2, 1, 1, 1)
    q = reader.tensor("q8_0")
    assert q.data.dtype == np.uint8 and q.data.shape == (3, 68) and q.n_elements == 192 and q.n_bytes == 204
    assert bytes(q.data.reshape(-1)) == bytes(range(204))
    for tensor in reader.tensors:
        assert tensor.data_offset % 32 == 0


def test_every_value_type_agrees_with_oracle(every_type_path):
    ours, oracle = GGUFReader(every_type_path), gguf.GGUFReader(every_type_path)
    assert [t.name for t in ours.tensors] == [t.name for t in oracle.tensors]
    for mine, theirs in zip(ours.tensors, oracle.tensors):
        assert mine.data_offset == theirs.data_offset and mine.n_bytes == theirs.n_bytes
        assert bytes(mine.data.view(np.uint8).reshape(-1)) == bytes(theirs.data.view(np.uint8).reshape(-1))
    for name, theirs in oracle_fields(oracle).items():
        if theirs.types[0] not in (GGUFValueType.ARRAY, GGUFValueType.FLOAT32):
            assert ours.get(name) == theirs.contents(), name


def test_version_2_and_custom_alignment(tmp_path, raw_gguf):
    path = tmp_path / "v2.gguf"
    path.write_bytes(every_value_type_file(raw_gguf, version=2, alignment=64))
    reader = GGUFReader(path)
    assert reader.version == 2 and reader.alignment == 64 and reader.data_offset % 64 == 0
    assert all(t.data_offset % 64 == 0 for t in reader.tensors)
    assert reader.tensor("q8_0").n_bytes == 204
    assert gguf.GGUFReader(path).alignment == 64


def test_file_without_tensors(tmp_path, raw_gguf):
    path = tmp_path / "vocab.gguf"
    path.write_bytes(raw_gguf.file([raw_gguf.kv("general.name", raw_gguf.STRING, "vocab only")]))
    reader = GGUFReader(path)
    assert reader.tensors == [] and reader.get("general.name") == "vocab only"


def test_zero_dims_and_empty_tensors(tmp_path, raw_gguf):
    R = raw_gguf
    infos = [R.tensor_info("scalar", (), 0, 0), R.tensor_info("empty", (0, 4), 0, 32)]
    path = tmp_path / "odd.gguf"
    path.write_bytes(R.file([], infos, struct.pack("<f", 3.0) + b"\0" * 28))
    reader = GGUFReader(path)
    assert reader.tensor("scalar").shape == () and float(reader.tensor("scalar").data) == 3.0
    assert reader.tensor("empty").n_bytes == 0 and reader.tensor("empty").data.shape == (4, 0)


def test_reader_error_is_value_error():
    assert issubclass(GGUFError, ValueError)
