"""A llamapy-cli run: llama-completion's main loop, for every mode.

    s = Session(model, tokenizer, sampler, Options(...), console, chat=template, stats=stats)
    s.prepare(prompt, system_prompt)   # template, tokens, prompt cache, n_keep (SessionError: one-line refusal)
    s.run()                            # evaluate, sample, show, read the user's turns
    s.finish()                         # --prompt-cache-all: save what was generated

One loop serves plain completion (-no-cnv), interactive mode (-i, -if: the user types after a reverse prompt,
an end-of-generation token, -n tokens or Ctrl+C) and conversation mode (-cnv: -p / -sys open the chat, every
turn is rendered with the chat template and only the text it adds is evaluated). As llama.cpp's loop, each
pass evaluates what is pending (``embd``), then either samples one token or moves queued input (``embd_inp``)
into the next batch, shows it, and checks for a reverse prompt, the end of generation and the user's turn.

A full context stops the run, or with --context-shift keeps the first n_keep tokens, drops half of the rest
and slides the later entries back (Model.kv_shift). --prompt-cache FILE skips the evaluation of a prompt prefix
that a previous run saved.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from llamapy import prompt_cache
from llamapy.cli import console as con
from llamapy.cli.common import process_escapes

N_PREV = 32     # tokens of recent history searched for a reverse prompt (llama.cpp's n_prev)


class SessionError(Exception):
    """A run that cannot start (one line for the user)."""


@dataclass
class Options:
    n_ctx: int
    n_predict: int = -1
    n_batch: int = 2048
    n_keep: int = 0
    context_shift: bool = False
    interactive: bool = False
    interactive_first: bool = False
    conversation: bool = False
    single_turn: bool = False
    reverse_prompts: tuple[str, ...] = ()
    in_prefix: str = ""
    in_suffix: str = ""
    in_prefix_bos: bool = False
    multiline: bool = False
    escape: bool = True
    special: bool = False
    display_prompt: bool = True
    verbose_prompt: bool = False
    prompt_cache: str | None = None
    prompt_cache_all: bool = False
    prompt_cache_ro: bool = False


class Session:
    def __init__(self, model, tokenizer, sampler, opts: Options, console: con.Console, *, chat=None, stats,
                 print_perf=lambda: None):
        """chat: the ChatTemplate of conversation mode (None: user input goes in as typed); stats: the
        GenStats the timings go to; print_perf: prints them (also on Ctrl+C)."""
        self.model, self.tok, self.sampler, self.opts, self.console = model, tokenizer, sampler, opts, console
        self.chat, self.stats, self.print_perf = chat, stats, print_perf
        self.n_ctx = opts.n_ctx
        self.n_keep = opts.n_keep
        self.eog = set(tokenizer.vocab.eog_ids)
        self.messages: list[dict] = []          # the conversation so far (conversation mode)
        self.assistant = ""                     # the reply being generated (conversation mode)
        self.prompt_text = ""
        self.embd_inp: list[int] = []           # every input token queued so far (prompt, then user turns)
        self.n_consumed = 0                     # of embd_inp, moved into batches
        self.n_past = 0                         # positions filled in the KV cache
        self.logits = None
        self._step_logits = None      # the logits row every generation step reuses
        self.prev: deque[int] = deque(maxlen=N_PREV)   # recent accepted tokens (reverse-prompt search)
        self.n_remain = opts.n_predict
        self.is_interacting = False
        self.need_insert_eot = False            # Ctrl+C cut a reply short: close it before the next turn
        self.waiting_for_first_input = False
        self.is_antiprompt = False
        self.pending: list[int] = []            # sampled but not evaluated when the loop ended
        self.decoder = tokenizer.stream(special=opts.special)
        # prompt cache: the file, the tokens whose KV it gave (or that we evaluated since), how many of them
        # this run has walked through, and whether to save once the prompt is evaluated
        self.cache_path = opts.prompt_cache
        self.session_tokens: list[int] = []
        self.n_session_consumed = 0
        self.session_do_save = False
        self.antiprompt_ids = []                # reverse prompts that are one token: also matched by id
        for text in opts.reverse_prompts:
            ids = tokenizer.encode(text, add_special=False, parse_special=True)
            if len(ids) == 1:
                self.antiprompt_ids.append(ids[0])

    # -- setup ----------------------------------------------------------------------------------

    def prepare(self, prompt: str, system_prompt: str = "") -> None:
        o, tok = self.opts, self.tok
        if self.cache_path:
            self._load_prompt_cache()
        if o.conversation and self.chat is not None:
            if system_prompt:
                self._chat_add("system", system_prompt)
            if prompt:
                self._chat_add("user", prompt)
            else:
                self.waiting_for_first_input = True
            if system_prompt or prompt:
                self.prompt_text = self._render(self.messages, add_generation_prompt=bool(prompt))
        else:
            self.prompt_text = prompt
        if o.interactive_first or self.prompt_text or not self.session_tokens:
            self.embd_inp = tok.encode(self.prompt_text, add_special=True, parse_special=True)
        else:   # no prompt: go on from where the prompt cache left off
            self.embd_inp = list(self.session_tokens)
        if not self.waiting_for_first_input and not self.embd_inp:
            if tok.bos_id is not None and tok.add_bos:
                self.embd_inp = [tok.bos_id]
            else:
                raise SessionError("input is empty")
        if len(self.embd_inp) > self.n_ctx - 4:
            raise SessionError(f"prompt is too long ({len(self.embd_inp)} tokens, max {self.n_ctx - 4})")
        if self.session_tokens or self.cache_path:
            self._match_prompt_cache(prompt)

        add_bos = int(bool(tok.add_bos and tok.bos_id is not None))
        if self.n_keep < 0 or self.n_keep > len(self.embd_inp):
            self.n_keep = len(self.embd_inp)
        else:
            self.n_keep += add_bos    # the BOS token is always kept
        if o.conversation:
            if o.single_turn and prompt:
                o.interactive = o.interactive_first = False
            else:
                o.interactive_first = True
        if o.interactive_first:
            o.interactive = True
        if o.verbose_prompt:
            self._print_tokens(f"main: prompt: '{prompt}'", self.embd_inp)
            if self.n_keep > add_bos:
                kept = "".join(self._piece(t, True) for t in self.embd_inp[:self.n_keep])
                self.console.info(f"main: static prompt based on n_keep: '{kept}'")
            self.console.info()

    def print_mode(self) -> None:
        """What interactive mode will do (before the sampler lines, as llama.cpp orders them)."""
        o, info = self.opts, self.console.info
        if not o.interactive:
            return
        info("main: interactive mode on.")
        for text in o.reverse_prompts:
            info(f"Reverse prompt: '{text}'")
        if o.in_prefix_bos:
            info("Input prefix with BOS")
        if o.in_prefix:
            info(f"Input prefix: '{o.in_prefix}'")
        if o.in_suffix:
            info(f"Input suffix: '{o.in_suffix}'")

    def print_banner(self) -> None:
        o, info = self.opts, self.console.info
        if not o.interactive:
            return
        info("== Running in interactive mode. ==")
        info(" - Press Ctrl+C to interject at any time.")
        if o.multiline:
            info(" - To return control to the AI, end your input with '\\'.")
        else:
            info(" - Press Return to return control to the AI.")
        info(" - To return control without starting a new line, end your input with '/'.")
        if not o.multiline:
            info(" - If you want to submit another line, end your input with '\\'.")
        if o.conversation and self.chat is not None and not any(m["role"] == "system" for m in self.messages):
            info(" - Not using system message. To change it, set a different value via -sys PROMPT")
        info()

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> None:
        o, console = self.opts, self.console
        self.is_interacting = o.interactive_first
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            self._loop()
        finally:
            signal.signal(signal.SIGINT, previous)
            console.cleanup()

    def _loop(self) -> None:
        o, console = self.opts, self.console
        input_echo = True
        console.set_display(con.PROMPT)
        display = o.display_prompt
        embd: list[int] = []
        while (self.n_remain != 0 and not self.is_antiprompt) or o.interactive:
            if embd and not self._evaluate(embd):
                break
            embd = []
            if len(self.embd_inp) <= self.n_consumed and not self.is_interacting:
                tok = self._sample()
                embd = [tok]
                if o.conversation and not self.waiting_for_first_input and tok not in self.eog:
                    self.assistant += self._piece(tok, False)
                input_echo = True
                self.n_remain -= 1
            else:   # queued input goes into the next batch (and into the penalty history)
                while len(self.embd_inp) > self.n_consumed:
                    t = self.embd_inp[self.n_consumed]
                    embd.append(t)
                    self._accept(t, generated=False)   # input tokens do not advance a grammar
                    self.n_consumed += 1
                    if len(embd) == o.n_batch:
                        break

            if input_echo and display:
                console.write("".join(self.decoder.feed(t) for t in embd))
            if input_echo and len(self.embd_inp) == self.n_consumed:
                console.set_display(con.RESET)
                display = True

            if len(self.embd_inp) <= self.n_consumed:
                if o.reverse_prompts:
                    self.is_antiprompt = self._found_reverse_prompt()
                    if self.is_antiprompt and o.interactive:
                        self.is_interacting = True
                if not self.waiting_for_first_input and self.prev and self.prev[-1] in self.eog and o.interactive:
                    if o.reverse_prompts:   # an interactive run goes on after the first reverse prompt
                        self.embd_inp += self.tok.encode(o.reverse_prompts[0], add_special=False, parse_special=True)
                        self.is_antiprompt = True
                    if self.chat is not None and o.conversation:
                        self.messages.append({"role": "assistant", "content": self.assistant})
                    self.is_interacting = True
                    console.write("\n")
                if o.conversation and not self.waiting_for_first_input and self.prompt_text:
                    self.prompt_text = ""           # the -p turn has been answered: nothing to wait for yet
                    self.is_interacting = False

                if (self.n_past > 0 or self.waiting_for_first_input) and self.is_interacting:
                    console.set_display(con.RESET)
                    if not self._read_turn():
                        break
                    input_echo = False     # the terminal already echoed it
                    display = True
                if self.n_past > 0 or self.waiting_for_first_input:
                    if self.is_interacting:
                        self._reset_sampler()
                    self.is_interacting = False
                    if self.waiting_for_first_input and o.single_turn:
                        o.interactive = o.interactive_first = False
                    self.waiting_for_first_input = False

            if embd and embd[-1] in self.eog and not o.interactive:
                console.write(self.decoder.flush() + " [end of text]\n")
                break
            # interactive: -n N tokens per reply, then the user's turn
            if o.interactive and self.n_remain <= 0 and o.n_predict >= 0:
                self.n_remain = o.n_predict
                self.is_interacting = True
        console.write(self.decoder.flush())
        self.pending = embd

    def finish(self) -> None:
        """--prompt-cache-all: save the whole run (unless a context shift made the cache stale)."""
        o = self.opts
        if self.cache_path and o.prompt_cache_all and not o.prompt_cache_ro:
            # at most one token past the cached ones: the next run evaluates it again for its logits
            tokens = (self.session_tokens + self.pending)[:self.n_past + 1]
            self.console.info(f"\nmain: saving final output to session file '{self.cache_path}'")
            prompt_cache.save(self.cache_path, self.model, tokens, self.n_past)
            self.console.info(f"saved final session to {self.cache_path}, n_tokens = {len(tokens)}")

    # -- steps ----------------------------------------------------------------------------------

    def _evaluate(self, embd: list[int]) -> bool:
        """Evaluate embd at n_past, making room first (context shift) and skipping what the prompt cache
        already holds. False: the run has to stop."""
        o, info = self.opts, self.console.info
        max_embd = self.n_ctx - 4
        if len(embd) > max_embd:
            skipped = len(embd) - max_embd
            del embd[max_embd:]
            self.console.set_display(con.ERROR)
            info(f"<<input too long: skipped {skipped} token{'s' if skipped != 1 else ''}>>")
            self.console.set_display(con.RESET)
        if self.n_past + len(embd) >= self.n_ctx:
            if not o.context_shift:
                info("\n\nmain: context full and context shift is disabled => stopping")
                return False
            if o.n_predict == -2:
                info(f"\n\nmain: context full and n_predict == {o.n_predict} => stopping")
                return False
            n_discard = (self.n_past - self.n_keep) // 2
            self.model.kv_shift(self.n_keep + n_discard, self.n_past, -n_discard)
            self.n_past -= n_discard
            self.cache_path = None     # the cache no longer matches the token list: stop saving it
            if self.n_past + len(embd) >= self.n_ctx:
                info(f"\n\nmain: context full even after a shift (n_keep = {self.n_keep}) => stopping")
                return False

        if self.n_session_consumed < len(self.session_tokens):   # reuse what the prompt cache holds
            i = 0
            while i < len(embd):
                if embd[i] != self.session_tokens[self.n_session_consumed]:
                    del self.session_tokens[self.n_session_consumed:]
                    break
                self.n_past += 1
                self.n_session_consumed += 1
                i += 1
                if self.n_session_consumed >= len(self.session_tokens):
                    break
            del embd[:i]

        if embd:
            save_now = self.session_do_save and self.n_consumed >= len(self.embd_inp)
            self.session_tokens += embd
            if save_now and len(embd) > 1 and self.cache_path:
                # save before the last token, which the next run evaluates again for its logits
                self._eval(embd[:-1])
                prompt_cache.save(self.cache_path, self.model, self.session_tokens, self.n_past)
                self._eval(embd[-1:])
            else:
                self._eval(embd)
            self.n_session_consumed += len(embd)
            if save_now:
                self.session_do_save = False
        return True

    def _eval(self, tokens: list[int]) -> None:
        """Evaluate at n_past; one-token batches count as generation, longer ones as prompt (as llama.cpp)."""
        t0 = time.perf_counter()
        if len(tokens) == 1:      # a generation step: one logits row reused, nothing vocabulary-sized allocated
            if self._step_logits is None:
                self._step_logits = np.empty((1, self.model.n_vocab), np.float32)
            self.logits = self.model.eval(tokens, self.n_past, out=self._step_logits)
        else:
            self.logits = self.model.eval(tokens, self.n_past)
        ms = (time.perf_counter() - t0) * 1e3
        st = self.stats
        if len(tokens) == 1:
            st.eval_ms += ms
            st.n_eval += 1
        else:
            st.prompt_ms += ms
            st.n_prompt += len(tokens)
        self.n_past += len(tokens)

    def _sample(self) -> int:
        t0 = time.perf_counter()
        tok = self.sampler.sample(self.logits[0])
        self._accept(tok, generated=True)
        self.stats.sample_ms += (time.perf_counter() - t0) * 1e3
        self.stats.n_sample += 1
        return tok

    def _accept(self, tok: int, generated: bool) -> None:
        self.sampler.accept(tok, is_generated=generated)
        self.prev.append(tok)

    def _reset_sampler(self) -> None:
        self.sampler.reset()
        self.prev.clear()

    def _found_reverse_prompt(self) -> bool:
        """A reverse prompt at the end of the recent text (in non-interactive runs the window reaches 2
        characters further back, in case it was tokenized together with what followed), or a one-token
        reverse prompt as the last token."""
        last = "".join(self._piece(t, True) for t in self.prev)
        pad = 0 if self.opts.interactive else 2
        for text in self.opts.reverse_prompts:
            if text in last[max(len(last) - len(text) - pad, 0):]:
                return True
        return bool(last) and self.prev[-1] in self.antiprompt_ids

    def _read_turn(self) -> bool:
        """The user's turn: read input (queued into embd_inp). False on end of file (Ctrl+D)."""
        o, console, tok = self.opts, self.console, self.tok
        if o.conversation:
            console.write("\n> ")
        if o.in_prefix_bos and tok.bos_id is not None:
            self.embd_inp.append(tok.bos_id)
        if o.in_prefix and not o.conversation:
            console.write(o.in_prefix)
        console.set_display(con.USER_INPUT)
        buffer, more = "", True
        while more:
            line, more = console.readline(o.multiline)
            buffer += line
        console.set_display(con.RESET)
        if not buffer:
            console.write("EOF by user\n")
            return False
        if buffer.endswith("\n"):   # a wanted final newline is typed as '\' + Return, then Return
            buffer = buffer[:-1]
        if buffer:   # an empty line just hands control back
            if o.in_suffix and not o.conversation:
                console.write(o.in_suffix)
            if o.escape:
                buffer = process_escapes(buffer)
            format_chat = o.conversation and self.chat is not None
            text = self._chat_add("user", buffer) if format_chat else buffer
            start = len(self.embd_inp)
            if self.need_insert_eot and format_chat:
                eot = tok.eot_id if tok.eot_id is not None else tok.eos_id
                if eot is not None:
                    self.embd_inp.append(eot)
                self.need_insert_eot = False
            line_inp = tok.encode(text, add_special=False, parse_special=format_chat)
            self.embd_inp += tok.encode(o.in_prefix, add_special=False, parse_special=True)
            self.embd_inp += line_inp
            self.embd_inp += tok.encode(o.in_suffix, add_special=False, parse_special=True)
            if o.verbose_prompt:
                self._print_tokens(None, self.embd_inp[start:])
            self.assistant = ""
            self.n_remain -= len(line_inp)
        return True

    def _on_sigint(self, signum, frame) -> None:
        """Ctrl+C: while generating in interactive mode, hand control to the user; otherwise stop (exit 130)."""
        if not self.is_interacting and self.opts.interactive:
            self.is_interacting = True
            self.need_insert_eot = True
            return
        self.console.cleanup()
        self.console.write("\n")
        self.stats.finish()
        self.print_perf()
        self.console.info("Interrupted by user")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)

    # -- helpers --------------------------------------------------------------------------------

    def _render(self, messages, add_generation_prompt):
        from llamapy.chat import ChatTemplateError
        try:
            return self.chat.render(messages, add_generation_prompt=add_generation_prompt)
        except ChatTemplateError as e:
            raise SessionError(str(e)) from None

    def _chat_add(self, role: str, content: str) -> str:
        """Add a message to the conversation; returns the text it adds to the prompt."""
        from llamapy.chat import ChatTemplateError
        msg = {"role": role, "content": content}
        try:
            text = self.chat.format_single(self.messages, msg, add_generation_prompt=role == "user")
        except ChatTemplateError as e:
            raise SessionError(str(e)) from None
        self.messages.append(msg)
        return text

    def _piece(self, token: int, special: bool) -> str:
        return self.tok.token_to_piece(token, special=special).decode("utf-8", errors="replace")

    def _print_tokens(self, title, ids) -> None:
        info = self.console.info
        if title is not None:
            info(title)
        info(f"main: number of tokens in prompt = {len(ids)}")
        for t in ids:
            info(f"{t:6d} -> '{self._piece(t, True)}'")

    # -- prompt cache ---------------------------------------------------------------------------

    def _load_prompt_cache(self) -> None:
        path, info = self.cache_path, self.console.info
        info(f"main: attempting to load saved session from '{path}'")
        if not os.path.exists(path):
            info("main: session file does not exist, will create.")
            return
        if os.path.getsize(path) == 0:
            info("main: The session file is empty. A new session will be initialized.")
            return
        try:
            # every token but perhaps the last has its KV entry back in the cache
            self.session_tokens, _ = prompt_cache.load(path, self.model)
        except (prompt_cache.PromptCacheError, OSError) as e:
            raise SessionError(f"failed to load session file '{path}': {getattr(e, 'strerror', None) or e}") from None
        info(f"main: loaded a session with prompt size of {len(self.session_tokens)} tokens")

    def _match_prompt_cache(self, prompt: str) -> None:
        """How much of the prompt the loaded cache already holds; the rest is evaluated (llama.cpp's rules)."""
        info, inp = self.console.info, self.embd_inp
        n_match = 0
        for a, b in zip(self.session_tokens, inp):
            if a != b:
                break
            n_match += 1
        if self.session_tokens:
            if not prompt and n_match == len(inp):
                info("main: using full prompt from session file")
            elif n_match >= len(inp):
                info("main: session file has exact match for prompt!")
            elif n_match < len(inp) // 2:
                info(f"main: session file has low similarity to prompt ({n_match} / {len(inp)} tokens); "
                     "will mostly be reevaluated")
            else:
                info(f"main: session file matches {n_match} / {len(inp)} tokens of prompt")
            del self.session_tokens[n_match:]   # later cache entries are simply overwritten
        self.session_do_save = bool(self.cache_path) and n_match < len(inp) and not self.opts.prompt_cache_ro
        if self.session_tokens and n_match == len(self.session_tokens):
            # the cache holds no logits: evaluate its last token again (its KV entry may be missing too)
            self.n_past = n_match - 1
            self._eval(self.session_tokens[-1:])
            self.n_past = 0            # the loop walks through the cached tokens again, counting them
            self.session_do_save = False
            info("main: replayed last token from session")
