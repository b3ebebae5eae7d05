"""Read GGUF files (llama.cpp's model format) through a read-only memory map.

Layout of a GGUF v2/v3 file, all little-endian:

    magic "GGUF" | version u32 | n_tensors u64 | n_kv u64
    n_kv x      (key string, value type u32, value)
    n_tensors x (name string, n_dims u32, dims u64 x n_dims, ggml type u32, offset u64)
    zero padding up to `alignment`, then the tensor data; offsets are relative to its start.

A string is a u64 byte length followed by UTF-8 bytes; an array is an element type u32, a u64 count
and the elements.

Every number read from the file is checked against the bytes that are really there before it is used
to size a loop or an allocation, so a truncated or hostile file fails fast with one `GGUFError`
(a one-line message naming the file, what is wrong and where) instead of hanging or eating memory.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .constants import (
    GGML_BLOCK_SIZES,
    GGUF_DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    GGUF_SUPPORTED_VERSIONS,
    GGMLType,
    GGUFValueType,
)

GGML_MAX_DIMS = 4
MAX_ARRAY_DEPTH = 8     # arrays of arrays nested deeper than this are refused (llama.cpp refuses any)
INT64_MAX = (1 << 63) - 1
ALIGNMENT_KEY = "general.alignment"

# Smallest possible encodings, used to reject counts that the remaining bytes could never hold
# before any loop or allocation is sized by them.
MIN_KV_BYTES = 8 + 4 + 1            # empty key, value type, one-byte value
MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8  # empty name, n_dims = 0, type, offset
MIN_STRING_BYTES = 8
MIN_ARRAY_BYTES = 4 + 8

_U8, _U32, _U64 = struct.Struct("<B"), struct.Struct("<I"), struct.Struct("<Q")

# Struct format and size of each scalar value type (STRING and ARRAY are variable-sized).
SCALAR_FORMATS: dict[GGUFValueType, struct.Struct] = {
    GGUFValueType.UINT8: struct.Struct("<B"),
    GGUFValueType.INT8: struct.Struct("<b"),
    GGUFValueType.UINT16: struct.Struct("<H"),
    GGUFValueType.INT16: struct.Struct("<h"),
    GGUFValueType.UINT32: struct.Struct("<I"),
    GGUFValueType.INT32: struct.Struct("<i"),
    GGUFValueType.FLOAT32: struct.Struct("<f"),
    GGUFValueType.BOOL: struct.Struct("<B"),
    GGUFValueType.UINT64: struct.Struct("<Q"),
    GGUFValueType.INT64: struct.Struct("<q"),
    GGUFValueType.FLOAT64: struct.Struct("<d"),
}

# numpy dtype of each numeric element type; arrays of these are returned as read-only numpy views.
ARRAY_DTYPES: dict[GGUFValueType, np.dtype] = {
    GGUFValueType.UINT8: np.dtype("<u1"),
    GGUFValueType.INT8: np.dtype("<i1"),
    GGUFValueType.UINT16: np.dtype("<u2"),
    GGUFValueType.INT16: np.dtype("<i2"),
    GGUFValueType.UINT32: np.dtype("<u4"),
    GGUFValueType.INT32: np.dtype("<i4"),
    GGUFValueType.FLOAT32: np.dtype("<f4"),
    GGUFValueType.BOOL: np.dtype("?"),
    GGUFValueType.UINT64: np.dtype("<u8"),
    GGUFValueType.INT64: np.dtype("<i8"),
    GGUFValueType.FLOAT64: np.dtype("<f8"),
}

# numpy dtype of the tensor types that hold plain numbers; every other type is blocks of raw bytes.
# BF16 has no numpy dtype, so it is exposed as its raw uint16 bit patterns.
TENSOR_DTYPES: dict[GGMLType, np.dtype] = {
    GGMLType.F32: np.dtype("<f4"),
    GGMLType.F16: np.dtype("<f2"),
    GGMLType.BF16: np.dtype("<u2"),
    GGMLType.F64: np.dtype("<f8"),
    GGMLType.I8: np.dtype("<i1"),
    GGMLType.I16: np.dtype("<i2"),
    GGMLType.I32: np.dtype("<i4"),
    GGMLType.I64: np.dtype("<i8"),
}


class GGUFError(ValueError):
    """A file that is not a valid GGUF file: truncated, corrupt, unsupported or hostile."""


class GGUFArray(NamedTuple):
    """An array value together with its element type.

    Only the items of an array of arrays are wrapped like this, because each inner array carries its own
    element type and the writer needs it to reproduce the file exactly.
    """
    element_type: GGUFValueType
    values: Any


@dataclass(frozen=True)
class ReaderField:
    """One metadata key/value pair.

    `value` is decoded: int, float, bool or str for scalars; for arrays, a read-only numpy view for
    numeric and bool elements, list[str] for strings, and list[GGUFArray] for arrays of arrays.
    """
    name: str
    type: GGUFValueType
    value: Any
    element_type: GGUFValueType | None = None   # arrays only
    offset: int = 0                             # where the key/value pair starts in the file


class ReaderTensor(NamedTuple):
    name: str
    type: GGMLType
    shape: tuple[int, ...]      # GGUF order: ne0 (the contiguous row length) first
    n_elements: int
    n_bytes: int
    data_offset: int            # absolute offset in the file
    data: np.ndarray            # zero-copy read-only view; numpy order (dims reversed), see tensor_view


def _show(name: str, limit: int = 80) -> str:
    """A name from the file, quoted and escaped so that an error message stays on one short line."""
    return repr(name if len(name) <= limit else name[:limit] + "...")


def align_up(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


class _Cursor:
    """Reads little-endian values from a buffer, checking every read against the bytes left."""

    def __init__(self, buf: memoryview, source: str):
        self.buf = buf
        self.size = len(buf)
        self.pos = 0
        self.source = source

    def error(self, message: str) -> GGUFError:
        return GGUFError(f"{self.source}: {message}")

    def left(self) -> int:
        return self.size - self.pos

    def need(self, n: int, what: str) -> None:
        if n > self.size - self.pos:
            raise self.error(f"truncated: {what} at offset {self.pos} needs {n} bytes, only {self.left()} left")

    def unpack(self, fmt: struct.Struct, what: str):
        self.need(fmt.size, what)
        (value,) = fmt.unpack_from(self.buf, self.pos)
        self.pos += fmt.size
        return value

    def u32(self, what: str) -> int:
        return self.unpack(_U32, what)

    def u64(self, what: str) -> int:
        return self.unpack(_U64, what)

    def string(self, what: str) -> str:
        start = self.pos
        length = self.u64(f"length of {what}")
        self.need(length, what)
        raw = self.buf[self.pos:self.pos + length]
        self.pos += length
        try:
            return str(raw, "utf-8")
        except UnicodeDecodeError:
            raise self.error(f"{what} at offset {start} is not valid UTF-8") from None


def _decode_value_type(cur: _Cursor, raw: int, what: str) -> GGUFValueType:
    try:
        return GGUFValueType(raw)
    except ValueError:
        raise cur.error(f"{what} has unknown value type {raw} at offset {cur.pos - 4}") from None


class GGUFReader:
    """A parsed GGUF file. Tensor data and big arrays stay in the memory map; nothing is copied.

    The views stay valid for as long as they (or the reader) are referenced.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self.file_size = os.path.getsize(self.path)
        if self.file_size == 0:
            raise GGUFError(f"{self.path}: not a GGUF file (empty)")
        # np.memmap keeps the mapping alive for as long as any view of it exists.
        self._map = np.memmap(self.path, dtype=np.uint8, mode="r").view(np.ndarray)
        cur = _Cursor(memoryview(self._map), self.path)

        self.version, n_tensors, n_kv = self._read_header(cur)
        self.fields: dict[str, ReaderField] = self._read_fields(cur, n_kv)
        self.alignment = self._read_alignment(cur)
        infos = self._read_tensor_infos(cur, n_tensors)
        self.data_offset = align_up(cur.pos, self.alignment)
        self.tensors: list[ReaderTensor] = self._make_tensors(cur, infos)
        self._tensor_by_name = {t.name: t for t in self.tensors}

    # ---- public lookups ------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """The decoded value of metadata `key`, or `default` when the file lacks it."""
        field = self.fields.get(key)
        return default if field is None else field.value

    def tensor(self, name: str) -> ReaderTensor:
        try:
            return self._tensor_by_name[name]
        except KeyError:
            raise KeyError(f"{self.path}: no tensor named {name!r}") from None

    def __repr__(self) -> str:
        return (f"GGUFReader({self.path!r}, version={self.version}, fields={len(self.fields)}, "
                f"tensors={len(self.tensors)})")

    # ---- header ---------------------------------------------------------------------------------

    def _read_header(self, cur: _Cursor) -> tuple[int, int, int]:
        if self.file_size < 4 or bytes(cur.buf[:4]) != GGUF_MAGIC:
            raise cur.error("not a GGUF file (bad magic)")
        cur.pos = 4
        version = cur.u32("version")
        if version not in GGUF_SUPPORTED_VERSIONS:
            raise cur.error(self._version_problem(version))
        n_tensors = cur.u64("tensor count")
        n_kv = cur.u64("metadata count")
        # Cheap upper bound before anything is sized by these counts.
        if n_kv > cur.left() // MIN_KV_BYTES:
            raise cur.error(f"metadata count {n_kv} cannot fit in the {cur.left()} bytes after the header "
                            "(truncated or corrupt)")
        if n_tensors > (cur.left() - n_kv * MIN_KV_BYTES) // MIN_TENSOR_INFO_BYTES:
            raise cur.error(f"tensor count {n_tensors} cannot fit in the {cur.left()} bytes after the header "
                            "(truncated or corrupt)")
        return version, n_tensors, n_kv

    @staticmethod
    def _version_problem(version: int) -> str:
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        if version & 0xFFFF == 0 and swapped in (1, 2, 3):
            return f"big-endian GGUF (version {swapped}) is not supported"
        if version == 1:
            return "GGUF version 1 is not supported (only versions 2 and 3)"
        return f"unsupported GGUF version {version} (only versions 2 and 3)"

    # ---- metadata -------------------------------------------------------------------------------

    def _read_fields(self, cur: _Cursor, n_kv: int) -> dict[str, ReaderField]:
        fields: dict[str, ReaderField] = {}
        for i in range(n_kv):
            start = cur.pos
            key = cur.string(f"key of metadata #{i}")
            if key in fields:
                raise cur.error(f"duplicate metadata key {_show(key)} at offset {start}")
            what = f"metadata {_show(key)}"
            vtype = _decode_value_type(cur, cur.u32(f"value type of {what}"), what)
            if vtype == GGUFValueType.ARRAY:
                element_type, value = self._read_array(cur, what, depth=1)
            else:
                element_type, value = None, self._read_scalar(cur, vtype, what)
            fields[key] = ReaderField(key, vtype, value, element_type, start)
        return fields

    def _read_scalar(self, cur: _Cursor, vtype: GGUFValueType, what: str) -> Any:
        if vtype == GGUFValueType.STRING:
            return cur.string(what)
        value = cur.unpack(SCALAR_FORMATS[vtype], what)
        if vtype == GGUFValueType.BOOL:
            if value > 1:
                raise cur.error(f"{what} is a bool with byte value {value} at offset {cur.pos - 1}")
            return bool(value)
        return value

    def _read_array(self, cur: _Cursor, what: str, depth: int) -> tuple[GGUFValueType, Any]:
        if depth > MAX_ARRAY_DEPTH:
            raise cur.error(f"{what} nests arrays deeper than {MAX_ARRAY_DEPTH} levels at offset {cur.pos}")
        element_type = _decode_value_type(cur, cur.u32(f"element type of {what}"), what)
        count_at = cur.pos
        count = cur.u64(f"length of {what}")
        min_size = {GGUFValueType.STRING: MIN_STRING_BYTES, GGUFValueType.ARRAY: MIN_ARRAY_BYTES}.get(
            element_type) or SCALAR_FORMATS[element_type].size
        if count > cur.left() // min_size:
            raise cur.error(f"{what} has array length {count} (at offset {count_at}) "
                            f"but only {cur.left()} bytes are left")
        if element_type == GGUFValueType.STRING:
            return element_type, self._read_string_array(cur, count, what)
        if element_type == GGUFValueType.ARRAY:
            # Each item is a whole array value with its own element type.
            items = [GGUFArray(*self._read_array(cur, f"{what}[{i}]", depth + 1)) for i in range(count)]
            return element_type, items
        return element_type, self._read_numeric_array(cur, element_type, count, what)

    def _read_numeric_array(self, cur: _Cursor, element_type: GGUFValueType, count: int, what: str):
        size = count * ARRAY_DTYPES[element_type].itemsize
        start = cur.pos
        raw = self._map[start:start + size]
        cur.pos += size
        if element_type == GGUFValueType.BOOL and count and raw.max() > 1:
            raise cur.error(f"{what} holds a bool byte other than 0 or 1 (array at offset {start})")
        return raw.view(ARRAY_DTYPES[element_type])

    @staticmethod
    def _read_string_array(cur: _Cursor, count: int, what: str) -> list[str]:
        # The hot loop of every load (49k-262k tokens): plain locals, no per-item message formatting.
        buf, pos, end = cur.buf, cur.pos, cur.size
        unpack_u64 = _U64.unpack_from
        strings = []
        append = strings.append
        for i in range(count):
            if end - pos < 8 or unpack_u64(buf, pos)[0] > end - pos - 8:
                cur.pos = pos
                cur.string(f"{what}[{i}]")  # raises the usual truncation error
            start = pos + 8
            pos = start + unpack_u64(buf, pos)[0]
            try:
                append(str(buf[start:pos], "utf-8"))
            except UnicodeDecodeError:
                raise cur.error(f"{what}[{i}] at offset {start - 8} is not valid UTF-8") from None
        cur.pos = pos
        return strings

    # ---- alignment ------------------------------------------------------------------------------

    def _read_alignment(self, cur: _Cursor) -> int:
        field = self.fields.get(ALIGNMENT_KEY)
        if field is None:
            return GGUF_DEFAULT_ALIGNMENT
        if field.type != GGUFValueType.UINT32:
            raise cur.error(f"{ALIGNMENT_KEY} must be a uint32, not {field.type.name} (offset {field.offset})")
        alignment = field.value
        if alignment == 0 or alignment & (alignment - 1):
            raise cur.error(f"{ALIGNMENT_KEY} is {alignment}, not a non-zero power of two (offset {field.offset})")
        return alignment

    # ---- tensor infos ---------------------------------------------------------------------------

    def _read_tensor_infos(self, cur: _Cursor, n_tensors: int) -> list[tuple]:
        infos = []
        seen: set[str] = set()
        for i in range(n_tensors):
            start = cur.pos
            name = cur.string(f"name of tensor #{i}")
            if name in seen:
                raise cur.error(f"duplicate tensor name {_show(name)} at offset {start}")
            seen.add(name)
            what = f"tensor {_show(name)}"
            n_dims = cur.u32(f"n_dims of {what}")
            if n_dims > GGML_MAX_DIMS:
                raise cur.error(f"{what} has {n_dims} dimensions (at most {GGML_MAX_DIMS}) at offset {cur.pos - 4}")
            shape = tuple(cur.u64(f"dimension {d} of {what}") for d in range(n_dims))
            type_id = cur.u32(f"type of {what}")
            try:
                ggml_type = GGMLType(type_id)
            except ValueError:
                raise cur.error(f"{what} has unknown tensor type id {type_id} at offset {cur.pos - 4}") from None
            offset = cur.u64(f"data offset of {what}")
            infos.append((name, ggml_type, shape, offset))
        return infos

    def _tensor_size(self, cur: _Cursor, name: str, ggml_type: GGMLType, shape: tuple[int, ...]) -> tuple[int, int]:
        """(n_elements, n_bytes) of a tensor, refusing shapes that overflow int64 or break the block size."""
        what = f"tensor {_show(name)}"
        n_elements = 1
        for dim in shape:
            # Same bound as llama.cpp: every dim and the running product must stay within int64.
            if dim > INT64_MAX or (dim and n_elements > INT64_MAX // dim):
                raise cur.error(f"{what} shape {list(shape)} overflows int64 element count")
            n_elements *= dim
        block, block_bytes = GGML_BLOCK_SIZES[ggml_type]
        row_length = shape[0] if shape else 1
        if row_length % block:
            raise cur.error(f"{what} row length {row_length} is not a multiple of "
                            f"{ggml_type.name}'s block size {block}")
        return n_elements, n_elements // block * block_bytes

    def _make_tensors(self, cur: _Cursor, infos: list[tuple]) -> list[ReaderTensor]:
        if infos and self.data_offset > self.file_size:
            raise cur.error(f"data section starts at {self.data_offset}, past end of file (size {self.file_size})")
        tensors = []
        for name, ggml_type, shape, offset in infos:
            what = f"tensor {_show(name)}"
            n_elements, n_bytes = self._tensor_size(cur, name, ggml_type, shape)
            if offset % self.alignment:
                raise cur.error(f"{what} data offset {offset} is not a multiple of the alignment {self.alignment}")
            start = self.data_offset + offset
            end = start + n_bytes
            if end > self.file_size:
                raise cur.error(f"{what} data [{start}, {end}) extends past end of file (size {self.file_size})")
            data = tensor_view(self._map[start:end], ggml_type, shape)
            tensors.append(ReaderTensor(name, ggml_type, shape, n_elements, n_bytes, start, data))
        self._check_no_overlap(cur, tensors)
        return tensors

    @staticmethod
    def _check_no_overlap(cur: _Cursor, tensors: list[ReaderTensor]) -> None:
        # Empty tensors occupy no bytes, so they cannot overlap anything.
        previous = None
        for t in sorted((t for t in tensors if t.n_bytes), key=lambda t: t.data_offset):
            if previous is not None and t.data_offset < previous.data_offset + previous.n_bytes:
                raise cur.error(f"tensor {_show(t.name)} data at {t.data_offset} overlaps tensor "
                                f"{_show(previous.name)} [{previous.data_offset}, "
                                f"{previous.data_offset + previous.n_bytes})")
            previous = t


def tensor_view(raw: np.ndarray, ggml_type: GGMLType, shape: tuple[int, ...]) -> np.ndarray:
    """Shape raw tensor bytes as numpy sees them: dims reversed (ne0 last).

    Plain-number types get their dtype; block-quantized types stay uint8 with each row's bytes last,
    i.e. shape (..., ne1, row_bytes).
    """
    numpy_shape = tuple(reversed(shape))
    dtype = TENSOR_DTYPES.get(ggml_type)
    if dtype is not None:
        return raw.view(dtype).reshape(numpy_shape)
    block, block_bytes = GGML_BLOCK_SIZES[ggml_type]
    row_length = shape[0] if shape else 1
    return raw.reshape(numpy_shape[:-1] + (row_length // block * block_bytes,))
