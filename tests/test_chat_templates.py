"""Chat templates: llama.cpp's built-ins and detection, the HF-style Jinja sandbox, format_single.

Reference data: tests/data/templates/*.jinja (models' own templates; zephyr.jinja is HuggingFaceH4's
zephyr-7b-beta template, alpaca.jinja our Alpaca format) and llama_cpp_cases.json (llama.cpp's
test-chat-template.cpp cases: template, built-in and Jinja renderings; scripts/make_chat_template_cases.py).
"""
from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from llamapy.chat import BUILTIN_NAMES, ChatTemplate, ChatTemplateError, detect_template
from llamapy.gguf import GGUFReader
from llamapy.models import model_path

DATA = Path(__file__).parent / "data" / "templates"
CASES = json.loads((DATA / "llama_cpp_cases.json").read_text(encoding="utf-8"))
CONVERSATION = [{"role": r, "content": c} for r, c in CASES["conversation"]]
SYSTEM = {"role": "system", "content": "You are a helpful assistant"}
TURNS = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there"},
         {"role": "user", "content": "Who are you"}]


def _messages(case):
    return CONVERSATION + [{"role": r, "content": c} for r, c in case.get("extra_conversation", [])]


@pytest.mark.parametrize("path", sorted(DATA.glob("*.jinja")), ids=lambda p: p.stem)
def test_every_template_renders_a_conversation(path):
    tmpl = ChatTemplate.from_file(path, "<s>", "</s>")
    out = tmpl.render([SYSTEM] + TURNS)
    for m in [SYSTEM] + TURNS:
        assert m["content"] in out
    assert out.index("Hello") < out.index("Hi there") < out.index("Who are you")


@pytest.mark.parametrize("case", CASES["cases"], ids=lambda c: c["name"][:40])
def test_builtin_renders_as_llama_cpp(case):
    """llama.cpp detects the built-in from the template text and renders the conversation with it."""
    name = detect_template(case["template_str"])
    assert name is not None
    out = ChatTemplate.builtin(name).render(_messages(case))
    assert out == case["expected_output"]


@pytest.mark.parametrize("case", [c for c in CASES["cases"] if c["supported_with_jinja"]],
                         ids=lambda c: c["name"][:40])
def test_jinja_renders_as_llama_cpp(case):
    """Including llama.cpp's fix-ups: system text merged into the first user turn for templates without a
    system role (gemma, Phi-3-mini, Orion, Yandex)."""
    tmpl = ChatTemplate.from_source(case["template_str"], case["bos_token"], case["eos_token"])
    assert tmpl.render(_messages(case)) == (case["expected_output_jinja"] or case["expected_output"])


# (built-in, the model's Jinja template, bos, eos, tokenizer adds BOS, conversation starts with a system message)
MODEL_TEMPLATES = [
    ("chatml", "Qwen-Qwen2.5-7B-Instruct", "", "<|im_end|>", False, True),
    ("chatml", "openbmb-MiniCPM5-1B", "<s>", "</s>", True, False),
    ("phi3", "microsoft-Phi-3.5-mini-instruct", "<s>", "<|endoftext|>", True, True),
    ("phi3", "microsoft-Phi-3.5-mini-instruct", "<s>", "<|endoftext|>", True, False),
    ("gemma", "google-gemma-2-2b-it", "<bos>", "<eos>", True, False),
    ("mistral-v7-tekken", "Mistral-Small-3.2-24B-Instruct-2506", "<s>", "</s>", True, True),
    ("mistral-v7-tekken", "unsloth-mistral-Devstral-Small-2507", "<s>", "</s>", True, True),
    ("mistral-v3-tekken", "mistralai-Mistral-Nemo-Instruct-2407", "<s>", "</s>", True, False),
    ("kimi-k2", "Kimi-K2-Instruct", "[BOS]", "[EOS]", False, True),
    ("seed_oss", "ByteDance-Seed-OSS", "<seed:bos>", "<seed:eos>", False, True),
    ("rwkv-world", "llama-cpp-rwkv-world", "", "\n\n", False, True),
    ("granite", "ibm-granite-granite-3.3-2B-Instruct", "", "<|end_of_text|>", False, True),
    ("zephyr", "zephyr", "<s>", "<|endoftext|>", True, True),
    ("alpaca", "alpaca", "<s>", "</s>", True, True),
]
# from llama.cpp's cases, where its built-in and Jinja renderings agree (or differ only by a BOS the
# tokenizer adds): name of the case -> built-in
CASE_BUILTINS = {"teknium/OpenHermes-2.5-Mistral-7B": "chatml", "Llama-3": "llama3", "phi-4": "phi4",
                 "mlabonne/AlphaMonarch-7B": "monarch", "deepseek-ai/deepseek-coder-33b-instruct": "deepseek",
                 "DeepSeek-V2": "deepseek2", "eachadea/vicuna-13b-1.1": "vicuna", "Orca-Vicuna": "vicuna-orca",
                 "CohereForAI/c4ai-command-r-plus": "command-r", "Phi-3-small": "phi3",
                 "mistralai/Mistral-Large-Instruct-2411 (mistralai 'v7' template)": "mistral-v7",
                 "mistralai/Mistral-7B-Instruct-v0.2 (mistralai 'v1' template with a system prompt)": "mistral-v1",
                 "inclusionAI/Ling-lite": "bailing",
                 "Infinigence/Megrez-3B-Instruct": "megrez", "ChatGLM4": "chatglm4", "ChatGLM3": "chatglm3"}


@pytest.mark.parametrize("builtin,stem,bos,eos,add_bos,with_system", MODEL_TEMPLATES,
                         ids=lambda v: v if isinstance(v, str) else None)
def test_builtin_equals_the_models_jinja(builtin, stem, bos, eos, add_bos, with_system):
    jinja = ChatTemplate.from_file(DATA / f"{stem}.jinja", bos, eos, add_bos=add_bos)
    messages = ([SYSTEM] if with_system else []) + TURNS
    assert ChatTemplate.builtin(builtin).render(messages) == jinja.render(messages)


@pytest.mark.parametrize("name", sorted(CASE_BUILTINS))
def test_builtin_equals_the_models_jinja_llama_cpp_cases(name):
    case = next(c for c in CASES["cases"] if c["name"] == name)
    jinja = ChatTemplate.from_source(case["template_str"], case["bos_token"], case["eos_token"], add_bos=True)
    builtin = ChatTemplate.builtin(CASE_BUILTINS[name])
    assert builtin.render(CONVERSATION) == jinja.render(CONVERSATION)


def test_required_builtins_and_unknown_name():
    for name in ("chatml", "llama2", "llama2-sys", "llama2-sys-bos", "llama2-sys-strip", "llama3", "mistral",
                 "mistral-v1", "mistral-v3", "mistral-v3-tekken", "mistral-v7", "mistral-v7-tekken", "gemma",
                 "phi3", "phi4", "alpaca", "zephyr", "deepseek", "deepseek2", "deepseek3", "vicuna",
                 "command-r", "openchat", "monarch"):
        assert name in BUILTIN_NAMES
    llama_cpp_names = (
        "bailing bailing-think bailing2 chatglm3 chatglm4 chatml command-r deepseek deepseek-ocr deepseek2 "
        "deepseek3 exaone-moe exaone3 exaone4 falcon3 gemma gigachat glmedge gpt-oss granite granite-4.0 "
        "granite-4.1 grok-2 hunyuan-dense hunyuan-moe hunyuan-vl kimi-k2 llama2 llama2-sys llama2-sys-bos "
        "llama2-sys-strip llama3 llama4 megrez minicpm mistral-v1 mistral-v3 mistral-v3-tekken mistral-v7 "
        "mistral-v7-tekken monarch openchat orion pangu-embedded phi3 phi4 rwkv-world seed_oss smolvlm "
        "solar-open vicuna vicuna-orca yandex zephyr").split()  # llama.cpp's list (FEATURES.md section 5)
    assert set(BUILTIN_NAMES) == set(llama_cpp_names) | {"alpaca", "mistral"}
    with pytest.raises(ValueError, match="unknown chat template 'nope'.*chatml.*llama3"):
        ChatTemplate.builtin("nope")


def test_builtin_renderings_from_features_table():
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": " U "},
            {"role": "assistant", "content": "A"}, {"role": "user", "content": "V"}]
    r = {n: ChatTemplate.builtin(n).render(msgs) for n in BUILTIN_NAMES}
    assert r["llama2"] == "[INST] S\n U  [/INST]A</s>[INST] V [/INST]"
    assert r["mistral"] == r["llama2"]  # llama.cpp detects the name "mistral" as llama2
    assert r["llama2-sys"] == "[INST] <<SYS>>\nS\n<</SYS>>\n\n U  [/INST]A</s>[INST] V [/INST]"
    assert r["llama2-sys-bos"] == "[INST] <<SYS>>\nS\n<</SYS>>\n\n U  [/INST]A</s><s>[INST] V [/INST]"
    assert r["llama2-sys-strip"] == "[INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST]A</s>[INST] V [/INST]"
    assert r["mistral-v7"] == "[SYSTEM_PROMPT] S[/SYSTEM_PROMPT][INST]  U [/INST] A</s>[INST] V[/INST]"
    assert r["gemma"] == ("<start_of_turn>user\nS\n\nU<end_of_turn>\n<start_of_turn>model\nA<end_of_turn>\n"
                          "<start_of_turn>user\nV<end_of_turn>\n<start_of_turn>model\n")
    assert r["zephyr"].endswith("<|user|>\nV<|endoftext|>\n<|assistant|>\n")
    assert r["openchat"] == ("S<|end_of_turn|>GPT4 Correct User:  U <|end_of_turn|>GPT4 Correct Assistant: "
                             "A<|end_of_turn|>GPT4 Correct User: V<|end_of_turn|>GPT4 Correct Assistant:")
    assert r["alpaca"] == "S\n\n### Instruction:\n U \n\n### Response:\nA\n\n### Instruction:\nV\n\n### Response:\n"


@pytest.mark.parametrize("stem,name", [
    ("Qwen-Qwen2.5-7B-Instruct", "chatml"), ("meta-llama-Llama-3.2-3B-Instruct", "llama3"),
    ("google-gemma-2-2b-it", "gemma"), ("microsoft-Phi-3.5-mini-instruct", "phi3"),
    ("Mistral-Small-3.2-24B-Instruct-2506", "mistral-v7"), ("mistralai-Mistral-Nemo-Instruct-2407",
                                                             "mistral-v3-tekken"),
    ("deepseek-ai-DeepSeek-V3.1", "deepseek3"), ("openai-gpt-oss-120b", "gpt-oss"), ("zephyr", "glmedge"),
    ("Apertus-8B-Instruct", None)])
def test_detection(stem, name):
    """As llama.cpp's substring checks decide (zephyr-7b-beta's template has no literal <|endoftext|>, so
    llama.cpp takes it for glmedge)."""
    assert detect_template((DATA / f"{stem}.jinja").read_text(encoding="utf-8")) == name


def test_detection_of_names():
    assert detect_template("llama3") == "llama3"
    assert detect_template("mistral") == "llama2"
    assert detect_template("INVALID TEMPLATE") is None


# -- the Jinja environment ----------------------------------------------------------------------

def _render(src, **kw):
    return ChatTemplate.from_source(src).render(TURNS, **kw)


def test_raise_exception_is_a_clear_error():
    with pytest.raises(ChatTemplateError, match="chat template error: Roles must alternate"):
        _render("{{ raise_exception('Roles must alternate') }}")


def test_syntax_error_names_the_line():
    with pytest.raises(ChatTemplateError, match="syntax error at line 2"):
        ChatTemplate.from_source("ok\n{% for m in messages %}")


def test_helpers():
    assert _render("{{ strftime_now('%Y') }}") == str(datetime.date.today().year)
    assert _render("{{ {'a': 'é<'} | tojson }}") == '{"a": "é<"}'
    assert _render("{{ [1, 2] | tojson(indent=2) }}") == "[\n  1,\n  2\n]"
    assert _render("{{ {'a': 1} | tojson(separators=(',', ':')) }}") == '{"a":1}'
    src = ("{% set ns = namespace(n=0) %}{% for m in messages %}{% if m.role == 'assistant' %}{% continue %}"
           "{% endif %}{% set ns.n = ns.n + 1 %}{% if loop.index > 2 %}{% break %}{% endif %}{% endfor %}{{ ns.n }}")
    assert _render(src) == "2"
    assert _render("{% generation %}{{ messages[0].content }}{% endgeneration %}") == "Hello"
    assert _render("{{ tools is defined }}") == "False"
    assert _render("{{ tools | length }}", tools=[{"type": "function"}]) == "1"


def test_trim_and_lstrip_blocks():
    assert _render("  {% if true %}\nA\n  {% endif %}\nB") == "A\nB"


def test_sandbox():
    with pytest.raises(ChatTemplateError):
        _render("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(ChatTemplateError):
        _render("{{ messages.append(1) }}")


def test_bos_and_eos_handling():
    src = "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}{{ eos_token }}"
    assert ChatTemplate.from_source(src, "<s>", "</s>").render(TURNS) == "<s>HelloHi thereWho are you</s>"
    # the tokenizer adds BOS/EOS itself: the template's own copies are cut, as llama.cpp does
    assert ChatTemplate.from_source(src, "<s>", "</s>", add_bos=True, add_eos=True).render(TURNS) == \
        "HelloHi thereWho are you"


def test_content_parts_and_bad_messages():
    parts = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url"},
                                          {"type": "text", "text": "b"}]}]
    assert ChatTemplate.builtin("chatml").render(parts) == "<|im_start|>user\na\nb<|im_end|>\n<|im_start|>assistant\n"
    with pytest.raises(ChatTemplateError, match="message 0"):
        ChatTemplate.builtin("chatml").render([{"content": "no role"}])
    with pytest.raises(ChatTemplateError, match="list"):
        ChatTemplate.builtin("chatml").render("hello")


def test_from_file_errors(tmp_path):
    with pytest.raises(ChatTemplateError, match="cannot read chat template file"):
        ChatTemplate.from_file(tmp_path / "missing.jinja")


# -- format_single -----------------------------------------------------------------------------

@pytest.mark.parametrize("tmpl", [ChatTemplate.builtin("chatml"), ChatTemplate.builtin("llama3"),
                                  ChatTemplate.builtin("mistral-v7"),
                                  ChatTemplate.from_file(DATA / "google-gemma-2-2b-it.jinja", "<bos>", "<eos>")],
                         ids=["chatml", "llama3", "mistral-v7", "gemma-2"])
def test_format_single(tmpl):
    history = [SYSTEM] + TURNS[:2]
    new = TURNS[2]
    past = tmpl.render(history, add_generation_prompt=False)
    full = tmpl.render(history + [new], add_generation_prompt=True)
    suffix = tmpl.format_single(history, new)
    lead = "\n" if past.endswith("\n") else ""
    assert suffix == lead + full[len(past):]
    assert tmpl.format_single([], new) == tmpl.render([new])


def test_format_single_chatml_text():
    tmpl = ChatTemplate.builtin("chatml")
    assert tmpl.format_single(TURNS[:2], TURNS[2]) == \
        "\n<|im_start|>user\nWho are you<|im_end|>\n<|im_start|>assistant\n"
    assert tmpl.format_single(TURNS[:2], TURNS[2], add_generation_prompt=False) == \
        "<|im_start|>user\nWho are you<|im_end|>\n"


# -- for_model -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smollm2_reader():
    return GGUFReader(model_path("smollm2", fetch=False))


def test_for_model_uses_the_gguf_template(smollm2_reader):
    tmpl = ChatTemplate.for_model(smollm2_reader)
    assert tmpl.name == "jinja" and tmpl.source == smollm2_reader.get("tokenizer.chat_template")
    assert (tmpl.bos_token, tmpl.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert tmpl.render([SYSTEM] + TURNS) == ChatTemplate.builtin("chatml").render([SYSTEM] + TURNS)
    # SmolLM2's template adds its own system prompt when there is none
    assert tmpl.render(TURNS).startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


def test_for_model_overrides(smollm2_reader):
    assert ChatTemplate.for_model(smollm2_reader, name="llama3").name == "llama3"
    tmpl = ChatTemplate.for_model(smollm2_reader, file=DATA / "zephyr.jinja")
    assert tmpl.render(TURNS[:1]) == "<|user|>\nHello<|im_end|>\n<|assistant|>\n"  # the model's EOS text
    assert ChatTemplate.for_model({"general.architecture": "llama"}).name == "chatml"
