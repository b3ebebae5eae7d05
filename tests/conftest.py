"""Shared fixtures: the two reference models, and a byte-level GGUF builder for hand-made (malformed) files."""
from __future__ import annotations

import struct

import pytest

from llamapy.models import model_path

REFERENCE_MODELS = ("smollm2", "gemma3")


@pytest.fixture(scope="session", params=REFERENCE_MODELS)
def reference_model(request):
    """Path of each reference model in turn (cached under ~/.cache/llamapy, fetched on first use)."""
    return model_path(request.param)


class RawGGUF:
    """Builds GGUF bytes piece by piece with struct, so a test can put any value anywhere (even invalid ones)."""

    # value type ids, as in the spec (kept literal so the builder does not depend on the code under test)
    UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
    SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B",
                      10: "<Q", 11: "<q", 12: "<d"}

    @staticmethod
    def u32(n: int) -> bytes:
        return struct.pack("<I", n)

    @staticmethod
    def u64(n: int) -> bytes:
        return struct.pack("<Q", n)

    @classmethod
    def string(cls, text: str | bytes, length: int | None = None) -> bytes:
        raw = text.encode() if isinstance(text, str) else text
        return cls.u64(len(raw) if length is None else length) + raw

    @classmethod
    def scalar(cls, vtype: int, value) -> bytes:
        if vtype == cls.STRING:
            return cls.string(value)
        return struct.pack(cls.SCALAR_FORMATS[vtype], value)

    @classmethod
    def array(cls, element_type: int, values, length: int | None = None) -> bytes:
        """Array value bytes (without the outer ARRAY tag); nested arrays take (element_type, values) items."""
        if element_type == cls.ARRAY:
            body = b"".join(cls.array(et, vs) for et, vs in values)
        else:
            body = b"".join(cls.scalar(element_type, v) for v in values)
        return cls.u32(element_type) + cls.u64(len(values) if length is None else length) + body

    @classmethod
    def kv(cls, key: str | bytes, vtype: int, value=None, *, raw: bytes | None = None) -> bytes:
        """A key/value pair; `raw` replaces the encoded value (for arrays, pass cls.array(...))."""
        payload = raw if raw is not None else cls.scalar(vtype, value)
        return cls.string(key) + cls.u32(vtype) + payload

    @classmethod
    def tensor_info(cls, name: str, dims, type_id: int, offset: int, n_dims: int | None = None) -> bytes:
        return (cls.string(name) + cls.u32(len(dims) if n_dims is None else n_dims)
                + b"".join(cls.u64(d) for d in dims) + cls.u32(type_id) + cls.u64(offset))

    @classmethod
    def file(cls, kvs=(), infos=(), data: bytes = b"", *, version: int = 3, alignment: int = 32,
             n_kv: int | None = None, n_tensors: int | None = None, magic: bytes = b"GGUF") -> bytes:
        """Header + kvs + tensor infos, zero padding to `alignment`, then `data` as given."""
        meta = (magic + cls.u32(version) + cls.u64(len(infos) if n_tensors is None else n_tensors)
                + cls.u64(len(kvs) if n_kv is None else n_kv) + b"".join(kvs) + b"".join(infos))
        padding = -len(meta) % alignment if alignment else 0
        return meta + b"\0" * padding + data


@pytest.fixture(scope="session")
def raw_gguf():
    """The RawGGUF builder class."""
    return RawGGUF
