"""The server's engine: N slots, a queue for the requests beyond them, one scheduler for the decode.

    engine = Engine(llm, n_slots=4, slot_ctx=4096)
    job = engine.submit(plan_fn)             # plan_fn() -> Plan (tokenize, sampler, limits); run in a worker thread
    async for event in job.events(): ...     # ("planned", plan), ("step", Step), ("done", Result) or ("error", exc)
    job.cancel()                             # a client went away: the slot is freed after the current step

Every request runs ``llamapy.generate.Generation`` (the same loop as ``Llama``) in its own worker thread, on
a ``SlotModel`` instead of a ``Model``: the slot keeps the tokens its KV cache holds, so a new prompt only
evaluates what follows the longest common prefix, and every evaluation goes through the ``Scheduler``, which
gathers one request from each busy slot and hands them to ``decode_step`` together.
"""
from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

from llamapy.generate import Generation, GenStats

# How long the scheduler waits for the other busy slots to ask for their next token before it decodes
# what it has (a slot may be slow: a grammar mask, a client that reads slowly).
GATHER_SECONDS = 0.005


class Cancelled(Exception):
    """The client went away; the generation stops and frees its slot."""


class Slot:
    """One sequence of the server: its own part of the shared model's KV cache (sequence ``id`` of a
    ``Model(n_seq=n_slots)``) and the tokens that part holds at positions 0, 1, ..."""

    def __init__(self, slot_id: int, model):
        self.id = slot_id
        self.model = model
        self.cached: list[int] = []


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@dataclass
class EvalRequest:
    slot: Slot
    tokens: list[int]
    pos: int
    logits: object = None
    error: BaseException | None = None
    done: bool = False


def decode_step(batch: list[EvalRequest]) -> None:
    """The one engine call of a scheduler step: evaluate each slot's tokens at its positions, fill in logits.

    As llama-server, the slots generating a token are decoded in ONE batched forward call (one pass over the
    weights for all of them, each token attending to its own slot's cache). A slot evaluating a prompt goes
    through the same model on its own (its logits are only wanted for the last token).
    """
    singles = [req for req in batch if len(req.tokens) == 1]
    if singles:
        model = singles[0].slot.model
        try:
            logits = model.eval_seqs([r.tokens[0] for r in singles], [r.slot.id for r in singles],
                                     [r.pos for r in singles])
            for i, req in enumerate(singles):
                req.logits = logits[i:i + 1]
        except BaseException as e:  # noqa: BLE001 - handed to the waiting requests
            for req in singles:
                req.error = e
    for req in batch:
        if len(req.tokens) == 1:
            continue
        try:
            n = len(req.tokens)
            req.logits = req.slot.model.eval_seqs(req.tokens, [req.slot.id] * n, list(range(req.pos, req.pos + n)),
                                                  all_logits=False)
        except BaseException as e:  # noqa: BLE001 - handed to the waiting request
            req.error = e


class Scheduler:
    """Owns the decode: worker threads submit evaluations and wait; one thread runs ``decode_step`` on what
    every busy slot has asked for."""

    def __init__(self, metrics: "Metrics"):
        self.metrics = metrics
        self.n_busy = 0                      # slots holding a request (set by the SlotPool)
        self._cond = threading.Condition()
        self._pending: list[EvalRequest] = []
        threading.Thread(target=self._loop, name="llamapy-scheduler", daemon=True).start()

    def eval(self, slot: Slot, tokens: list[int], pos: int):
        req = EvalRequest(slot, tokens, pos)
        with self._cond:
            self._pending.append(req)
            self._cond.notify_all()
            while not req.done:
                self._cond.wait()
        if req.error is not None:
            raise req.error
        return req.logits

    def _loop(self):
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                deadline = time.monotonic() + GATHER_SECONDS
                while len(self._pending) < self.n_busy and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                batch, self._pending = self._pending, []
            decode_step(batch)
            self.metrics.count_decode(len(batch))
            with self._cond:
                for req in batch:
                    req.done = True
                self._cond.notify_all()


class SlotPool:
    """Free slots and the queue of requests waiting for one (first come, first served)."""

    def __init__(self, slots: list[Slot], scheduler: Scheduler, metrics: "Metrics"):
        self.slots = slots
        self._free = list(slots)
        self._cond = threading.Condition()
        self._queue: list[object] = []
        self.scheduler, self.metrics = scheduler, metrics

    @property
    def n_busy(self) -> int:
        return len(self.slots) - len(self._free)

    @property
    def n_waiting(self) -> int:
        return len(self._queue)

    def acquire(self, prompt: list[int], job: "Job", id_slot: int = -1) -> Slot:
        """The free slot whose cache shares the longest prefix with ``prompt`` (or slot ``id_slot``);
        waits in line while none is free; raises Cancelled if the client leaves meanwhile."""
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            try:
                while True:
                    if job.cancelled:
                        raise Cancelled()
                    candidates = [s for s in self._free if id_slot < 0 or s.id == id_slot]
                    if self._queue[0] is ticket and candidates:
                        slot = max(candidates, key=lambda s: common_prefix(s.cached, prompt))
                        self._free.remove(slot)
                        self.scheduler.n_busy = self.n_busy
                        return slot
                    self._cond.wait(0.1)
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()

    def release(self, slot: Slot) -> None:
        with self._cond:
            self._free.append(slot)
            self.scheduler.n_busy = self.n_busy
            self._cond.notify_all()


class SlotModel:
    """What a ``Generation`` sees as its model: evaluations go through the scheduler into the slot's cache,
    and a prompt evaluation (at position 0) skips the prefix the cache already holds."""

    def __init__(self, slot: Slot, scheduler: Scheduler, job: "Job", reuse_prefix: bool = True):
        self.slot, self.scheduler, self.job, self.reuse_prefix = slot, scheduler, job, reuse_prefix
        self.n_ctx = slot.model.n_ctx
        self.n_vocab = slot.model.n_vocab
        self.n_cached = 0          # prompt tokens found in the cache
        self.n_prompt_eval = 0     # prompt tokens evaluated
        self.t_prompt_done = None

    def eval(self, tokens, pos: int, out=None):
        if self.job.cancelled:
            raise Cancelled()
        tokens = [int(t) for t in tokens]
        slot = self.slot
        if pos == 0:
            keep = common_prefix(slot.cached, tokens) if self.reuse_prefix else 0
            keep = min(keep, len(tokens) - 1)      # the last prompt token is evaluated again for its logits
            self.n_cached, self.n_prompt_eval = keep, len(tokens) - keep
            tokens, pos = tokens[keep:], keep
        del slot.cached[pos:]                     # what lies beyond pos is overwritten from here on
        logits = self.scheduler.eval(slot, tokens, pos)
        slot.cached.extend(tokens)
        if self.t_prompt_done is None:
            self.t_prompt_done = time.perf_counter()
        if out is not None:                       # Model.eval's contract: the logits in the caller's buffer
            out[...] = logits
            return out
        return logits


@dataclass
class Plan:
    """What a request asks for, ready to run: made by the endpoint from ``Llama``'s own prompt and sampler
    building (``Llama._start`` / ``_start_chat``)."""

    generation: Generation       # built on the Llama's model; re-targeted at a slot when one is free
    reuse_prefix: bool = True
    id_slot: int = -1
    info: dict = field(default_factory=dict)   # endpoint-specific facts (response head, echo text, ...)


@dataclass
class Result:
    generation: Generation
    slot_id: int
    n_cached: int
    n_prompt_eval: int
    prompt_ms: float
    predicted_ms: float

    @property
    def timings(self) -> dict:
        """llama-server's ``timings`` object."""
        n_pred = len(self.generation.tokens)
        p_ms, g_ms = self.prompt_ms, self.predicted_ms
        return {"cache_n": self.n_cached, "prompt_n": self.n_prompt_eval, "prompt_ms": p_ms,
                "prompt_per_token_ms": p_ms / self.n_prompt_eval if self.n_prompt_eval else 0.0,
                "prompt_per_second": 1e3 * self.n_prompt_eval / p_ms if p_ms > 0 else 0.0,
                "predicted_n": n_pred, "predicted_ms": g_ms,
                "predicted_per_token_ms": g_ms / n_pred if n_pred else 0.0,
                "predicted_per_second": 1e3 * n_pred / g_ms if g_ms > 0 else 0.0}


class Job:
    """One request's life: planned, waiting for a slot, generating, done. Its events cross from the worker
    thread to the event loop through an asyncio queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue()
        self.cancelled = False
        self.slot_id = -1

    def emit(self, kind: str, value=None) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, value))

    async def next(self):
        return await self.queue.get()

    def cancel(self) -> None:
        self.cancelled = True


class Metrics:
    """Counters for /metrics (llama-server's llamacpp:* names)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests_total = 0
        self.requests_failed = 0
        self.n_prompt = 0
        self.n_prompt_cached = 0
        self.prompt_seconds = 0.0
        self.n_predicted = 0
        self.predicted_seconds = 0.0
        self.n_decode = 0
        self.n_busy_slots = 0
        self.n_tokens_max = 0

    def count_decode(self, n_slots: int) -> None:
        with self.lock:
            self.n_decode += 1
            self.n_busy_slots += n_slots

    def count_result(self, r: Result) -> None:
        with self.lock:
            self.requests_total += 1
            self.n_prompt += r.n_prompt_eval
            self.n_prompt_cached += r.n_cached
            self.prompt_seconds += r.prompt_ms / 1e3
            self.n_predicted += len(r.generation.tokens)
            self.predicted_seconds += r.predicted_ms / 1e3
            self.n_tokens_max = max(self.n_tokens_max, r.generation.n_prompt + len(r.generation.tokens))

    def count_failure(self) -> None:
        with self.lock:
            self.requests_total += 1
            self.requests_failed += 1


class Engine:
    """The loaded model (a ``Llama``), its slots, the scheduler and the metrics."""

    def __init__(self, llm, n_slots: int, slot_ctx: int):
        from llamapy.model import Model
        self.llm = llm
        self.slot_ctx = slot_ctx
        self.metrics = Metrics()
        self.scheduler = Scheduler(self.metrics)
        base = llm._model
        # one model over the Llama's GGUF reader (the same memory map of the weights) with a KV cache of
        # slot_ctx positions per slot: the slots decode together in one forward call
        shared = Model(base.reader, n_ctx=slot_ctx, n_batch=base.n_batch, n_threads=base.n_threads,
                       type_k=base.type_k, type_v=base.type_v, n_seq=n_slots)
        self.pool = SlotPool([Slot(i, shared) for i in range(n_slots)], self.scheduler, self.metrics)

    def submit(self, make_plan) -> Job:
        """Run a request in a worker thread: ``make_plan()`` (may raise ValueError: a bad request), then a
        slot, then the generation; events arrive on the returned job."""
        job = Job(asyncio.get_running_loop())
        threading.Thread(target=self._work, args=(job, make_plan), name="llamapy-request", daemon=True).start()
        return job

    def _work(self, job: Job, make_plan) -> None:
        try:
            plan = make_plan()
        except Exception as e:  # noqa: BLE001 - the endpoint turns it into a 4xx
            job.emit("error", e)
            return
        job.emit("planned", plan)
        slot = None
        try:
            base = plan.generation
            slot = self.pool.acquire(base.prompt, job, plan.id_slot)
            job.slot_id = slot.id
            model = SlotModel(slot, self.scheduler, job, plan.reuse_prefix)
            gen = Generation(model, base.tokenizer, base.sampler, base.prompt, max_tokens=base.max_tokens,
                             stop=base.matcher.stop, stats=GenStats(), n_ctx=self.slot_ctx,
                             n_probs=base.n_probs)
            t0 = time.perf_counter()
            for step in gen:
                if job.cancelled:
                    raise Cancelled()
                job.emit("step", step)
            t_end = time.perf_counter()
            t_prompt = model.t_prompt_done or t_end
            result = Result(gen, slot.id, model.n_cached, model.n_prompt_eval, (t_prompt - t0) * 1e3,
                            (t_end - t_prompt) * 1e3)
            self.metrics.count_result(result)
            job.emit("done", result)
        except Cancelled:
            self.metrics.count_failure()
        except Exception as e:  # noqa: BLE001 - reported to the client as a server error
            self.metrics.count_failure()
            job.emit("error", e)
        finally:
            if slot is not None:
                self.pool.release(slot)
