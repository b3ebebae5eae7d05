"""`llamapy-bench`: prompt processing and generation speed, with llama-bench's flags, tests and outputs.

    llamapy-bench -m model.gguf [-p 512] [-n 128] [-pg 512,128] [-t 1,2] [-r 5] [-o md|csv|json|jsonl|sql]

Value lists are comma-separated or given by repeating the flag; integer flags also take ranges
(`first-last`, `first-last+step`, `first-last*mult`). Every combination is run, and each test is printed as
soon as it is done (stdout, or stderr with -oe). The backend column names the kernel path in use.
"""
from __future__ import annotations

import sys

import click

from llamapy.cli.common import fail, import_kernels, one_line, run_command, version_option

FORMATS = ("csv", "json", "jsonl", "md", "sql")


# -- printers: one per output format, each with header / test / footer -------------------------------

def _g6(x: float) -> str:
    """C++ stream default formatting of a double: 6 significant digits (%g)."""
    return f"{x:g}"


def _json_string(value: str) -> str:
    out = []
    for ch in value:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ord(ch) <= 0x1F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _json_value(name: str, value: str) -> str:
    from llamapy.bench import field_type
    kind = field_type(name)
    if kind == "str":
        return _json_string(value)
    if kind == "bool":
        return "false" if value == "0" else "true"
    return value


class Printer:
    def __init__(self, out):
        self.out = out

    def write(self, text: str):
        self.out.write(text)
        self.out.flush()

    def header(self, shown: list[str]):
        pass

    def test(self, result, rec: dict):
        raise NotImplementedError

    def footer(self):
        pass


class CsvPrinter(Printer):
    def header(self, shown):
        from llamapy.bench import FIELDS
        self.write(",".join(FIELDS) + "\n")

    def test(self, result, rec):
        self.write(",".join('"' + v.replace('"', '""') + '"' for v in rec.values()) + "\n")


class JsonPrinter(Printer):
    first = True

    def header(self, shown):
        self.write("[\n")

    def test(self, result, rec):
        body = "".join(f'    "{k}": {_json_value(k, v)},\n' for k, v in rec.items())
        ns = ", ".join(str(x) for x in result.samples_ns)
        ts = ", ".join(_g6(x) for x in result.samples_ts)
        self.write(("" if self.first else ",\n") + "  {\n" + body + f'    "samples_ns": [ {ns} ],\n'
                   f'    "samples_ts": [ {ts} ]\n  }}')
        self.first = False

    def footer(self):
        self.write("\n]\n")


class JsonlPrinter(Printer):
    def test(self, result, rec):
        body = "".join(f'"{k}": {_json_value(k, v)}, ' for k, v in rec.items())
        ns = ", ".join(str(x) for x in result.samples_ns)
        ts = ", ".join(_g6(x) for x in result.samples_ts)
        self.write("{" + body + f'"samples_ns": [ {ns} ],"samples_ts": [ {ts} ]' + "}\n")


class SqlPrinter(Printer):
    def header(self, shown):
        from llamapy.bench import FIELDS, field_type
        sql = {"str": "TEXT", "bool": "INTEGER", "int": "INTEGER", "float": "REAL"}
        cols = ",\n".join(f"  {f} {sql[field_type(f)]}" for f in FIELDS)
        self.write(f"CREATE TABLE IF NOT EXISTS llama_bench (\n{cols}\n);\n\n")

    def test(self, result, rec):
        self.write(f"INSERT INTO llama_bench ({', '.join(rec)}) VALUES ("
                   + ", ".join(f"'{v}'" for v in rec.values()) + ");\n")


# Markdown: display names and widths (negative: left-aligned), as llama-bench lays out its table.
MD_NAMES = {"n_threads": "threads", "type_k": "type_k", "type_v": "type_v", "n_batch": "n_batch",
            "n_ubatch": "n_ubatch"}
MD_WIDTHS = {"model": -30, "size": 10, "params": 10, "backend": -10, "n_threads": 7, "n_batch": 7, "n_ubatch": 8,
             "type_k": 6, "type_v": 6, "test": 15, "t/s": 20}


class MarkdownPrinter(Printer):
    def header(self, shown):
        self.fields = ["model", "size", "params", "backend", *shown, "test", "t/s"]
        line = "|" + "".join(f" {MD_NAMES.get(f, f):{self._align(f)}{abs(MD_WIDTHS[f])}} |" for f in self.fields)
        sep = "|" + "".join(f" {'-' * (abs(MD_WIDTHS[f]) - 1)}{':' if MD_WIDTHS[f] > 0 else '-'} |"
                            for f in self.fields)
        self.write(line + "\n" + sep + "\n")

    @staticmethod
    def _align(name: str) -> str:
        return "<" if MD_WIDTHS[name] < 0 else ">"

    def test(self, result, rec):
        size, params = result.info.size, result.info.n_params
        cells = []
        for f in self.fields:
            if f == "model":
                v = result.info.desc
            elif f == "size":
                v = f"{size / 1024 ** 2:.2f} MiB" if size < 1024 ** 3 else f"{size / 1024 ** 3:.2f} GiB"
            elif f == "params":
                v = f"{params / 1e6:.2f} M" if params < 1e9 else f"{params / 1e9:.2f} B"
            elif f == "backend":
                v = rec["backends"]
            elif f == "test":
                v = result.spec.label
            elif f == "t/s":
                v = f"{result.avg_ts:.2f} \u00b1 {result.stdev_ts:.2f}"
            else:
                v = rec[f]
            width = abs(MD_WIDTHS[f])
            # llama-bench pads by bytes: the two-byte '±' takes one column less than it counts for.
            if f == "t/s":
                width = max(width + 1 - len(v.encode("utf-8")) + len(v), 0)
            cells.append(f" {v:{self._align(f)}{width}} |")
        self.write("|" + "".join(cells) + "\n")

    def footer(self):
        from llamapy.bench import build_info
        commit, number = build_info()
        self.write(f"\nbuild: {commit} ({number})\n")


PRINTERS = {"csv": CsvPrinter, "json": JsonPrinter, "jsonl": JsonlPrinter, "md": MarkdownPrinter, "sql": SqlPrinter}


# -- options -----------------------------------------------------------------------------------------

def _ints(values, flag: str, default: list[int], minimum: int = 0) -> list[int]:
    from llamapy.bench import parse_int_range
    out = []
    for v in values:
        try:
            out += parse_int_range(v)
        except ValueError as e:
            fail(f"{flag}: {e}")
    for x in out:
        if x < minimum:
            fail(f"{flag}: {x} is out of range (must be >= {minimum})")
    return out or default


def _strings(values, default: list[str]) -> list[str]:
    out = [s for v in values for s in v.split(",")]
    return out or default


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("-m", "--model", "models", multiple=True, metavar="FNAME",
              help="Model path(s), comma-separated or repeated (default: the cached SmolLM2-135M-Instruct Q4_1).")
@click.option("-p", "--n-prompt", "n_prompt", multiple=True, metavar="N",
              help="Prompt tokens (default: 512; 0 skips).")
@click.option("-n", "--n-gen", "n_gen", multiple=True, metavar="N", help="Generated tokens (default: 128; 0 skips).")
@click.option("-pg", "n_pg", multiple=True, metavar="PP,TG", help="A combined prompt + generation test.")
@click.option("-d", "--n-depth", "n_depth", multiple=True, metavar="N", help="Tokens already cached (default: 0).")
@click.option("-b", "--batch-size", "n_batch", multiple=True, metavar="N", help="Logical batch (default: 2048).")
@click.option("-ub", "--ubatch-size", "n_ubatch", multiple=True, metavar="N", help="Physical batch (default: 512).")
@click.option("-ctk", "--cache-type-k", "type_k", multiple=True, metavar="TYPE", help="K cache type (default: f16).")
@click.option("-ctv", "--cache-type-v", "type_v", multiple=True, metavar="TYPE", help="V cache type (default: f16).")
@click.option("-t", "--threads", "n_threads", multiple=True, metavar="N",
              help="Threads (default: the cores this process may use).")
@click.option("-r", "--repetitions", "reps", type=int, default=5, show_default=True, help="Samples per test.")
@click.option("-o", "--output", "output", type=click.Choice(FORMATS), default="md", show_default=True,
              help="Output format on stdout.")
@click.option("-oe", "--output-err", "output_err", type=click.Choice(FORMATS), default=None,
              help="Also print this format on stderr.")
@click.option("--progress", is_flag=True, help="Report each phase of each test on stderr.")
@click.option("--no-warmup", is_flag=True, help="Skip the warm-up runs.")
@version_option()
def bench(models, n_prompt, n_gen, n_pg, n_depth, n_batch, n_ubatch, type_k, type_v, n_threads, reps, output,
          output_err, progress, no_warmup):
    """Measure prompt processing (pp) and generation (tg) speed, as llama-bench does.

    \b
    Examples:
      llamapy-bench -m model.gguf
      llamapy-bench -m a.gguf,b.gguf -p 128,512 -n 0 -t 1,2 -o json
      llamapy-bench -m model.gguf -pg 512,128 -r 3 -o csv
    """
    import_kernels()
    from llamapy.bench import BenchParams, cpu_info, effective_threads_default, expand, record, run_benchmarks
    from llamapy.cli.common import resolve_model
    from llamapy.runtime import backend_label

    if reps < 1:
        fail(f"-r: the number of repetitions must be >= 1 (got {reps})")
    paths = [resolve_model(m) for m in _strings(models, [])] or [resolve_model(None)]
    pg = []
    for v in n_pg:
        parts = v.split(",")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            fail(f"-pg: expected PP,TG (two non-negative integers), got {v!r}")
        pg.append((int(parts[0]), int(parts[1])))
    params = BenchParams(
        models=paths,
        n_prompt=_ints(n_prompt, "-p", [512]), n_gen=_ints(n_gen, "-n", [128]), n_pg=pg,
        n_depth=_ints(n_depth, "-d", [0]), n_batch=_ints(n_batch, "-b", [2048], 1),
        n_ubatch=_ints(n_ubatch, "-ub", [512], 1),
        type_k=_strings(type_k, ["f16"]), type_v=_strings(type_v, ["f16"]),
        n_threads=_ints(n_threads, "-t", [effective_threads_default()], 1))
    from llamapy.model.kvcache import kv_cache_type
    for flag, which, types in (("-ctk", "K", params.type_k), ("-ctv", "V", params.type_v)):
        for t in types:
            try:
                kv_cache_type(t, which)
            except ValueError as e:
                fail(f"{flag}: {one_line(e)}")
    tests = expand(params)
    if not tests:
        fail("nothing to run: every test has 0 tokens")

    # md shows a parameter column when its values differ from the default or there are several
    shown = ["n_threads"]
    for name, default in (("n_batch", [2048]), ("n_ubatch", [512]), ("type_k", ["f16"]), ("type_v", ["f16"])):
        if getattr(params, name) != default:
            shown.append(name)

    printers = [PRINTERS[output](sys.stdout)]
    if output_err:
        printers.append(PRINTERS[output_err](sys.stderr))
    for p in printers:
        p.header(shown)
    backend, cpu = backend_label(), cpu_info()

    def report(idx, total, msg):
        click.echo(f"llamapy-bench: benchmark {idx}/{total}: {msg}", err=True)

    try:
        for result in run_benchmarks(tests, reps, warmup=not no_warmup, progress=report if progress else None):
            rec = record(result, backend, cpu)
            for p in printers:
                p.test(result, rec)
    except (OSError, ValueError) as e:
        fail(one_line(e))
    for p in printers:
        p.footer()


def main(argv=None):
    run_command(bench, "llamapy-bench", argv)


if __name__ == "__main__":
    main()
