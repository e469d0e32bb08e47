"""Reply generation shared by chat, the demo, the server and evaluation: the chat template, stop tokens,
streaming, and batches of independent replies.

`generate_rows` is the one generation loop: chat and the demo run it with one row, the server
(doctorkit.serve) with every request that arrived together. Each row carries its own prompt, length limit,
stop strings, cancel switch and deadline, and receives its text as it grows; a row that ends early stops
being computed while the others go on (transformers marks it finished and pads it).
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from doctorkit import sampling
from doctorkit.sampling import MAX_NEW_TOKENS   # generate_stream's `sampling` argument shadows the module
from doctorkit.data.masking import turn_terminators


def stop_token_ids(model, tokenizer) -> list[int]:
    """Generation stops on the same end-of-turn tokens that training supervises (data.masking)."""
    ids = set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    ids.update(tokenizer.convert_tokens_to_ids(t) for t in turn_terminators(tokenizer))
    return sorted(ids)


def prompt_token_ids(tokenizer, messages: list[dict]) -> list[int]:
    """The prompt exactly as training formats it: the tokenizer's own chat template, generation prompt added."""
    out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    return list(out["input_ids"])


def fit_prompt(tokenizer, head: list[dict], turns: list[dict], last: list[dict], max_tokens: int, prepare=None):
    """head + the newest `turns` that fit + last, at most max_tokens after the chat template (chat and demo).

    `prepare(messages) -> (messages, extra)` runs before counting (the demo's knowledge grounding).
    Returns (messages, extra), or None when even no history at all is too long. Bisection over how many
    of the oldest turns to drop: a few tokenizations however long the history is.
    """
    prepare = prepare or (lambda messages: (messages, None))

    def fitting(drop: int):
        messages, extra = prepare(head + turns[drop:] + last)
        return (messages, extra) if len(prompt_token_ids(tokenizer, messages)) <= max_tokens else None

    if (found := fitting(0)) is not None:
        return found
    if fitting(len(turns)) is None:
        return None
    low, high = 0, len(turns)   # too long with `low` turns dropped, fits with `high` dropped
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if fitting(middle) is not None else (middle, high)
    return fitting(high)


def sampling_kwargs(temperature: float = sampling.TEMPERATURE, top_p: float = sampling.TOP_P,
                    repetition_penalty: float = sampling.REPETITION_PENALTY,
                    max_new_tokens: int = sampling.MAX_NEW_TOKENS) -> dict:
    kwargs = dict(max_new_tokens=max_new_tokens, repetition_penalty=repetition_penalty)
    if temperature and temperature > 0:
        kwargs.update(do_sample=True, temperature=temperature, top_p=top_p)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kwargs


@dataclass
class Row:
    """One reply being generated. `on_text(piece)` receives new text as it becomes final."""
    prompt: list[int]
    max_new_tokens: int
    stop: tuple[str, ...] = ()                  # stop strings (OpenAI `stop`): the reply ends before them
    cancel: threading.Event | None = None       # set it (Stop button, client gone) to end this row
    deadline: float | None = None               # time.monotonic() after which the row ends ("time")
    on_text: Callable[[str], None] | None = None
    tokens: list[int] = field(default_factory=list)
    text: str = ""                              # final reply text (stop string cut off)
    sent: int = 0                               # characters of `text` handed to on_text so far
    finish_reason: str | None = None            # stop | length | cancelled | time

    def finish(self, reason: str) -> None:
        if self.finish_reason is None:
            self.finish_reason = reason

    def check_limits(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            self.finish("cancelled")
        elif self.deadline is not None and time.monotonic() > self.deadline:
            self.finish("time")


class _RowsStreamer(BaseStreamer):
    """Receives each step's new token of every row: appends it, decodes the row, applies stop rules."""

    def __init__(self, rows: list[Row], tokenizer, stop_ids: list[int]):
        self.rows, self.tokenizer, self.stop_ids = rows, tokenizer, set(stop_ids)
        self.prompt_seen = False
        self.holdback = max((len(s) for r in rows for s in r.stop), default=1) - 1

    def put(self, value):
        if not self.prompt_seen:  # generate hands the prompt in first
            self.prompt_seen = True
            return
        for row, token in zip(self.rows, value.reshape(-1).tolist()):
            if row.finish_reason is not None:
                continue
            if token in self.stop_ids:
                row.finish("stop")
            else:
                row.tokens.append(token)
                self._decode(row)
                if row.finish_reason is None and len(row.tokens) >= row.max_new_tokens:
                    row.finish("length")
            row.check_limits()
            self._emit(row, final=row.finish_reason is not None)

    def end(self):
        for row in self.rows:
            row.finish("length")
            self._emit(row, final=True)

    def _decode(self, row: Row) -> None:
        text = self.tokenizer.decode(row.tokens, skip_special_tokens=True)
        cut = min((i for i in (text.find(s) for s in row.stop if s) if i >= 0), default=-1)
        if cut >= 0:
            row.text = text[:cut]
            row.finish("stop")
        else:
            row.text = text

    def _emit(self, row: Row, final: bool) -> None:
        # Hold back an incomplete UTF-8 character and any tail that could still grow into a stop string.
        end = len(row.text) if final else len(row.text.rstrip("\ufffd")) - self.holdback
        if end > row.sent and row.on_text is not None:
            row.on_text(row.text[row.sent:end])
        row.sent = max(row.sent, end)


class _RowsDone(StoppingCriteria):
    """Per-row stop flags for transformers: a finished row is padded while the others go on."""

    def __init__(self, rows: list[Row]):
        self.rows = rows

    def __call__(self, input_ids, scores, **kwargs):
        for row in self.rows:
            row.check_limits()
        return torch.tensor([r.finish_reason is not None for r in self.rows], device=input_ids.device)


def generate_rows(model, tokenizer, rows: list[Row], sampling: dict | None = None, seed: int | None = None,
                  **generate_kwargs) -> list[Row]:
    """Generate every row in one left-padded batch (`generate_kwargs` e.g. PEFT's adapter_names)."""
    pad_id = tokenizer.pad_token_id
    stops = stop_token_ids(model, tokenizer)
    pad_id = stops[0] if pad_id is None else pad_id
    width = max(len(r.prompt) for r in rows)
    input_ids = torch.tensor([[pad_id] * (width - len(r.prompt)) + r.prompt for r in rows], device=model.device)
    mask = torch.tensor([[0] * (width - len(r.prompt)) + [1] * len(r.prompt) for r in rows], device=model.device)
    kwargs = sampling_kwargs(**(sampling or {}))
    kwargs["max_new_tokens"] = max(r.max_new_tokens for r in rows)
    if seed is not None:
        torch.manual_seed(seed)
    streamer = _RowsStreamer(rows, tokenizer, stops)
    with torch.inference_mode():
        model.generate(input_ids=input_ids, attention_mask=mask, streamer=streamer, eos_token_id=stops,
                       pad_token_id=pad_id, stopping_criteria=StoppingCriteriaList([_RowsDone(rows)]),
                       use_cache=True, **kwargs, **generate_kwargs)
    return rows


def generate_stream(model, tokenizer, messages: list[dict], stop: threading.Event | None = None,
                    **sampling) -> Iterator[str]:
    """Yield the reply piece by piece as tokens arrive; generation (one row) runs in a worker thread."""
    pieces: queue.Queue = queue.Queue()
    stop = stop or threading.Event()
    sampling = dict(sampling)
    row = Row(prompt_token_ids(tokenizer, messages), sampling.pop("max_new_tokens", MAX_NEW_TOKENS), cancel=stop,
              on_text=pieces.put)
    errors: list[BaseException] = []

    def work():
        try:
            generate_rows(model, tokenizer, [row], sampling)
        except BaseException as err:  # surfaced in the caller's thread below
            errors.append(err)
        finally:
            pieces.put(None)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    try:
        while (piece := pieces.get()) is not None:
            if piece:
                yield piece
    finally:
        stop.set()
        worker.join()
    if errors:
        raise errors[0]


def generate_reply(model, tokenizer, messages: list[dict], **sampling) -> str:
    return "".join(generate_stream(model, tokenizer, messages, **sampling)).strip()
