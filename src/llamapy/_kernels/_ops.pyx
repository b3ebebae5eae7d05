# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Thin Cython layer over the C kernels: checks arguments, releases the GIL, calls one C function.

The ISA in use is chosen once at import (best the CPU supports, or $LLAMAPY_CPU) and can be changed
with set_isa(); every entry point also takes an explicit `isa` so tests can compare paths in-process.
"""
import os
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint64_t
from llamapy._kernels.kernels cimport *

ISA_NAMES = ("scalar", "avx2", "avx512", "avx512vnni", "neon")

cdef int _current = llp_best_isa()


def _isa_id(name):
    if name is None:
        return _current
    if name not in ISA_NAMES:
        raise ValueError(f"unknown kernel path {name!r}; choose from {', '.join(ISA_NAMES)}")
    cdef int i = ISA_NAMES.index(name)
    if not llp_isa_supported(i):
        raise ValueError(f"this CPU cannot run the {name} kernels (it supports: {', '.join(available_isas())})")
    return i


cdef const llp_kernels *_table(name) except NULL:
    return llp_kernels_for(_isa_id(name))


def available_isas():
    """Kernel paths this CPU can run, lowest first."""
    return [ISA_NAMES[i] for i in range(len(ISA_NAMES)) if llp_isa_supported(i)]


def best_isa():
    return ISA_NAMES[llp_best_isa()]


def current_isa():
    return ISA_NAMES[_current]


def set_isa(name):
    """Use the `name` kernels from now on ('scalar', 'avx2', 'avx512', 'avx512vnni', 'neon')."""
    global _current
    _current = _isa_id(name)


def cpu_features():
    cdef const llp_cpu_features *c = llp_cpu()
    return {
        "SSE3": bool(c.sse3), "SSSE3": bool(c.ssse3), "AVX": bool(c.avx), "AVX2": bool(c.avx2),
        "FMA": bool(c.fma), "F16C": bool(c.f16c), "AVX512F": bool(c.avx512f), "AVX512BW": bool(c.avx512bw),
        "AVX512VL": bool(c.avx512vl), "AVX512DQ": bool(c.avx512dq), "AVX512_VNNI": bool(c.avx512vnni),
        "AVX512_BF16": bool(c.avx512bf16), "AVX_VNNI": bool(c.avx_vnni), "NEON": bool(c.neon),
        "DOTPROD": bool(c.dotprod),
    }


def kernel_impls(isa=None):
    """{type name: ISA whose dot product kernel serves it} for the given (or current) path."""
    cdef const llp_kernels *k = _table(isa)
    out = {}
    for t in range(LLP_TYPE_COUNT):
        if llp_types[t].blck_size and k.vec_dot[t] != NULL:
            out[llp_types[t].name.decode()] = k.impl[t].decode() if k.impl[t] != NULL else "scalar"
    return out


cdef const llp_type_info *_info(int t) except NULL:
    if t < 0 or t >= LLP_TYPE_COUNT or llp_types[t].blck_size == 0:
        raise ValueError(f"tensor type {t} is not supported by the kernels")
    return &llp_types[t]


def block_info(int t):
    """(elements per block, bytes per block, vec_dot_type) of type t."""
    cdef const llp_type_info *ti = _info(t)
    return ti.blck_size, ti.type_size, ti.vec_dot_type


cdef size_t _row_bytes(const llp_type_info *ti, int64_t n) except? 0:
    if n % ti.blck_size:
        raise ValueError(f"{n} elements is not a multiple of {ti.name.decode()}'s block of {ti.blck_size}")
    return <size_t>(n // ti.blck_size) * ti.type_size


def dequantize(int t, const uint8_t[::1] src not None, float[::1] dst not None, int n_threads=1):
    """dst[:] = the float values of the n = len(dst) elements of type t in src."""
    cdef const llp_type_info *ti = _info(t)
    cdef int64_t n = dst.shape[0]
    if _row_bytes(ti, n) != <size_t>src.shape[0]:
        raise ValueError(f"{src.shape[0]} bytes do not hold {n} elements of {ti.name.decode()}")
    if n == 0:
        return
    with nogil:
        llp_dequantize(t, &src[0], &dst[0], n, n_threads)


def quantize(int t, const float[::1] src not None, uint8_t[::1] dst not None, int64_t n_per_row=0,
             int n_threads=1):
    """dst[:] = src quantized to type t with the scalar reference quantizer (ggml's *_ref), row by row.

    Rows are n_per_row elements (default: all of src as one row); n_threads threads share the rows.
    """
    cdef const llp_type_info *ti = _info(t)
    cdef int64_t n = src.shape[0]
    if n == 0:
        if dst.shape[0]:
            raise ValueError(f"{dst.shape[0]} bytes cannot hold 0 elements")
        return
    if n_per_row <= 0:
        n_per_row = n
    if n % n_per_row:
        raise ValueError(f"{n} elements are not whole rows of {n_per_row}")
    if _row_bytes(ti, n_per_row) * <size_t>(n // n_per_row) != <size_t>dst.shape[0]:
        raise ValueError(f"{dst.shape[0]} bytes cannot hold {n} elements of {ti.name.decode()}")
    with nogil:
        llp_quantize_rows(t, &src[0], &dst[0], n // n_per_row, n_per_row, n_threads)


def quantize_activations(int t, const float[::1] src not None, uint8_t[::1] dst not None, isa=None):
    """dst[:] = src in type t (an activation format) with the fast quantizer of the chosen path."""
    cdef const llp_type_info *ti = _info(t)
    cdef const llp_kernels *k = _table(isa)
    cdef int64_t n = src.shape[0]
    if _row_bytes(ti, n) != <size_t>dst.shape[0]:
        raise ValueError(f"{dst.shape[0]} bytes cannot hold {n} elements of {ti.name.decode()}")
    cdef llp_from_float_fn f = k.from_float[t] if k.from_float[t] != NULL else ti.from_float_ref
    if n == 0:
        return
    with nogil:
        f(&src[0], &dst[0], n)


def vec_dot(int t, int n, const uint8_t[::1] w not None, const uint8_t[::1] a not None, isa=None):
    """dot(w, a): w one row of n elements of type t, a the same n in t's vec_dot_type."""
    cdef const llp_type_info *ti = _info(t)
    cdef const llp_kernels *k = _table(isa)
    cdef float s = 0
    if ti.vec_dot_type < 0 or k.vec_dot[t] == NULL:
        raise ValueError(f"no dot product for {ti.name.decode()}")
    if _row_bytes(ti, n) != <size_t>w.shape[0] or _row_bytes(&llp_types[ti.vec_dot_type], n) != <size_t>a.shape[0]:
        raise ValueError("row sizes do not match n")
    if n == 0:
        return 0.0
    with nogil:
        k.vec_dot[t](n, &s, &w[0], &a[0])
    return s


def vec_dot4(int t, int n, const uint8_t[:, ::1] w not None, const uint8_t[::1] a not None, isa=None):
    """The 4-row kernel: dots of w's 4 rows (n elements of type t each) with a, as a float32 array, or
    None when the chosen path has no 4-row kernel for t."""
    import numpy as np
    cdef const llp_type_info *ti = _info(t)
    cdef const llp_kernels *k = _table(isa)
    if ti.vec_dot_type < 0 or k.vec_dot4[t] == NULL:
        return None
    if w.shape[0] != 4 or _row_bytes(ti, n) != <size_t>w.shape[1] or _row_bytes(&llp_types[ti.vec_dot_type], n) != <size_t>a.shape[0]:
        raise ValueError("need 4 rows of n elements and one activation row of n")
    out = np.zeros(4, dtype=np.float32)
    cdef float[::1] s = out
    if n == 0:
        return out
    with nogil:
        k.vec_dot4[t](n, &s[0], &w[0, 0], w.shape[1], &a[0])
    return out


def vec_dot4x2(int t, int n, const uint8_t[:, ::1] w not None, const uint8_t[:, ::1] a not None, isa=None):
    """The tile kernel: dots of w's 4 rows with a's 2 rows, as a (2, 4) float32 array, or None when the
    chosen path has no tile kernel for t."""
    import numpy as np
    cdef const llp_type_info *ti = _info(t)
    cdef const llp_kernels *k = _table(isa)
    if ti.vec_dot_type < 0 or k.vec_dot4x2[t] == NULL:
        return None
    if (w.shape[0] != 4 or a.shape[0] != 2 or _row_bytes(ti, n) != <size_t>w.shape[1]
            or _row_bytes(&llp_types[ti.vec_dot_type], n) != <size_t>a.shape[1]):
        raise ValueError("need 4 weight rows and 2 activation rows of n elements")
    out = np.zeros((2, 4), dtype=np.float32)
    cdef float[:, ::1] s = out
    if n == 0:
        return out
    with nogil:
        k.vec_dot4x2[t](n, &s[0, 0], 4, &w[0, 0], w.shape[1], &a[0, 0], a.shape[1])
    return out


def _lanes(int lanes):
    if lanes not in (16, 64):
        raise ValueError(f"lanes must be 16 (prompt batch order) or 64 (one-token order), got {lanes}")
    return lanes


def attn_scores(const float[::1] q not None, const uint16_t[:, :] k not None, float scale, isa=None, int lanes=16):
    """s[j] = scale * (q . f16 row k[j]) through the attention kernel (q: head_dim floats), in the summation
    order of `lanes` (see kernels.h)."""
    import numpy as np
    cdef const llp_kernels *kt = _table(isa)
    _lanes(lanes)
    if k.shape[1] != q.shape[0] or (k.shape[0] > 1 and k.strides[1] != 2):
        raise ValueError("k must be (n, head_dim) f16 rows with contiguous elements")
    out = np.zeros(k.shape[0], dtype=np.float32)
    cdef float[::1] s = out
    if k.shape[0] == 0 or q.shape[0] == 0:
        return out
    with nogil:
        kt.attn_scores(<int>q.shape[0], &q[0], &k[0, 0], k.strides[0] // 2, k.shape[0], scale, &s[0], lanes)
    return out


def attn_accum(float[::1] p not None, float pscale, const uint16_t[:, :] v not None, float[::1] acc not None,
               isa=None, int lanes=16):
    """p = f16(p * pscale) and acc += sum_j p[j] * f16 row v[j], both in place, through the attention kernel,
    in the summation order of `lanes` (see kernels.h)."""
    cdef const llp_kernels *kt = _table(isa)
    _lanes(lanes)
    if v.shape[0] != p.shape[0] or v.shape[1] != acc.shape[0] or (v.shape[1] > 1 and v.strides[1] != 2):
        raise ValueError("v must be (len(p), len(acc)) f16 rows with contiguous elements")
    if v.shape[0] == 0 or acc.shape[0] == 0:
        return
    with nogil:
        kt.attn_accum(<int>acc.shape[0], &p[0], pscale, &v[0, 0], v.strides[0] // 2, v.shape[0], &acc[0], lanes)


def exp_sum(float[::1] p not None, float mx, isa=None):
    """p = exp(p - mx) in place (p <= mx), returning the sum, through the softmax kernel."""
    cdef const llp_kernels *kt = _table(isa)
    cdef double r = 0.0
    with nogil:
        r = kt.exp_sum(&p[0] if p.shape[0] else NULL, p.shape[0], mx)
    return r


def matmul_work_size(int t, int64_t cols, int64_t n_tok):
    _info(t)
    return llp_matmul_work_size(t, cols, n_tok)


def matmul(int t, const uint8_t[:, ::1] W not None, const float[:, ::1] X not None, float[:, ::1] Y not None,
           uint8_t[::1] work not None, int n_threads=1, isa=None):
    """Y[i, r] = dot(W[r], X[i]): W rows of type t (raw bytes), X float32 activations, one per row of Y."""
    cdef const llp_type_info *ti = _info(t)
    cdef const llp_kernels *k = _table(isa)
    cdef int64_t rows = W.shape[0], cols = X.shape[1], n_tok = X.shape[0]
    if _row_bytes(ti, cols) != <size_t>W.shape[1]:
        raise ValueError(f"weight rows of {W.shape[1]} bytes do not hold {cols} elements of {ti.name.decode()}")
    if Y.shape[0] != n_tok or Y.shape[1] != rows:
        raise ValueError(f"output must be ({n_tok}, {rows}), got ({Y.shape[0]}, {Y.shape[1]})")
    if <size_t>work.shape[0] < llp_matmul_work_size(t, cols, n_tok):
        raise ValueError("work buffer too small")
    if rows == 0 or n_tok == 0:
        return
    cdef int rc
    cdef void *wp = &work[0] if work.shape[0] else NULL
    with nogil:
        rc = llp_matmul(k, t, &W[0, 0], rows, cols, W.strides[0], &X[0, 0], n_tok, &Y[0, 0], Y.strides[0] // 4,
                        wp, n_threads)
    if rc:
        raise ValueError(f"matmul failed for {ti.name.decode()} (code {rc})")


def matmul_group(list weights not None, const float[:, ::1] X not None, int n_threads=1, isa=None):
    """[X W^T for (type, W) in weights] through one llp_matmul_group call (W: uint8 (rows, row_bytes))."""
    import numpy as np
    cdef const llp_kernels *k = _table(isa)
    cdef int n = len(weights), m, rc
    cdef int64_t cols = X.shape[1], n_tok = X.shape[0]
    if n < 1 or n > LLP_MAX_GROUP:
        raise ValueError(f"1 to {LLP_MAX_GROUP} products")
    cdef llp_product prods[LLP_MAX_GROUP]
    outs, keep, work_size = [], [], 1
    for m, (t, W) in enumerate(weights):
        ti = _info(t)
        if _row_bytes(ti, cols) != <size_t>W.shape[1] or not W.flags.c_contiguous:
            raise ValueError("weight rows do not hold X's columns")
        Y = np.zeros((n_tok, W.shape[0]), dtype=np.float32)
        outs.append(Y)
        keep.append(W)
        work_size = max(work_size, llp_matmul_work_size(t, cols, n_tok))
        prods[m].type, prods[m].W, prods[m].rows, prods[m].w_stride = t, <const void *><size_t>W.ctypes.data, W.shape[0], W.strides[0]
        prods[m].Y, prods[m].y_stride = <float *><size_t>Y.ctypes.data, W.shape[0]
    work = np.zeros(work_size, dtype=np.uint8)
    cdef void *wp = <void *><size_t>work.ctypes.data
    with nogil:
        rc = llp_matmul_group(k, prods, n, cols, &X[0, 0], n_tok, wp, n_threads)
    if rc:
        raise ValueError(f"matmul_group failed (code {rc})")
    return outs


def read_bytes(const uint8_t[::1] buf not None, int n_threads=1):
    """Stream-read buf with n_threads threads (the memory bandwidth probe); returns a checksum."""
    cdef uint64_t r
    cdef size_t n = buf.shape[0] // 64 * 64
    if n == 0:
        return 0
    with nogil:
        r = llp_read_bytes(&buf[0], n, n_threads)
    return r


def time_matvec_pass(list weights not None, int n_threads=1, int reps=1, isa=None):
    """Seconds per pass of matrix-vector products over `weights`, measured without Python in the loop.

    weights: entries multiplied in order, each by an activation vector of its own, as a token's forward
    pass does: a (type, W uint8 (rows, row_bytes)) pair is one product; a list of such pairs (same number
    of columns) is a group sharing one input, computed in one call as the forward pass computes q, k, v
    and gate, up. For benchmarks: it shows the kernels and threading on their own.
    """
    import time
    import numpy as np
    cdef const llp_kernels *k = _table(isa)
    groups = [w if isinstance(w, list) else [w] for w in weights]
    cdef Py_ssize_t n = sum(len(g) for g in groups), n_groups = len(groups), i, g
    cdef int r, rc = 0
    keep = []
    prod_arr = np.zeros(n, dtype=np.dtype([("type", np.intc), ("W", np.uintp), ("rows", np.int64), ("w_stride", np.uintp),
                                           ("Y", np.uintp), ("y_stride", np.int64)], align=True))
    if prod_arr.itemsize != sizeof(llp_product):
        raise RuntimeError("llp_product layout mismatch")
    cdef int64_t[::1] first = np.zeros(n_groups + 1, dtype=np.int64), cols = np.zeros(n_groups, dtype=np.int64)
    cdef uint64_t[::1] xp = np.zeros(n_groups, dtype=np.uint64), workp = np.zeros(n_groups, dtype=np.uint64)
    i = 0
    for g, group in enumerate(groups):
        first[g] = i
        for t, W in group:
            ti = _info(t)
            c = W.shape[1] // ti.type_size * ti.blck_size
            if i > first[g] and c != cols[g]:
                raise ValueError("products of one group must have the same number of columns")
            cols[g] = c
            y = np.empty(W.shape[0], dtype=np.float32)
            keep += [W, y]
            prod_arr[i] = (t, W.ctypes.data, W.shape[0], W.strides[0], y.ctypes.data, W.shape[0])
            i += 1
        x = np.random.default_rng(g).standard_normal(cols[g], dtype=np.float32)
        work = np.empty(max(1, max(llp_matmul_work_size(t, cols[g], 1) for t, _ in group)), dtype=np.uint8)
        keep += [x, work]
        xp[g], workp[g] = x.ctypes.data, work.ctypes.data
    first[n_groups] = n
    cdef const llp_product *pp = <const llp_product *><size_t>prod_arr.ctypes.data
    t0 = time.perf_counter()
    with nogil:
        for r in range(reps):
            for g in range(n_groups):
                rc |= llp_matmul_group(k, pp + first[g], <int>(first[g + 1] - first[g]), cols[g], <const float *>xp[g],
                                       1, <void *>workp[g], n_threads)
    elapsed = time.perf_counter() - t0
    if rc:
        raise ValueError("matmul failed in the pass")
    return elapsed / reps


include "forward.pxi"


def _init_from_env():
    name = os.environ.get("LLAMAPY_CPU", "").strip().lower()
    if name:
        set_isa(name)

_init_from_env()
