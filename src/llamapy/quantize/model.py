"""Quantize a whole GGUF model file as llama-quantize does, byte for byte.

    plan = make_plan(reader, params)          type of every tensor, output metadata and layout; no data touched
    result = quantize_file(src, dst, params)  plan, then stream every tensor through a Converter into dst

The output file is llama.cpp's layout: the input's metadata in order with `general.quantization_version`
and `general.file_type` moved to the end (then the --override-kv pairs), GGUF v3, tensors in llama.cpp's
order (`mix.tensor_order`), each padded to 32 bytes. It is written to a temporary file in the target
folder and renamed over the target only once complete.
"""
from __future__ import annotations

import os
import re
import struct
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llamapy.gguf import GGUFReader, GGUFValueType, ReaderTensor
from llamapy.gguf.constants import GGML_BLOCK_SIZES, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGMLType, type_name
from llamapy.gguf.reader import ALIGNMENT_KEY
from llamapy.gguf.writer import encode_value

from .ftypes import FTYPE_GUESSED, READABLE_TYPES, WRITABLE_TYPES, FType, QuantOption
from .mix import (MixOptions, ModelFacts, QuantizeError, TypeChooser, allows_quantization, is_quantized, n_dims,
                  requires_imatrix, tensor_order)

QUANTIZATION_VERSION = 2                # GGML_QNT_VERSION
SPLIT_KEYS = ("split.no", "split.count", "split.tensors.count")
CHUNK_ELEMENTS = 1 << 20                # rows are converted in chunks of about this many elements (4 MiB of f32)

_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")


# ---- options ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KVOverride:
    key: str
    type: GGUFValueType     # UINT32 (ints), FLOAT32, BOOL or STRING: how llama-quantize stores each kind
    value: object
    raw: object = None      # the value as given (the signed int or the float before rounding to f32)


def parse_kv_override(text: str) -> KVOverride:
    """`KEY=TYPE:VALUE` with TYPE int, float, bool or str, read as llama.cpp reads it.

    Integers are written as the u32 of their absolute value, floats as f32 (both as llama-quantize does)."""
    key, sep, rest = text.partition("=")
    if not sep or len(key) >= 128:
        raise ValueError(f"malformed KV override '{text}'")
    kind, colon, value = rest.partition(":")
    if not colon:
        raise ValueError(f"invalid type for KV override '{text}'")
    if kind == "int":
        n = _c_atol(value)
        return KVOverride(key, GGUFValueType.UINT32, abs(n) & 0xFFFFFFFF, n)
    if kind == "float":
        x = _c_atof(value)
        return KVOverride(key, GGUFValueType.FLOAT32, float(np.float32(x)), x)
    if kind == "bool":
        if value not in ("true", "false"):
            raise ValueError(f"invalid boolean value for KV override '{text}'")
        return KVOverride(key, GGUFValueType.BOOL, value == "true", value == "true")
    if kind == "str":
        if len(value.encode()) > 127:
            raise ValueError(f"malformed KV override '{text}', value cannot exceed 127 chars")
        return KVOverride(key, GGUFValueType.STRING, value, value)
    raise ValueError(f"invalid type for KV override '{text}'")


def _c_atol(text: str) -> int:
    """C's atol: leading whitespace, optional sign, digits; 0 when there are none."""
    s = text.lstrip(" \t\n\r\f\v")
    i = 1 if s[:1] in ("+", "-") else 0
    j = i
    while j < len(s) and s[j] in "0123456789":
        j += 1
    if j == i:
        return 0
    n = int(s[i:j])
    n = -n if s[:1] == "-" else n
    return max(-(1 << 63), min(n, (1 << 63) - 1))


_C_FLOAT = re.compile(r"[+-]?(?:inf(?:inity)?|nan|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)", re.IGNORECASE)


def _c_atof(text: str) -> float:
    """C's atof: the longest leading decimal number (inf and nan included); 0.0 when there is none."""
    m = _C_FLOAT.match(text.lstrip(" \t\n\r\f\v"))
    return float(m.group(0)) if m else 0.0


@dataclass
class QuantizeParams:
    """Everything llama-quantize takes besides the file names (llama_model_quantize_params)."""
    option: QuantOption
    n_threads: int = 1
    allow_requantize: bool = False
    leave_output_tensor: bool = False
    pure: bool = False
    output_tensor_type: GGMLType | None = None
    token_embedding_type: GGMLType | None = None
    tensor_types: list[tuple[str, GGMLType]] = field(default_factory=list)    # (regex, type), first match wins
    kv_overrides: list[KVOverride] = field(default_factory=list)
    dry_run: bool = False

    @property
    def only_copy(self) -> bool:
        return self.option.name == "COPY"


# ---- the plan -----------------------------------------------------------------------------------------

@dataclass
class TensorJob:
    """One tensor of the output: where it comes from and what it becomes."""
    index: int                  # 1-based position in the output
    src: ReaderTensor
    shape: tuple[int, ...]      # GGUF order (ne0 first), trailing 1s dropped as ggml_n_dims does
    new_type: GGMLType
    new_bytes: int
    offset: int = 0             # in the output's data section
    requires_imatrix: bool = False

    @property
    def name(self) -> str:
        return self.src.name

    @property
    def src_type(self) -> GGMLType:
        return self.src.type

    @property
    def converts(self) -> bool:
        return self.new_type != self.src.type


def tensor_job(src: ReaderTensor, new_type: GGMLType) -> TensorJob:
    """A job converting one tensor to new_type outside any plan (to check or time a single conversion)."""
    shape = tuple(int(d) for d in src.shape)[:n_dims(tuple(src.shape))] if src.shape else (1,)
    return TensorJob(0, src, shape, GGMLType(new_type), _tensor_bytes(GGMLType(new_type), shape))


@dataclass
class QuantizePlan:
    input_path: str
    params: QuantizeParams
    ftype: int                          # written to general.file_type
    jobs: list[TensorJob]
    metadata: dict[str, bytes]          # key -> encoded value (type tag + value), in output order
    messages: list[str]                 # llama.cpp's warnings from type selection (fallbacks, overrides)
    n_fallback: int
    n_elements: int                     # of all tensors, for bits per weight
    will_require_imatrix: bool = False

    @property
    def size_before(self) -> int:
        return sum(j.src.n_bytes for j in self.jobs)

    @property
    def size_after(self) -> int:
        return sum(j.new_bytes for j in self.jobs)

    def header(self) -> bytes:
        """Everything before the tensor data: GGUF v3 header, metadata, tensor infos, padding to 32 bytes."""
        parts = [GGUF_MAGIC, _U32.pack(3), _U64.pack(len(self.jobs)), _U64.pack(len(self.metadata))]
        parts += [_string(key) + value for key, value in self.metadata.items()]
        for job in self.jobs:
            parts.append(_string(job.name) + _U32.pack(len(job.shape))
                         + b"".join(_U64.pack(d) for d in job.shape) + _U32.pack(job.new_type) + _U64.pack(job.offset))
        raw = b"".join(parts)
        return raw + b"\0" * (-len(raw) % GGUF_DEFAULT_ALIGNMENT)


def _string(text: str) -> bytes:
    raw = text.encode()
    return _U64.pack(len(raw)) + raw


def _pad(n: int) -> int:
    return -n % GGUF_DEFAULT_ALIGNMENT


def _tensor_bytes(t: GGMLType, shape: tuple[int, ...]) -> int:
    block, size = GGML_BLOCK_SIZES[t]
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    return n // block * size


# The file type llama.cpp infers from the most common tensor type, for files without general.file_type.
_FTYPE_OF_TYPE = {
    GGMLType.F32: FType.F32, GGMLType.F16: FType.F16, GGMLType.BF16: FType.BF16, GGMLType.Q4_0: FType.Q4_0,
    GGMLType.Q4_1: FType.Q4_1, GGMLType.Q5_0: FType.Q5_0, GGMLType.Q5_1: FType.Q5_1, GGMLType.Q8_0: FType.Q8_0,
    GGMLType.Q2_K: FType.Q2_K, GGMLType.Q3_K: FType.Q3_K_M, GGMLType.Q4_K: FType.Q4_K_M,
    GGMLType.Q5_K: FType.Q5_K_M, GGMLType.Q6_K: FType.Q6_K, GGMLType.TQ1_0: FType.TQ1_0,
    GGMLType.TQ2_0: FType.TQ2_0, GGMLType.IQ2_XXS: FType.IQ2_XXS, GGMLType.IQ2_XS: FType.IQ2_XS,
    GGMLType.IQ2_S: FType.IQ2_S, GGMLType.IQ3_XXS: FType.IQ3_XXS, GGMLType.IQ1_S: FType.IQ1_S,
    GGMLType.IQ1_M: FType.IQ1_M, GGMLType.IQ4_NL: FType.IQ4_NL, GGMLType.IQ4_XS: FType.IQ4_XS,
    GGMLType.IQ3_S: FType.IQ3_S,
}


def input_ftype(reader: GGUFReader, tensors: list[ReaderTensor]) -> int:
    """The input's file type as llama.cpp's loader sees it: general.file_type, else guessed (| 1024)."""
    value = reader.get("general.file_type")
    if isinstance(value, int) and not isinstance(value, bool):
        return value & 0xFFFFFFFF
    counts: dict[GGMLType, int] = {}
    best, best_count = GGMLType.F32, 0
    for t in tensors:
        counts[t.type] = counts.get(t.type, 0) + 1
        if counts[t.type] > best_count:
            best, best_count = t.type, counts[t.type]
    return int(_FTYPE_OF_TYPE.get(best, FType.F32)) | FTYPE_GUESSED


def make_plan(reader: GGUFReader, params: QuantizeParams) -> QuantizePlan:
    """Choose every tensor's type and lay out the output; raises QuantizeError for what cannot be done."""
    by_name = {t.name: t for t in reader.tensors}
    order = tensor_order(by_name)
    tensors = [by_name[n] for n in order]
    overrides = {o.key: o.raw for o in params.kv_overrides}

    def get(key, default=None):
        return overrides[key] if key in overrides else reader.get(key, default)

    facts = ModelFacts.from_metadata(get)
    ftype = input_ftype(reader, tensors) if params.only_copy else int(params.option.ftype)
    mix = MixOptions(ftype=params.option.ftype, pure=params.pure, only_copy=params.only_copy,
                     quantize_output=not params.leave_output_tensor,
                     output_tensor_type=params.output_tensor_type, token_embedding_type=params.token_embedding_type,
                     tensor_types=[(p.lower(), t) for p, t in params.tensor_types])
    chooser = TypeChooser(facts, mix, order)

    jobs, offset, will_require_imatrix = [], 0, False
    for i, t in enumerate(tensors, 1):
        shape = tuple(int(d) for d in t.shape)[:n_dims(tuple(t.shape))] if t.shape else (1,)
        new_type = GGMLType(chooser.choose(t.name, shape, t.type))
        if shape[0] % GGML_BLOCK_SIZES[new_type][0]:
            raise QuantizeError(f"tensor {t.name}: rows of {shape[0]} cannot be stored as {type_name(new_type)} "
                                f"(blocks of {GGML_BLOCK_SIZES[new_type][0]})")
        job = tensor_job(t, new_type)
        job.index, job.offset = i, offset
        job.requires_imatrix = (allows_quantization(t.name, shape, facts.arch, only_copy=mix.only_copy,
                                                    quantize_output=mix.quantize_output)
                                and requires_imatrix(t.name, new_type, params.option.ftype))
        if job.requires_imatrix:
            if not params.dry_run:
                raise QuantizeError(f"this quantization requires an importance matrix (tensor {t.name} would be "
                                    f"{type_name(new_type)}), and llamapy-quantize has no --imatrix")
            will_require_imatrix = True
        offset += job.new_bytes + _pad(job.new_bytes)
        jobs.append(job)

    if not params.dry_run:
        _check_feasible(jobs, params)

    return QuantizePlan(reader.path, params, ftype, jobs, _output_metadata(reader, ftype, params.kv_overrides),
                        chooser.messages, chooser.n_fallback, sum(t.n_elements for t in reader.tensors),
                        will_require_imatrix)


def _check_feasible(jobs: list[TensorJob], params: QuantizeParams) -> None:
    """Refuse before writing anything what would fail halfway (llama.cpp finds out in the middle of the file)."""
    for job in jobs:
        if not job.converts:
            continue
        if is_quantized(job.src_type) and not params.allow_requantize:
            raise QuantizeError(f"requantizing from type {type_name(job.src_type)} is disabled (tensor {job.name}; "
                                "--allow-requantize permits it)")
        if job.src_type not in READABLE_TYPES:
            raise QuantizeError(f"tensor {job.name}: cannot convert from type {type_name(job.src_type)}")
        if job.new_type not in WRITABLE_TYPES:
            raise QuantizeError(f"tensor {job.name}: llamapy cannot quantize to {type_name(job.new_type)}")


def _output_metadata(reader: GGUFReader, ftype: int, overrides: list[KVOverride]) -> dict[str, bytes]:
    kv: dict[str, bytes] = {}
    for key, f in reader.fields.items():
        if key == ALIGNMENT_KEY:
            # the output is laid out with 32-byte alignment whatever the input had; say so
            kv[key] = encode_value(GGUFValueType.UINT32, GGUF_DEFAULT_ALIGNMENT)
            continue
        kv[key] = encode_value(f.type, f.value, f.element_type)

    def put(key, vtype, value):     # gguf_set_val_*: remove, then append
        kv.pop(key, None)
        kv[key] = encode_value(vtype, value)

    put("general.quantization_version", GGUFValueType.UINT32, QUANTIZATION_VERSION)
    put("general.file_type", GGUFValueType.UINT32, ftype & 0xFFFFFFFF)
    for key in SPLIT_KEYS:
        kv.pop(key, None)
    for o in overrides:
        put(o.key, o.type, o.value)
    return kv


# ---- converting one tensor ------------------------------------------------------------------------------

# Byte offsets of the fp16 scales ggml_validate_row_data checks in each block (NaN or inf: invalid data).
_SCALE_OFFSETS = {
    GGMLType.Q4_0: (0,), GGMLType.Q4_1: (0, 2), GGMLType.Q5_0: (0,), GGMLType.Q5_1: (0, 2), GGMLType.Q8_0: (0,),
    GGMLType.Q2_K: (80, 82), GGMLType.Q3_K: (108,), GGMLType.Q4_K: (0, 2), GGMLType.Q5_K: (0, 2),
    GGMLType.Q6_K: (208,), GGMLType.IQ4_NL: (0,), GGMLType.IQ4_XS: (0,), GGMLType.TQ1_0: (52,),
    GGMLType.TQ2_0: (64,),
}


def valid_data(t: GGMLType, raw: np.ndarray) -> bool:
    """ggml_validate_row_data: no NaN or infinity among the values (floats) or block scales (quantized)."""
    raw = raw.reshape(-1).view(np.uint8)
    if t == GGMLType.F32:
        return _finite_f32(raw.view(np.float32))
    if t == GGMLType.F16:
        return not np.any((raw.view(np.uint16) & 0x7C00) == 0x7C00)
    if t == GGMLType.BF16:
        return not np.any((raw.view(np.uint16) & 0x7F80) == 0x7F80)
    offsets = _SCALE_OFFSETS.get(t)
    if offsets is None:
        return True
    blocks = raw.reshape(-1, GGML_BLOCK_SIZES[t][1])
    return all(not np.any((blocks[:, o:o + 2].view(np.uint16) & 0x7C00) == 0x7C00) for o in offsets)


def _finite_f32(x: np.ndarray) -> bool:
    # max and min propagate NaN and show infinities, without allocating a mask as isfinite would
    return x.size == 0 or bool(np.isfinite(x.max()) and np.isfinite(x.min()))


class QuantizeListener:
    """What a front end hears while a model is quantized (the CLI draws a progress bar or log lines)."""

    def on_start(self, plan: QuantizePlan) -> None: ...

    def on_tensor(self, job: TensorJob) -> None: ...

    def on_bytes(self, n: int) -> None: ...

    def on_tensor_done(self, job: TensorJob) -> None: ...


class Converter:
    """Converts tensors chunk by chunk on a pool of worker threads and hands the chunks back in file order.

    Each chunk (about CHUNK_ELEMENTS elements, whole rows) is dequantized, checked, quantized and checked again
    by one worker calling the single-threaded kernels; workers take the next chunk as soon as they are free,
    as llama.cpp's quantizer threads do, so a core that is busy elsewhere slows the run down only by its share.
    The caller writes chunk k while the workers compute the chunks after it (at most `window` ahead).
    """

    def __init__(self, n_threads: int):
        from llamapy._kernels import _ops     # imported here: planning (and --dry-run) needs no kernels
        self.ops = _ops
        self.n_threads = max(1, n_threads)
        self.window = 2 * self.n_threads + 2
        self.pool = ThreadPoolExecutor(max_workers=self.n_threads, thread_name_prefix="llamapy-quantize")
        self.scratch = threading.local()    # per worker: a float32 buffer reused from chunk to chunk

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "Converter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, jobs, sink, listener: QuantizeListener, pad: bool = True) -> None:
        """Write every job's bytes to sink.write(buffer), each followed by its padding to 32 bytes if `pad`."""
        chunks = ((job, r0, r1, r0 == 0, last) for job in jobs for r0, r1, last in _row_chunks(job))
        pending: deque = deque()

        def fill():
            while len(pending) < self.window:
                item = next(chunks, None)
                if item is None:
                    return
                pending.append((item, self.pool.submit(self._convert, *item[:3])))

        fill()
        written = 0
        while pending:
            (job, _r0, _r1, first, last), future = pending.popleft()
            if first:
                listener.on_tensor(job)
                written = 0
            out, n_src = future.result()
            sink.write(out.data)
            written += out.nbytes
            listener.on_bytes(n_src)
            if last:
                if written != job.new_bytes:    # cannot happen unless the kernels and the size table disagree
                    raise QuantizeError(f"tensor {job.name}: wrote {written} bytes, expected {job.new_bytes}")
                if pad:
                    sink.write(b"\0" * _pad(written))
                listener.on_tensor_done(job)
            fill()

    def _convert(self, job: TensorJob, r0: int, r1: int) -> tuple[np.ndarray, int]:
        """Rows [r0, r1) of job: (output bytes, source bytes read). Checks as llama.cpp checks, in the worker."""
        t = job.src
        ne0 = job.shape[0]
        src_row = _tensor_bytes(t.type, (ne0,))
        chunk = t.data.reshape(-1).view(np.uint8)[r0 * src_row:r1 * src_row]
        if not job.converts:
            if not valid_data(t.type, chunk):
                raise QuantizeError(f"tensor '{t.name}' has invalid data")
            return chunk, chunk.nbytes
        n = (r1 - r0) * ne0
        if t.type == GGMLType.F32:
            values = chunk.view(np.float32)
            valid = _finite_f32(values)
        else:
            buf = getattr(self.scratch, "buf", None)
            if buf is None or buf.size < n:
                buf = self.scratch.buf = np.empty(max(n, CHUNK_ELEMENTS), np.float32)
            values = buf[:n]
            self.ops.dequantize(int(t.type), chunk, values, 1)
            # a float source's NaNs and infinities are still there in float32; quantized ones have their scales
            valid = _finite_f32(values) if t.type in (GGMLType.F16, GGMLType.BF16) else valid_data(t.type, chunk)
        if not valid:
            raise QuantizeError(f"tensor '{t.name}' has invalid data")
        out = np.empty(_tensor_bytes(job.new_type, (ne0, r1 - r0)), np.uint8)
        self.ops.quantize(int(job.new_type), values, out, ne0, 1)
        if not valid_data(job.new_type, out):
            raise QuantizeError(f"tensor '{t.name}': quantized data validation failed")
        return out, chunk.nbytes


def _row_chunks(job: TensorJob):
    """(first row, end row, is last) of each chunk of job: whole rows, about CHUNK_ELEMENTS elements each."""
    ne0 = job.shape[0]
    n_rows = job.src.n_elements // ne0 if ne0 else 0
    if n_rows == 0:
        yield 0, 0, True
        return
    step = max(1, CHUNK_ELEMENTS // ne0)
    for r0 in range(0, n_rows, step):
        yield r0, min(n_rows, r0 + step), r0 + step >= n_rows


# ---- the whole file -------------------------------------------------------------------------------------

@dataclass
class QuantizeResult:
    plan: QuantizePlan
    output: Path | None         # None for a dry run
    seconds: float


def open_input(path: str | os.PathLike) -> GGUFReader:
    """The input model, with any problem reading it as one QuantizeError line."""
    from llamapy.gguf import GGUFError
    try:
        return GGUFReader(path)
    except FileNotFoundError:
        raise QuantizeError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise QuantizeError(f"{path}: is a directory") from None
    except GGUFError as e:
        raise QuantizeError(str(e)) from None
    except OSError as e:
        raise QuantizeError(f"{path}: {e.strerror or e}") from None


def quantize_file(input_path: str | os.PathLike, output_path: str | os.PathLike | None, params: QuantizeParams,
                  listener: QuantizeListener | None = None) -> QuantizeResult:
    """Quantize input_path into output_path (nothing is written with params.dry_run)."""
    t0 = time.perf_counter()
    listener = listener or QuantizeListener()
    if not params.dry_run:
        if output_path is None:
            raise QuantizeError("no output file given")
        if _same_file(input_path, output_path):
            raise QuantizeError(f"input and output files are the same: '{os.fspath(input_path)}'")
    reader = open_input(input_path)
    plan = make_plan(reader, params)
    listener.on_start(plan)
    if params.dry_run:
        for job in plan.jobs:
            listener.on_tensor(job)
            listener.on_tensor_done(job)
        return QuantizeResult(plan, None, time.perf_counter() - t0)
    target = Path(output_path)
    write_model(plan, target, params.n_threads, listener)
    return QuantizeResult(plan, target, time.perf_counter() - t0)


def _same_file(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def write_model(plan: QuantizePlan, target: Path, n_threads: int, listener: QuantizeListener) -> None:
    """Write the planned file through a temporary file beside target, renamed over it once complete."""
    folder = target.parent if str(target.parent) else Path(".")
    tmp = folder / f".{target.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as e:
            raise QuantizeError(f"cannot create a file in {folder}: {e.strerror or e}") from None
        try:
            with os.fdopen(fd, "wb", buffering=1 << 20) as out:
                _write_body(plan, out, n_threads, listener)
        except OSError as e:    # disk full, file size limit, I/O error
            raise QuantizeError(f"cannot write {target}: {e.strerror or e}") from None
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_body(plan: QuantizePlan, out, n_threads: int, listener: QuantizeListener) -> None:
    out.write(plan.header())
    with Converter(n_threads) as converter:
        converter.run(plan.jobs, out, listener)
