"""Perplexity and KL divergence over a text, as llama-perplexity computes them. Numbers only, no printing.

    tokens = tokenize_text(tokenizer, text)
    for step in perplexity_chunks(model, tokens, n_ctx=512, bos_id=tokenizer.bos_id if tokenizer.add_bos else None):
        print(f"[{step.index + 1}]{step.running_ppl:.4f},", end="")
    final = step.stats.final()              # (ppl, error), or None when the variance is not positive

The standard run (`perplexity_chunks`) cuts the tokens into non-overlapping n_ctx chunks (leftover dropped).
Each chunk is evaluated alone from position 0, its first token replaced by BOS when the vocabulary adds BOS,
and only the second half is scored: the logits at positions n_ctx/2 .. n_ctx-2 predict the tokens at
n_ctx/2+1 .. n_ctx-1 (255 tokens per chunk of 512). llama-perplexity packs n_batch/n_ctx chunks into one
batch as separate sequences; a sequence only attends to itself, so evaluating the chunks one after another
gives the same logits. `strided_chunks` is the --ppl-stride variant, and `LogitsFile`/`kld_chunks` the
--kl-divergence-base file and the --kl-divergence comparison against it.
"""
from __future__ import annotations

import math
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROW_BLOCK = 16          # rows of logits per numpy pass (bounds the temporaries for large vocabularies)
LOGITS_MAGIC = b"_logits_"
KLD_LOG_PROB_FLOOR = -16.0   # base log-probabilities at or below this are left out of the KL sum


class PerplexityError(ValueError):
    """Input that llama-perplexity rejects (too short a text, a logits file that does not fit, ...)."""


def tokenize_text(tokenizer, text: str) -> list[int]:
    """The whole text, tokenized once: the vocabulary's special tokens added (BOS), none parsed."""
    return tokenizer.encode(text, add_special=True, parse_special=False)


def split_batches(n_ctx: int, n_batch: int) -> tuple[int, int]:
    """(n_seq, n_batch) as llama-perplexity settles them: n_seq = max(1, n_batch / n_ctx) chunks per batch, and
    the batch cut to the n_seq * n_ctx context."""
    if n_ctx <= 0:
        raise PerplexityError("perplexity requires --ctx-size > 0")
    if n_batch <= 0:
        raise PerplexityError("--batch-size must be positive")
    n_seq = max(1, n_batch // n_ctx)
    return n_seq, min(n_batch, n_seq * n_ctx)


# -- log-softmax over rows of logits ----------------------------------------------------------------

def _row_stats(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the max logit (float32) and sum(exp(l - max)) with float32 exps summed in double."""
    mx = block.max(axis=1)
    sums = np.exp(block - mx[:, None]).sum(axis=1, dtype=np.float64)
    return mx, sums


def nll_rows(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """-log p(target) per row (float64): max + log(sum exp(l - max)) - l[target], the float logit difference
    taken first, as llama-perplexity's standard run does."""
    out = np.empty(len(targets), dtype=np.float64)
    for r in range(0, len(targets), ROW_BLOCK):
        block = logits[r:r + ROW_BLOCK]
        mx, sums = _row_stats(block)
        picked = block[np.arange(block.shape[0]), targets[r:r + ROW_BLOCK]]
        out[r:r + ROW_BLOCK] = -((picked - mx).astype(np.float64) - np.log(sums))
    return out


def _nearest_int(x: np.ndarray) -> np.ndarray:
    """Round float32 values to the nearest integer, ties to even (what the 1.5 * 2^23 trick does)."""
    return np.rint(x).astype(np.int64)


def quantize_log_probs(logits: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of logits -> (records, nll) in the --kl-divergence-base format.

    Each record is nv = 2 * ceil(n_vocab / 2) + 4 uint16: two float32 (scale, min_log_prob), then the logits
    mapped to 0..65535 over [min_logit, max] where min_logit = max(min, max - 16); logits at or below
    min_logit store 0. nll is max + log_sum_exp - l[target] in float32, as the base run accumulates it.
    """
    n_rows, n_vocab = logits.shape
    nv = 2 * ((n_vocab + 1) // 2) + 4
    rec = np.zeros((n_rows, nv), dtype=np.uint16)
    nll = np.empty(n_rows, dtype=np.float64)
    for r in range(0, n_rows, ROW_BLOCK):
        block = logits[r:r + ROW_BLOCK]
        mx, sums = _row_stats(block)
        mn = np.maximum(block.min(axis=1), mx - np.float32(16))
        lse = np.log(sums).astype(np.float32)
        head = np.empty((block.shape[0], 2), dtype=np.float32)
        head[:, 0] = (mx - mn) / np.float32(65535)       # scale
        head[:, 1] = mn - mx - lse                        # min_log_prob
        rec[r:r + block.shape[0], :4] = head.view(np.uint16)
        for i in range(block.shape[0]):
            scale = head[i, 0]
            if scale:
                row = block[i]
                q = _nearest_int((np.float32(1) / scale) * (row - mn[i]))
                rec[r + i, 4:4 + n_vocab] = np.where(row > mn[i], q, 0)
        picked = block[np.arange(block.shape[0]), targets[r:r + ROW_BLOCK]]
        nll[r:r + ROW_BLOCK] = (mx + lse) - picked
    return rec, nll


# -- running statistics -----------------------------------------------------------------------------

@dataclass
class NllStats:
    """Sums of nll and nll^2 over the scored tokens so far."""
    nll: float = 0.0
    nll2: float = 0.0
    count: int = 0

    def add(self, values: np.ndarray) -> None:
        self.nll += float(values.sum())
        self.nll2 += float((values * values).sum())
        self.count += len(values)

    @property
    def ppl(self) -> float:
        return math.exp(self.nll / self.count)

    def mean_and_error(self) -> tuple[float, float]:
        """Mean nll and its standard error (the -ppl-output-type 1 columns; the error stays the raw
        variance when that is not positive, as llama.cpp leaves it)."""
        mean = self.nll / self.count
        var = self.nll2 / self.count - mean * mean
        return mean, (math.sqrt(var / (self.count - 1)) if var > 0 else var)

    def final(self) -> tuple[float, float] | None:
        """(PPL, its uncertainty) for `Final estimate`, or None when the variance is not positive."""
        mean = self.nll / self.count
        var = self.nll2 / self.count - mean * mean
        if not var > 0:
            return None
        ppl = math.exp(mean)
        return ppl, math.sqrt(var / (self.count - 1)) * ppl


@dataclass
class ChunkStep:
    index: int              # 0-based chunk number
    n_chunk: int
    start: int              # first token of the window in the text's tokens
    seconds: float          # evaluation time of this chunk
    stats: NllStats         # running totals (shared object, updated in place)
    running_ppl: float


# -- evaluation ---------------------------------------------------------------------------------------

def chunk_logits(model, tokens, n_ctx: int, first: int, bos_id: int | None) -> np.ndarray:
    """Evaluate one n_ctx chunk from position 0 and return the logits of positions first .. n_ctx-2.

    The first half runs without logits (only the output of its last token is computed), the second half
    with all of them: the vocabulary projection is paid for the scored positions only.
    """
    ids = np.array(tokens[:n_ctx], dtype=np.int32)
    if bos_id is not None:
        ids[0] = bos_id
    if first > 0:
        model.eval(ids[:first], 0)
    return model.eval(ids[first:n_ctx - 1], first, all_logits=True)


def check_length(n_tokens: int, n_ctx: int) -> None:
    if n_tokens < 2 * n_ctx:
        raise PerplexityError(f"you need at least {2 * n_ctx} tokens to evaluate perplexity with a context of "
                              f"{n_ctx}; the text tokenizes to only {n_tokens} tokens")


def perplexity_chunks(model, tokens, n_ctx: int, n_chunks: int = -1, bos_id: int | None = None,
                      base_out=None):
    """The standard run: yield a ChunkStep after each chunk. With base_out (an open binary file), write the
    --kl-divergence-base file as llama-perplexity does (header, the tokens, one record per scored token)."""
    check_length(len(tokens), n_ctx)
    n_max = len(tokens) // n_ctx
    n_chunk = n_max if n_chunks < 0 else min(n_chunks, n_max)
    first = n_ctx // 2
    stats = NllStats()
    if base_out is not None:
        base_out.write(LOGITS_MAGIC + struct.pack("<iii", n_ctx, model.n_vocab, n_chunk))
        base_out.write(np.asarray(tokens[:n_chunk * n_ctx], dtype=np.int32).tobytes())
    for i in range(n_chunk):
        t0 = time.perf_counter()
        start = i * n_ctx
        chunk = tokens[start:start + n_ctx]
        logits = chunk_logits(model, chunk, n_ctx, first, bos_id)
        targets = np.asarray(chunk[first + 1:n_ctx], dtype=np.int64)
        if base_out is not None:
            records, nll = quantize_log_probs(logits, targets)
            base_out.write(records.tobytes())
        else:
            nll = nll_rows(logits, targets)
        stats.add(nll)
        yield ChunkStep(i, n_chunk, start, time.perf_counter() - t0, stats, stats.ppl)


def strided_window(n_ctx: int, n_batch: int, stride: int) -> int:
    """The window --ppl-stride scores in: llama.cpp's context size, n_seq * n_ctx + stride / 2, rounded up to a
    multiple of 256 and then to 256 per sequence (llama_n_ctx of the context it creates)."""
    n_seq, _ = split_batches(n_ctx, n_batch)
    total = n_seq * n_ctx + stride // 2
    total = -(-total // 256) * 256
    per_seq = -(-(total // n_seq) // 256) * 256
    return per_seq * n_seq


def strided_chunks(model, tokens, window: int, stride: int, n_chunks: int = -1):
    """--ppl-stride S: windows of `window` tokens starting every S tokens, each scoring its last S predictions
    (positions window-S-1 .. window-2) with float32 probabilities. As in llama.cpp, no BOS is substituted."""
    if stride <= 0:
        raise PerplexityError(f"stride is {stride} but must be greater than zero")
    check_length(len(tokens), window)
    n_max = (len(tokens) - window + stride - 1) // stride
    n_chunk = n_max if n_chunks < 0 else min(n_chunks, n_max)
    first = max(window - stride - 1, 0)
    stats = NllStats()
    for i in range(n_chunk):
        t0 = time.perf_counter()
        start = i * stride
        ids = np.asarray(tokens[start:start + window], dtype=np.int32)
        if first > 0:
            model.eval(ids[:first], 0)
        logits = model.eval(ids[first:window - 1], first, all_logits=True)
        targets = np.asarray(ids[first + 1:window], dtype=np.int64)
        nll = np.empty(len(targets), dtype=np.float64)
        for r in range(0, len(targets), ROW_BLOCK):
            block = logits[r:r + ROW_BLOCK]
            mx, sums = _row_stats(block)
            picked = block[np.arange(block.shape[0]), targets[r:r + ROW_BLOCK]]
            prob = (np.exp(picked - mx).astype(np.float64) / sums).astype(np.float32)
            with np.errstate(divide="ignore"):
                nll[r:r + ROW_BLOCK] = -np.log(prob.astype(np.float64))
        stats.nll += float(nll.sum())
        stats.count += len(nll)
        yield ChunkStep(i, n_chunk, start, time.perf_counter() - t0, stats, stats.ppl)


# -- KL divergence against a base logits file ---------------------------------------------------------

@dataclass
class LogitsFile:
    """A --kl-divergence-base file: header, the evaluated tokens, then per chunk n_ctx-1-n_ctx/2 records."""
    path: Path
    n_ctx: int
    n_vocab: int
    n_chunk: int
    tokens: np.ndarray          # int32 [n_chunk * n_ctx]
    data_offset: int

    @property
    def record_len(self) -> int:
        return 2 * ((self.n_vocab + 1) // 2) + 4

    @property
    def scored_per_chunk(self) -> int:
        return self.n_ctx - 1 - self.n_ctx // 2

    @classmethod
    def open(cls, path) -> "LogitsFile":
        path = Path(path)
        with open(path, "rb") as f:
            head = f.read(20)
            if len(head) < 8 or head[:8] != LOGITS_MAGIC:
                raise PerplexityError(f"{path} does not look like a file containing log-probabilities")
            if len(head) < 20:
                raise PerplexityError(f"failed reading n_ctx, n_vocab, n_chunk from {path}")
            n_ctx, n_vocab, n_chunk = struct.unpack("<iii", head[8:20])
            if n_ctx <= 1 or n_vocab <= 0 or n_chunk <= 0:
                raise PerplexityError(f"{path}: bad header (n_ctx {n_ctx}, n_vocab {n_vocab}, n_chunk {n_chunk})")
            raw = f.read(4 * n_ctx * n_chunk)
            if len(raw) < 4 * n_ctx * n_chunk:
                raise PerplexityError(f"failed reading evaluation tokens from {path}")
        lf = cls(path, n_ctx, n_vocab, n_chunk, np.frombuffer(raw, dtype=np.int32), 20 + len(raw))
        expected = lf.data_offset + 2 * lf.record_len * lf.scored_per_chunk * n_chunk
        size = path.stat().st_size
        if size < expected:
            raise PerplexityError(f"{path} is truncated: {size} bytes, {expected} expected for {n_chunk} chunks")
        return lf

    def chunk_records(self, index: int) -> np.ndarray:
        """uint16 [scored_per_chunk, record_len] of chunk `index` (memory-mapped)."""
        n = self.scored_per_chunk
        offset = self.data_offset + 2 * self.record_len * n * index
        return np.memmap(self.path, dtype=np.uint16, mode="r", offset=offset, shape=(n, self.record_len))


@dataclass
class KldStats:
    """Running sums over the compared tokens, plus every token's KLD and delta-p for the percentiles."""
    sum_nll: float = 0.0
    sum_nll2: float = 0.0
    sum_nll_base: float = 0.0
    sum_nll_base2: float = 0.0
    sum_nll_nll_base: float = 0.0
    sum_kld: float = 0.0
    sum_kld2: float = 0.0
    sum_p_diff: float = 0.0
    sum_p_diff2: float = 0.0
    sum_p_diff4: float = 0.0
    n_same_top: int = 0
    count: int = 0
    kld_values: list = field(default_factory=list)      # float32 arrays, one per chunk
    p_diff_values: list = field(default_factory=list)


def kld_rows(logits: np.ndarray, records: np.ndarray, targets: np.ndarray, st: KldStats) -> None:
    """Compare rows of logits with the base file's records and add them to st (float32 per-token terms
    summed in double, the KL sum over vocabulary entries whose base log-probability is above -16)."""
    n_vocab = logits.shape[1]
    for r in range(0, len(targets), ROW_BLOCK):
        block = logits[r:r + ROW_BLOCK]
        rec = records[r:r + ROW_BLOCK]
        tg = targets[r:r + ROW_BLOCK]
        rows = np.arange(block.shape[0])
        mx, sums = _row_stats(block)
        lse = np.log(sums).astype(np.float32)
        nll = (mx + lse) - block[rows, tg]                                   # float32
        head = np.ascontiguousarray(rec[:, :4]).view(np.float32)
        scale, min_lp = head[:, 0], head[:, 1]
        base_lp = scale[:, None] * rec[:, 4:4 + n_vocab].astype(np.float32) + min_lp[:, None]
        nll_base = -base_lp[rows, tg]
        mx_lse = mx + lse
        with np.errstate(under="ignore"):
            terms = np.exp(base_lp) * (base_lp - block + mx_lse[:, None])
        kld = np.where(base_lp > np.float32(KLD_LOG_PROB_FLOOR), terms, np.float32(0)).sum(axis=1, dtype=np.float64)
        same = np.argmax(block, axis=1) == np.argmax(base_lp, axis=1)
        p_diff = np.exp(-nll) - np.exp(-nll_base)                            # float32
        nll64, nb64, pd64 = nll.astype(np.float64), nll_base.astype(np.float64), p_diff.astype(np.float64)
        st.sum_nll += float(nll64.sum())
        st.sum_nll2 += float((nll64 * nll64).sum())
        st.sum_nll_base += float(nb64.sum())
        st.sum_nll_base2 += float((nb64 * nb64).sum())
        st.sum_nll_nll_base += float((nll64 * nb64).sum())
        st.sum_kld += float(kld.sum())
        st.sum_kld2 += float((kld * kld).sum())
        st.sum_p_diff += float(pd64.sum())
        st.sum_p_diff2 += float((pd64 * pd64).sum())
        st.sum_p_diff4 += float((pd64 ** 4).sum())
        st.n_same_top += int(same.sum())
        st.count += len(tg)
        st.kld_values.append(kld.astype(np.float32))
        st.p_diff_values.append(p_diff.astype(np.float32))


@dataclass
class KldStep:
    index: int
    n_chunk: int
    seconds: float
    stats: KldStats


def kld_chunks(model, base: LogitsFile, bos_id: int | None = None, n_chunks: int = -1):
    """--kl-divergence: evaluate the base file's chunks with this model and compare; yield after each chunk."""
    if base.n_vocab != model.n_vocab:
        raise PerplexityError(f"inconsistent vocabulary ({base.n_vocab} in {base.path} vs {model.n_vocab})")
    n_ctx = base.n_ctx
    first = n_ctx // 2
    n_chunk = base.n_chunk if n_chunks < 0 else min(n_chunks, base.n_chunk)
    st = KldStats()
    for i in range(n_chunk):
        t0 = time.perf_counter()
        chunk = base.tokens[i * n_ctx:(i + 1) * n_ctx]
        logits = chunk_logits(model, chunk, n_ctx, first, bos_id)
        kld_rows(logits, base.chunk_records(i), np.asarray(chunk[first + 1:n_ctx], dtype=np.int64), st)
        yield KldStep(i, n_chunk, time.perf_counter() - t0, st)


# -- the numbers llama-perplexity prints for a KL comparison ---------------------------------------------

def _div(a: float, b: float) -> float:
    """a / b with IEEE results for b == 0 (inf or nan), as the C++ tool gets them."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(a) / np.float64(b))


def _sqrt(x: float) -> float:
    with np.errstate(invalid="ignore"):
        return float(np.sqrt(np.float64(x)))


def mean_and_uncertainty(total: float, total2: float, count: int) -> tuple[float, float]:
    """Mean and its standard error; the error is 0 unless the variance is positive and count > 10."""
    if count < 1:
        return 0.0, 0.0
    f = total / count
    df = total2 / count - f * f
    return f, (math.sqrt(df / (count - 1)) if df > 0 and count > 10 else 0.0)


def covariance(sa: float, sb: float, sab: float, count: int) -> float:
    if count < 10:
        return 0.0
    return (sab / count - (sa / count) * (sb / count)) / (count - 1)


def percentile(sorted_values: np.ndarray, fraction: float) -> float:
    """Linear interpolation at fraction * (n - 1) over sorted float32 values, in float32 as llama.cpp does."""
    f = np.float32(fraction)
    if f <= 0:
        return float(sorted_values[0])
    if f >= 1:
        return float(sorted_values[-1])
    p = np.float32(f * np.float32(len(sorted_values) - 1))
    ip = int(p)
    p = np.float32(p - np.float32(ip))
    hi = sorted_values[min(ip + 1, len(sorted_values) - 1)]
    return float((np.float32(1) - p) * sorted_values[ip] + p * hi)


def median(sorted_values: np.ndarray) -> float:
    n = len(sorted_values)
    if n % 2 == 0:
        return float(np.float32(0.5) * (sorted_values[n // 2] + sorted_values[n // 2 - 1]))
    return float(sorted_values[n // 2])


@dataclass
class KldRow:
    """One line of the per-chunk table (running values over every chunk so far)."""
    ppl: float
    ppl_unc: float
    ln_ratio: float
    ln_ratio_unc: float
    kld: float
    kld_unc: float
    rms_dp: float           # fraction (the table prints percent)
    rms_dp_unc: float
    same_top: float
    same_top_unc: float


def kld_row(st: KldStats) -> KldRow:
    lp, lp_unc = mean_and_uncertainty(st.sum_nll, st.sum_nll2, st.count)
    lb, lb_unc = mean_and_uncertainty(st.sum_nll_base, st.sum_nll_base2, st.count)
    cov = covariance(st.sum_nll, st.sum_nll_base, st.sum_nll_nll_base, st.count)
    ppl = math.exp(lp)
    kl, kl_unc = mean_and_uncertainty(st.sum_kld, st.sum_kld2, st.count)
    mse, mse_unc = mean_and_uncertainty(st.sum_p_diff2, st.sum_p_diff4, st.count)
    rms = math.sqrt(mse)
    top = st.n_same_top / st.count
    return KldRow(ppl, ppl * lp_unc, lp - lb, _sqrt(lp_unc * lp_unc + lb_unc * lb_unc - 2.0 * cov), kl, kl_unc,
                  rms, _div(0.5, rms) * mse_unc, top, _sqrt(_div(top * (1 - top), st.count - 1)))


@dataclass
class KldSummary:
    ppl: tuple
    ppl_base: tuple
    cor: float
    ln_ratio: tuple
    ratio: tuple
    diff: tuple
    kld_mean: tuple
    kld_max: float
    kld_percentiles: dict       # label -> value, in llama.cpp's order (99.9, 99.0, 95.0, 90.0)
    kld_median: float
    kld_low: dict               # 10.0, 5.0, 1.0, 0.1
    kld_min: float
    dp_mean: tuple
    dp_max: float
    dp_high: dict               # 99.9 .. 75.0
    dp_median: float
    dp_low: dict                # 25.0 .. 0.1
    dp_min: float
    rms_dp: tuple
    same_top: tuple


SUMMARY_MIN_COUNT = 100     # llama.cpp prints no statistics over fewer compared tokens


def kld_summary(st: KldStats) -> KldSummary | None:
    if st.count < SUMMARY_MIN_COUNT:
        return None
    kv = np.sort(np.concatenate(st.kld_values))
    dv = np.sort(np.concatenate(st.p_diff_values))
    lp, lp_unc = mean_and_uncertainty(st.sum_nll, st.sum_nll2, st.count)
    lb, lb_unc = mean_and_uncertainty(st.sum_nll_base, st.sum_nll_base2, st.count)
    cov = covariance(st.sum_nll, st.sum_nll_base, st.sum_nll_nll_base, st.count)
    ppl, ppl_b = math.exp(lp), math.exp(lb)
    ppl_unc, ppl_b_unc = ppl * lp_unc, ppl_b * lb_unc
    ln_ratio, ln_ratio_unc = lp - lb, _sqrt(lp_unc * lp_unc + lb_unc * lb_unc - 2.0 * cov)
    ratio = math.exp(ln_ratio)
    ppl_cov = ppl * ppl_b * cov
    mse, mse_unc = mean_and_uncertainty(st.sum_p_diff2, st.sum_p_diff4, st.count)
    rms = math.sqrt(mse)
    top = st.n_same_top / st.count
    return KldSummary(
        ppl=(ppl, ppl_unc), ppl_base=(ppl_b, ppl_b_unc), cor=_div(cov, lp_unc * lb_unc),
        ln_ratio=(ln_ratio, ln_ratio_unc), ratio=(ratio, ratio * ln_ratio_unc),
        diff=(ppl - ppl_b, _sqrt(ppl_unc * ppl_unc + ppl_b_unc * ppl_b_unc - 2.0 * ppl_cov)),
        kld_mean=mean_and_uncertainty(st.sum_kld, st.sum_kld2, st.count), kld_max=float(kv[-1]),
        kld_percentiles={k: percentile(kv, f) for k, f in (("99.9", .999), ("99.0", .99), ("95.0", .95), ("90.0", .9))},
        kld_median=median(kv),
        kld_low={k: percentile(kv, f) for k, f in (("10.0", .1), (" 5.0", .05), (" 1.0", .01), (" 0.1", .001))},
        kld_min=float(kv[0]),
        dp_mean=mean_and_uncertainty(st.sum_p_diff, st.sum_p_diff2, st.count), dp_max=float(dv[-1]),
        dp_high={k: percentile(dv, f) for k, f in (("99.9", .999), ("99.0", .99), ("95.0", .95), ("90.0", .9),
                                                   ("75.0", .75))},
        dp_median=median(dv),
        dp_low={k: percentile(dv, f) for k, f in (("25.0", .25), ("10.0", .1), (" 5.0", .05), (" 1.0", .01),
                                                  (" 0.1", .001))},
        dp_min=float(dv[0]),
        rms_dp=(rms, _div(0.5, rms) * mse_unc),
        same_top=(top, _sqrt(_div(top * (1 - top), st.count - 1))),
    )
