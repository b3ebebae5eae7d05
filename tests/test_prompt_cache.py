"""--prompt-cache FILE: the evaluated prompt (tokens and KV cache entries) saved, and reused by later runs.

Runs llamapy-cli as a user does (greedy, raw completion) and reads the evidence in its timing lines: a second
run with the same prompt evaluates no prompt tokens at all, only the last prompt token again (its logits are
not in the file), and generates the same text.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llamapy import prompt_cache
from llamapy.gguf import GGUFReader
from llamapy.model import Model
from llamapy.models import model_path
from llamapy.tokenizer import Tokenizer

CLI = str(Path(sys.executable).with_name("llamapy-cli"))
PROMPT = ("The history of the Roman Empire spans many centuries, from the founding of the city to the fall of "
          "Constantinople. Summarize it:")


def run(*args, model="smollm2"):
    return subprocess.run([CLI, "-m", str(model_path(model)), "-no-cnv", "--temp", "0", "-t", "1", "-c", "256",
                           "-n", "8", *args], capture_output=True, stdin=subprocess.DEVNULL, timeout=120)


def prompt_tokens_evaluated(r) -> int:
    m = re.search(r"prompt eval time =\s+[\d.]+ ms /\s+(\d+) tokens", r.stderr.decode())
    assert m, r.stderr.decode()
    return int(m.group(1))


def test_second_run_skips_the_prompt_and_generates_the_same(tmp_path):
    cache = tmp_path / "prompt.bin"
    first = run("-p", PROMPT, "--prompt-cache", str(cache))
    assert first.returncode == 0, first.stderr.decode()
    assert "session file does not exist, will create." in first.stderr.decode()
    n_prompt = prompt_tokens_evaluated(first)
    assert n_prompt > 20 and cache.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["prompt.bin"]      # written to a temp file, renamed

    second = run("-p", PROMPT, "--prompt-cache", str(cache))
    err = second.stderr.decode()
    assert second.returncode == 0, err
    assert "session file has exact match for prompt!" in err and "replayed last token from session" in err
    assert prompt_tokens_evaluated(second) == 0
    assert second.stdout == first.stdout


def test_longer_prompt_evaluates_only_what_the_cache_lacks(tmp_path):
    cache = tmp_path / "prompt.bin"
    run("-p", PROMPT, "--prompt-cache", str(cache))
    n_cached = len(prompt_cache.load(cache, _model())[0])
    longer = run("-p", PROMPT + " It began", "--prompt-cache", str(cache))
    err = longer.stderr.decode()
    assert longer.returncode == 0, err
    n_total = int(re.search(r"number of tokens in prompt = (\d+)", run("-p", PROMPT + " It began", "-n", "0",
                                                                       "--verbose-prompt").stderr.decode()).group(1))
    assert f"session file matches {n_cached} / {n_total} tokens of prompt" in err
    assert prompt_tokens_evaluated(longer) == n_total - n_cached


def test_read_only_and_all(tmp_path):
    cache = tmp_path / "prompt.bin"
    r = run("-p", PROMPT, "--prompt-cache", str(cache), "--prompt-cache-ro")
    assert r.returncode == 0 and not cache.exists()             # -ro never writes
    r = run("-p", PROMPT, "--prompt-cache", str(cache), "--prompt-cache-all")
    assert r.returncode == 0 and "saving final output to session file" in r.stderr.decode()
    tokens, n_kv = prompt_cache.load(cache, _model())
    n_prompt = prompt_tokens_evaluated(r) + 1                   # the last prompt token counts as one run
    assert len(tokens) == n_prompt + 8 and n_kv == len(tokens) - 1   # the generation is in it too
    before = cache.stat().st_mtime_ns
    r = run("-p", PROMPT, "--prompt-cache", str(cache), "--prompt-cache-ro")
    assert r.returncode == 0 and prompt_tokens_evaluated(r) == 0 and cache.stat().st_mtime_ns == before


@pytest.mark.parametrize("args, needle", [
    (("-c", "512"), "made with context size 256 (this run: -c 512)"),
    (("-ctk", "q8_0"), "made with cache types K f16, V f16 (this run: K q8_0, V f16)"),
    (("--model-gemma3",), "made with another model"),
])
def test_a_cache_for_another_setup_is_refused(tmp_path, args, needle):
    cache = tmp_path / "prompt.bin"
    assert run("-p", PROMPT, "--prompt-cache", str(cache)).returncode == 0
    if args == ("--model-gemma3",):
        r = run("-p", PROMPT, "--prompt-cache", str(cache), model="gemma3")
    else:
        r = subprocess.run([CLI, "-m", str(model_path("smollm2")), "-no-cnv", "--temp", "0", "-t", "1", "-n", "8",
                            "-c", "256", "-p", PROMPT, "--prompt-cache", str(cache), *args], capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=120)
    err = r.stderr.decode()
    assert r.returncode == 1 and r.stdout == b"", err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: failed to load session file") and needle in last and "Traceback" not in err


def test_a_file_that_is_not_a_cache_is_refused(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    r = run("-p", PROMPT, "--prompt-cache", str(bad))
    assert r.returncode == 1 and "not a llamapy prompt cache file" in r.stderr.decode()
    assert bad.read_text() == "hello"


_MODEL = {}


def _model():
    if "m" not in _MODEL:
        _MODEL["m"] = Model(GGUFReader(model_path("smollm2")), n_ctx=256, n_threads=1)
    return _MODEL["m"]


def test_save_and_load_restore_the_cache_bit_for_bit(tmp_path):
    reader = GGUFReader(model_path("smollm2"))
    ids = Tokenizer.from_gguf(reader).encode(PROMPT)
    a = Model(reader, n_ctx=256, n_threads=1)
    a.eval(ids[:-1], 0)
    prompt_cache.save(tmp_path / "c.bin", a, ids, len(ids) - 1)
    want = a.eval(ids[-1:], len(ids) - 1)
    b = Model(reader, n_ctx=256, n_threads=1)
    tokens, n_kv = prompt_cache.load(tmp_path / "c.bin", b)
    assert tokens == ids and n_kv == len(ids) - 1
    assert np.array_equal(b.eval(ids[-1:], len(ids) - 1), want)


def test_chat_persistent_resumes_on_the_prompt_cache(tmp_path):
    root = Path(__file__).resolve().parents[1]
    env = dict(__import__("os").environ, LLAMAPY_CLI=CLI, CHAT_SAVE_DIR=str(tmp_path))

    def turn(line):
        r = subprocess.run(["bash", str(root / "scripts" / "chat-persistent.sh"), "-t", "1", "--temp", "0",
                            "-n", "24"], input=line.encode() + b"\n", capture_output=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr.decode()
        return r.stdout.decode(), (tmp_path / "last-turn.log").read_text()

    out, log = turn("What is the capital of France?")
    assert "session file does not exist, will create." in log
    first_eval = int(re.search(r"prompt eval time =\s+[\d.]+ ms /\s+(\d+) tokens", log).group(1))
    assert out.count("Assistant:") == 2              # the template's greeting, then the reply
    transcript = (tmp_path / "transcript.txt").read_text()
    assert transcript.endswith("\n") and "User: What is the capital of France?\nAssistant:" in transcript

    out, log = turn("Thank you.")                    # a new run: the old conversation is shown, then goes on
    assert out.startswith(transcript)
    m = re.search(r"session file matches (\d+) / (\d+) tokens of prompt", log)
    assert m and int(m.group(1)) > 0.8 * int(m.group(2)), log
    again = int(re.search(r"prompt eval time =\s+[\d.]+ ms /\s+(\d+) tokens", log).group(1))
    assert again == int(m.group(2)) - int(m.group(1)) and again < first_eval / 3
    assert (tmp_path / "transcript.txt").read_text().count("User: ") == 3
