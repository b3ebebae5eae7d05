"""`llamapy-perplexity`: perplexity of a model over a text, and KL divergence against a base model, as
llama-perplexity computes and prints them.

    llamapy-perplexity -m model.gguf -f text.txt [-c 512] [-b 2048] [--chunks N] [-t N]
    llamapy-perplexity -m model-f16.gguf -f text.txt --kl-divergence-base base.kld
    llamapy-perplexity -m model-q4_k_m.gguf --kl-divergence-base base.kld --kl-divergence

stdout gets what llama-perplexity prints there: the ETA's minutes, `[1]15.2701,[2]5.4007,...` (the running
perplexity after each chunk), or the KL divergence table and statistics. stderr gets the log lines and
`Final estimate: PPL = X +/- Y`. When stderr is a terminal, a progress bar (chunks, tokens/s, ETA) runs there.
"""
from __future__ import annotations

import sys
import time

import click

from llamapy.cli.common import fail, import_kernels, one_line, resolve_model, run_command, version_option


_LIVE = None    # the running progress bar, if any: stderr lines go through its console so the bar stays intact


def _err(line: str = "", end: str = "\n"):
    if _LIVE is not None:
        _LIVE.console.print(line, end=end, markup=False, highlight=False, soft_wrap=True)
    else:
        print(line, file=sys.stderr, end=end, flush=True)


_HELD: list = []    # stdout text held back while the bar runs on the same terminal (printed when it stops)


def _out(text: str):
    if _LIVE is not None and sys.stdout.isatty():
        _HELD.append(text)
        return
    sys.stdout.write(text)
    sys.stdout.flush()


def read_text_file(path: str) -> str:
    """-f: the file's text with exactly one trailing newline removed; escapes are not processed."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as e:
        fail(f"failed to open file '{path}': {e.strerror or e}")
    if data.endswith(b"\n"):
        data = data[:-1]
    return data.decode("utf-8", errors="replace")


class ChunkProgress:
    """A rich progress bar on stderr over the chunks (tokens/s and ETA), or nothing when stderr is not a TTY."""

    def __init__(self, n_chunk: int, tokens_per_chunk: int, label: str):
        self.progress = None
        if not sys.stderr.isatty():
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        self.progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("chunks"),
                                 TextColumn("{task.fields[speed]}"), TextColumn("{task.fields[info]}"),
                                 TimeRemainingColumn(), console=Console(stderr=True), transient=True,
                                 redirect_stdout=False, redirect_stderr=False)
        self.tokens_per_chunk = tokens_per_chunk
        self.seconds = 0.0
        self.task = self.progress.add_task(label, total=n_chunk, speed="", info="")
        self.progress.start()
        global _LIVE
        _LIVE = self.progress

    def advance(self, seconds: float, info: str = ""):
        if self.progress is None:
            return
        self.seconds += seconds
        done = self.progress.tasks[0].completed + 1
        speed = f"{done * self.tokens_per_chunk / self.seconds:8.1f} tokens/s" if self.seconds > 0 else ""
        self.progress.update(self.task, advance=1, speed=speed, info=info)

    def close(self):
        global _LIVE
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
            _LIVE = None
            if _HELD:
                _out("".join(_HELD))
                _HELD.clear()


def _eta(seconds_per_chunk: float, n_seq: int, n_chunk: int, what: str = "perplexity"):
    """`perplexity: X seconds per pass - ETA ` on stderr, the minutes on stdout (as llama.cpp splits it)."""
    _err(f"{what}: {seconds_per_chunk * n_seq:.2f} seconds per pass - ETA ", end="")
    total = int(seconds_per_chunk * n_chunk)
    text = ""
    if total >= 3600:
        text = f"{total // 3600} hours "
        total %= 3600
    _out(f"{text}{total / 60.0:.2f} minutes\n")


def run_perplexity(model, tokens, n_ctx, n_batch, n_seq, n_chunks, bos_id, output_type, base_path):
    from llamapy.perplexity import perplexity_chunks
    base_out = None
    if base_path:
        try:
            base_out = open(base_path, "wb")
        except OSError as e:
            fail(f"failed to open {base_path} for writing: {e.strerror or e}")
        _err(f"perplexity: saving all logits to {base_path}")
    n_chunk = min(len(tokens) // n_ctx, n_chunks) if n_chunks >= 0 else len(tokens) // n_ctx
    if len(tokens) >= 2 * n_ctx:
        _err(f"perplexity: calculating perplexity over {n_chunk} chunks, n_ctx={n_ctx}, batch_size={n_batch}, "
             f"n_seq={n_seq}")
    progress = ChunkProgress(n_chunk, n_ctx, "perplexity") if len(tokens) >= 2 * n_ctx else None
    step = None
    try:
        for step in perplexity_chunks(model, tokens, n_ctx, n_chunks, bos_id, base_out):
            if step.index == 0:
                _eta(step.seconds, n_seq, step.n_chunk)
            progress.advance(step.seconds, f"PPL {step.running_ppl:.4f}")
            if output_type == 0:
                _out(f"[{step.index + 1}]{step.running_ppl:.4f},")
            else:
                mean, err = step.stats.mean_and_error()
                _out(f"{step.start:8d}  {step.running_ppl:.4f}  {mean:f}  {err:f}\n")
    finally:
        if progress is not None:
            progress.close()
        if base_out is not None:
            base_out.close()
    if step is None:
        return None
    _out("\n")
    final = step.stats.final()
    if final is None:
        _err("Unexpected negative standard deviation of log(prob)")
    else:
        _err(f"Final estimate: PPL = {final[0]:.4f} +/- {final[1]:.5f}")
    return step


def run_strided(model, tokens, window, stride, n_chunks, output_type, n_batch, n_seq):
    from llamapy.perplexity import strided_chunks
    _err(f"perplexity: have {len(tokens)} tokens. Calculation chunk = {window}")
    n_max = max((len(tokens) - window + stride - 1) // stride, 0)
    n_chunk = n_max if n_chunks < 0 else min(n_chunks, n_max)
    if len(tokens) >= 2 * window:
        _err(f"perplexity: computing over {n_chunk} chunks, n_ctx={window}, batch_size={n_batch}, n_seq={n_seq}")
    progress = ChunkProgress(n_chunk, window, "perplexity") if len(tokens) >= 2 * window else None
    step = None
    try:
        for step in strided_chunks(model, tokens, window, stride, n_chunks):
            if step.index == 0:
                _err(f"perplexity: {step.seconds:.2f} seconds per pass - ETA ", end="")
                total = int(step.seconds * step.n_chunk)
                _out((f"{total // 3600} hours " if total >= 3600 else "") + f"{(total % 3600) / 60.0:.2f} minutes\n")
            progress.advance(step.seconds, f"PPL {step.running_ppl:.4f}")
            if output_type == 0:
                _out(f"[{step.index + 1}]{step.running_ppl:.4f},")
            else:
                _out(f"{step.start:8d}  {step.running_ppl:.4f}\n")
    finally:
        if progress is not None:
            progress.close()
    if step is not None:
        _out("\n")
    return step


KLD_HEADER = ("chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              "
              "\u0394p RMS            Same top p")


def run_kld(model, base, bos_id, n_chunks, n_batch, n_seq):
    from llamapy.perplexity import kld_chunks, kld_row, kld_summary
    n_chunk = base.n_chunk if n_chunks < 0 else min(n_chunks, base.n_chunk)
    _err(f"kl_divergence: computing over {n_chunk} chunks, n_ctx={base.n_ctx}, batch_size={n_batch}, n_seq={n_seq}")
    progress = ChunkProgress(n_chunk, base.n_ctx, "kl-divergence")
    step = None
    try:
        for step in kld_chunks(model, base, bos_id, n_chunks):
            if step.index == 0:
                _eta(step.seconds, n_seq, step.n_chunk, "kl_divergence")
                _out("\n" + KLD_HEADER + "\n")
            r = kld_row(step.stats)
            progress.advance(step.seconds, f"KLD {r.kld:.5f}")
            _out(f"{step.index + 1:4d}    {r.ppl:9.4f} \u00b1 {r.ppl_unc:9.4f}    {r.ln_ratio:10.5f} \u00b1 "
                 f"{r.ln_ratio_unc:10.5f}    {r.kld:10.5f} \u00b1 {r.kld_unc:10.5f}    {100 * r.rms_dp:6.3f} \u00b1 "
                 f"{100 * r.rms_dp_unc:6.3f} %    {100 * r.same_top:6.3f} \u00b1 {100 * r.same_top_unc:6.3f} %\n")
    finally:
        progress.close()
    if step is None:
        return None
    _out("\n")
    s = kld_summary(step.stats)
    if s is None:
        return step
    lines = ["====== Perplexity statistics ======",
             f"Mean PPL(Q)                   : {s.ppl[0]:10.6f} \u00b1 {s.ppl[1]:10.6f}",
             f"Mean PPL(base)                : {s.ppl_base[0]:10.6f} \u00b1 {s.ppl_base[1]:10.6f}",
             f"Cor(ln(PPL(Q)), ln(PPL(base))): {100 * s.cor:6.2f}%",
             f"Mean ln(PPL(Q)/PPL(base))     : {s.ln_ratio[0]:10.6f} \u00b1 {s.ln_ratio[1]:10.6f}",
             f"Mean PPL(Q)/PPL(base)         : {s.ratio[0]:10.6f} \u00b1 {s.ratio[1]:10.6f}",
             f"Mean PPL(Q)-PPL(base)         : {s.diff[0]:10.6f} \u00b1 {s.diff[1]:10.6f}",
             "",
             "====== KL divergence statistics ======",
             f"Mean    KLD: {s.kld_mean[0]:10.6f} \u00b1 {s.kld_mean[1]:10.6f}",
             f"Maximum KLD: {s.kld_max:10.6f}"]
    lines += [f"{k}%   KLD: {v:10.6f}" for k, v in s.kld_percentiles.items()]
    lines += [f"Median  KLD: {s.kld_median:10.6f}"]
    lines += [f"{k}%   KLD: {v:10.6f}" for k, v in s.kld_low.items()]
    lines += [f"Minimum KLD: {s.kld_min:10.6f}", "", "====== Token probability statistics ======",
              f"Mean    \u0394p: {100 * s.dp_mean[0]:6.3f} \u00b1 {100 * s.dp_mean[1]:5.3f} %",
              f"Maximum \u0394p: {100 * s.dp_max:6.3f}%"]
    lines += [f"{k}%   \u0394p: {100 * v:6.3f}%" for k, v in s.dp_high.items()]
    lines += [f"Median  \u0394p: {100 * s.dp_median:6.3f}%"]
    lines += [f"{k}%   \u0394p: {100 * v:6.3f}%" for k, v in s.dp_low.items()]
    lines += [f"Minimum \u0394p: {100 * s.dp_min:6.3f}%",
              f"RMS \u0394p    : {100 * s.rms_dp[0]:6.3f} \u00b1 {100 * s.rms_dp[1]:5.3f} %",
              f"Same top p: {100 * s.same_top[0]:6.3f} \u00b1 {100 * s.same_top[1]:5.3f} %"]
    _out("\n".join(lines) + "\n")
    return step


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("-m", "--model", "model", metavar="FNAME", envvar="LLAMA_ARG_MODEL",
              help="Model path (default: the cached SmolLM2-135M-Instruct Q4_1).")
@click.option("-f", "--file", "text_file", metavar="FNAME", help="Text to evaluate (one trailing newline is dropped).")
@click.option("-c", "--ctx-size", "n_ctx", type=int, default=512, show_default=True, help="Tokens per chunk.")
@click.option("-b", "--batch-size", "n_batch", type=int, default=2048, show_default=True,
              help="Logical batch: n_batch / n_ctx chunks per pass.")
@click.option("-ub", "--ubatch-size", "n_ubatch", type=int, default=512, show_default=True,
              help="Physical batch: tokens per forward call.")
@click.option("-t", "--threads", "n_threads", type=int, default=-1, show_default=True,
              help="Threads (-1: every core this process may use).")
@click.option("-ctk", "--cache-type-k", "type_k", default="f16", show_default=True, help="KV cache type for K.")
@click.option("-ctv", "--cache-type-v", "type_v", default="f16", show_default=True, help="KV cache type for V.")
@click.option("--chunks", "n_chunks", type=int, default=-1, show_default=True,
              help="Evaluate at most N chunks (-1: all).")
@click.option("--ppl-stride", "ppl_stride", type=int, default=0, show_default=True,
              help="Strided perplexity: a window every N tokens, scoring its last N predictions (0: off).")
@click.option("--ppl-output-type", "output_type", type=click.IntRange(0, 1), default=0, show_default=True,
              help="0: [chunk]ppl, on one line; 1: one line per chunk with the token offset.")
@click.option("--kl-divergence-base", "--save-all-logits", "kld_base", metavar="FNAME",
              help="Logits file: written by a perplexity run, read by --kl-divergence.")
@click.option("--kl-divergence", "kl_divergence", is_flag=True,
              help="Compare this model with the --kl-divergence-base file (the text comes from the file).")
@version_option()
def perplexity(model, text_file, n_ctx, n_batch, n_ubatch, n_threads, type_k, type_v, n_chunks, ppl_stride,
               output_type, kld_base, kl_divergence):
    """Perplexity of a model over a text, or its KL divergence from a base model, as llama-perplexity does it.

    \b
    Examples:
      llamapy-perplexity -m model.gguf -f wiki.test.raw
      llamapy-perplexity -m model-f16.gguf -f text.txt --kl-divergence-base base.kld
      llamapy-perplexity -m model-q4_k_m.gguf --kl-divergence-base base.kld --kl-divergence
    """
    if n_ctx <= 0:
        fail(f"perplexity tool requires '--ctx-size' > 0 (got {n_ctx})")
    if n_batch <= 0 or n_ubatch <= 0:
        fail("--batch-size and --ubatch-size must be positive")
    if n_threads == 0 or n_threads < -1:
        fail(f"-t must be a positive number of threads or -1 (got {n_threads})")
    if ppl_stride < 0:
        fail(f"--ppl-stride must be >= 0 (got {ppl_stride})")
    if kl_divergence and not kld_base:
        fail("--kl-divergence needs --kl-divergence-base FILE: the log probabilities of the base model")
    if not kl_divergence and not text_file:
        fail("no text to evaluate: pass -f FILE")
    from llamapy.model.kvcache import kv_cache_type
    try:
        type_k, type_v = kv_cache_type(type_k, "K"), kv_cache_type(type_v, "V")
    except ValueError as e:
        fail(one_line(e))

    text = read_text_file(text_file) if (text_file and not kl_divergence) else None
    base = None
    if kl_divergence:
        from llamapy.perplexity import LogitsFile, PerplexityError
        try:
            base = LogitsFile.open(kld_base)
        except FileNotFoundError:
            fail(f"failed to open {kld_base}")
        except (OSError, PerplexityError) as e:
            fail(one_line(e))

    path = resolve_model(model)
    import_kernels()
    from llamapy.gguf import GGUFReader
    from llamapy.model import Model
    from llamapy.perplexity import PerplexityError, check_length, split_batches, strided_window, tokenize_text
    from llamapy.tokenizer import Tokenizer

    n_seq, n_batch = split_batches(n_ctx, n_batch)
    if kl_divergence:
        if base.n_ctx > n_seq * n_ctx:
            fail(f"{kld_base} has been computed with {base.n_ctx}, while the current context is {n_seq * n_ctx}. "
                 "Increase it with -c and retry")
        model_ctx = base.n_ctx
        n_seq = max(1, n_batch // base.n_ctx)
    elif ppl_stride > 0:
        model_ctx = strided_window(n_ctx, n_batch, ppl_stride)
        _err(f"Will perform strided perplexity calculation -> adjusting context size from {n_seq * n_ctx} to "
             f"{n_seq * n_ctx + ppl_stride // 2}")
    else:
        model_ctx = n_ctx
    try:
        reader = GGUFReader(path)
        tok = Tokenizer.from_gguf(reader)
        mdl = Model(reader, n_ctx=model_ctx, n_batch=min(n_ubatch, model_ctx),
                    n_threads=None if n_threads < 0 else n_threads, type_k=type_k, type_v=type_v)
    except Exception as e:  # noqa: BLE001 - any loader failure is one line
        fail(f"failed to load model '{path}': {one_line(e)}")
    if base is not None and base.n_vocab != mdl.n_vocab:
        fail(f"inconsistent vocabulary ({base.n_vocab} in {kld_base} vs {mdl.n_vocab} in the model)")
    if tok.add_eos:
        fail("models whose vocabulary adds EOS are not supported by perplexity")
    bos_id = tok.bos_id if tok.add_bos else None

    t_start = time.perf_counter()
    try:
        if kl_divergence:
            step = run_kld(mdl, base, bos_id, n_chunks, n_batch, n_seq)
            n_eval = (step.index + 1) * (base.n_ctx - 1) if step else 0
        else:
            t0 = time.perf_counter()
            tokens = tokenize_text(tok, text)
            t_tok = time.perf_counter() - t0
            check_length(len(tokens), model_ctx)       # a short text is one error line, before any log line
            _err("perplexity: tokenizing the input ..")
            _err(f"perplexity: tokenization took {1e3 * t_tok:g} ms")
            if ppl_stride > 0:
                step = run_strided(mdl, tokens, model_ctx, ppl_stride, n_chunks, output_type, n_batch, n_seq)
                n_eval = (step.index + 1) * (model_ctx - 1) if step else 0
            else:
                step = run_perplexity(mdl, tokens, n_ctx, n_batch, n_seq, n_chunks, bos_id, output_type, kld_base)
                n_eval = (step.index + 1) * (n_ctx - 1) if step else 0
    except PerplexityError as e:
        fail(one_line(e))
    if step is None:
        fail("no chunk to evaluate (--chunks 0?)")
    seconds = time.perf_counter() - t_start
    _out("\n")
    _err(f"llamapy_perplexity: eval time = {1e3 * seconds:10.2f} ms / {n_eval:6d} tokens "
         f"({1e3 * seconds / max(n_eval, 1):8.2f} ms per token, {n_eval / seconds:8.2f} tokens per second)")


def main(argv=None):
    run_command(perplexity, "llamapy-perplexity", argv)


if __name__ == "__main__":
    main()
