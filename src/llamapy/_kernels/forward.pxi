# Included from _ops.pyx: the transformer forward passes over a batch of tokens (llama and gemma3 architectures).
#
# Weights stay where the GGUF memory map has them; the Python driver (llamapy.model.llama) hands over
# their addresses once, and LlamaForward.forward runs every layer without the GIL, llama2.c style.
from libc.stdint cimport int32_t, uint8_t, uint16_t
from libc.stdlib cimport calloc, free
from libc.math cimport sqrtf

cdef extern from "include/ops.h" nogil:
    ctypedef uint16_t llp_fp16
    enum: LLP_Q8_0
    void llp_rmsnorm(const float *x, const float *w, float *y, int64_t n, int64_t n_rows, float eps)
    int llp_rope(float *x, int64_t n_tok, int64_t row_stride, int n_head, int head_dim, int n_dims,
                  const int32_t *pos, float base, int neox)
    ctypedef struct llp_rope_scaling:
        float freq_scale, ext_factor, attn_factor, beta_fast, beta_slow
        int n_ctx_orig
    int llp_rope_ext(float *x, int64_t n_tok, int64_t row_stride, int n_head, int head_dim, int n_dims,
                     const int32_t *pos, float base, int neox, const llp_rope_scaling *s)
    int llp_get_rows(int type, const void *W, size_t w_stride, int64_t cols, const int32_t *ids, int64_t n,
                     float *out)
    float llp_gelu_tanh(float x)
    void llp_geglu(const float *g, const float *u, float *out, int64_t n)
    void llp_softcap(float *x, float cap, int64_t n)
    void llp_add(float *x, const float *y, int64_t n)
    void llp_add_rows(float *x, const float *b, int64_t n, int64_t n_rows)
    void llp_scale(float *x, float s, int64_t n)
    void llp_f32_to_f16_row(const float *src, llp_fp16 *dst, int64_t n)
    size_t llp_kv_row_size(int type, int64_t n)
    void llp_fwht(float *x, int64_t n_chunks, int n)
    int llp_kv_store(int type, const float *src, void *dst, int64_t n)
    ctypedef struct llp_kv:
        const void *k
        const void *v
        int k_type, v_type
        size_t k_row, v_row
        llp_vec_dot_fn q8_dot
        const llp_kernels *kern
    size_t llp_attention_work_size(int64_t n_ctx, int head_dim)
    int llp_attention(const float *q, int64_t q_stride, const llp_kv *kv, float *out, int64_t out_stride,
                      int64_t n_tok, const int32_t *pos, const int64_t *row0, int n_head, int n_kv_head,
                      int head_dim, float scale, int64_t n_swa, int64_t n_ctx, float *work, int n_threads)

# KV cache types (ggml type ids): K f32 / f16 / q8_0, V f32 / f16 (a quantized V needs flash attention in
# llama.cpp; llamapy.model.llama.kv_cache_type gives the user-facing refusal).
KV_CACHE_TYPES = {"f32": 0, "f16": 1, "q8_0": 8}
KV_V_TYPES = ("f32", "f16")


def kv_type_id(t, str which="K"):
    """A cache type name ('f16') or ggml type id (1) -> the id; ValueError for what the cache cannot hold."""
    ok = KV_CACHE_TYPES if which == "K" else {k: KV_CACHE_TYPES[k] for k in KV_V_TYPES}
    if t in ok:
        return ok[t]
    if not isinstance(t, str) and t in ok.values():
        return int(t)
    raise ValueError(f"unsupported {which} cache type {t!r} (supported: {', '.join(ok)})")


cdef struct llp_matrix:         # one weight matrix in the mmap: rows x cols of `type`, `stride` bytes per row
    const void *data
    int type
    int64_t rows, cols
    size_t stride

cdef struct llp_layer:          # one transformer block
    const float *attn_norm      # [n_embd]
    llp_matrix wq               # [n_head * head_dim, n_embd]
    llp_matrix wk               # [n_kv_head * head_dim, n_embd]
    llp_matrix wv               # [n_kv_head * head_dim, n_embd]
    llp_matrix wo               # [n_embd, n_head * head_dim]
    const float *ffn_norm       # [n_embd]
    llp_matrix w_gate           # [n_ff, n_embd]
    llp_matrix w_up             # [n_ff, n_embd]
    llp_matrix w_down           # [n_embd, n_ff]
    # optional biases (NULL: none), added to the projections' outputs (qwen2 has bq, bk, bv)
    const float *bq             # [n_head * head_dim]
    const float *bk             # [n_kv_head * head_dim]
    const float *bv             # [n_kv_head * head_dim]
    const float *bo             # [n_embd]
    # gemma3 only (NULL / 0 otherwise)
    const float *q_norm         # [head_dim] RMSNorm weight of every query head
    const float *k_norm         # [head_dim] RMSNorm weight of every key head
    const float *post_attn_norm # [n_embd] on the attention output, before the residual add
    const float *post_ffw_norm  # [n_embd] on the FFN output, before the residual add
    float rope_base             # this layer's RoPE base
    int64_t n_swa               # sliding-window size (0: attends to the whole context)


cdef inline int _mm(const llp_kernels *k, const llp_matrix *W, const float *X, int64_t n, float *Y,
                    int64_t y_stride, void *work, int n_threads) noexcept nogil:
    """Y[t, :] = W @ X[t, :] for t < n (X rows W.cols floats apart, Y rows y_stride floats apart)."""
    return llp_matmul(k, W.type, W.data, W.rows, W.cols, W.stride, X, n, Y, y_stride, work, n_threads)


cdef inline llp_product _product(const llp_matrix *W, float *Y, int64_t y_stride) noexcept nogil:
    cdef llp_product p
    p.type, p.W, p.rows, p.w_stride, p.Y, p.y_stride = W.type, W.data, W.rows, W.stride, Y, y_stride
    return p


cdef inline int _mm_qkv(const llp_kernels *k, const llp_layer *L, const float *X, int64_t n, float *q, int64_t dq,
                        float *kk, float *v, int64_t dkv, void *work, int n_threads) noexcept nogil:
    """q, k, v = X Wq^T, X Wk^T, X Wv^T in one call (one fork and one quantization of X for the three)."""
    cdef llp_product p[3]
    p[0], p[1], p[2] = _product(&L.wq, q, dq), _product(&L.wk, kk, dkv), _product(&L.wv, v, dkv)
    return llp_matmul_group(k, p, 3, L.wq.cols, X, n, work, n_threads)


cdef inline int _mm_gate_up(const llp_kernels *k, const llp_layer *L, const float *X, int64_t n, float *g, float *u,
                            int64_t ff, void *work, int n_threads) noexcept nogil:
    """g, u = X Wgate^T, X Wup^T in one call."""
    cdef llp_product p[2]
    p[0], p[1] = _product(&L.w_gate, g, ff), _product(&L.w_up, u, ff)
    return llp_matmul_group(k, p, 2, L.w_gate.cols, X, n, work, n_threads)


cdef llp_matrix _matrix(spec, int64_t rows, int64_t cols, str what) except *:
    """spec = (address, ggml type, rows, cols, row stride in bytes) -> llp_matrix, shape-checked."""
    cdef llp_matrix m
    addr, t, r, c, stride = spec
    if r != rows or c != cols:
        raise ValueError(f"{what}: expected {rows} x {cols}, got {r} x {c}")
    _info(t)
    m.data = <const void *><size_t>addr
    m.type = t
    m.rows, m.cols, m.stride = r, c, stride
    return m


cdef class LlamaForward:
    """State of one llama-architecture model: weight addresses, KV cache and activation buffers.

    Built by llamapy.model.llama.Model, which keeps the arrays the addresses point into alive.
    """
    cdef readonly int n_layer, n_embd, n_head, n_kv_head, head_dim, n_ff, n_vocab, n_ctx, n_batch, max_threads
    cdef readonly int rope_dims, rope_neox
    cdef readonly int type_k, type_v            # KV cache element types (ggml ids: f32 0, f16 1, q8_0 8)
    cdef readonly int k_rot                     # q, k rotated by a Hadamard transform of this size (0: not)
    cdef readonly size_t k_row, v_row           # cache bytes per position and layer
    cdef readonly float eps, rope_base
    cdef llp_rope_scaling rope_scaling   # linear / YaRN RoPE scaling (freq_scale 1, ext_factor 0: none)
    cdef llp_layer *layers
    cdef llp_matrix tok_embd, output
    cdef const float *output_norm
    cdef object _keep            # whatever owns the weight memory (the addresses above point into it)
    # buffers (numpy arrays kept here, raw pointers cached below)
    cdef readonly object x_arr, xb_arr, q_arr, k_arr, v_arr, att_arr, hb_arr, hb2_arr, kcache, vcache
    cdef readonly object pos_arr, row0_arr, work_arr, attn_work_arr
    cdef readonly int n_seq      # sequences with a cache of their own (n_ctx positions each; llamapy-server's slots)
    cdef float *x                # [n_batch, n_embd] residual stream
    cdef float *xb               # [n_batch, n_embd] normed input / projection output
    cdef float *q                # [n_batch, n_head * head_dim]
    cdef float *k                # [n_batch, n_kv_head * head_dim]
    cdef float *v                # [n_batch, n_kv_head * head_dim]
    cdef float *att              # [n_batch, n_head * head_dim] attention output (heads concatenated)
    cdef float *hb               # [n_batch, n_ff] gate, then silu(gate) * up
    cdef float *hb2              # [n_batch, n_ff] up
    cdef uint8_t *kc             # [n_layer, n_seq * n_ctx, k_row bytes] K cache (n_kv_head * head_dim of type_k)
    cdef uint8_t *vc             # [n_layer, n_seq * n_ctx, v_row bytes] V cache (n_kv_head * head_dim of type_v)
    cdef int32_t *pos            # [n_batch] positions of the batch's tokens in their sequences
    cdef int64_t *row0           # [n_batch] cache row of position 0 of each token's sequence
    cdef void *work              # quantized activations for the matmuls
    cdef float *attn_work        # [max_threads, llp_attention_work_size(n_ctx, head_dim)]

    def __cinit__(self):
        self.layers = NULL

    def __dealloc__(self):
        free(self.layers)

    def __init__(self, dict cfg, list layers, tok_embd, output_norm, output, int n_ctx, int n_batch,
                 int max_threads, keep=None, type_k="f16", type_v="f16", int n_seq=1):
        """cfg: n_layer, n_embd, n_head, n_kv_head, head_dim, n_ff, n_vocab, rms_eps, rope_base, rope_dims,
        rope_neox; optionally rope_freq_scale (1 / factor), rope_ext_factor (YaRN: 1; 0: linear scaling only),
        rope_attn_factor, rope_beta_fast, rope_beta_slow, rope_n_ctx_orig (see ops.h llp_rope_scaling).
        layers: one dict per layer of name -> matrix spec (address, type, rows, cols, stride),
        norms as addresses of float32 vectors, optional biases bq, bk, bv, bo likewise (0 / absent: none).
        tok_embd / output: matrix specs; output_norm: an address.
        keep: the owner of that memory, held for as long as this object lives.
        type_k, type_v: KV cache types, names or ggml ids (K: f32, f16, q8_0; V: f32, f16).
        n_seq: independent sequences the cache holds (see forward's `seqs`), n_ctx positions each."""
        import numpy as np
        cdef int l
        self._keep = keep
        self.n_layer, self.n_embd, self.n_head = cfg["n_layer"], cfg["n_embd"], cfg["n_head"]
        self.n_kv_head, self.head_dim, self.n_ff = cfg["n_kv_head"], cfg["head_dim"], cfg["n_ff"]
        self.n_vocab, self.eps, self.rope_base = cfg["n_vocab"], cfg["rms_eps"], cfg["rope_base"]
        self.rope_dims, self.rope_neox = cfg["rope_dims"], cfg["rope_neox"]
        self.rope_scaling.freq_scale = cfg.get("rope_freq_scale", 1.0)
        self.rope_scaling.ext_factor = cfg.get("rope_ext_factor", 0.0)
        self.rope_scaling.attn_factor = cfg.get("rope_attn_factor", 1.0)
        self.rope_scaling.beta_fast = cfg.get("rope_beta_fast", 32.0)
        self.rope_scaling.beta_slow = cfg.get("rope_beta_slow", 1.0)
        self.rope_scaling.n_ctx_orig = cfg.get("rope_n_ctx_orig", 0)
        if not self.rope_scaling.freq_scale > 0 or (self.rope_scaling.ext_factor != 0
                                                     and self.rope_scaling.n_ctx_orig <= 0):
            raise ValueError("bad RoPE scaling parameters")
        if n_ctx < 1 or n_batch < 1 or max_threads < 1 or n_seq < 1:
            raise ValueError("n_ctx, n_batch, max_threads and n_seq must be positive")
        self.n_seq = n_seq
        if self.n_head % self.n_kv_head or len(layers) != self.n_layer:
            raise ValueError("inconsistent head counts or layer list")
        if self.rope_dims % 2 or self.rope_dims > self.head_dim or self.rope_dims > 1024:
            raise ValueError(f"rope over {self.rope_dims} dims is not supported (head_dim {self.head_dim})")
        self.n_ctx, self.n_batch, self.max_threads = n_ctx, min(n_batch, n_ctx), max_threads
        cdef int d = self.n_embd, dq = self.n_head * self.head_dim, dkv = self.n_kv_head * self.head_dim
        self.type_k, self.type_v = kv_type_id(type_k, "K"), kv_type_id(type_v, "V")
        if llp_kv_row_size(self.type_k, self.head_dim) == 0:
            raise ValueError(f"K cache type {type_k!r} needs head_dim to be a multiple of 32 (got {self.head_dim})")
        self.k_row, self.v_row = llp_kv_row_size(self.type_k, dkv), llp_kv_row_size(self.type_v, dkv)
        # llama.cpp rotates q and k ahead of a quantized K cache when head_dim is a multiple of 64, by the
        # largest power of two dividing head_dim; q . k is unchanged, but K's q8_0 blocks lose less
        self.k_rot = 0
        if self.type_k == LLP_Q8_0 and self.head_dim % 64 == 0:
            self.k_rot = 64
            while self.head_dim % (2 * self.k_rot) == 0:
                self.k_rot *= 2
        cdef int ff = self.n_ff, nb = self.n_batch

        self.layers = <llp_layer *>calloc(self.n_layer, sizeof(llp_layer))
        if self.layers == NULL:
            raise MemoryError()
        work = 0
        for l in range(self.n_layer):
            L = layers[l]
            self.layers[l].attn_norm = <const float *><size_t>L["attn_norm"]
            self.layers[l].ffn_norm = <const float *><size_t>L["ffn_norm"]
            self.layers[l].wq = _matrix(L["wq"], dq, d, f"layer {l} wq")
            self.layers[l].wk = _matrix(L["wk"], dkv, d, f"layer {l} wk")
            self.layers[l].wv = _matrix(L["wv"], dkv, d, f"layer {l} wv")
            self.layers[l].wo = _matrix(L["wo"], d, dq, f"layer {l} wo")
            self.layers[l].w_gate = _matrix(L["w_gate"], ff, d, f"layer {l} w_gate")
            self.layers[l].w_up = _matrix(L["w_up"], ff, d, f"layer {l} w_up")
            self.layers[l].w_down = _matrix(L["w_down"], d, ff, f"layer {l} w_down")
            self.layers[l].bq = <const float *><size_t>(L.get("bq") or 0)
            self.layers[l].bk = <const float *><size_t>(L.get("bk") or 0)
            self.layers[l].bv = <const float *><size_t>(L.get("bv") or 0)
            self.layers[l].bo = <const float *><size_t>(L.get("bo") or 0)
            self.layers[l].rope_base = self.rope_base
            self.layers[l].n_swa = 0
            for name in ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down"):
                t, cols = L[name][1], L[name][3]
                work = max(work, llp_matmul_work_size(t, cols, nb))
        self.tok_embd = _matrix(tok_embd, self.n_vocab, d, "token_embd")
        self.output = _matrix(output, self.n_vocab, d, "output")
        self.output_norm = <const float *><size_t>output_norm
        work = max(work, llp_matmul_work_size(output[1], d, nb))

        f32 = np.float32
        self.x_arr = np.zeros((nb, d), f32)
        self.xb_arr = np.zeros((nb, d), f32)
        self.q_arr = np.zeros((nb, dq), f32)
        self.k_arr = np.zeros((nb, dkv), f32)
        self.v_arr = np.zeros((nb, dkv), f32)
        self.att_arr = np.zeros((nb, dq), f32)
        self.hb_arr = np.zeros((nb, ff), f32)
        self.hb2_arr = np.zeros((nb, ff), f32)
        self.kcache = np.zeros((self.n_layer, n_seq * n_ctx, self.k_row), np.uint8)
        self.vcache = np.zeros((self.n_layer, n_seq * n_ctx, self.v_row), np.uint8)
        self.pos_arr = np.zeros(nb, np.int32)
        self.row0_arr = np.zeros(nb, np.int64)
        self.work_arr = np.zeros(max(work, 64), np.uint8)
        self.attn_work_arr = np.zeros(max_threads * llp_attention_work_size(n_ctx, self.head_dim), f32)
        self.x = <float *><size_t>self.x_arr.ctypes.data
        self.xb = <float *><size_t>self.xb_arr.ctypes.data
        self.q = <float *><size_t>self.q_arr.ctypes.data
        self.k = <float *><size_t>self.k_arr.ctypes.data
        self.v = <float *><size_t>self.v_arr.ctypes.data
        self.att = <float *><size_t>self.att_arr.ctypes.data
        self.hb = <float *><size_t>self.hb_arr.ctypes.data
        self.hb2 = <float *><size_t>self.hb2_arr.ctypes.data
        self.kc = <uint8_t *><size_t>self.kcache.ctypes.data
        self.vc = <uint8_t *><size_t>self.vcache.ctypes.data
        self.pos = <int32_t *><size_t>self.pos_arr.ctypes.data
        self.row0 = <int64_t *><size_t>self.row0_arr.ctypes.data
        self.work = <void *><size_t>self.work_arr.ctypes.data
        self.attn_work = <float *><size_t>self.attn_work_arr.ctypes.data

    cdef int _attend(self, const llp_kernels *kern, int l, int64_t n, float scale, int64_t n_swa,
                     int n_threads) noexcept nogil:
        """Layer l: K cache[pos], V cache[pos] = k, v (in the cache types); then
        att = softmax(q K^T * scale + causal / sliding-window mask) V, per head (GQA: K/V head = h / group)."""
        cdef int dq = self.n_head * self.head_dim, dkv = self.n_kv_head * self.head_dim, rc = 0
        cdef llp_kv kv
        cdef int64_t t, row
        kv.k = self.kc + <size_t>l * self.n_seq * self.n_ctx * self.k_row
        kv.v = self.vc + <size_t>l * self.n_seq * self.n_ctx * self.v_row
        kv.k_type, kv.v_type, kv.k_row, kv.v_row = self.type_k, self.type_v, self.k_row, self.v_row
        kv.q8_dot = kern.vec_dot[LLP_Q8_0]
        kv.kern = kern
        if self.k_rot:
            llp_fwht(self.q, n * dq // self.k_rot, self.k_rot)
            llp_fwht(self.k, n * dkv // self.k_rot, self.k_rot)
        for t in range(n):
            row = self.row0[t] + self.pos[t]
            rc |= llp_kv_store(self.type_k, self.k + t * dkv, <uint8_t *>kv.k + row * self.k_row, dkv)
            rc |= llp_kv_store(self.type_v, self.v + t * dkv, <uint8_t *>kv.v + row * self.v_row, dkv)
        rc |= llp_attention(self.q, dq, &kv, self.att, dq, n, self.pos, self.row0, self.n_head, self.n_kv_head,
                            self.head_dim, scale, n_swa, self.n_ctx, self.attn_work, n_threads)
        return rc

    def forward(self, const int32_t[::1] tokens not None, int pos0, float[:, ::1] logits not None,
                bint all_logits=False, int n_threads=1, isa=None, seqs=None, positions=None):
        """Run tokens (at positions pos0, pos0 + 1, ...) through the model, filling the KV cache.

        logits: (len(tokens), n_vocab) when all_logits, else (1, n_vocab) for the last token.
        At most n_batch tokens per call (the driver splits longer inputs).
        seqs, positions (int32, one per token): tokens of several sequences in one batch instead (pos0
        unused), token t at position positions[t] of sequence seqs[t]; the weights are read once for all.
        """
        cdef const llp_kernels *kern = _table(isa)
        cdef int64_t n = tokens.shape[0], i
        cdef int l, rc = 0
        self._check(tokens, pos0, logits, all_logits, n_threads, seqs, positions)

        cdef int d = self.n_embd, dq = self.n_head * self.head_dim, dkv = self.n_kv_head * self.head_dim
        cdef int ff = self.n_ff, hd = self.head_dim
        cdef float eps = self.eps, scale = 1.0 / sqrtf(<float>self.head_dim)
        cdef const llp_layer *L
        cdef float *x = self.x
        cdef float *xb = self.xb
        cdef int64_t nf = n           # rows that go on through the FFN (narrowed in the last layer)
        cdef int64_t n_out = n if all_logits else 1
        with nogil:
            # x = token_embd[tokens]
            rc |= llp_get_rows(self.tok_embd.type, self.tok_embd.data, self.tok_embd.stride, d, &tokens[0], n, x)
            for l in range(self.n_layer):
                L = &self.layers[l]
                # xb = rmsnorm(x) * attn_norm
                llp_rmsnorm(x, L.attn_norm, xb, d, n, eps)
                # q, k, v = xb Wq^T, xb Wk^T, xb Wv^T
                rc |= _mm_qkv(kern, L, xb, n, self.q, dq, self.k, self.v, dkv, self.work, n_threads)
                if L.bq != NULL:
                    llp_add_rows(self.q, L.bq, dq, n)
                if L.bk != NULL:
                    llp_add_rows(self.k, L.bk, dkv, n)
                if L.bv != NULL:
                    llp_add_rows(self.v, L.bv, dkv, n)
                # q, k = rope(q, pos), rope(k, pos) (with the model's RoPE scaling, if any)
                rc |= llp_rope_ext(self.q, n, dq, self.n_head, hd, self.rope_dims, self.pos, self.rope_base,
                                   self.rope_neox, &self.rope_scaling)
                rc |= llp_rope_ext(self.k, n, dkv, self.n_kv_head, hd, self.rope_dims, self.pos, self.rope_base,
                                   self.rope_neox, &self.rope_scaling)
                # cache k, v; att = softmax(q K^T / sqrt(head_dim) + causal mask) V
                rc |= self._attend(kern, l, n, scale, 0, n_threads)
                # last layer: only the rows whose logits are wanted go on
                if l == self.n_layer - 1 and not all_logits:
                    x = self.x + (n - 1) * d
                    nf = 1
                    for i in range(dq):
                        self.att[i] = self.att[(n - 1) * dq + i]
                # x += att Wo^T (+ bo)
                rc |= _mm(kern, &L.wo, self.att, nf, xb, d, self.work, n_threads)
                if L.bo != NULL:
                    llp_add_rows(xb, L.bo, d, nf)
                llp_add(x, xb, nf * d)
                # xb = rmsnorm(x) * ffn_norm
                llp_rmsnorm(x, L.ffn_norm, xb, d, nf, eps)
                # hb = silu(xb Wgate^T) * (xb Wup^T)
                rc |= _mm_gate_up(kern, L, xb, nf, self.hb, self.hb2, ff, self.work, n_threads)
                kern.swiglu(self.hb, self.hb2, self.hb, nf * ff)
                # x += hb Wdown^T
                rc |= _mm(kern, &L.w_down, self.hb, nf, xb, d, self.work, n_threads)
                llp_add(x, xb, nf * d)
            # logits = (rmsnorm(x) * output_norm) Wout^T
            llp_rmsnorm(x, self.output_norm, xb, d, n_out, eps)
            rc |= _mm(kern, &self.output, xb, n_out, &logits[0, 0], self.n_vocab, self.work, n_threads)
        if rc:
            raise RuntimeError("a kernel failed in the forward pass (unsupported weight type?)")

    cdef _check(self, const int32_t[::1] tokens, int pos0, float[:, ::1] logits, bint all_logits, int n_threads,
                seqs, positions):
        """Validate a forward call's arguments; fill self.pos and self.row0 with each token's position and
        cache row of its sequence's position 0."""
        import numpy as np
        cdef int64_t n = tokens.shape[0], t
        if n < 1 or n > self.n_batch:
            raise ValueError(f"need 1 to {self.n_batch} tokens per call, got {n}")
        if logits.shape[0] != (n if all_logits else 1) or logits.shape[1] != self.n_vocab:
            raise ValueError("logits buffer has the wrong shape")
        if n_threads < 1 or n_threads > self.max_threads:
            raise ValueError(f"n_threads must be 1..{self.max_threads}")
        for t in range(n):
            if tokens[t] < 0 or tokens[t] >= self.n_vocab:
                raise ValueError(f"token id {tokens[t]} is out of range (vocabulary of {self.n_vocab})")
        if seqs is None and positions is None:
            if pos0 < 0 or pos0 + n > self.n_ctx:
                raise ValueError(f"positions {pos0}..{pos0 + n - 1} do not fit the context of {self.n_ctx}")
            for t in range(n):
                self.pos[t], self.row0[t] = pos0 + t, 0
            return
        s, p = np.asarray(seqs, np.int64).reshape(-1), np.asarray(positions, np.int64).reshape(-1)
        if len(s) != n or len(p) != n:
            raise ValueError("seqs and positions need one entry per token")
        if (s < 0).any() or (s >= self.n_seq).any():
            raise ValueError(f"sequence ids must be 0..{self.n_seq - 1}")
        if (p < 0).any() or (p >= self.n_ctx).any():
            raise ValueError(f"positions must be 0..{self.n_ctx - 1}")
        if len(set(zip(s.tolist(), p.tolist()))) != n:
            raise ValueError("two tokens at the same position of one sequence")
        for t in range(n):
            self.pos[t], self.row0[t] = p[t], s[t] * self.n_ctx


cdef class Gemma3Forward(LlamaForward):
    """Gemma 3: the llama block plus an embedding scale, per-head RMSNorm of q and k before RoPE, RMSNorms on
    the attention and FFN outputs before their residual adds, GEGLU, a RoPE base and a sliding window per
    layer, a query scale, and optional final-logit soft-capping. (GGUF norm weights already hold 1 + w.)"""
    cdef readonly float embd_scale, attn_scale, final_softcap

    def __init__(self, dict cfg, list layers, tok_embd, output_norm, output, int n_ctx, int n_batch,
                 int max_threads, keep=None, type_k="f16", type_v="f16", int n_seq=1):
        """As LlamaForward, plus cfg: embd_scale (x = embedding * embd_scale), attn_scale (q is multiplied by
        it before Q.K), final_softcap (0: none); and per layer: q_norm, k_norm, post_attn_norm,
        post_ffw_norm (addresses of float32 vectors), rope_base, n_swa (0: global attention)."""
        LlamaForward.__init__(self, cfg, layers, tok_embd, output_norm, output, n_ctx, n_batch, max_threads, keep,
                              type_k, type_v, n_seq)
        cdef int l
        self.embd_scale, self.attn_scale = cfg["embd_scale"], cfg["attn_scale"]
        self.final_softcap = cfg.get("final_softcap", 0.0)
        for l in range(self.n_layer):
            L = layers[l]
            for name in ("q_norm", "k_norm", "post_attn_norm", "post_ffw_norm"):
                if not L.get(name):
                    raise ValueError(f"layer {l}: {name} is missing")
            self.layers[l].q_norm = <const float *><size_t>L["q_norm"]
            self.layers[l].k_norm = <const float *><size_t>L["k_norm"]
            self.layers[l].post_attn_norm = <const float *><size_t>L["post_attn_norm"]
            self.layers[l].post_ffw_norm = <const float *><size_t>L["post_ffw_norm"]
            self.layers[l].rope_base = L["rope_base"]
            self.layers[l].n_swa = L["n_swa"]
            if self.layers[l].n_swa < 0:
                raise ValueError(f"layer {l}: negative sliding window")

    def forward(self, const int32_t[::1] tokens not None, int pos0, float[:, ::1] logits not None,
                bint all_logits=False, int n_threads=1, isa=None, seqs=None, positions=None):
        """As LlamaForward.forward."""
        cdef const llp_kernels *kern = _table(isa)
        cdef int64_t n = tokens.shape[0], i
        cdef int l, rc = 0
        self._check(tokens, pos0, logits, all_logits, n_threads, seqs, positions)

        cdef int d = self.n_embd, dq = self.n_head * self.head_dim, dkv = self.n_kv_head * self.head_dim
        cdef int ff = self.n_ff, hd = self.head_dim
        cdef float eps = self.eps
        cdef const llp_layer *L
        cdef float *x = self.x
        cdef float *xb = self.xb
        cdef int64_t nf = n           # rows that go on through the FFN (narrowed in the last layer)
        cdef int64_t n_out = n if all_logits else 1
        with nogil:
            # x = token_embd[tokens] * sqrt(n_embd)
            rc |= llp_get_rows(self.tok_embd.type, self.tok_embd.data, self.tok_embd.stride, d, &tokens[0], n, x)
            llp_scale(x, self.embd_scale, n * d)
            for l in range(self.n_layer):
                L = &self.layers[l]
                # xb = rmsnorm(x) * attn_norm
                llp_rmsnorm(x, L.attn_norm, xb, d, n, eps)
                # q, k, v = xb Wq^T, xb Wk^T, xb Wv^T
                rc |= _mm_qkv(kern, L, xb, n, self.q, dq, self.k, self.v, dkv, self.work, n_threads)
                # q, k = rmsnorm per head (q_norm, k_norm), then rope with this layer's base
                llp_rmsnorm(self.q, L.q_norm, self.q, hd, n * self.n_head, eps)
                llp_rmsnorm(self.k, L.k_norm, self.k, hd, n * self.n_kv_head, eps)
                rc |= llp_rope(self.q, n, dq, self.n_head, hd, self.rope_dims, self.pos, L.rope_base, self.rope_neox)
                rc |= llp_rope(self.k, n, dkv, self.n_kv_head, hd, self.rope_dims, self.pos, L.rope_base, self.rope_neox)
                llp_scale(self.q, self.attn_scale, n * dq)
                # cache k, v; att = softmax(q K^T + causal / sliding-window mask) V (q already scaled)
                rc |= self._attend(kern, l, n, 1.0, L.n_swa, n_threads)
                # last layer: only the rows whose logits are wanted go on
                if l == self.n_layer - 1 and not all_logits:
                    x = self.x + (n - 1) * d
                    nf = 1
                    for i in range(dq):
                        self.att[i] = self.att[(n - 1) * dq + i]
                # x += rmsnorm(att Wo^T) * post_attn_norm
                rc |= _mm(kern, &L.wo, self.att, nf, xb, d, self.work, n_threads)
                llp_rmsnorm(xb, L.post_attn_norm, xb, d, nf, eps)
                llp_add(x, xb, nf * d)
                # xb = rmsnorm(x) * ffn_norm
                llp_rmsnorm(x, L.ffn_norm, xb, d, nf, eps)
                # hb = gelu(xb Wgate^T) * (xb Wup^T)
                rc |= _mm_gate_up(kern, L, xb, nf, self.hb, self.hb2, ff, self.work, n_threads)
                llp_geglu(self.hb, self.hb2, self.hb, nf * ff)
                # x += rmsnorm(hb Wdown^T) * post_ffw_norm
                rc |= _mm(kern, &L.w_down, self.hb, nf, xb, d, self.work, n_threads)
                llp_rmsnorm(xb, L.post_ffw_norm, xb, d, nf, eps)
                llp_add(x, xb, nf * d)
            # logits = (rmsnorm(x) * output_norm) Wout^T, soft-capped if the model says so
            llp_rmsnorm(x, self.output_norm, xb, d, n_out, eps)
            rc |= _mm(kern, &self.output, xb, n_out, &logits[0, 0], self.n_vocab, self.work, n_threads)
            if self.final_softcap > 0:
                llp_softcap(&logits[0, 0], self.final_softcap, n_out * self.n_vocab)
        if rc:
            raise RuntimeError("a kernel failed in the forward pass (unsupported weight type?)")


# ---- single ops, for tests and experiments (the forward pass calls the C functions directly) ----

def op_rmsnorm(const float[:, ::1] x not None, const float[::1] w not None, float eps):
    """rmsnorm(x) * w, row by row: a new (rows, n) float32 array."""
    import numpy as np
    if w.shape[0] != x.shape[1]:
        raise ValueError("weight length must match the row length")
    out = np.empty((x.shape[0], x.shape[1]), np.float32)
    cdef float[:, ::1] y = out
    if x.shape[0] and x.shape[1]:
        with nogil:
            llp_rmsnorm(&x[0, 0], &w[0], &y[0, 0], x.shape[1], x.shape[0], eps)
    return out


def op_rope(float[:, ::1] x not None, const int32_t[::1] pos not None, int n_head, int head_dim, int n_dims,
            float base, bint neox):
    """Rotate x (n_tok, n_head * head_dim) in place, token t at position pos[t]."""
    cdef int rc = 0
    if pos.shape[0] != x.shape[0] or x.shape[1] != n_head * head_dim:
        raise ValueError("inconsistent rope arguments")
    if x.shape[0]:
        with nogil:
            rc = llp_rope(&x[0, 0], x.shape[0], x.shape[1], n_head, head_dim, n_dims, &pos[0], base, neox)
    if rc:
        raise ValueError(f"cannot rotate {n_dims} dims of heads of {head_dim}")


def op_rope_ext(float[:, ::1] x not None, const int32_t[::1] pos not None, int n_head, int head_dim, int n_dims,
                float base, bint neox, float freq_scale=1.0, float ext_factor=0.0, float attn_factor=1.0,
                float beta_fast=32.0, float beta_slow=1.0, int n_ctx_orig=0):
    """op_rope with llama.cpp's linear / YaRN scaling parameters (see ops.h llp_rope_scaling)."""
    cdef int rc = 0
    cdef llp_rope_scaling sc
    sc.freq_scale, sc.ext_factor, sc.attn_factor = freq_scale, ext_factor, attn_factor
    sc.beta_fast, sc.beta_slow, sc.n_ctx_orig = beta_fast, beta_slow, n_ctx_orig
    if pos.shape[0] != x.shape[0] or x.shape[1] != n_head * head_dim:
        raise ValueError("inconsistent rope arguments")
    if x.shape[0]:
        with nogil:
            rc = llp_rope_ext(&x[0, 0], x.shape[0], x.shape[1], n_head, head_dim, n_dims, &pos[0], base, neox, &sc)
    if rc:
        raise ValueError(f"cannot rotate {n_dims} dims of heads of {head_dim}")


def op_fwht(float[:, ::1] x not None, int n):
    """In place: x = H x / sqrt(n) on each n-element chunk of every row (llama.cpp's rotation of q and k ahead
    of a quantized K cache; applied twice it gives x back). n: a power of two dividing the row length."""
    if n < 1 or n & (n - 1) or x.shape[1] % n:
        raise ValueError(f"cannot rotate rows of {x.shape[1]} in chunks of {n}")
    if x.shape[0]:
        with nogil:
            llp_fwht(&x[0, 0], x.shape[0] * x.shape[1] // n, n)


def op_swiglu(const float[::1] g not None, const float[::1] u not None, isa=None):
    """silu(g) * u as a new float32 array (llama.cpp's exp, see llp_ggml_expf), with the kernel of `isa`."""
    cdef const llp_kernels *k = _table(isa)
    import numpy as np
    if g.shape[0] != u.shape[0]:
        raise ValueError("g and u differ in length")
    out = np.empty(g.shape[0], np.float32)
    cdef float[::1] y = out
    if g.shape[0]:
        with nogil:
            k.swiglu(&g[0], &u[0], &y[0], g.shape[0])
    return out


def op_geglu(const float[::1] g not None, const float[::1] u not None):
    """gelu(g) * u (ggml's f16-table GELU) as a new float32 array."""
    import numpy as np
    if g.shape[0] != u.shape[0]:
        raise ValueError("g and u differ in length")
    out = np.empty(g.shape[0], np.float32)
    cdef float[::1] y = out
    if g.shape[0]:
        with nogil:
            llp_geglu(&g[0], &u[0], &y[0], g.shape[0])
    return out


def op_gelu_tanh(float x):
    """The tanh-form GELU in float (what the GEGLU table holds, before rounding to f16)."""
    return llp_gelu_tanh(x)


def op_kv_store(t, const float[::1] x not None):
    """x stored as KV cache type t (name or ggml id): the bytes, as a new uint8 array."""
    import numpy as np
    cdef int tid = kv_type_id(t, "K")
    cdef size_t nbytes = llp_kv_row_size(tid, x.shape[0])
    if nbytes == 0 and x.shape[0]:
        raise ValueError(f"{t}: length {x.shape[0]} is not a whole number of blocks")
    out = np.zeros(nbytes, np.uint8)
    cdef uint8_t[::1] y = out
    if x.shape[0]:
        with nogil:
            llp_kv_store(tid, &x[0], &y[0], x.shape[0])
    return out


def op_attention(const float[:, ::1] q not None, kc not None, vc not None, int pos0, int n_head, int n_kv_head,
                 int head_dim, int n_threads=1, int64_t n_swa=0, type_k="f16", type_v="f16", isa=None):
    """Causal GQA attention of q (n_tok, n_head * head_dim) at positions pos0.. over the caches kc, vc:
    C-contiguous arrays of n_ctx rows, each row n_kv_head * head_dim elements of type_k / type_v (f16 as
    uint16 bits, f32 as float32, q8_0 as its block bytes, e.g. from op_kv_store). A new (n_tok, n_head *
    head_dim) array. n_swa > 0: each query sees only the last n_swa positions (itself included)."""
    import numpy as np
    cdef int tk = kv_type_id(type_k, "K"), tv = kv_type_id(type_v, "V")
    kb = np.ascontiguousarray(kc).view(np.uint8).reshape(len(kc), -1)
    vb = np.ascontiguousarray(vc).view(np.uint8).reshape(len(vc), -1)
    cdef const uint8_t[:, ::1] kmv = kb
    cdef const uint8_t[:, ::1] vmv = vb
    cdef int64_t n = q.shape[0], n_ctx = kb.shape[0]
    cdef llp_kv kv
    kv.k_type, kv.v_type = tk, tv
    kv.k_row, kv.v_row = llp_kv_row_size(tk, n_kv_head * head_dim), llp_kv_row_size(tv, n_kv_head * head_dim)
    kv.q8_dot = _table(isa).vec_dot[LLP_Q8_0]
    kv.kern = _table(isa)
    if q.shape[1] != n_head * head_dim or kv.k_row == 0 or <size_t>kb.shape[1] != kv.k_row \
            or <size_t>vb.shape[1] != kv.v_row or vb.shape[0] != n_ctx or n_head % n_kv_head or pos0 < 0 \
            or pos0 + n > n_ctx or n_threads < 1 or n_swa < 0 or llp_kv_row_size(tk, head_dim) == 0:
        raise ValueError("inconsistent attention arguments")
    kv.k = &kmv[0, 0]
    kv.v = &vmv[0, 0]
    out = np.empty((n, n_head * head_dim), np.float32)
    work_arr = np.empty(n_threads * llp_attention_work_size(n_ctx, head_dim), np.float32)
    pos_arr = np.arange(pos0, pos0 + n, dtype=np.int32)
    row0_arr = np.zeros(max(n, 1), np.int64)
    cdef const int32_t[::1] pos = pos_arr if n else np.zeros(1, np.int32)
    cdef const int64_t[::1] row0 = row0_arr
    cdef float[:, ::1] y = out
    cdef float[::1] work = work_arr
    cdef float scale = 1.0 / sqrtf(<float>head_dim)
    cdef int rc = 0
    if n:
        with nogil:
            rc = llp_attention(&q[0, 0], q.shape[1], &kv, &y[0, 0], y.shape[1], n, &pos[0], &row0[0], n_head,
                               n_kv_head, head_dim, scale, n_swa, n_ctx, &work[0], n_threads)
    if rc:
        raise ValueError("unsupported cache types")
    return out
