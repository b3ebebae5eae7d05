"""llamapy-quantize against llama.cpp's quantizer: the same types, the same metadata, the same bytes.

tests/data/quantize/refs.json (scripts/make_quantize_refs.py, llama-cpp-python 0.3.36) holds llama.cpp's
results for 125 cases on five inputs that tests/quant_models.py makes again here, bit for bit: a synthetic
16-layer llama, float (F16) exports of both reference models, and the reference models themselves.

How every byte of every case is checked without writing 70 model files:
  * test_plan_matches_llama_cpp: for each case, the tensor types, the header (metadata + tensor infos, whose
    sha256 llama.cpp's file gives) and llama.cpp's warnings and size lines;
  * test_every_tensor_matches_llama_cpp: each (tensor, type) pair that any case writes, converted once and
    compared with the sha256 of its bytes in llama.cpp's files;
  * test_cli_writes_llama_cpp_files: the real command end to end, whole-file sha256, for every case of the
    synthetic model and a few of the reference models (this also covers the padding between tensors).
Then the command-line behaviour: usage, errors, threads, the progress display, interruption, a full disk.
"""
from __future__ import annotations

import hashlib
import json
import os
import pty
import resource
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import llamapy
from llamapy.cli.cmd_quantize import closing_lines, resolve_arguments
from llamapy.cli.cmd_quantize import quantize as quantize_command
from llamapy.gguf import GGMLType, GGUFReader, type_name
from llamapy.models import model_path
from llamapy.quantize import Converter, QuantizeError, QuantizeListener, make_plan, open_input, tensor_job
from quant_models import file_sha256, float_export, write_tiny_llama

REFS = json.loads((Path(__file__).parent / "data" / "quantize" / "refs.json").read_text())
CASES = REFS["cases"]
SRC = str(Path(llamapy.__file__).resolve().parent.parent)


def case_id(case) -> str:
    return f"{case['model']}:{'_'.join(a.lstrip('-') for a in case['args'])}"


@pytest.fixture(scope="session")
def inputs(tmp_path_factory):
    """The five inputs llama.cpp quantized, made again (and checked to be the same files)."""
    folder = tmp_path_factory.mktemp("quantize-inputs")
    paths = {
        "tiny": write_tiny_llama(folder / "tiny.gguf"),
        "smollm2": float_export(model_path("smollm2"), folder / "smollm2-f16.gguf"),
        "gemma3": float_export(model_path("gemma3"), folder / "gemma3-f16.gguf"),
        "smollm2-q4_1": model_path("smollm2"),
        "gemma3-q4_k_m": model_path("gemma3"),
    }
    return {name: str(p) for name, p in paths.items()}


@pytest.fixture(scope="session")
def readers(inputs):
    return {name: open_input(p) for name, p in inputs.items()}


def run_cli(*args, timeout=300, **kwargs):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "llamapy.cli.cmd_quantize", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout, **kwargs)


def command_line(case, inp, out=None):
    """The case's llama-quantize argument list with the file names put in: options, in, [out], TYPE."""
    args = case["args"]
    return args[:-1] + [inp] + ([out] if out else []) + [args[-1]]


def check_messages(lines: list[str], case) -> None:
    """The log lines besides the per-tensor ones against llama.cpp's (for the reference models the refs keep
    only the number of shape-fallback warnings, which concern most of their tensors)."""
    if "n_warnings" in case:
        kept = [line for line in lines if not line.startswith("warning: ")]
        assert len(lines) - len(kept) == case["n_warnings"]
        lines = kept
    assert lines == case["messages"]


# ---- inputs and plans ------------------------------------------------------------------------------------

def test_inputs_are_the_files_llama_cpp_quantized(inputs):
    for name, path in inputs.items():
        assert file_sha256(path) == REFS["inputs"][name], f"{name}: the test input is not the file llama.cpp saw"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_plan_matches_llama_cpp(case, readers, inputs):
    """Types, header bytes, warnings and size lines of every case; the cases llama.cpp refuses fail here too."""
    _, _, params = resolve_arguments((inputs[case["model"]], "unused.gguf", case["args"][-1]),
                                     **_options(case["args"]))
    if case["rc"] != 0:
        with pytest.raises(QuantizeError) as e:
            make_plan(readers[case["model"]], params)
        assert any(word in str(e.value) for word in ("importance matrix", "requantizing"))
        return
    plan = make_plan(readers[case["model"]], params)
    assert [j.name for j in plan.jobs] == REFS["names"][case["model"]]
    assert " ".join(type_name(j.new_type) for j in plan.jobs) == case["types"]
    if "header_sha256" in case:
        assert hashlib.sha256(plan.header()).hexdigest() == case["header_sha256"]
        assert len(plan.header()) + sum(j.new_bytes + (-j.new_bytes % 32) for j in plan.jobs) == case["size"]
    check_messages(plan.messages + closing_lines(plan), case)


def _options(args) -> dict:
    """The click option values of a case's argument list (the positionals are passed separately)."""
    ctx = quantize_command.make_context("llamapy-quantize", list(args[:-1]) + ["x.gguf", args[-1]])
    values = dict(ctx.params)
    values.pop("args")
    return values


# ---- every tensor's bytes -----------------------------------------------------------------------------------

class _TensorHashes(QuantizeListener):
    """Sink and listener for Converter.run: the sha256 of each tensor's bytes, by (name, type)."""

    def __init__(self):
        self.digest, self.done = None, {}

    def on_tensor(self, job):
        self.digest = hashlib.sha256()

    def write(self, data):
        self.digest.update(data)

    def on_tensor_done(self, job):
        self.done[(job.name, type_name(job.new_type))] = self.digest.hexdigest()[:16]


@pytest.mark.parametrize("model", list(REFS["tensor_sha"]))
def test_every_tensor_matches_llama_cpp(model, readers):
    """Each (tensor, type) pair of every file llama.cpp wrote for this model, converted once (2 threads)."""
    expected = REFS["tensor_sha"][model]
    wanted = {(name, t) for name, types in expected.items() for t in types}
    written = {pair for case in CASES if case["model"] == model and "file_sha256" in case
               for pair in zip(REFS["names"][model], case["types"].split())}
    assert written == wanted
    by_name = {t.name: t for t in readers[model].tensors}
    types = {type_name(t): t for t in GGMLType}
    hashes = _TensorHashes()
    with Converter(2) as converter:
        converter.run([tensor_job(by_name[name], types[t]) for name, t in sorted(wanted)], hashes, hashes, pad=False)
    bad = [f"{name} -> {t}" for name, t in sorted(wanted) if hashes.done[(name, t)] != expected[name][t]]
    assert not bad, f"{len(bad)} of {len(wanted)} tensors differ from llama.cpp: {bad[:8]}"


# ---- the command, end to end -----------------------------------------------------------------------------------

E2E_REAL = [("gemma3", ["Q4_K_M"]), ("smollm2", ["Q6_K"]), ("smollm2-q4_1", ["--allow-requantize", "Q4_K_M"]),
            ("gemma3-q4_k_m", ["COPY"])]
E2E_CASES = [c for c in CASES if c["model"] == "tiny" or (c["model"], c["args"]) in E2E_REAL]


@pytest.mark.parametrize("case", E2E_CASES, ids=case_id)
def test_cli_writes_llama_cpp_files(case, inputs, tmp_path):
    """The command with -v writes llama.cpp's file and, where recorded, llama.cpp's log line for line."""
    out = tmp_path / "out.gguf"
    dry = "--dry-run" in case["args"]
    argv = ["-v"] + command_line(case, inputs[case["model"]], None if dry else str(out)) + ["2"]
    result = CliRunner().invoke(quantize_command, argv)
    if case["rc"] != 0:
        assert result.exit_code == 1
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
        assert not out.exists() and os.listdir(tmp_path) == []
        return
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0].startswith("llama_quantize: ")
    if "log" in case:
        assert lines[1:] == case["log"]
    else:
        check_messages([line for line in lines[1:] if not line.startswith("[")], case)
    assert result.stdout.startswith("\nllama_quantize: quantize time = ")
    assert "llama_quantize:    total time = " in result.stdout
    if dry:
        assert os.listdir(tmp_path) == []
    else:
        assert file_sha256(out) == case["file_sha256"]
        assert os.listdir(tmp_path) == ["out.gguf"]     # no temporary file left behind


def test_threads_do_not_change_the_bytes(inputs, tmp_path):
    case = next(c for c in CASES if c["model"] == "tiny" and c["args"] == ["Q4_K_M"])
    for n in ("1", "3"):
        r = run_cli(inputs["tiny"], tmp_path / f"out{n}.gguf", "Q4_K_M", n)
        assert r.returncode == 0, r.stderr
        assert file_sha256(tmp_path / f"out{n}.gguf") == case["file_sha256"]
        assert f"using {n} threads" in r.stderr


def test_type_by_number_and_default_output_name(inputs, tmp_path):
    """`15` is Q4_K_M, named by the table's first entry for 15 (Q4_K); the output goes beside the input."""
    src = tmp_path / "tiny.gguf"
    src.write_bytes(Path(inputs["tiny"]).read_bytes())
    r = run_cli(src, "15")
    assert r.returncode == 0, r.stderr
    case = next(c for c in CASES if c["model"] == "tiny" and c["args"] == ["Q4_K_M"])
    assert file_sha256(tmp_path / "ggml-model-Q4_K.gguf") == case["file_sha256"]
    r = run_cli(src, "q4_k_m")     # names in any case
    assert r.returncode == 0 and file_sha256(tmp_path / "ggml-model-Q4_K_M.gguf") == case["file_sha256"]


def test_aliases_name_the_same_mix(readers):
    for alias, full in (("Q3_K", "Q3_K_M"), ("q4_k", "Q4_K_M"), ("Q5_K", "Q5_K_M"), ("13", "Q3_K_L")):
        a = make_plan(readers["tiny"], resolve_arguments(("x", alias))[2])
        b = make_plan(readers["tiny"], resolve_arguments(("x", full))[2])
        assert a.header() == b.header()


# ---- usage and errors --------------------------------------------------------------------------------------------

def test_usage_and_type_table_without_type(inputs):
    for args in ([], [inputs["tiny"]], [inputs["tiny"], "out.gguf", "Q9_9"], [inputs["tiny"], "out.gguf"]):
        r = run_cli(*args)
        assert r.returncode == 1
        assert r.stdout.startswith("usage: llamapy-quantize [options] in.gguf [out.gguf] TYPE [nthreads]")
        assert "  15  or  Q4_K_M  : " in r.stdout and "          COPY    : " in r.stdout
        assert r.stderr.count("\n") <= 1


@pytest.mark.parametrize("args, message", [
    (["{tiny}", "{tiny}", "Q4_0"], "input and output files are the same"),
    (["{missing}", "{out}", "Q4_0"], "no such file"),
    (["{folder}", "{out}", "Q4_0"], "is a directory"),
    (["{corrupt}", "{out}", "Q4_0"], "extends past end of file"),
    (["{q4_1}", "{out}", "Q4_K_M"], "requantizing from type q4_1 is disabled"),
    (["{tiny}", "{out}", "Q2_K_S"], "requires an importance matrix"),
    (["{tiny}", "{out}", "IQ2_XXS"], "no quantizer for this type"),
    (["--output-tensor-type", "q9_9", "{tiny}", "{out}", "Q4_0"], "invalid ggml type 'q9_9'"),
    (["--tensor-type", "attn_v", "{tiny}", "{out}", "Q4_0"], "malformed 'attn_v'"),
    (["--tensor-type", "attn_v=iq3_s", "{tiny}", "{out}", "Q4_0"], "cannot quantize to iq3_s"),
    (["--tensor-type", "(=q8_0", "{tiny}", "{out}", "Q4_0"], "bad regular expression"),
    (["--override-kv", "general.name=text:x", "{tiny}", "{out}", "Q4_0"], "invalid type for KV override"),
    (["--bogus", "{tiny}", "{out}", "Q4_0"], "unknown option '--bogus'"),
    (["{tiny}", "{out}", "Q4_0", "many"], "invalid nthreads 'many'"),
])
def test_errors_are_one_line(args, message, inputs, tmp_path):
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(Path(inputs["tiny"]).read_bytes()[:100_000])
    names = dict(tiny=inputs["tiny"], q4_1=inputs["smollm2-q4_1"], missing=tmp_path / "nope.gguf",
                 folder=tmp_path, corrupt=corrupt, out=tmp_path / "out.gguf")
    r = run_cli(*[a.format(**names) for a in args])
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and message in r.stderr, r.stderr
    assert not (tmp_path / "out.gguf").exists()
    assert sorted(os.listdir(tmp_path)) == ["corrupt.gguf"]


def test_nan_in_the_input_is_an_error(tmp_path):
    from llamapy.gguf import GGUFWriter
    import numpy as np
    w = GGUFWriter(tmp_path / "nan.gguf")
    w.add("general.architecture", "llama")
    x = np.ones((4, 64), np.float32)
    x[2, 5] = np.nan
    w.add_tensor("blk.0.attn_q.weight", x)
    w.write()
    r = run_cli(tmp_path / "nan.gguf", tmp_path / "out.gguf", "Q8_0")
    assert r.returncode == 1 and r.stderr.splitlines()[-1] == "error: tensor 'blk.0.attn_q.weight' has invalid data"
    assert not (tmp_path / "out.gguf").exists()


def test_f16_overflow_fails_validation(tmp_path):
    """llama.cpp checks its output: 1e6 as F16 is infinity, so the conversion is refused."""
    from llamapy.gguf import GGUFWriter
    import numpy as np
    w = GGUFWriter(tmp_path / "big.gguf")
    w.add("general.architecture", "llama")
    w.add_tensor("blk.0.attn_q.weight", np.full((4, 64), 1e6, np.float32))
    w.write()
    r = run_cli(tmp_path / "big.gguf", tmp_path / "out.gguf", "F16")
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == "error: tensor 'blk.0.attn_q.weight': quantized data validation failed"
    assert not (tmp_path / "out.gguf").exists()


def test_disk_full_is_an_error_and_leaves_nothing(inputs, tmp_path):
    """A 2 MiB file size limit (RLIMIT_FSIZE) stands in for a full disk: the write fails with EFBIG."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))
    r = run_cli(inputs["smollm2"], tmp_path / "out.gguf", "Q8_0", "2", preexec_fn=limit)
    assert r.returncode == 1
    last = r.stderr.splitlines()[-1]    # after the per-tensor lines of what was written before
    assert last.startswith("error: cannot write ") and last.endswith(": File too large")
    assert os.listdir(tmp_path) == []


def _start_and_interrupt(inputs, tmp_path, sig):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "llamapy.cli.cmd_quantize", inputs["gemma3"],
                             str(tmp_path / "out.gguf"), "Q4_K_M", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    # wait until the temporary output holds some tensor data, so the run is really under way
    while time.time() < deadline:
        tmps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        if tmps and tmps[0].stat().st_size > 20 << 20:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the run did not start writing")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_ctrl_c_leaves_no_output(inputs, tmp_path):
    (tmp_path / "out.gguf").write_bytes(b"previous file")
    rc, err = _start_and_interrupt(inputs, tmp_path, signal.SIGINT)
    assert rc == 130 and err.strip().splitlines()[-1] == "Interrupted by user"
    assert os.listdir(tmp_path) == ["out.gguf"]
    assert (tmp_path / "out.gguf").read_bytes() == b"previous file"     # the old file is untouched


def test_sigterm_leaves_no_output(inputs, tmp_path):
    rc, _ = _start_and_interrupt(inputs, tmp_path, signal.SIGTERM)
    assert rc == 128 + signal.SIGTERM
    assert os.listdir(tmp_path) == []


# ---- display -----------------------------------------------------------------------------------------------------

def test_progress_bar_and_summary_on_a_terminal(inputs, tmp_path):
    """On a terminal: a rich progress bar (tensor i/N, name, speed, ETA), then a summary; no per-tensor lines."""
    main, sub = pty.openpty()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]), COLUMNS="160",
               TERM="xterm")
    proc = subprocess.Popen([sys.executable, "-m", "llamapy.cli.cmd_quantize", inputs["smollm2"],
                             str(tmp_path / "out.gguf"), "Q8_0", "2"], stdin=sub, stdout=sub, stderr=sub, env=env)
    os.close(sub)
    chunks = []
    while True:
        ready, _, _ = select.select([main], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(main, 1 << 16)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(main)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, screen
    assert "/272]" in screen and "blk." in screen and "/s" in screen          # counter, tensor, speed
    assert "bits per weight" in screen and "Q8_0, file type 7" in screen      # the summary
    assert "converting to" not in screen
    assert GGUFReader(tmp_path / "out.gguf").get("general.file_type") == 7


def test_log_lines_when_not_a_terminal(inputs, tmp_path):
    r = run_cli(inputs["tiny"], tmp_path / "out.gguf", "Q8_0", "2")
    assert r.returncode == 0
    lines = r.stderr.splitlines()
    out = tmp_path / "out.gguf"
    assert lines[0] == f"llama_quantize: quantizing '{inputs['tiny']}' to '{out}' as Q8_0 using 2 threads"
    assert lines[1].startswith("warning: blk.2.conv_proj.weight               - ncols     40 not divisible by  32 ")
    assert lines[2] == ("[   1/ 154] output.weight                        - [   256,    320,      1,      1], "
                        "type =   bf16, converting to q8_0 .. size =     0.16 MiB ->     0.08 MiB")
    assert lines[-3:] == ["llama_model_quantize_impl: model size  =    22.61 MiB (31.56 BPW)",
                          "llama_model_quantize_impl: quant size  =     6.12 MiB (8.54 BPW)",
                          "llama_model_quantize_impl: WARNING: 1 of 154 tensor(s) required fallback quantization"]
    assert r.stdout.splitlines()[1].startswith("llama_quantize: quantize time = ")
