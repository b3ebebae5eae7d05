"""Write GGUF files with llama.cpp's layout.

    header | key/values | tensor infos | zero padding to `alignment` | tensor data, each padded to `alignment`

Tensor offsets are relative to the start of the data section and are multiples of the alignment.
The file is written to a temporary file beside the target and renamed over it only when complete, so an
interrupted write never leaves a partial file behind.

Usage:

    with GGUFWriter("out.gguf") as w:
        w.add("general.architecture", "llama")
        w.add("llama.block_count", 30, GGUFValueType.UINT32)
        w.add_tensor("output_norm.weight", np.ones(576, dtype=np.float32))
        w.add_tensor("blk.0.attn_q.weight", raw_q4_k_bytes, type=GGMLType.Q4_K, shape=(576, 576))

`copy_gguf(reader, path)` rewrites a file read by GGUFReader byte for byte.
"""
from __future__ import annotations

import os
import struct
import uuid
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .constants import (GGML_BLOCK_SIZES, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_SUPPORTED_VERSIONS, GGMLType,
                        GGUFValueType)
from .reader import (
    ALIGNMENT_KEY,
    ARRAY_DTYPES,
    GGML_MAX_DIMS,
    INT64_MAX,
    MAX_ARRAY_DEPTH,
    SCALAR_FORMATS,
    TENSOR_DTYPES,
    GGUFArray,
    GGUFError,
    GGUFReader,
    ReaderField,
    align_up,
)

_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")
_COPY_CHUNK = 1 << 24   # stream tensor data in 16 MiB pieces so big tensors are never copied whole

# The tensor type a plain numpy array is stored as when add_tensor is not told.
_TYPE_OF_DTYPE = {np.dtype(dt): t for t, dt in TENSOR_DTYPES.items() if t != GGMLType.BF16}


def _string_bytes(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _U64.pack(len(raw)) + raw


def _infer_value_type(value: Any) -> GGUFValueType:
    """The value type a Python value is stored as when `add` is not told (ints that fit go to INT32)."""
    if isinstance(value, (bool, np.bool_)):
        return GGUFValueType.BOOL
    if isinstance(value, str):
        return GGUFValueType.STRING
    if isinstance(value, np.generic):
        return _type_of_numpy_dtype(value.dtype)
    if isinstance(value, int):
        if -(1 << 31) <= value < (1 << 31):
            return GGUFValueType.INT32
        return GGUFValueType.INT64 if value < 0 or value <= INT64_MAX else GGUFValueType.UINT64
    if isinstance(value, float):
        return GGUFValueType.FLOAT32
    if isinstance(value, (list, tuple, np.ndarray, GGUFArray)):
        return GGUFValueType.ARRAY
    raise GGUFError(f"cannot store a {type(value).__name__} in GGUF metadata")


def _type_of_numpy_dtype(dtype: np.dtype) -> GGUFValueType:
    for vtype, known in ARRAY_DTYPES.items():
        if np.dtype(dtype).newbyteorder("<") == known:
            return vtype
    raise GGUFError(f"no GGUF value type for numpy dtype {dtype}")


def _infer_element_type(values: Any) -> GGUFValueType:
    if isinstance(values, np.ndarray):
        return _type_of_numpy_dtype(values.dtype)
    if not len(values):
        raise GGUFError("cannot infer the element type of an empty array; pass element_type")
    types = {_infer_value_type(v) for v in values}
    widening = [GGUFValueType.INT32, GGUFValueType.INT64, GGUFValueType.UINT64, GGUFValueType.FLOAT32]
    if types <= set(widening):   # mixed numbers take the widest type they need
        return max(types, key=widening.index)
    if len(types) != 1:
        raise GGUFError(f"array mixes element types {sorted(t.name for t in types)}")
    return types.pop()


def encode_scalar(vtype: GGUFValueType, value: Any) -> bytes:
    """The bytes of one scalar or string value (without its type tag)."""
    if vtype == GGUFValueType.STRING:
        if not isinstance(value, str):
            raise GGUFError(f"STRING value must be a str, not {type(value).__name__}")
        return _string_bytes(value)
    if vtype == GGUFValueType.BOOL and value not in (0, 1):
        raise GGUFError(f"BOOL value must be True or False, not {value!r}")
    try:
        return SCALAR_FORMATS[vtype].pack(value)
    except (struct.error, KeyError, TypeError) as e:
        raise GGUFError(f"cannot store {value!r} as {vtype.name}: {e}") from None


def encode_array(element_type: GGUFValueType, values: Any, depth: int = 1) -> bytes:
    """The bytes of an array value: element type, count, elements."""
    if depth > MAX_ARRAY_DEPTH:
        raise GGUFError(f"arrays nested deeper than {MAX_ARRAY_DEPTH} levels")
    element_type = GGUFValueType(element_type)
    head = _U32.pack(element_type) + _U64.pack(len(values))
    if element_type == GGUFValueType.STRING:
        return head + b"".join(encode_scalar(element_type, v) for v in values)
    if element_type == GGUFValueType.ARRAY:
        return head + b"".join(_encode_inner_array(v, depth + 1) for v in values)
    return head + _numeric_array_bytes(element_type, values)


def _encode_inner_array(item: Any, depth: int) -> bytes:
    if isinstance(item, GGUFArray):
        return encode_array(item.element_type, item.values, depth)
    return encode_array(_infer_element_type(item), item, depth)


def _numeric_array_bytes(element_type: GGUFValueType, values: Any) -> bytes:
    dtype = ARRAY_DTYPES[element_type]
    if element_type == GGUFValueType.BOOL:
        if any(v not in (0, 1) for v in np.asarray(values).ravel().tolist()):
            raise GGUFError("BOOL array values must be True or False")
    try:
        source = np.asarray(values)
        array = source.astype(dtype)
    except (OverflowError, ValueError, TypeError) as e:
        raise GGUFError(f"cannot store array as {element_type.name}: {e}") from None
    if array.ndim != 1:
        raise GGUFError(f"array values must be one-dimensional, got shape {array.shape}")
    # Refuse silent wrap-around, e.g. 300 stored as UINT8.
    if dtype.kind in "iu" and source.size and not np.array_equal(array, source):
        raise GGUFError(f"array values do not fit in {element_type.name}")
    return array.tobytes()


def encode_value(vtype: GGUFValueType, value: Any, element_type: GGUFValueType | None = None) -> bytes:
    """The bytes of a metadata value including its type tag, as it follows the key in the file."""
    vtype = GGUFValueType(vtype)
    if vtype != GGUFValueType.ARRAY:
        return _U32.pack(vtype) + encode_scalar(vtype, value)
    if isinstance(value, GGUFArray):
        element_type, value = value.element_type, value.values
    if element_type is None:
        element_type = _infer_element_type(value)
    return _U32.pack(vtype) + encode_array(element_type, value)


class _PendingTensor:
    """A tensor to write: its info and a buffer holding its bytes (often a view into another file's mmap)."""

    def __init__(self, name: str, ggml_type: GGMLType, shape: tuple[int, ...], data: np.ndarray):
        self.name, self.type, self.shape, self.data = name, ggml_type, shape, data
        self.offset = 0     # relative to the data section, assigned when writing

    def info_bytes(self) -> bytes:
        return (_string_bytes(self.name) + _U32.pack(len(self.shape))
                + b"".join(_U64.pack(d) for d in self.shape) + _U32.pack(self.type) + _U64.pack(self.offset))


def _expected_bytes(ggml_type: GGMLType, shape: tuple[int, ...]) -> int:
    block, block_bytes = GGML_BLOCK_SIZES[ggml_type]
    row_length = shape[0] if shape else 1
    if row_length % block:
        raise GGUFError(f"row length {row_length} is not a multiple of {ggml_type.name}'s block size {block}")
    n_elements = int(np.prod(shape, dtype=object)) if shape else 1
    return n_elements // block * block_bytes


def _infer_shape(ggml_type: GGMLType, data: np.ndarray) -> tuple[int, ...]:
    """GGUF shape (ne0 first) of an array laid out as tensor_view lays it out."""
    if ggml_type in TENSOR_DTYPES:
        return tuple(reversed(data.shape))
    block, block_bytes = GGML_BLOCK_SIZES[ggml_type]
    if data.dtype != np.uint8 or data.ndim == 0 or data.shape[-1] % block_bytes:
        raise GGUFError(f"pass shape= for {ggml_type.name} data of dtype {data.dtype} and shape {data.shape}")
    return (data.shape[-1] // block_bytes * block,) + tuple(reversed(data.shape[:-1]))


class GGUFWriter:
    """Collects metadata and tensors, then writes them in one go with `write()` (or on leaving a `with`)."""

    def __init__(self, path: str | os.PathLike, *, alignment: int = GGUF_DEFAULT_ALIGNMENT, version: int = 3):
        if version not in GGUF_SUPPORTED_VERSIONS:
            raise GGUFError(f"cannot write GGUF version {version} (only {GGUF_SUPPORTED_VERSIONS})")
        self.path = Path(path)
        self.version = version
        self.alignment = self._checked_alignment(alignment)
        self._kv: dict[str, bytes] = {}     # key -> encoded value (type tag + value), in insertion order
        self._tensors: dict[str, _PendingTensor] = {}

    @staticmethod
    def _checked_alignment(alignment: int) -> int:
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1) or alignment >= 1 << 32:
            raise GGUFError(f"alignment must be a non-zero power of two that fits in uint32, not {alignment!r}")
        return alignment

    # ---- metadata -------------------------------------------------------------------------------

    def add(self, key: str, value: Any, type: GGUFValueType | None = None,
            element_type: GGUFValueType | None = None) -> None:
        """Add a metadata pair. Pass `type` (and `element_type` for arrays) to pick the exact encoding;
        otherwise it is inferred: bool->BOOL, int->INT32 (INT64 if too big), float->FLOAT32, str->STRING,
        numpy arrays by dtype, lists by their items. Arrays of arrays take lists or GGUFArray items."""
        if key in self._kv:
            raise GGUFError(f"duplicate metadata key {key!r}")
        vtype = GGUFValueType(type) if type is not None else _infer_value_type(value)
        if key == ALIGNMENT_KEY:
            if vtype != GGUFValueType.UINT32:
                raise GGUFError(f"{ALIGNMENT_KEY} must be UINT32, not {vtype.name}")
            self.alignment = self._checked_alignment(int(value))
        self._kv[key] = encode_value(vtype, value, element_type)

    def add_field(self, field: ReaderField) -> None:
        """Copy a metadata pair read by GGUFReader with its exact value type."""
        self.add(field.name, field.value, field.type, field.element_type)

    # ---- tensors --------------------------------------------------------------------------------

    def add_tensor(self, name: str, data: Any, *, type: GGMLType | None = None,
                   shape: Iterable[int] | None = None) -> None:
        """Add a tensor. `data` is a numpy array or bytes-like holding exactly the tensor's bytes.

        `type` defaults from the dtype (float32->F32, float16->F16, int8..int64, float64); quantized data needs
        `type`. `shape` is in GGUF order (ne0 first); by default it is the array's shape reversed, and for
        quantized uint8 arrays shaped (..., row_bytes) as GGUFReader returns them it is derived from that.
        """
        if name in self._tensors:
            raise GGUFError(f"duplicate tensor name {name!r}")
        array = data if isinstance(data, np.ndarray) else np.frombuffer(data, dtype=np.uint8)
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        if type is None:
            type = _TYPE_OF_DTYPE.get(array.dtype)
            if type is None:
                raise GGUFError(f"tensor {name!r}: pass type= for data of dtype {array.dtype}")
        ggml_type = GGMLType(type)
        shape = tuple(int(d) for d in shape) if shape is not None else _infer_shape(ggml_type, array)
        if len(shape) > GGML_MAX_DIMS or any(d < 0 for d in shape):
            raise GGUFError(f"tensor {name!r}: bad shape {shape}")
        expected = _expected_bytes(ggml_type, shape)
        if array.nbytes != expected:
            raise GGUFError(f"tensor {name!r}: {ggml_type.name} {list(shape)} needs {expected} bytes, "
                            f"data has {array.nbytes}")
        self._tensors[name] = _PendingTensor(name, ggml_type, shape, array)

    # ---- writing --------------------------------------------------------------------------------

    def _metadata_bytes(self) -> bytes:
        kv = self._kv
        if self.alignment != GGUF_DEFAULT_ALIGNMENT and ALIGNMENT_KEY not in kv:
            # Readers only know a non-default alignment from this key.
            kv = {**kv, ALIGNMENT_KEY: encode_value(GGUFValueType.UINT32, self.alignment)}
        offset = 0
        for tensor in self._tensors.values():
            tensor.offset = offset
            offset = align_up(offset + tensor.data.nbytes, self.alignment)
        parts = [GGUF_MAGIC, _U32.pack(self.version), _U64.pack(len(self._tensors)), _U64.pack(len(kv))]
        parts += [_string_bytes(key) + value for key, value in kv.items()]
        parts += [tensor.info_bytes() for tensor in self._tensors.values()]
        return b"".join(parts)

    def write(self) -> Path:
        """Write the file; it appears at `path` only once it is complete."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        try:
            # os.open with 0o666 lets the umask decide the permissions, as for any new file.
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as out:
                self._write_to(out)
            os.replace(tmp, self.path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return self.path

    def _write_to(self, out) -> None:
        metadata = self._metadata_bytes()
        out.write(metadata)
        position = len(metadata)
        position += self._pad(out, position)
        for tensor in self._tensors.values():
            flat = np.ascontiguousarray(tensor.data).reshape(-1).view(np.uint8)
            for start in range(0, flat.nbytes, _COPY_CHUNK):
                out.write(flat[start:start + _COPY_CHUNK].data)
            position += flat.nbytes
            position += self._pad(out, position)

    def _pad(self, out, position: int) -> int:
        padding = align_up(position, self.alignment) - position
        out.write(b"\0" * padding)
        return padding

    def __enter__(self) -> "GGUFWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.write()

    # ---- copying --------------------------------------------------------------------------------

    @classmethod
    def from_reader(cls, reader: GGUFReader, path: str | os.PathLike) -> "GGUFWriter":
        """A writer holding everything `reader` read; tensor data stays as views of its memory map."""
        writer = cls(path, alignment=reader.alignment, version=reader.version)
        for field in reader.fields.values():
            writer.add_field(field)
        for tensor in reader.tensors:
            writer.add_tensor(tensor.name, tensor.data, type=tensor.type, shape=tensor.shape)
        return writer


def copy_gguf(source: GGUFReader | str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Rewrite a GGUF file. For files laid out as llama.cpp writes them the copy is byte-identical."""
    reader = source if isinstance(source, GGUFReader) else GGUFReader(source)
    return GGUFWriter.from_reader(reader, out_path).write()
