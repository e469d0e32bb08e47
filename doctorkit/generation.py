"""Reply generation shared by chat, the demo and evaluation: the chat template, stop tokens, streaming."""
from __future__ import annotations

import threading
from typing import Iterator

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

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


def encode_prompt(tokenizer, messages: list[dict]) -> torch.Tensor:
    out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    return out["input_ids"]


def fit_prompt(tokenizer, head: list[dict], turns: list[dict], last: list[dict], max_tokens: int, prepare=None):
    """head + the newest `turns` that fit + last, at most max_tokens after the chat template (chat and demo).

    `prepare(messages) -> (messages, extra)` runs before counting (the demo's knowledge grounding).
    Returns (messages, extra), or None when even no history at all is too long. Bisection over how many
    of the oldest turns to drop: a few tokenizations however long the history is.
    """
    prepare = prepare or (lambda messages: (messages, None))

    def fitting(drop: int):
        messages, extra = prepare(head + turns[drop:] + last)
        return (messages, extra) if encode_prompt(tokenizer, messages).shape[-1] <= max_tokens else None

    if (found := fitting(0)) is not None:
        return found
    if fitting(len(turns)) is None:
        return None
    low, high = 0, len(turns)   # too long with `low` turns dropped, fits with `high` dropped
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if fitting(middle) is not None else (middle, high)
    return fitting(high)


class _StopEvent(StoppingCriteria):
    """Lets a Stop button (or Ctrl-C) end generation between tokens."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        return self.event.is_set()


def sampling_kwargs(temperature: float = 0.7, top_p: float = 0.9, repetition_penalty: float = 1.1,
                    max_new_tokens: int = 256) -> dict:
    kwargs = dict(max_new_tokens=max_new_tokens, repetition_penalty=repetition_penalty)
    if temperature and temperature > 0:
        kwargs.update(do_sample=True, temperature=temperature, top_p=top_p)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kwargs


def generate_stream(model, tokenizer, messages: list[dict], stop: threading.Event | None = None,
                    **sampling) -> Iterator[str]:
    """Yield the reply piece by piece as tokens arrive; generation runs in a worker thread."""
    input_ids = encode_prompt(tokenizer, messages).to(model.device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
    stop = stop or threading.Event()
    kwargs = dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), streamer=streamer,
                  eos_token_id=stop_token_ids(model, tokenizer), pad_token_id=tokenizer.pad_token_id,
                  stopping_criteria=StoppingCriteriaList([_StopEvent(stop)]), use_cache=True,
                  **sampling_kwargs(**sampling))
    errors: list[BaseException] = []

    def work():
        try:
            with torch.inference_mode():
                model.generate(**kwargs)
        except BaseException as err:  # surfaced in the caller's thread below
            errors.append(err)
            streamer.end()

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    try:
        for piece in streamer:
            if piece:
                yield piece
    finally:
        stop.set()
        worker.join()
    if errors:
        raise errors[0]


def generate_reply(model, tokenizer, messages: list[dict], **sampling) -> str:
    return "".join(generate_stream(model, tokenizer, messages, **sampling)).strip()
