"""`llamapy-cli` as a user runs it (a subprocess): stdout holds the prompt and the completion, timings go to
stderr, and bad input is one `error:` line with a non-zero exit."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import llamapy
from llamapy.models import model_path

PROMPT = "The capital of France is"


def run_cli(*args, timeout=120):
    """llamapy-cli for a raw completion (-no-cnv: SmolLM2 has a chat template, which turns chat mode on)."""
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.abspath(llamapy.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([here, env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "llamapy.cli.cmd_cli", "-no-cnv", *args], capture_output=True,
                          stdin=subprocess.DEVNULL, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def api():
    from llamapy import Llama
    return Llama(model_path("smollm2"), n_ctx=256, n_threads=2, verbose=False)


@pytest.fixture(scope="module")
def greedy_cli():
    return run_cli("-m", str(model_path("smollm2")), "-p", PROMPT, "-n", "16", "--temp", "0", "-t", "2", "-c", "256")


def assert_one_line_error(r, *needles):
    err = r.stderr.decode()
    assert r.returncode != 0, err
    assert err.startswith("error: ") and err.strip().count("\n") == 0, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    assert r.stdout == b""


def test_greedy_cli_equals_api(greedy_cli, api):
    r = greedy_cli
    assert r.returncode == 0, r.stderr.decode()
    text = api(PROMPT, max_tokens=16, temperature=0)["choices"][0]["text"]
    assert r.stdout.decode() == PROMPT + text


def test_timings_on_stderr_only(greedy_cli):
    out, err = greedy_cli.stdout.decode(), greedy_cli.stderr.decode()
    for needle in ("load time =", "prompt eval time =", "eval time =", "total time =", "sampler seed:"):
        assert needle in err and needle not in out
    assert "/    15 runs" in err  # 16 tokens: the last one is sampled but never evaluated
    assert "tokens per second" in err


def test_warmup_leaves_the_text_and_takes_the_page_faults_out_of_prompt_eval(greedy_cli):
    """As llama.cpp, a [BOS, EOS] decode runs before the prompt (in load time): same completion either way."""
    cold = run_cli("-m", str(model_path("smollm2")), "-p", PROMPT, "-n", "16", "--temp", "0", "-t", "2", "-c", "256",
                   "--no-warmup")
    assert cold.returncode == 0, cold.stderr.decode()
    assert cold.stdout == greedy_cli.stdout
    assert "--no-warmup" in run_cli("--help").stdout.decode()


def test_default_model_n_and_threads(api):
    r = run_cli("-p", PROMPT, "-n", "5", "--temp", "0", "-t", "1", "-c", "64")
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode() == PROMPT + api(PROMPT, max_tokens=5, temperature=0)["choices"][0]["text"]


def test_seed_reproducibility():
    args = ("-p", PROMPT, "-n", "8", "--temp", "0.8", "-s", "42", "-c", "64", "--top-k", "0")
    a, b = run_cli(*args), run_cli(*args)
    assert a.returncode == 0 and a.stdout == b.stdout
    assert "sampler seed: 42" in a.stderr.decode()


def test_end_of_text_logit_bias_and_ignore_eos(api):
    eos = api.token_eos()
    r = run_cli("-p", PROMPT, "-n", "4", "--temp", "0", "-c", "64", "-l", f"{eos}+100")
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode() == PROMPT + " [end of text]\n"
    r = run_cli("-p", PROMPT, "-n", "4", "--temp", "0", "-c", "64", "-l", f"{eos}+100", "--ignore-eos")
    assert r.returncode == 0 and r.stdout.decode().startswith(PROMPT) and "[end of text]" not in r.stdout.decode()
    assert len(r.stdout.decode()) > len(PROMPT)


def test_prompt_file_and_escapes(tmp_path, api):
    f = tmp_path / "prompt.txt"
    f.write_text(PROMPT + "\n")
    r = run_cli("-f", str(f), "-n", "3", "--temp", "0", "-c", "64")
    assert r.returncode == 0 and r.stdout.decode() == PROMPT + api(PROMPT, max_tokens=3, temperature=0)["choices"][0]["text"]
    r = run_cli("-p", "a\\tb\\x41\\q", "-n", "1", "-c", "64", "--verbose-prompt")
    assert r.returncode == 0 and r.stdout.decode().startswith("a\tbA\\q")
    assert "number of tokens in prompt =" in r.stderr.decode()


@pytest.mark.parametrize("args, needle", [
    (("--top-p", "abc"), "--top-p"),
    (("--bogus-flag",), "--bogus-flag"),
    (("-n",), "-n"),
    (("--repeat-penalty", "0"), "--repeat-penalty"),
    (("--repeat-last-n", "-3"), "--repeat-last-n"),
    (("--mirostat", "3"), "--mirostat"),
    (("-l", "12x5"), "--logit-bias"),
    (("-ctv", "q8_0"), "requires flash attention"),
    (("--dry-penalty-last-n", "-1"), "dry-penalty-last-n"),
    (("-ctv", "nope"), "-ctv"),
    (("-t", "0"), "-t"),
])
def test_bad_flags_are_one_line_errors(args, needle):
    assert_one_line_error(run_cli("-p", "hi", *args), needle)


def test_bad_model_files(tmp_path):
    assert_one_line_error(run_cli("-m", str(tmp_path / "missing.gguf"), "-p", "hi"), "missing.gguf")
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(os.urandom(4096))
    assert_one_line_error(run_cli("-m", str(garbage), "-p", "hi"), "failed to load model")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(model_path("smollm2").read_bytes()[:200_000])
    assert_one_line_error(run_cli("-m", str(truncated), "-p", "hi"), "failed to load model")


def test_prompt_too_long():
    assert_one_line_error(run_cli("-p", " ".join(["word"] * 20),
                                  "-c", "16"), "prompt is too long")
