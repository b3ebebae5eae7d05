"""`llamapy-quantize`: requantize a GGUF model as llama-quantize does, to the same bytes.

    llamapy-quantize [options] in.gguf [out.gguf] TYPE [nthreads]

TYPE is a name from the table (any case) or its file type number. Without out.gguf the output is
ggml-model-TYPE.gguf beside the input. nthreads defaults to every core. On a terminal a progress bar runs;
otherwise (or with -v) llama.cpp's per-tensor lines go to stderr. The quantize and total times go to stdout.
"""
from __future__ import annotations

import signal
import sys
import time

import click

from llamapy.cli.common import fail, import_kernels, run_command, version_option

USAGE = """\
usage: llamapy-quantize [options] in.gguf [out.gguf] TYPE [nthreads]

Quantize the GGUF model in.gguf to TYPE (a name below, any case, or its number), as llama-quantize does:
the same tensor types and the same bytes. Without out.gguf the output is ggml-model-TYPE.gguf in the
input's folder; nthreads defaults to every core.

options:
  --allow-requantize          accept already quantized input tensors (quality is lost twice)
  --leave-output-tensor       keep output.weight in its input type
  --pure                      no mix: every quantized tensor gets TYPE's base type
  --output-tensor-type T      type of output.weight (a ggml type name: q8_0, q6_K, f16, ...)
  --token-embedding-type T    type of token_embd.weight
  --tensor-type REGEX=T       type of the tensors whose name matches REGEX (repeatable; the first match wins)
  --override-kv KEY=TYPE:V    set metadata in the output; TYPE is int, float, bool or str (repeatable)
  --dry-run                   show the types and sizes the output would have; write nothing
  -v, --verbose               llama.cpp's per-tensor lines even on a terminal
  -h, --help                  this text
  --version                   version, CPU features and kernels
"""


def usage_text() -> str:
    from llamapy.quantize import QUANT_OPTIONS, can_plan, can_write
    lines = [USAGE, "-" * 77, " allowed quantization types", "-" * 77, ""]
    for o in QUANT_OPTIONS:
        if not can_write(o):
            continue
        number = "          " if o.name == "COPY" else f"  {int(o.ftype):2d}  or  "
        lines.append(f"{number}{o.name:<7} : {o.summary}")
    lines.append("")
    lines.append("Also accepted with --dry-run (no quantizer in llamapy): "
                 + ", ".join(o.name for o in QUANT_OPTIONS if can_plan(o) and not can_write(o)))
    return "\n".join(lines)


def usage_exit(message: str | None = None):
    """llama-quantize's answer to a missing or unknown TYPE: the usage and the type table, exit 1."""
    if message:
        click.echo(f"error: {message}", err=True)
    click.echo(usage_text())
    sys.exit(1)


def _help(ctx, _param, value):
    if value:
        click.echo(usage_text())
        ctx.exit(0)


def parse_ggml_type(text: str, option: str):
    from llamapy.gguf import GGMLType, type_name
    for t in GGMLType:
        if type_name(t).lower() == text.lower():
            return t
    names = "f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q2_K q3_K q4_K q5_K q6_K iq4_nl iq4_xs tq1_0 tq2_0"
    fail(f"{option}: invalid ggml type '{text}' (one of: {names})")


def parse_positionals(args: tuple[str, ...], dry_run: bool):
    """in.gguf [out.gguf] TYPE [nthreads] -> (input, output or None, option, n_threads or None)."""
    from llamapy.quantize.ftypes import c_stoi, parse_ftype
    if len(args) < 2:
        usage_exit("missing arguments: in.gguf and TYPE are needed" if args else None)
    inp = args[0]
    option = parse_ftype(args[1])
    if option is not None:
        out = None if dry_run else default_output(inp, option.name)
        rest = args[2:]
    else:
        out = args[1]
        if len(args) < 3:
            usage_exit(f"missing TYPE ('{args[1]}' is not a type, so it was taken as the output file)")
        option = parse_ftype(args[2])
        if option is None:
            usage_exit(f"invalid TYPE '{args[2]}'")
        rest = args[3:]
    n_threads = None
    if rest:
        n_threads = c_stoi(rest[0])
        if n_threads is None:
            fail(f"invalid nthreads '{rest[0]}'")
        if len(rest) > 1:
            fail(f"unexpected argument '{rest[1]}' after nthreads")
    return inp, out, option, n_threads


def default_output(inp: str, type_name_: str) -> str:
    """ggml-model-TYPE.gguf in the input's folder (llama.cpp keeps the input path up to its last slash)."""
    cut = max(inp.rfind("/"), inp.rfind("\\"))
    return inp[:cut + 1] + f"ggml-model-{type_name_}.gguf"


# ---- display ---------------------------------------------------------------------------------------------

def _mib(n: int) -> float:
    return n / 1024.0 / 1024.0


def tensor_prefix(job, n_total: int) -> str:
    from llamapy.gguf import type_name
    dims = tuple(job.src.shape) + (1,) * (4 - len(job.src.shape))
    shape = ", ".join(f"{d:6d}" for d in dims)
    return f"[{job.index:4d}/{n_total:4d}] {job.name:<36} - [{shape}], type = {type_name(job.src_type):>6}, "


class LogLines:
    """llama.cpp's per-tensor lines on stderr, written as each tensor starts and ends."""

    def __init__(self, dry_run: bool, header: str):
        self.dry_run = dry_run
        self.header = header        # printed once the plan stands, so that bad input stays a one-line error
        self.n = 0
        self.line_open = False      # a tensor's line is printed in two halves, around its conversion

    def on_start(self, plan):
        self.n = len(plan.jobs)
        click.echo(self.header, err=True)
        for message in plan.messages:
            click.echo(message, err=True)

    def on_tensor(self, job):
        from llamapy.gguf import type_name
        text = tensor_prefix(job, self.n)
        if job.converts and not self.dry_run:
            text += f"converting to {type_name(job.new_type)} .. "
        click.echo(text, err=True, nl=False)
        sys.stderr.flush()
        self.line_open = True

    def on_bytes(self, n):
        pass

    def on_tensor_done(self, job):
        from llamapy.gguf import type_name
        before, after = _mib(job.src.n_bytes), _mib(job.new_bytes)
        if not job.converts:
            text = f"size = {before:8.3f} MiB"
        elif self.dry_run:
            text = f"size = {before:8.2f} MiB -> {after:8.2f} MiB ({type_name(job.new_type)})"
        else:
            text = f"size = {before:8.2f} MiB -> {after:8.2f} MiB"
        click.echo(text, err=True)
        self.line_open = False

    def close(self):
        if self.line_open:      # stopped halfway through a tensor: end its line before the error
            click.echo("", err=True)
            self.line_open = False


class ProgressBar:
    """A rich progress bar over the model's bytes: tensor i/N, its name and conversion, MB/s, ETA."""

    def __init__(self, console):
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
        self.progress = Progress(TextColumn("{task.fields[counter]}"), TextColumn("{task.fields[tensor]}"),
                                 BarColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                                 console=console, transient=True)
        self.task = None
        self.n = 0
        self.started = False

    def on_start(self, plan):
        self.n = len(plan.jobs)
        self.progress.start()
        self.started = True
        self.task = self.progress.add_task("quantize", total=plan.size_before, counter=f"[0/{self.n}]", tensor="")

    def on_tensor(self, job):
        from llamapy.gguf import type_name
        what = (f"{type_name(job.src_type)} -> {type_name(job.new_type)}" if job.converts
                else f"{type_name(job.src_type)} (copy)")
        self.progress.update(self.task, counter=f"[{job.index}/{self.n}]", tensor=f"{job.name:<28.28} {what:<14}")

    def on_bytes(self, n):
        self.progress.advance(self.task, n)

    def on_tensor_done(self, job):
        pass

    def close(self):
        if self.started:
            self.progress.stop()
            self.started = False


def closing_lines(plan) -> list[str]:
    """llama.cpp's closing lines: sizes and bits per weight, then the imatrix and fallback warnings."""
    n = max(plan.n_elements, 1)
    before, after = plan.size_before, plan.size_after
    lines = [f"llama_model_quantize_impl: model size  = {_mib(before):8.2f} MiB ({before * 8.0 / n:.2f} BPW)",
             f"llama_model_quantize_impl: quant size  = {_mib(after):8.2f} MiB ({after * 8.0 / n:.2f} BPW)"]
    if plan.params.dry_run and plan.will_require_imatrix:
        lines.append("llama_model_quantize_impl: WARNING: dry run completed successfully, but actually completing "
                     "this quantization will require an imatrix!")
    if plan.n_fallback:
        lines.append(f"llama_model_quantize_impl: WARNING: {plan.n_fallback} of {len(plan.jobs)} tensor(s) "
                     "required fallback quantization")
    return lines


def print_summary_table(console, plan, result, inp, out, n_threads):
    from rich.table import Table
    n = max(plan.n_elements, 1)
    before, after = plan.size_before, plan.size_after
    converted = sum(j.converts for j in plan.jobs)
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("input", f"{inp}  {_mib(before):.2f} MiB, {before * 8.0 / n:.2f} bits per weight")
    if out is not None:
        table.add_row("output", f"{out}  {_mib(after):.2f} MiB, {after * 8.0 / n:.2f} bits per weight")
    else:
        table.add_row("would be", f"{_mib(after):.2f} MiB, {after * 8.0 / n:.2f} bits per weight (dry run)")
    table.add_row("type", f"{plan.params.option.name}, file type {plan.ftype}")
    table.add_row("tensors", f"{len(plan.jobs)}: {converted} converted, {len(plan.jobs) - converted} copied"
                  + (f", {plan.n_fallback} by shape fallback" if plan.n_fallback else ""))
    speed = _mib(before) / result.seconds if result.seconds > 0 else 0.0
    table.add_row("time", f"{result.seconds:.2f} s with {n_threads} threads ({speed:.0f} MiB/s)")
    if plan.params.dry_run and plan.will_require_imatrix:
        table.add_row("note", "a real run of this type needs an importance matrix")
    console.print(table)


def resolve_arguments(args, allow_requantize=False, leave_output_tensor=False, pure=False, output_type=None,
                      embedding_type=None, tensor_types=(), overrides=(), dry_run=False, verbose=False):
    """The command line as (input, output or None, QuantizeParams); a bad one exits with a one-line error
    (or, for a missing or unknown TYPE, with the usage and the type table)."""
    import re

    from llamapy.quantize import QuantizeParams, can_plan, can_write, parse_kv_override
    from llamapy.runtime import effective_n_threads

    for a in args:
        if a.startswith("--"):
            fail(f"unknown option '{a}' (see --help)")
    inp, out, option, n_threads = parse_positionals(args, dry_run)
    if not can_plan(option):
        fail(f"{option.name}: llamapy does not know this type's tensor format")
    if not dry_run and not can_write(option):
        fail(f"{option.name}: llamapy has no quantizer for this type (only --dry-run works with it)")

    patterns = []
    for spec in tensor_types:
        name, sep, tname = spec.partition("=")
        if not sep or not name or not tname:
            fail(f"--tensor-type: malformed '{spec}' (expected REGEX=TYPE)")
        try:
            re.compile(name.lower())
        except re.error as e:
            fail(f"--tensor-type: bad regular expression '{name}': {e}")
        patterns.append((name, parse_ggml_type(tname, "--tensor-type")))
    kv = []
    for spec in overrides:
        try:
            kv.append(parse_kv_override(spec))
        except ValueError as e:
            fail(f"--override-kv: {e}")

    params = QuantizeParams(
        option=option, n_threads=effective_n_threads(n_threads if n_threads and n_threads > 0 else None),
        allow_requantize=allow_requantize, leave_output_tensor=leave_output_tensor, pure=pure,
        output_tensor_type=parse_ggml_type(output_type, "--output-tensor-type") if output_type else None,
        token_embedding_type=parse_ggml_type(embedding_type, "--token-embedding-type") if embedding_type else None,
        tensor_types=patterns, kv_overrides=kv, dry_run=dry_run)
    return inp, out, params


# ---- the command ---------------------------------------------------------------------------------------------

def _terminate(signum, _frame):
    raise SystemExit(128 + signum)     # unwinds like Ctrl+C, so the temporary file is removed


@click.command(context_settings={"ignore_unknown_options": True}, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--allow-requantize", is_flag=True)
@click.option("--leave-output-tensor", is_flag=True)
@click.option("--pure", is_flag=True)
@click.option("--output-tensor-type", "output_type", metavar="T")
@click.option("--token-embedding-type", "embedding_type", metavar="T")
@click.option("--tensor-type", "tensor_types", multiple=True, metavar="REGEX=T")
@click.option("--override-kv", "overrides", multiple=True, metavar="KEY=TYPE:VALUE")
@click.option("--dry-run", is_flag=True)
@click.option("-v", "--verbose", is_flag=True)
@click.option("-h", "--help", is_flag=True, expose_value=False, is_eager=True, callback=_help)
@version_option()
def quantize(args, allow_requantize, leave_output_tensor, pure, output_type, embedding_type, tensor_types,
             overrides, dry_run, verbose):
    """Quantize a GGUF model as llama-quantize does (see --help)."""
    from llamapy.quantize import QuantizeError, quantize_file

    t_start = time.perf_counter()
    inp, out, params = resolve_arguments(args, allow_requantize, leave_output_tensor, pure, output_type,
                                         embedding_type, tensor_types, overrides, dry_run)
    option, n_threads = params.option, params.n_threads
    import_kernels()
    lines = verbose or not sys.stderr.isatty()
    if lines:
        what = "calculating quantization size for" if dry_run else "quantizing"
        target = "" if dry_run else f" to '{out}'"
        header = f"llama_quantize: {what} '{inp}'{target} as {option.name} using {n_threads} threads"
        listener = LogLines(dry_run, header)
        console = None
    else:
        from rich.console import Console
        console = Console(stderr=True)
        listener = ProgressBar(console)

    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:      # not the main thread (an embedding application): leave signals alone
        previous = None
    try:
        t0 = time.perf_counter()
        result = quantize_file(inp, out, params, listener)
        t_quantize = time.perf_counter() - t0
    except QuantizeError as e:
        listener.close()
        fail(str(e))
    finally:
        listener.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)

    if lines:
        for line in closing_lines(result.plan):
            click.echo(line, err=True)
        click.echo(f"\nllama_quantize: quantize time = {t_quantize * 1000:8.2f} ms")
        click.echo(f"llama_quantize:    total time = {(time.perf_counter() - t_start) * 1000:8.2f} ms")
    else:
        print_summary_table(console, result.plan, result, inp, out, n_threads)


def main(argv=None):
    run_command(quantize, "llamapy-quantize", argv)


if __name__ == "__main__":
    main()
