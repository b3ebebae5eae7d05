"""Dump llama.cpp's intermediate tensors for one prompt, to compare llamapy's ops with llama.cpp's one by one.

Run with the peer's interpreter (llama-cpp-python; llamapy is not imported):
    PEER_VENV/bin/python scripts/dump_peer_tensors.py MODEL.gguf OUT.npz ["prompt"] [add_bos 0|1]

Evaluates the prompt in one batch (classic attention, 2 threads; TYPE_K=<ggml type id> in the environment
sets the K cache type) and saves every f32/f16 tensor of the graph that llama.cpp computes, under its graph
name ("attn_norm-0", "Qcur-0", "kq_soft_max-0", ...; repeats get "#1", "#2"), plus "__tokens" and
"__logits". Tensors are saved as ggml lays them out, ne reversed (e.g. (1, 1, n_tokens, n_embd)).
This is how SmolLM2's logits were made bit-identical: feed llama.cpp's input of each op to ours and compare.
"""
import ctypes
import os
import sys

import numpy as np
import llama_cpp as L


class GGMLTensor(ctypes.Structure):
    """struct ggml_tensor (ggml.h) as in llama-cpp-python 0.3.36's vendored ggml."""
    _fields_ = [("type", ctypes.c_int), ("buffer", ctypes.c_void_p), ("ne", ctypes.c_int64 * 4),
                ("nb", ctypes.c_size_t * 4), ("op", ctypes.c_int), ("op_params", ctypes.c_int32 * 16),
                ("flags", ctypes.c_int32), ("src", ctypes.c_void_p * 10), ("view_src", ctypes.c_void_p),
                ("view_offs", ctypes.c_size_t), ("data", ctypes.c_void_p), ("name", ctypes.c_char * 64),
                ("extra", ctypes.c_void_p), ("padding", ctypes.c_char * 8)]


DTYPES = {0: np.float32, 1: np.float16}     # ggml type id -> numpy (other types are skipped)


def main():
    model_path, out = sys.argv[1], sys.argv[2]
    prompt = sys.argv[3] if len(sys.argv) > 3 else "The capital of France is"
    add_bos = len(sys.argv) > 4 and sys.argv[4] == "1"
    store = {}

    def on_tensor(ptr, ask, _user):
        if ask:                                  # "do you want to see this one?": all of them
            return True
        t = ctypes.cast(ptr, ctypes.POINTER(GGMLTensor)).contents
        dtype = DTYPES.get(t.type)
        if dtype is None:
            return True
        ne, nb = list(t.ne), list(t.nb)
        span = sum((ne[i] - 1) * nb[i] for i in range(4)) + np.dtype(dtype).itemsize
        raw = np.frombuffer(bytes((ctypes.c_char * span).from_address(t.data)), dtype=np.uint8)
        arr = np.lib.stride_tricks.as_strided(raw.view(dtype), shape=ne[::-1], strides=nb[::-1])
        name, k = t.name.decode(), 1
        key = name
        while key in store:
            key, k = f"{name}#{k}", k + 1
        store[key] = np.array(arr)
        return True

    callback = L.ggml_backend_sched_eval_callback(on_tensor)
    L.llama_backend_init()
    model = L.llama_model_load_from_file(os.path.expanduser(model_path).encode(), L.llama_model_default_params())
    cp = L.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_threads, cp.n_threads_batch = 512, 512, 2, 2
    cp.cb_eval = callback
    cp.flash_attn_type = 0
    if os.environ.get("TYPE_K"):
        cp.type_k = int(os.environ["TYPE_K"])
    ctx = L.llama_init_from_model(model, cp)
    vocab = L.llama_model_get_vocab(model)
    buf = (L.llama_token * 4096)()
    n = L.llama_tokenize(vocab, prompt.encode(), len(prompt.encode()), buf, 4096, add_bos, True)
    tokens = list(buf[:n])
    batch = L.llama_batch_init(n, 0, 1)
    for i, tok in enumerate(tokens):
        batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = tok, i, 1, 1
        batch.seq_id[i][0] = 0
    batch.n_tokens = n
    if L.llama_decode(ctx, batch) != 0:
        raise SystemExit("llama_decode failed")
    n_vocab = L.llama_vocab_n_tokens(vocab)
    logits = np.ctypeslib.as_array(L.llama_get_logits(ctx), shape=(n * n_vocab,)).reshape(n, n_vocab).copy()
    store["__tokens"], store["__logits"] = np.array(tokens, np.int32), logits
    np.savez(out, **store)
    print(f"{len(store)} arrays -> {out}")


if __name__ == "__main__":
    main()
