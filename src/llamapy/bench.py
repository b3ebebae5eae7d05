"""Prompt-processing and generation throughput, measured as llama-bench measures it. Numbers only.

    tests = expand(BenchParams(models=["model.gguf"], n_prompt=[512], n_gen=[128], n_threads=[2]))
    for result in run_benchmarks(tests, reps=5):
        print(result.label, result.avg_ts, result.stdev_ts)

A test is pp (n_prompt random tokens fed n_batch at a time), tg (n_gen tokens one by one, each waited for)
or pg (both, timed together). Every repetition starts from an empty cache (after `n_depth` untimed tokens
when -d is set) and records the wall time in ns; t/s is (n_prompt + n_gen) / time per sample, averaged over
samples, with the sample (n - 1) standard deviation. Before the samples, a warm-up runs the prompt once and
one generated token. llamapy.cli.cmd_bench renders results as llama-bench's md/csv/json/jsonl/sql.
"""
from __future__ import annotations

import itertools
import math
import os
import platform
import re
import time
from dataclasses import dataclass, field

import numpy as np

# -- what llama.cpp calls a model: "<arch> <size label> <file type>" ----------------------------------

# general.file_type -> llama_ftype_name
FTYPE_NAMES = {
    0: "all F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K - Medium",
    11: "Q3_K - Small", 12: "Q3_K - Medium", 13: "Q3_K - Large", 14: "Q4_K - Small", 15: "Q4_K - Medium",
    16: "Q5_K - Small", 17: "Q5_K - Medium", 18: "Q6_K", 19: "IQ2_XXS - 2.0625 bpw", 20: "IQ2_XS - 2.3125 bpw",
    21: "Q2_K - Small", 22: "IQ3_XS - 3.3 bpw", 23: "IQ3_XXS - 3.0625 bpw", 24: "IQ1_S - 1.5625 bpw",
    25: "IQ4_NL - 4.5 bpw", 26: "IQ3_S - 3.4375 bpw", 27: "IQ3_S mix - 3.66 bpw", 28: "IQ2_S - 2.5 bpw",
    29: "IQ2_M - 2.7 bpw", 30: "IQ4_XS - 4.25 bpw", 31: "IQ1_M - 1.75 bpw", 32: "BF16",
    36: "TQ1_0 - 1.69 bpw ternary", 37: "TQ2_0 - 2.06 bpw ternary", 38: "MXFP4 MoE", 39: "NVFP4",
    40: "Q1_0", 41: "Q2_0",
}
# With no general.file_type, llama.cpp guesses the file type from the most common tensor type.
GUESSED_FTYPE = {"F32": 0, "F16": 1, "BF16": 32, "Q4_0": 2, "Q4_1": 3, "Q5_0": 8, "Q5_1": 9, "Q8_0": 7,
                 "Q2_K": 10, "Q3_K": 12, "Q4_K": 15, "Q5_K": 17, "Q6_K": 18, "TQ1_0": 36, "TQ2_0": 37,
                 "IQ2_XXS": 19, "IQ2_XS": 20, "IQ2_S": 28, "IQ3_XXS": 23, "IQ1_S": 24, "IQ1_M": 31,
                 "IQ4_NL": 25, "IQ4_XS": 30, "IQ3_S": 26}


def size_label(arch: str, n_layer: int, n_embd: int, n_head: int, n_head_kv: int, n_vocab: int) -> str:
    """llama.cpp's model type label (llm_type_name), from its per-architecture layer-count tables; '?B' when
    the architecture or the layer count is not in them. The labels are llama.cpp's, quirks included
    (SmolLM2-135M's 30 layers read as 256M)."""
    if arch == "llama":
        table = {16: "1B", 22: "1B", 26: "3B", 28: "3B", 30: "256M", 36: "8B", 40: "13B", 48: "34B", 60: "30B"}
        if n_layer == 32:
            return "3B" if n_vocab == 49152 else ("7B" if n_vocab < 40000 else "8B")
        if n_layer == 80:
            return "65B" if n_head == n_head_kv else "70B"
        return table.get(n_layer, "?B")
    if arch == "qwen2":
        if n_layer == 24:
            return "0.5B" if n_embd == 1024 else "1B"
        if n_layer == 28:
            return "1.5B" if n_embd == 1536 else "7B"
        if n_layer == 40:
            return "4B" if n_head == 20 else "13B"
        return {32: "7B", 36: "3B", 48: "14B", 64: "32B", 80: "70B"}.get(n_layer, "?B")
    if arch == "gemma3":
        return {18: "270M", 26: "1B", 32: "8B", 34: "4B", 48: "12B", 62: "27B"}.get(n_layer, "?B")
    return "?B"


@dataclass(frozen=True)
class ModelInfo:
    path: str
    desc: str           # llama_model_desc: "llama 256M Q4_1"
    size: int           # bytes of tensor data (llama_model_size)
    n_params: int       # elements of all tensors (llama_model_n_params)


def model_info(reader, cfg) -> ModelInfo:
    from llamapy.gguf.constants import GGMLType
    ftype = reader.get("general.file_type")
    if ftype is not None and int(ftype) in FTYPE_NAMES:
        ftype_name = FTYPE_NAMES[int(ftype)]
    elif ftype is not None:
        ftype_name = "unknown, may not work"
    else:
        counts: dict = {}
        for t in reader.tensors:
            counts[t.type] = counts.get(t.type, 0) + 1
        common = max(counts, key=counts.get) if counts else GGMLType.F32
        guess = GUESSED_FTYPE.get(GGMLType(common).name)
        ftype_name = "(guessed) " + (FTYPE_NAMES[guess] if guess is not None else "unknown, may not work")
    label = size_label(cfg.arch, cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.n_vocab)
    return ModelInfo(str(reader.path), f"{cfg.arch} {label} {ftype_name}",
                     sum(t.n_bytes for t in reader.tensors), sum(t.n_elements for t in reader.tensors))


# -- the tests ---------------------------------------------------------------------------------------

_RANGE = re.compile(r"(\d+)(?:-(\d+)(?:([+*])(\d+))?)?")


def parse_int_range(text: str) -> list[int]:
    """llama-bench's integer lists: `first[-last[(+|*)step]]`, comma-separated (`1,2`, `128-512*2`,
    `1-8+3`). ValueError on anything else or on a step that does not move forward."""
    out = []
    for part in text.split(","):
        m = _RANGE.fullmatch(part)
        if not m:
            raise ValueError(f"invalid range format {text!r}")
        first = int(m.group(1))
        last = int(m.group(2)) if m.group(2) is not None else first
        op = m.group(3) or "+"
        step = int(m.group(4)) if m.group(4) is not None else 1
        i = first
        while i <= last:
            out.append(i)
            nxt = i + step if op == "+" else i * step
            if nxt <= i:
                raise ValueError(f"invalid range {text!r}")
            i = nxt
    return out


@dataclass(frozen=True)
class BenchTest:
    """One test instance: a model, the run parameters, and what to time."""
    model: str
    n_prompt: int
    n_gen: int
    n_depth: int = 0
    n_batch: int = 2048
    n_ubatch: int = 512
    type_k: str = "f16"
    type_v: str = "f16"
    n_threads: int = 1

    @property
    def label(self) -> str:
        """The md table's test column: pp512, tg128, pp512+tg128, plus ` @ d512` with a depth."""
        if self.n_prompt > 0 and self.n_gen == 0:
            s = f"pp{self.n_prompt}"
        elif self.n_gen > 0 and self.n_prompt == 0:
            s = f"tg{self.n_gen}"
        else:
            s = f"pp{self.n_prompt}+tg{self.n_gen}"
        return s + (f" @ d{self.n_depth}" if self.n_depth > 0 else "")

    @property
    def n_ctx(self) -> int:
        return self.n_prompt + self.n_gen + self.n_depth


@dataclass
class BenchParams:
    models: list
    n_prompt: list = field(default_factory=lambda: [512])
    n_gen: list = field(default_factory=lambda: [128])
    n_pg: list = field(default_factory=list)         # (pp, tg) pairs
    n_depth: list = field(default_factory=lambda: [0])
    n_batch: list = field(default_factory=lambda: [2048])
    n_ubatch: list = field(default_factory=lambda: [512])
    type_k: list = field(default_factory=lambda: ["f16"])
    type_v: list = field(default_factory=lambda: ["f16"])
    n_threads: list = field(default_factory=list)


def expand(p: BenchParams) -> list[BenchTest]:
    """Every combination, in llama-bench's order: model, batch, ubatch, K type, V type, threads, depth
    (outer to inner), then the pp tests, the tg tests and the pg pairs."""
    out = []
    for m, nb, nub, tk, tv, nt, nd in itertools.product(p.models, p.n_batch, p.n_ubatch, p.type_k, p.type_v,
                                                        p.n_threads, p.n_depth):
        common = dict(model=m, n_depth=nd, n_batch=nb, n_ubatch=nub, type_k=tk, type_v=tv, n_threads=nt)
        out += [BenchTest(n_prompt=n, n_gen=0, **common) for n in p.n_prompt if n != 0]
        out += [BenchTest(n_prompt=0, n_gen=n, **common) for n in p.n_gen if n != 0]
        out += [BenchTest(n_prompt=pp, n_gen=tg, **common) for pp, tg in p.n_pg if (pp, tg) != (0, 0)]
    return out


@dataclass
class BenchResult:
    spec: BenchTest
    info: ModelInfo
    test_time: str                  # RFC 3339 UTC, when the test started
    samples_ns: list = field(default_factory=list)

    @property
    def samples_ts(self) -> list[float]:
        n = self.spec.n_prompt + self.spec.n_gen
        return [1e9 * n / t for t in self.samples_ns]

    @property
    def avg_ns(self) -> int:
        """Integer mean (truncating), as llama-bench computes it in uint64."""
        return sum(self.samples_ns) // len(self.samples_ns) if self.samples_ns else 0

    @property
    def stdev_ns(self) -> int:
        """Integer sample std: uint64 sums and truncating divisions, then sqrt truncated."""
        v, n = self.samples_ns, len(self.samples_ns)
        if n <= 1:
            return 0
        wrap = 1 << 64
        mean = self.avg_ns
        sq = sum(x * x % wrap for x in v) % wrap
        mm = (mean * mean % wrap) * n % wrap // (n - 1)
        return int(math.sqrt((sq // (n - 1) - mm) % wrap))

    @property
    def avg_ts(self) -> float:
        ts = self.samples_ts
        return sum(ts) / len(ts) if ts else 0.0

    @property
    def stdev_ts(self) -> float:
        ts, n = self.samples_ts, len(self.samples_ts)
        if n <= 1:
            return 0.0
        mean = self.avg_ts
        var = sum(x * x for x in ts) / (n - 1) - mean * mean * n / (n - 1)
        return math.sqrt(var) if var > 0 else 0.0


# -- running them ------------------------------------------------------------------------------------

class _Loaded:
    """One model file parsed once, with a Model (KV cache, buffers) per distinct (ubatch, cache types)."""

    def __init__(self, path: str, n_threads: int):
        from llamapy.gguf import GGUFReader
        from llamapy.model import ModelConfig
        from llamapy.tokenizer import Tokenizer
        self.reader = GGUFReader(path)
        self.cfg = ModelConfig.from_gguf(self.reader)
        self.info = model_info(self.reader, self.cfg)
        tok = Tokenizer.from_gguf(self.reader)
        self.bos = tok.bos_id if tok.add_bos and tok.bos_id is not None else None
        self.n_threads = n_threads
        self.models: dict = {}

    def model(self, spec: BenchTest, n_ctx: int):
        key = (min(spec.n_ubatch, spec.n_batch), spec.type_k, spec.type_v)
        m = self.models.get(key)
        if m is None or m.n_ctx < n_ctx:
            m = self.models[key] = make_model(self.reader, n_ctx, key[0], self.n_threads, spec.type_k, spec.type_v)
        return m


def make_model(reader, n_ctx: int, n_ubatch: int, n_threads: int, type_k: str, type_v: str):
    """A Model for the test (its KV cache of the test's types: ValueError for one it cannot hold)."""
    from llamapy.model import Model
    return Model(reader, n_ctx=n_ctx, n_batch=n_ubatch, n_threads=n_threads, type_k=type_k, type_v=type_v)


def _random_tokens(rng, n: int, n_vocab: int, bos: int | None) -> np.ndarray:
    ids = rng.integers(0, n_vocab, size=n, dtype=np.int32)
    if bos is not None and n > 0:
        ids[0] = bos
    return ids


def _prompt(model, rng, pos: int, n: int, n_batch: int, bos: int | None, threads: int) -> int:
    """n random tokens (BOS first when the vocabulary adds it) fed n_batch at a time; returns the next pos."""
    done = 0
    while done < n:
        k = min(n - done, n_batch)
        ids = _random_tokens(rng, k, model.n_vocab, bos if done == 0 else None)
        model.eval(ids, pos + done, n_threads=threads)
        done += k
    return pos + n


def _generate(model, rng, pos: int, n: int, bos: int | None, threads: int) -> int:
    """n single-token steps; the first token is BOS when the vocabulary adds it, then random ones."""
    token = bos if bos is not None else int(rng.integers(0, model.n_vocab))
    for _ in range(n):
        model.eval(np.array([token], dtype=np.int32), pos, n_threads=threads)
        pos += 1
        token = int(rng.integers(0, model.n_vocab))
    return pos


def run_test(loaded: _Loaded, spec: BenchTest, reps: int, warmup: bool = True, seed: int = 0,
             progress=None) -> BenchResult:
    """Warm up, then `reps` timed samples of one test. progress(message) is called before each phase."""
    note = progress or (lambda _msg: None)
    model = loaded.model(spec, spec.n_ctx)
    rng = np.random.default_rng(seed)
    result = BenchResult(spec, loaded.info, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    t = spec.n_threads
    if warmup:
        pos = 0
        if spec.n_prompt > 0:
            note("warmup prompt run")
            pos = _prompt(model, rng, 0, spec.n_prompt, spec.n_batch, loaded.bos, t)
        if spec.n_gen > 0:
            note("warmup generation run")
            _generate(model, rng, pos, 1, loaded.bos, t)
    for i in range(reps):
        pos = 0
        if spec.n_depth > 0:
            note(f"depth run {i + 1}/{reps}")
            pos = _prompt(model, rng, 0, spec.n_depth, spec.n_batch, loaded.bos, t)
        t0 = time.perf_counter_ns()
        if spec.n_prompt > 0:
            note(f"prompt run {i + 1}/{reps}")
            pos = _prompt(model, rng, pos, spec.n_prompt, spec.n_batch, loaded.bos, t)
        if spec.n_gen > 0:
            note(f"generation run {i + 1}/{reps}")
            _generate(model, rng, pos, spec.n_gen, loaded.bos, t)
        result.samples_ns.append(time.perf_counter_ns() - t0)
    return result


def run_benchmarks(tests: list[BenchTest], reps: int = 5, warmup: bool = True, progress=None):
    """Run the tests in order, yielding each result as it completes. A model is parsed once and kept while
    consecutive tests use it. progress(index, total, message) reports the phases."""
    loaded = None
    max_threads = max((s.n_threads for s in tests), default=1)
    for idx, spec in enumerate(tests, 1):
        if loaded is None or loaded.info.path != str(spec.model):
            loaded = _Loaded(spec.model, max_threads)
        note = (lambda msg, idx=idx: progress(idx, len(tests), msg)) if progress else None
        if note:
            note("starting")
        yield run_test(loaded, spec, reps, warmup, seed=idx, progress=note)


# -- the record llama-bench prints -------------------------------------------------------------------

FIELDS = ["build_commit", "build_number", "cpu_info", "gpu_info", "backends", "model_filename", "model_type",
          "model_size", "model_n_params", "n_batch", "n_ubatch", "n_threads", "cpu_mask", "cpu_strict", "poll",
          "type_k", "type_v", "n_gpu_layers", "n_cpu_moe", "split_mode", "main_gpu", "no_kv_offload", "flash_attn",
          "devices", "tensor_split", "tensor_buft_overrides", "load_mode", "lazy_mode", "embeddings",
          "no_op_offload", "no_host", "repack", "fit_target", "fit_min_ctx", "n_prompt", "n_gen", "n_depth",
          "test_time", "avg_ns", "stddev_ns", "avg_ts", "stddev_ts"]
INT_FIELDS = {"build_number", "n_batch", "n_ubatch", "n_threads", "poll", "model_size", "model_n_params",
              "n_gpu_layers", "main_gpu", "n_prompt", "n_gen", "n_depth", "avg_ns", "stddev_ns", "no_op_offload",
              "n_cpu_moe", "fit_target", "fit_min_ctx", "flash_attn"}
BOOL_FIELDS = {"cpu_strict", "no_kv_offload", "embeddings", "no_host", "repack"}
FLOAT_FIELDS = {"avg_ts", "stddev_ts"}


def field_type(name: str) -> str:
    if name in INT_FIELDS:
        return "int"
    if name in BOOL_FIELDS:
        return "bool"
    if name in FLOAT_FIELDS:
        return "float"
    return "str"


def cpu_info() -> str:
    """The CPU's model name (what ggml's CPU device reports), from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def build_info() -> tuple[str, int]:
    from llamapy import __version__
    return f"llamapy-{__version__}", 0


def record(r: BenchResult, backend: str, cpu: str) -> dict:
    """The test's fields as llama-bench's strings (bools 0/1, floats %f), in FIELDS order."""
    s = r.spec
    commit, number = build_info()
    values = [commit, number, cpu, "", backend, s.model, r.info.desc, r.info.size, r.info.n_params, s.n_batch,
              s.n_ubatch, s.n_threads, "0x0", 0, 50, s.type_k, s.type_v, -1, 0, "layer", 0, 0, -1, "auto", "0.00",
              "none", "auto", "auto", 0, 0, 0, 1, 0, 0, s.n_prompt, s.n_gen, s.n_depth, r.test_time, r.avg_ns,
              r.stdev_ns, f"{r.avg_ts:f}", f"{r.stdev_ts:f}"]
    return dict(zip(FIELDS, (str(v) for v in values)))


def effective_threads_default() -> int:
    """llama-bench's default -t: the number of cores (here: the cores this process may run on)."""
    from llamapy.runtime import effective_n_threads
    return effective_n_threads(None) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
