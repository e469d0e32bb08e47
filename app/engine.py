"""The demo's model side: one loaded run, grounding, prompt limits and serialized streaming generation.

Kept free of Gradio so the UI file only wires widgets, and tests can drive generation directly.

One request must never freeze the demo for everyone (issue 19): every text field is capped in characters
(checked before anything is tokenized), the whole prompt in tokens, each generation in seconds; and the
generation runs in a job thread that owns the model lock, so a client that goes away (Gradio then simply
stops pulling the reply) is noticed within `idle_seconds` and its generation stopped and unlocked.
"""
from __future__ import annotations

import contextlib
import queue
import threading
import time
from typing import Iterator

from app.limits import Limits, PromptRejected
from doctorkit.generation import fit_prompt, generate_stream, prompt_token_ids
from doctorkit.knowledge import Hit, KnowledgeSettings, grounder


class Engine:
    def __init__(self, run, knowledge: KnowledgeSettings | None = None, limits: Limits | None = None):
        self.run = run
        self.knowledge = knowledge
        self.limits = limits or Limits()
        self.ground = grounder(knowledge, run.tokenizer)   # the same grounding training and chat use
        # One model serves every tab: generations take turns. The base-model view flips the PEFT adapter
        # off for the whole model, so a tuned answer must never run at the same time.
        self.lock = threading.Lock()
        self.stops: dict[str, threading.Event] = {}
        self.can_compare = hasattr(run.model, "disable_adapter")   # PEFT model: base = adapter switched off

    # ------------------------------------------------------------------ the prompt, within limits ---
    def build_prompt(self, system: str | None, history: list[dict], message: str,
                     use_knowledge: bool) -> tuple[list[dict], list[Hit]]:
        """System + the newest history that fits + message, grounded; PromptRejected when even that is too long."""
        lim = self.limits
        if len(message) > lim.max_input_chars:
            raise PromptRejected(f"问题太长：{len(message)} 字，上限 {lim.max_input_chars} 字，请精简后再发送。")
        system = (system or "").strip()
        if len(system) > lim.max_system_chars:
            raise PromptRejected(f"系统提示太长：{len(system)} 字，上限 {lim.max_system_chars} 字。")
        head = [{"role": "system", "content": system}] if system else []
        turns = [{"role": str(m.get("role")), "content": str(m.get("content") or "")} for m in history or []
                 if m.get("role") in ("user", "assistant")]
        while turns and sum(len(m["content"]) for m in turns) > lim.max_history_chars:
            turns = turns[2:] if len(turns) > 1 else []   # the oldest exchange goes first
        found = fit_prompt(self.run.tokenizer, head, turns, [{"role": "user", "content": message}],
                           lim.max_prompt_tokens, lambda messages: self.prepare(messages, use_knowledge))
        if found is None:
            raise PromptRejected(f"输入太长：超过 {lim.max_prompt_tokens} 个词元的上限，请缩短系统提示或问题。")
        return found

    def prompt_tokens(self, messages: list[dict]) -> int:
        return len(prompt_token_ids(self.run.tokenizer, messages))

    def check_sampling(self, sampling: dict) -> dict:
        lim, out = self.limits, dict(sampling)
        for key in ("temperature", "top_p", "repetition_penalty"):
            low, high = getattr(lim, key)
            try:
                value = float(out[key])
            except (TypeError, ValueError, KeyError):
                raise PromptRejected(f"{key} 必须是数字。") from None
            if not low <= value <= high:
                raise PromptRejected(f"{key} 必须在 {low} 到 {high} 之间，收到 {value}。")
            out[key] = value
        try:
            out["max_new_tokens"] = int(out["max_new_tokens"])
        except (TypeError, ValueError, KeyError):
            raise PromptRejected("max_new_tokens 必须是整数。") from None
        if not 1 <= out["max_new_tokens"] <= lim.max_new_tokens:
            raise PromptRejected(f"max_new_tokens 必须在 1 到 {lim.max_new_tokens} 之间。")
        return out

    def prepare(self, messages: list[dict], use_knowledge: bool) -> tuple[list[dict], list[Hit]]:
        return self.ground(messages) if use_knowledge else ([dict(m) for m in messages], [])

    # ---------------------------------------------------------------------------------- generation ---
    def stream(self, messages: list[dict], sampling: dict, session: str = "", base: bool = False) -> Iterator[str]:
        """Yield the reply so far (growing text) as tokens arrive; `stop(session)` ends it early.

        The job thread holds the lock and ends on its own (finished, stopped, over max_seconds, or the reader
        idle for idle_seconds), so nothing this generator's reader does or fails to do can keep the lock.
        """
        stop, pieces = threading.Event(), queue.Queue()
        reader = {"waiting": True, "last": time.monotonic()}

        def job():
            self.lock.acquire()
            try:
                self.stops[session] = stop
                deadline = time.monotonic() + self.limits.max_seconds
                threading.Thread(target=self._watch, args=(stop, deadline, reader), daemon=True).start()
                switch = self.run.model.disable_adapter() if base else contextlib.nullcontext()
                with switch:
                    for piece in generate_stream(self.run.model, self.run.tokenizer, messages, stop=stop,
                                                 **sampling):
                        pieces.put(piece)
            except BaseException as err:  # handed to the reader, raised there
                pieces.put(err)
            finally:
                stop.set()
                if self.stops.get(session) is stop:
                    self.stops.pop(session, None)
                self.lock.release()
                pieces.put(None)   # after the release: a reader that saw the end finds the model free

        threading.Thread(target=job, daemon=True, name=f"generate-{session}").start()
        text = ""
        try:
            while True:
                reader["waiting"] = True
                piece = pieces.get()
                reader["waiting"], reader["last"] = False, time.monotonic()
                if piece is None:
                    return
                if isinstance(piece, BaseException):
                    raise piece
                text += piece
                yield text
        finally:
            stop.set()   # the reader closed the generator (Stop, an error): end the job at the next token

    def _watch(self, stop: threading.Event, deadline: float, reader: dict) -> None:
        while not stop.wait(0.2):
            now = time.monotonic()
            if now > deadline or (not reader["waiting"] and now - reader["last"] > self.limits.idle_seconds):
                stop.set()

    def stop(self, session: str = "") -> None:
        event = self.stops.get(session)
        if event is not None:
            event.set()
