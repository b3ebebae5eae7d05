"""llama.cpp's built-in chat templates, by name, and its template-detection heuristic.

Each renderer takes ``[(role, content), ...]`` and whether to append the assistant's generation prompt, and
returns the prompt text exactly as llama.cpp's ``llm_chat_apply_template`` writes it (src/llama-chat.cpp).
No renderer emits BOS: tokenizing the prompt adds it when the vocabulary asks for one.
"""
from __future__ import annotations

from typing import Callable

__all__ = ["BUILTIN_NAMES", "RENDERERS", "END_OF_TURN", "detect_template", "render_builtin"]

Messages = list[tuple[str, str]]
Renderer = Callable[[Messages, bool], str]

RENDERERS: dict[str, Renderer] = {}

# Texts that end an assistant turn in formats whose marker is not a control token of the usual models
# (create_chat_completion also stops on them as strings; control tokens stop generation as EOG tokens).
END_OF_TURN: dict[str, tuple[str, ...]] = {
    "alpaca": ("### Instruction:",),
    "vicuna": ("USER:",),
    "vicuna-orca": ("USER:",),
    "deepseek": ("### Instruction:",),
    "deepseek2": ("User:",),
    "rwkv-world": ("\n\nUser:",),
    "yandex": (" Пользователь:",),
    "grok-2": ("Human:",),
}


def _register(*names: str):
    def wrap(fn: Renderer) -> Renderer:
        for name in names:
            RENDERERS[name] = fn
        return fn
    return wrap


def _trim(s: str) -> str:
    """C isspace() trim, as llama.cpp's trim() (Python's str.strip() would also remove Unicode spaces)."""
    return s.strip(" \t\n\v\f\r")


def _per_role(pieces: dict[str, tuple[str, str]], gen: str, trim: bool = False, default=None) -> Renderer:
    """A format where each role has a fixed prefix and suffix around the content."""
    def render(msgs: Messages, add_ass: bool) -> str:
        out = []
        for role, content in msgs:
            wrap = pieces.get(role, default)
            if wrap is None:
                continue
            pre, post = wrap
            out.append(pre.replace("{role}", role) + (_trim(content) if trim else content) + post)
        if add_ass:
            out.append(gen)
        return "".join(out)
    return render


def _same_for_all(pre: str, post: str, gen: str, trim: bool = False) -> Renderer:
    return _per_role({}, gen, trim, default=(pre, post))


RENDERERS["chatml"] = _same_for_all("<|im_start|>{role}\n", "<|im_end|>\n", "<|im_start|>assistant\n")
RENDERERS["phi3"] = _same_for_all("<|{role}|>\n", "<|end|>\n", "<|assistant|>\n")
RENDERERS["phi4"] = _same_for_all("<|im_start|>{role}<|im_sep|>", "<|im_end|>", "<|im_start|>assistant<|im_sep|>")
RENDERERS["falcon3"] = _same_for_all("<|{role}|>\n", "\n", "<|assistant|>\n")
RENDERERS["zephyr"] = _same_for_all("<|{role}|>\n", "<|endoftext|>\n", "<|assistant|>\n")
RENDERERS["llama3"] = _same_for_all("<|start_header_id|>{role}<|end_header_id|>\n\n", "<|eot_id|>",
                                    "<|start_header_id|>assistant<|end_header_id|>\n\n", trim=True)
RENDERERS["llama4"] = _same_for_all("<|header_start|>{role}<|header_end|>\n\n", "<|eot|>",
                                    "<|header_start|>assistant<|header_end|>\n\n", trim=True)
RENDERERS["chatglm4"] = lambda m, a: "[gMASK]<sop>" + _same_for_all("<|{role}|>\n", "", "<|assistant|>\n")(m, a)
RENDERERS["chatglm3"] = lambda m, a: "[gMASK]sop" + _same_for_all("<|{role}|>\n ", "", "<|assistant|>")(m, a)
RENDERERS["glmedge"] = _same_for_all("<|{role}|>\n", "", "<|assistant|>")
RENDERERS["megrez"] = _same_for_all("<|role_start|>{role}<|role_end|>", "<|turn_end|>",
                                    "<|role_start|>assistant<|role_end|>")
RENDERERS["solar-open"] = _same_for_all("<|begin|>{role}<|content|>", "<|end|>", "<|begin|>assistant")
RENDERERS["deepseek"] = _per_role({"system": ("", ""), "user": ("### Instruction:\n", "\n"),
                                   "assistant": ("### Response:\n", "\n<|EOT|>\n")}, "### Response:\n")
RENDERERS["deepseek2"] = _per_role({"system": ("", "\n\n"), "user": ("User: ", "\n\n"),
                                    "assistant": ("Assistant: ", "<｜end▁of▁sentence｜>")}, "Assistant:")
RENDERERS["deepseek3"] = _per_role({"system": ("", "\n\n"), "user": ("<｜User｜>", ""),
                                    "assistant": ("<｜Assistant｜>", "<｜end▁of▁sentence｜>")}, "<｜Assistant｜>")
RENDERERS["command-r"] = _per_role(
    {r: (f"<|START_OF_TURN_TOKEN|><|{t}_TOKEN|>", "<|END_OF_TURN_TOKEN|>")
     for r, t in (("system", "SYSTEM"), ("user", "USER"), ("assistant", "CHATBOT"))},
    "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>", trim=True)
RENDERERS["vicuna"] = _per_role({"system": ("", "\n\n"), "user": ("USER: ", "\n"),
                                 "assistant": ("ASSISTANT: ", "</s>\n")}, "ASSISTANT:")
RENDERERS["vicuna-orca"] = _per_role({"system": ("SYSTEM: ", "\n"), "user": ("USER: ", "\n"),
                                      "assistant": ("ASSISTANT: ", "</s>\n")}, "ASSISTANT:")
RENDERERS["exaone3"] = _per_role({"system": ("[|system|]", "[|endofturn|]\n"), "user": ("[|user|]", "\n"),
                                  "assistant": ("[|assistant|]", "[|endofturn|]\n")}, "[|assistant|]", trim=True)
RENDERERS["exaone4"] = _per_role({"system": ("[|system|]", "[|endofturn|]\n"), "user": ("[|user|]", "\n"),
                                  "assistant": ("[|assistant|]", "[|endofturn|]\n"),
                                  "tool": ("[|tool|]", "[|endofturn|]\n")}, "[|assistant|]", trim=True)
RENDERERS["exaone-moe"] = _per_role({r: (f"<|{r}|>\n", "<|endofturn|>\n")
                                     for r in ("system", "user", "assistant", "tool")}, "<|assistant|>\n", trim=True)
RENDERERS["kimi-k2"] = _per_role({"system": ("<|im_system|>system<|im_middle|>", "<|im_end|>"),
                                  "user": ("<|im_user|>user<|im_middle|>", "<|im_end|>"),
                                  "assistant": ("<|im_assistant|>assistant<|im_middle|>", "<|im_end|>"),
                                  "tool": ("<|im_system|>tool<|im_middle|>", "<|im_end|>")},
                                 "<|im_assistant|>assistant<|im_middle|>", default=("", "<|im_end|>"))
RENDERERS["yandex"] = _per_role({"user": (" Пользователь: ", "\n\n"), "assistant": (" Ассистент: ", "\n\n")},
                                " Ассистент:[SEP]")
RENDERERS["dots1"] = _per_role({"system": ("<|system|>", "<|endofsystem|>"),
                                "user": ("<|userprompt|>", "<|endofuserprompt|>")}, "<|response|>",
                               default=("<|response|>", "<|endofresponse|>"))
RENDERERS["gpt-oss"] = _per_role({"assistant": ("<|start|>assistant<|message|>", "<|return|>")},
                                 "<|start|>assistant", default=("<|start|>{role}<|message|>", "<|end|>"))

# Our own Alpaca format (llama.cpp has no "alpaca" built-in): Stanford Alpaca's sections, turn by turn,
# an optional system text first. tests/data/templates/alpaca.jinja is the same format in Jinja.
RENDERERS["alpaca"] = _per_role({"system": ("", "\n\n"), "user": ("### Instruction:\n", "\n\n"),
                                 "assistant": ("### Response:\n", "\n\n")}, "### Response:\n")


def _granite(tool_call_as_assistant: bool) -> Renderer:
    """Granite 3.x writes a tool call under its own role name; 4.x under "assistant"."""
    def render(msgs: Messages, add_ass: bool) -> str:
        out = []
        for role, content in msgs:
            shown = "assistant" if role == "assistant_tool_call" and tool_call_as_assistant else role
            out.append(f"<|start_of_role|>{shown}<|end_of_role|>")
            if role == "assistant_tool_call":
                out.append("<|tool_call|>")
            out.append(content + "<|end_of_text|>\n")
        if add_ass:
            out.append("<|start_of_role|>assistant<|end_of_role|>")
        return "".join(out)
    return render


RENDERERS["granite"] = _granite(False)
RENDERERS["granite-4.0"] = RENDERERS["granite-4.1"] = _granite(True)


def _mistral_v7(space: str) -> Renderer:
    def render(msgs: Messages, add_ass: bool) -> str:
        out = []
        for role, content in msgs:
            if role == "system":
                out.append(f"[SYSTEM_PROMPT]{space}{content}[/SYSTEM_PROMPT]")
            elif role == "user":
                out.append(f"[INST]{space}{content}[/INST]")
            else:
                out.append(f"{space}{content}</s>")
        return "".join(out)
    return render


RENDERERS["mistral-v7"] = _mistral_v7(" ")
RENDERERS["mistral-v7-tekken"] = _mistral_v7("")


def _mistral_v1_v3(lead: str, trail: str, trim_assistant: bool) -> Renderer:
    def render(msgs: Messages, add_ass: bool) -> str:
        out, inside_turn = [], False
        for role, content in msgs:
            if not inside_turn:
                out.append(f"{lead}[INST]{trail}")
                inside_turn = True
            if role == "system":
                out.append(content + "\n\n")
            elif role == "user":
                out.append(f"{content}{lead}[/INST]")
            else:
                out.append(trail + (_trim(content) if trim_assistant else content) + "</s>")
                inside_turn = False
        return "".join(out)
    return render


RENDERERS["mistral-v1"] = _mistral_v1_v3(" ", " ", False)
RENDERERS["mistral-v3"] = _mistral_v1_v3("", " ", True)
RENDERERS["mistral-v3-tekken"] = _mistral_v1_v3("", "", False)


def _llama2(system: bool, bos_in_history: bool, strip: bool) -> Renderer:
    def render(msgs: Messages, add_ass: bool) -> str:
        out, inside_turn = ["[INST] "], True  # the first turn opens without BOS: tokenizing adds it
        for role, content in msgs:
            if strip:
                content = _trim(content)
            if not inside_turn:
                inside_turn = True
                out.append("<s>[INST] " if bos_in_history else "[INST] ")
            if role == "system":
                # without <<SYS>> support the system text still goes first, on its own line
                out.append(f"<<SYS>>\n{content}\n<</SYS>>\n\n" if system else content + "\n")
            elif role == "user":
                out.append(content + " [/INST]")
            else:
                out.append(content + "</s>")
                inside_turn = False
        return "".join(out)
    return render


RENDERERS["llama2"] = _llama2(False, False, False)
RENDERERS["llama2-sys"] = _llama2(True, False, False)
RENDERERS["llama2-sys-bos"] = _llama2(True, True, False)
RENDERERS["llama2-sys-strip"] = _llama2(True, False, True)
# llama.cpp has no "mistral" entry, but its detection maps the name "mistral" to llama2 (a template
# starting with "mistral" and without [SYSTEM_PROMPT] or the official v1/v3 markers).
RENDERERS["mistral"] = RENDERERS["llama2"]


@_register("monarch")
def _monarch(msgs: Messages, add_ass: bool) -> str:
    out = [("" if i == 0 else "<s>") + f"{role}\n{content}</s>\n" for i, (role, content) in enumerate(msgs)]
    if add_ass:
        out.append("<s>assistant\n")
    return "".join(out)


@_register("gemma")
def _gemma(msgs: Messages, add_ass: bool) -> str:
    """No system role: system text goes at the start of the next user turn; "assistant" is "model"."""
    out, system = [], ""
    for role, content in msgs:
        if role == "system":
            system += _trim(content)
            continue
        role = "model" if role == "assistant" else role
        out.append(f"<start_of_turn>{role}\n")
        if system and role != "model":
            out.append(system + "\n\n")
            system = ""
        out.append(_trim(content) + "<end_of_turn>\n")
    if add_ass:
        out.append("<start_of_turn>model\n")
    return "".join(out)


@_register("orion")
def _orion(msgs: Messages, add_ass: bool) -> str:
    out, system = [], ""
    for role, content in msgs:
        if role == "system":
            system += content
        elif role == "user":
            out.append("Human: " + (system + "\n\n" if system else "") + content + "\n\nAssistant: </s>")
            system = ""
        else:
            out.append(content + "</s>")
    return "".join(out)


@_register("openchat")
def _openchat(msgs: Messages, add_ass: bool) -> str:
    out = [content + "<|end_of_turn|>" if role == "system"
           else f"GPT4 Correct {role[:1].upper()}{role[1:]}: {content}<|end_of_turn|>" for role, content in msgs]
    if add_ass:
        out.append("GPT4 Correct Assistant:")
    return "".join(out)


@_register("minicpm")
def _minicpm(msgs: Messages, add_ass: bool) -> str:
    return "".join(f"<用户>{_trim(c)}<AI>" if r == "user" else _trim(c) for r, c in msgs)


@_register("rwkv-world")
def _rwkv_world(msgs: Messages, add_ass: bool) -> str:
    out = []
    for i, (role, content) in enumerate(msgs):
        if role == "system":
            out.append(f"System: {_trim(content)}\n\n")
        elif role == "user":
            out.append(f"User: {_trim(content)}\n\n")
            if i == len(msgs) - 1:
                out.append("Assistant:")
        elif role == "assistant":
            out.append(f"Assistant: {_trim(content)}\n\n")
    return "".join(out)


@_register("gigachat")
def _gigachat(msgs: Messages, add_ass: bool) -> str:
    has_system = bool(msgs) and msgs[0][0] == "system"
    out = ["<s>" + (msgs[0][1] + "<|message_sep|>" if has_system else "")]
    for role, content in msgs[1 if has_system else 0:]:
        if role == "user":
            out.append(f"user<|role_sep|>{content}<|message_sep|>available functions<|role_sep|>[]<|message_sep|>")
        elif role == "assistant":
            out.append(f"assistant<|role_sep|>{content}<|message_sep|>")
    if add_ass:
        out.append("assistant<|role_sep|>")
    return "".join(out)


def _bailing(think: bool) -> Renderer:
    def render(msgs: Messages, add_ass: bool) -> str:
        out = ["<role>" + ("HUMAN" if r == "user" else r.upper()) + "</role>" + c for r, c in msgs]
        if add_ass:
            out.append("<role>ASSISTANT</role>" + ("<think>" if think else ""))
        return "".join(out)
    return render


RENDERERS["bailing"] = _bailing(False)
RENDERERS["bailing-think"] = _bailing(True)


@_register("bailing2")
def _bailing2(msgs: Messages, add_ass: bool) -> str:
    out = [] if msgs and msgs[0][0] == "system" else ["<role>SYSTEM</role>detailed thinking off<|role_end|>"]
    out += ["<role>" + ("HUMAN" if r == "user" else r.upper()) + "</role>" + c + "<|role_end|>" for r, c in msgs]
    if add_ass:
        out.append("<role>ASSISTANT</role>")
    return "".join(out)


@_register("smolvlm")
def _smolvlm(msgs: Messages, add_ass: bool) -> str:
    out = ["<|im_start|>"]  # SmolVLM's BOS is <|im_start|>, but the turns are not ChatML
    for role, content in msgs:
        if role == "system":
            out.append(content + "\n\n")
        elif role == "user":
            out.append(f"User: {content}<end_of_utterance>\n")
        else:
            out.append(f"Assistant: {content}<end_of_utterance>\n")
    if add_ass:
        out.append("Assistant:")
    return "".join(out)


@_register("seed_oss")
def _seed_oss(msgs: Messages, add_ass: bool) -> str:
    out = [f"<seed:bos>{r}\n{_trim(c) if r == 'assistant' else c}<seed:eos>" for r, c in msgs]
    if add_ass:
        out.append("<seed:bos>assistant\n")
    return "".join(out)


@_register("grok-2")
def _grok2(msgs: Messages, add_ass: bool) -> str:
    out = []
    for role, content in msgs:
        if role == "system":
            out.append(f"System: {_trim(content)}<|separator|>\n\n")
        elif role == "user":
            out.append(f"Human: {_trim(content)}<|separator|>\n\n")
        elif role == "assistant":
            out.append(f"Assistant: {content}<|separator|>\n\n")
    if add_ass:
        out.append("Assistant:")
    return "".join(out)


@_register("hunyuan-moe")
def _hunyuan_moe(msgs: Messages, add_ass: bool) -> str:
    return "".join(f"<|startoftext|>{c}<|extra_4|>" if r == "system" else f"{c}<|eos|>" if r == "assistant"
                   else f"<|startoftext|>{c}<|extra_0|>" for r, c in msgs)


@_register("hunyuan-dense")
def _hunyuan_dense(msgs: Messages, add_ass: bool) -> str:
    out = []
    for i, (role, content) in enumerate(msgs):
        if i == 0 and role == "system":
            out.append(content + "<｜hy_place▁holder▁no▁3｜>")
        if role == "assistant":
            out.append(f"<｜hy_Assistant｜>{content}<｜hy_place▁holder▁no▁2｜>")
        elif role == "user":
            out.append(f"<｜hy_User｜>{content}<｜hy_Assistant｜>")
    return "".join(out)


@_register("hunyuan-vl")
def _hunyuan_vl(msgs: Messages, add_ass: bool) -> str:
    out = ["<｜hy_begin▁of▁sentence｜>"]
    for i, (role, content) in enumerate(msgs):
        if i == 0 and role == "system":
            out.append(content + "<｜hy_place▁holder▁no▁3｜>")
        elif role == "user":
            out.append(content + "<｜hy_User｜>")
        elif role == "assistant":
            out.append(content + "<｜hy_Assistant｜>")
    return "".join(out)


@_register("pangu-embedded")
def _pangu(msgs: Messages, add_ass: bool) -> str:
    names = {"system": "系统", "user": "用户", "assistant": "助手", "tool": "工具", "function": "方法"}
    out = []
    for i, (role, content) in enumerate(msgs):
        if i == 0 and role != "system":
            out.append("[unused9]系统：[unused10]")
        if role in names:
            out.append(f"[unused9]{names[role]}：{content}[unused10]")
    if add_ass:
        out.append("[unused9]助手：")
    return "".join(out)


RENDERERS["deepseek-ocr"] = lambda msgs, add_ass: "".join(c for _, c in msgs)

_NOT_LLAMA_CPP_NAMES = {"alpaca", "mistral"}  # ours; llama.cpp's detection sends "mistral" to llama2

# The names llama.cpp's --chat-template accepts (dots1 is reachable only through detection), plus our
# alpaca and the "mistral" alias; sorted for --help.
BUILTIN_NAMES: tuple[str, ...] = tuple(sorted(n for n in RENDERERS if n != "dots1"))


def render_builtin(name: str, messages: Messages, add_generation_prompt: bool) -> str:
    return RENDERERS[name](messages, add_generation_prompt)


def detect_template(source: str) -> str | None:
    """The built-in llama.cpp would use for a template string (a built-in name, or a Jinja source
    recognised by marker substrings, checked in llama.cpp's order); None when nothing matches."""
    if source in RENDERERS and source not in _NOT_LLAMA_CPP_NAMES:
        return source

    def has(*needles: str) -> bool:
        return all(n in source for n in needles)

    if has("<|im_start|>"):
        return "phi4" if has("<|im_sep|>") else "smolvlm" if has("<end_of_utterance>") else "chatml"
    if source.startswith("mistral") or has("[INST]"):
        if has("[SYSTEM_PROMPT]"):
            return "mistral-v7"
        if has("' [INST] ' + system_message") or has("[AVAILABLE_TOOLS]"):  # official v1 / v3 / v3-tekken
            if has(" [INST]"):
                return "mistral-v1"
            return "mistral-v3-tekken" if has('"[INST]"') else "mistral-v3"
        if has("content.strip()"):
            return "llama2-sys-strip"
        if has("bos_token + '[INST]"):
            return "llama2-sys-bos"
        return "llama2-sys" if has("<<SYS>>") else "llama2"
    if has("<|assistant|>", "<|end|>"):
        return "phi3"
    if has("[gMASK]<sop>"):
        return "chatglm4"
    if has("<|assistant|>", "<|user|>"):
        if has("<|tool_declare|>"):
            return "exaone-moe"
        return "falcon3" if has("</s>") else "glmedge"
    for needles, name in _DETECT_ORDER:
        if callable(needles):
            found = needles(has)
            if found:
                return found
        elif has(*needles):
            return name
    return None


# The rest of llama.cpp's checks, in its order: marker substrings -> name, or a function of has() for
# the families with variants.
_DETECT_ORDER: list = [
    (("<|{{ item['role'] }}|>", "<|begin_of_image|>"), "glmedge"),
    (("<|user|>", "<|endoftext|>"), "zephyr"),
    (("bos_token + message['role']",), "monarch"),
    (("<start_of_turn>",), "gemma"),
    (("'\\n\\nAssistant: ' + eos_token",), "orion"),
    (("GPT4 Correct ",), "openchat"),
    (lambda has: has("USER: ", "ASSISTANT: ") and ("vicuna-orca" if has("SYSTEM: ") else "vicuna"), None),
    (("### Instruction:", "<|EOT|>"), "deepseek"),
    (("<|START_OF_TURN_TOKEN|>", "<|USER_TOKEN|>"), "command-r"),
    (("<|start_header_id|>", "<|end_header_id|>"), "llama3"),
    (("[gMASK]sop",), "chatglm3"),
    (("<用户>",), "minicpm"),
    (("'Assistant: ' + message['content'] + eos_token",), "deepseek2"),
    (("<｜Assistant｜>", "<｜User｜>", "<｜end▁of▁sentence｜>"), "deepseek3"),
    (lambda has: has("[|system|]", "[|assistant|]", "[|endofturn|]")
     and ("exaone4" if has("[|tool|]") else "exaone3"), None),
    (lambda has: (has("rwkv-world") or has("{{- 'User: ' + message['content']|trim + '\\n\\n' -}}"))
     and "rwkv-world", None),
    (lambda has: has("<|start_of_role|>") and (
        ("granite-4.0" if has("g4_default_system_message") else "granite-4.1")
        if has("<tool_call>") or has("<tools>") else "granite"), None),
    (("message['role'] + additional_special_tokens[0] + message['content'] + additional_special_tokens[1]",),
     "gigachat"),
    (("<|role_start|>",), "megrez"),
    ((" Ассистент:",), "yandex"),
    (("<role>ASSISTANT</role>", "'HUMAN'"), "bailing"),
    (("<role>ASSISTANT</role>", '"HUMAN"', "<think>"), "bailing-think"),
    (("<role>ASSISTANT</role>", "<role>HUMAN</role>", "<|role_end|>"), "bailing2"),
    (("<|header_start|>", "<|header_end|>"), "llama4"),
    (("<|endofuserprompt|>",), "dots1"),
    (("<|extra_0|>", "<|extra_4|>"), "hunyuan-moe"),
    (("<|start|>", "<|channel|>"), "gpt-oss"),
    (("<｜hy_Assistant｜>", "<｜hy_begin▁of▁sentence｜>"), "hunyuan-vl"),
    (("<｜hy_Assistant｜>", "<｜hy_place▁holder▁no▁3｜>"), "hunyuan-dense"),
    (("<|im_assistant|>assistant<|im_middle|>",), "kimi-k2"),
    (("<seed:bos>",), "seed_oss"),
    (("'Assistant: '  + message['content'] + '<|separator|>",), "grok-2"),
    (("[unused9]系统：[unused10]",), "pangu-embedded"),
    (("<|begin|>", "<|end|>", "<|content|>"), "solar-open"),
]
