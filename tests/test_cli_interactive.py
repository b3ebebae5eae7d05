"""llamapy-cli's conversation and interactive modes, driven through a pseudo-terminal as a user drives them.

Each test spawns .venv's llamapy-cli on the default model (SmolLM2-135M-Instruct, which has a chat template)
with greedy sampling, types turns, and reads what the terminal shows: the echo of the typed text, the `> `
prompt, the reply, Ctrl+C (\\x03) handing control back, Ctrl+D ending the run.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from llamapy.models import model_path

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("llamapy-cli"))
BOB = str(ROOT / "prompts" / "chat-with-bob.txt")
TIMEOUT = 30


@pytest.fixture(scope="module", autouse=True)
def default_model():
    model_path("smollm2")   # fetched once (cached) before any child process looks for it


def spawn(*args) -> pexpect.spawn:
    env = dict(os.environ, TERM="xterm")
    env.pop("NO_COLOR", None)
    child = pexpect.spawn(CLI, ["--temp", "0", "-t", "1", "-c", "1024", *args], env=env, encoding="utf-8",
                          timeout=TIMEOUT, dimensions=(50, 400))
    return child


def finish(child) -> int:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus if child.exitstatus is not None else -child.signalstatus


def test_conversation_turns_and_ctrl_d():
    c = spawn("-sys", "You are a helpful assistant.", "-n", "64", "--color", "off")
    c.expect("\n> ")
    shown = c.before.split("== Running in interactive mode. ==")[1]
    assert "system\r\nYou are a helpful assistant." in shown     # the system turn, special tokens hidden
    assert "<|im_start|>" not in shown
    c.sendline("What is the capital of France?")
    c.expect("\n> ")
    reply = c.before
    assert reply.startswith("What is the capital of France?\r\n")      # the terminal's echo, then the reply
    assert "Paris" in reply
    c.sendline("And of Germany?")
    c.expect("\n> ")
    assert "Berlin" in c.before
    c.sendeof()                                       # Ctrl+D on an empty line
    c.expect("EOF by user")
    c.expect("total time =")
    assert finish(c) == 0


def test_prompt_starts_the_conversation_and_single_turn_exits():
    c = spawn("-p", "What is the capital of France?", "-n", "32", "-st", "--color", "off")
    c.expect("Paris")
    assert finish(c) == 0      # -st with -p: one reply, no input read


def test_ctrl_c_while_generating_returns_to_the_prompt_then_exits_at_the_prompt():
    c = spawn("-sys", "You are a storyteller.", "--ignore-eos", "-n", "-1", "--verbose-prompt", "--color", "off")
    c.expect("\n> ")
    c.sendline("Tell me a very long story about a dragon.")
    c.expect("Tell me a very long story about a dragon.\r\n")
    c.expect(r"-> '\w*istant'\r\n\s+\d+ -> '\r\n'\r\n")   # --verbose-prompt's list of the turn's tokens
    c.expect(r"\w+ \w+ \w+")                          # the reply is streaming
    c.sendintr()                                      # Ctrl+C: the reply stops, control comes back
    c.expect("\n> ")
    c.sendline("Thanks!")
    # the cut-short reply was closed with the vocabulary's end-of-turn token before the next user turn (for
    # SmolLM2 that is <|endoftext|>, the first end-of-turn text in its vocabulary, as llama.cpp picks it)
    c.expect(r"number of tokens in prompt = \d+\r\n\s+(\d+) -> '(.*?)'\r\n")
    assert (int(c.match.group(1)), c.match.group(2)) == (0, "<|endoftext|>")
    c.expect(r"\w+")                                  # a new reply
    c.sendintr()
    c.expect("\n> ")
    c.sendintr()                                      # Ctrl+C at the prompt: timings, then exit 130
    c.expect("total time =")
    c.expect("Interrupted by user")
    assert finish(c) == 130


def test_ctrl_c_ends_a_non_interactive_run_with_the_timings():
    c = spawn("-no-cnv", "-p", "Once upon a time", "-n", "-1", "--ignore-eos", "--color", "off")
    c.expect("Once upon a time")
    c.expect(r"\w+ \w+ \w+")
    c.sendintr()
    c.expect("total time =")
    c.expect("Interrupted by user")
    assert finish(c) == 130


def test_interactive_reverse_prompt_hands_control_back():
    c = spawn("-no-cnv", "-i", "-r", "User:", "--in-prefix", " ", "-f", BOB, "-n", "64", "--color", "off")
    c.expect("User:")                                 # the prompt ends with the reverse prompt: user's turn
    c.expect("Bob: Eight.")
    c.expect("User:")
    c.sendline("What color is the sky?")
    c.expect("What color is the sky\\?\r\n")
    c.expect("User:")                                 # Bob answered, and control came back at "User:"
    answer = c.before
    assert "Bob:" in answer and "blue" in answer.lower()
    c.sendeof()
    c.expect("EOF by user")
    assert finish(c) == 0


def test_color_codes_for_prompt_input_and_generation():
    c = spawn("-sys", "Be brief.", "-n", "16", "--color")
    c.expect("\n> ")
    assert "\x1b[33m" in c.before                     # the prompt in yellow
    c.expect_exact("\x1b[1m\x1b[32m")                  # the user's input in bold green
    c.sendline("Say hello.")
    c.expect_exact("\x1b[0m")                          # back to the default colour for the reply
    c.expect("\n> ")
    c.sendeof()
    assert finish(c) == 0


def test_multiline_input_with_a_trailing_backslash():
    c = spawn("-sys", "Be brief.", "-n", "24", "--verbose-prompt", "--color", "off")
    c.expect("\n> ")
    c.sendline("Name a fruit\\")
    with pytest.raises(pexpect.TIMEOUT):              # the input goes on: nothing is generated yet
        c.expect(r"number of tokens in prompt", timeout=1.5)
    c.sendline("that is yellow.")
    c.expect(r"number of tokens in prompt = \d+")
    c.expect("\n> ")
    turn = c.before
    # one turn: the two lines joined by a newline token
    assert re.search(r"-> ' fruit'\r\n\s+\d+ -> '\r\n'\r\n\s+\d+ -> 'that'", turn), turn
    c.sendeof()
    assert finish(c) == 0


def test_interactive_first_with_prefix_and_suffix_shows_them():
    c = spawn("-no-cnv", "-if", "-p", "A list of animals:", "--in-prefix", "- ", "--in-suffix", "\\n-", "-n", "6",
              "--color", "off")
    c.expect(" - Press Ctrl\\+C to interject at any time.")
    c.expect("A list of animals:")
    c.expect_exact("- ")                              # the prefix is shown before the user types
    c.sendline("cat")
    c.expect_exact("cat\r\n\r\n-")                    # the suffix after the input
    c.expect("- ")                                    # -n 6 tokens later, the user's turn again
    c.sendeof()
    assert finish(c) == 0


def run(*args, stdin=None):
    return subprocess.run([CLI, "--temp", "0", "-t", "1", "-c", "1024", *args], capture_output=True,
                          input=stdin, timeout=120)


def test_non_interactive_reverse_prompt_stops_generation():
    r = run("-no-cnv", "-f", BOB[:-len("chat-with-bob.txt")] + "assistant.txt", "-r", "User:", "-n", "200")
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr.decode()
    generated = out[len(Path(BOB).with_name("assistant.txt").read_text().rstrip("\n")):]
    assert generated.rstrip().endswith("User:") and generated.count("User:") == 1, generated


def test_piped_conversation_reads_lines_and_exits_at_end_of_input():
    r = run("-sys", "Be brief.", "-n", "32", stdin=b"What is the capital of France?\n")
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr.decode()
    assert "Paris" in out and out.rstrip().endswith("EOF by user")
    assert out.count("\n> ") == 2


@pytest.mark.parametrize("args, needle", [
    (("--color", "sometimes"), "--color"),
    (("--chat-template", "nope"), "--chat-template"),
    (("-i", "--prompt-cache-all"), "--prompt-cache-all not supported in interactive mode"),
    (("--chat-template-file", "/nonexistent/t.jinja"), "t.jinja"),
])
def test_bad_flags_are_one_line_errors(args, needle):
    r = run("-p", "hi", *args, stdin=b"")
    err = r.stderr.decode()
    assert r.returncode != 0 and err.startswith("error: ") and err.strip().count("\n") == 0, err
    assert needle in err


def test_help_lists_the_builtin_templates():
    r = run("--help")
    text = re.sub(r"\s+", " ", r.stdout.decode())
    for name in ("chatml", "llama2", "llama3", "mistral-v7", "gemma", "phi3", "zephyr", "deepseek"):
        assert name in text


def run_script(name, stdin, *args, env_extra=None):
    env = dict(os.environ, LLAMAPY_CLI=CLI, **(env_extra or {}))
    return subprocess.run(["bash", str(ROOT / "scripts" / name), "-t", "1", "--temp", "0", *args], input=stdin,
                          capture_output=True, env=env, timeout=120)


def test_chat_sh_answers_a_piped_turn():
    r = run_script("chat.sh", b"What is the capital of France?\n", "-n", "48")
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr.decode()
    assert out.startswith(Path(BOB).read_text().rstrip("\n"))          # the transcript prompt, echoed
    reply = out.split("User:")[-2]                                      # Bob's turn, up to the next "User:"
    assert "Bob:" in reply and "Paris" in reply, out
    assert out.rstrip().endswith("EOF by user")
