"""The commands as a user runs them: output on success, one line and a non-zero exit on bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from click.testing import CliRunner

import llamapy
from llamapy._kernels import _ops
from llamapy.cli.gguf_dump import gguf_dump
from llamapy.cli.main import cli
from llamapy.gguf import GGUFReader


def run_module(*args, **env_extra):
    env = dict(os.environ, **env_extra)
    here = os.path.dirname(os.path.dirname(os.path.abspath(llamapy.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([here, env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env, timeout=120)


def test_info_names_features_path_and_a_kernel_per_type():
    r = run_module("llamapy", "info")
    assert r.returncode == 0, r.stderr
    assert "system_info: n_threads = " in r.stdout and "AVX2 = " in r.stdout
    assert f"kernel path: {_ops.best_isa()}" in r.stdout
    for name in ("q4_0", "q4_K", "q6_K", "iq4_xs", "tq2_0", "bf16"):
        assert any(line.split()[:1] == [name] for line in r.stdout.splitlines()), name


def test_info_json_matches_the_kernels():
    result = CliRunner().invoke(cli, ["info", "--json"])
    assert result.exit_code == 0
    report = json.loads(result.output)
    assert report["current"] == _ops.current_isa()
    assert report["kernels"]["q4_K"] == _ops.kernel_impls()["q4_K"]


def test_forced_path_shows_in_info():
    r = run_module("llamapy", "info", LLAMAPY_CPU="scalar")
    assert r.returncode == 0
    assert "kernel path: scalar" in r.stdout


def test_bad_forced_path_is_one_line_error():
    r = run_module("llamapy", "info", LLAMAPY_CPU="sse9")
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error: unknown kernel path 'sse9'")


def test_version_prints_system_info():
    r = run_module("llamapy", "--version")
    assert r.returncode == 0
    assert r.stdout.startswith(f"llamapy {llamapy.__version__}\nCPU : ")


def test_gguf_dump_real_model(reference_model):
    result = CliRunner().invoke(gguf_dump, [str(reference_model)])
    assert result.exit_code == 0, result.output
    reader = GGUFReader(reference_model)
    lines = result.output.splitlines()
    assert f"GGUF.tensor_count = {len(reader.tensors)}" in result.output
    assert any("general.architecture = " in ln for ln in lines)
    last = reader.tensors[-1]
    assert lines[-1].split()[-1] == last.name and str(last.n_bytes) in lines[-1]


def test_gguf_dump_json(reference_model):
    result = CliRunner().invoke(gguf_dump, [str(reference_model), "--json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    reader = GGUFReader(reference_model)
    assert [t["name"] for t in data["tensors"]] == [t.name for t in reader.tensors]
    assert data["metadata"]["general.architecture"] == reader.get("general.architecture")


def test_gguf_dump_bad_inputs_are_one_line_errors(tmp_path):
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(b"GGUF\x03\x00\x00\x00\x01")
    not_gguf = tmp_path / "text.gguf"
    not_gguf.write_text("hello")
    for path, needle in ((tmp_path / "missing.gguf", "no such file"), (truncated, "cut.gguf"),
                         (not_gguf, "not a GGUF file")):
        r = run_module("llamapy.cli.gguf_dump", str(path))
        assert r.returncode == 1, r.stderr
        assert r.stdout == "" and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr


def test_fetch_prints_the_cached_model_and_refuses_unknown_names(reference_model):
    name = "gemma3" if reference_model.name.startswith("gemma") else "smollm2"
    result = CliRunner().invoke(cli, ["fetch", name])
    assert result.exit_code == 0 and result.output.strip() == str(reference_model)
    r = run_module("llamapy", "fetch", "gpt5")
    assert r.returncode == 1 and r.stderr == "error: unknown model 'gpt5'; known: smollm2, gemma3\n"


def test_usage_errors_are_one_line_for_every_command():
    for args in (("llamapy", "--nope"), ("llamapy.cli.gguf_dump",), ("llamapy.cli.gguf_dump", "--bogus", "x"),
                 ("llamapy.cli.cmd_cli", "--top-p", "abc")):
        r = run_module(*args)
        assert r.returncode == 1, args
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, (args, r.stderr)


def test_bare_group_shows_help():
    r = run_module("llamapy")
    assert r.returncode == 0 and r.stdout.startswith("Usage: llamapy")
