"""The demo's model side: one loaded run, grounding, and serialized streaming generation.

Kept free of Gradio so the UI file only wires widgets, and tests can drive generation directly.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

from doctorkit.generation import generate_stream
from doctorkit.knowledge import Hit, KnowledgeSettings, grounder


class Engine:
    def __init__(self, run, knowledge: KnowledgeSettings | None = None):
        self.run = run
        self.knowledge = knowledge
        self.ground = grounder(knowledge, run.tokenizer)   # the same grounding training and chat use
        # One model serves every tab: generations take turns. The base-model view flips the PEFT adapter
        # off for the whole model, so a tuned answer must never run at the same time.
        self.lock = threading.Lock()
        self.stops: dict[str, threading.Event] = {}
        self.can_compare = hasattr(run.model, "disable_adapter")   # PEFT model: base = adapter switched off

    def prepare(self, messages: list[dict], use_knowledge: bool) -> tuple[list[dict], list[Hit]]:
        return self.ground(messages) if use_knowledge else ([dict(m) for m in messages], [])

    def stream(self, messages: list[dict], sampling: dict, session: str = "", base: bool = False) -> Iterator[str]:
        """Yield the reply so far (growing text) as tokens arrive; `stop(session)` ends it early."""
        stop = threading.Event()
        with self.lock:
            self.stops[session] = stop
            switch = self.run.model.disable_adapter() if base else contextlib.nullcontext()
            try:
                with switch:
                    text = ""
                    for piece in generate_stream(self.run.model, self.run.tokenizer, messages, stop=stop, **sampling):
                        text += piece
                        yield text
            finally:
                stop.set()
                self.stops.pop(session, None)

    def stop(self, session: str = "") -> None:
        event = self.stops.get(session)
        if event is not None:
            event.set()

