"""Batched greedy generation and continuation log-likelihoods, with tqdm progress bars.

Decoder-only models continue from the last position, so prompts are padded on the LEFT for generation;
prompts are sorted by length first so a batch wastes little padding, and replies return in input order.
"""
from __future__ import annotations

import contextlib

import torch
from tqdm.auto import tqdm

from doctorkit import sampling
from doctorkit.generation import prompt_token_ids as prompt_ids   # the tasks import it from here too
from doctorkit.generation import sampling_kwargs, stop_token_ids


@contextlib.contextmanager
def padding_side(tokenizer, side: str):
    saved = tokenizer.padding_side
    tokenizer.padding_side = side
    try:
        yield
    finally:
        tokenizer.padding_side = saved


def _batches_by_length(lengths: list[int], batch_size: int) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def _generate(model, tokenizer, conversations: list[list[dict]], kwargs: dict, per_prompt: int, batch_size: int,
              desc: str) -> list[list[str]]:
    """`per_prompt` replies to each conversation, prompts batched by length (left-padded), in input order."""
    encoded = [prompt_ids(tokenizer, conv) for conv in conversations]
    replies: list[list[str]] = [[] for _ in conversations]
    stops = stop_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    with tqdm(total=len(conversations), desc=desc, unit="sample") as bar, padding_side(tokenizer, "left"):
        for batch in _batches_by_length([len(e) for e in encoded], max(1, batch_size // per_prompt)):
            inputs = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt").to(model.device)
            with torch.inference_mode():
                output = model.generate(**inputs, eos_token_id=stops, pad_token_id=pad_id, use_cache=True,
                                        num_return_sequences=per_prompt, **kwargs)
            new_tokens = output[:, inputs["input_ids"].shape[1]:]
            for row, tokens in enumerate(new_tokens):  # rows come grouped: per_prompt rows per prompt
                replies[batch[row // per_prompt]].append(tokenizer.decode(tokens, skip_special_tokens=True).strip())
            bar.update(len(batch))
    return replies


def generate_replies(model, tokenizer, conversations: list[list[dict]], max_new_tokens: int = 256,
                     batch_size: int = 8, repetition_penalty: float = 1.0, desc: str = "generating") -> list[str]:
    """Greedy replies (deterministic, so a rerun reproduces predictions.jsonl) to each conversation."""
    kwargs = sampling_kwargs(temperature=0, repetition_penalty=repetition_penalty, max_new_tokens=max_new_tokens)
    return [first for first, *_ in _generate(model, tokenizer, conversations, kwargs, 1, batch_size, desc)]


def continuation_logprobs(model, tokenizer, pairs: list[tuple[list[int], list[int]]], batch_size: int = 8,
                          desc: str = "scoring") -> list[list[float]]:
    """Per-token log-probabilities of each continuation given its context, (context_ids, continuation_ids)."""
    results: list[list[float]] = [[] for _ in pairs]
    rows = [ctx + cont for ctx, cont in pairs]
    with tqdm(total=len(pairs), desc=desc, unit="option") as bar, padding_side(tokenizer, "right"):
        for batch in _batches_by_length([len(r) for r in rows], batch_size):
            inputs = tokenizer.pad({"input_ids": [rows[i] for i in batch]}, return_tensors="pt").to(model.device)
            with torch.inference_mode():
                logits = model(**inputs).logits.float()
            logprobs = torch.log_softmax(logits, dim=-1)
            for row, i in enumerate(batch):
                ctx, cont = pairs[i]
                # token t is predicted by the logits at position t-1
                positions = torch.arange(len(ctx) - 1, len(ctx) + len(cont) - 1, device=logprobs.device)
                targets = torch.tensor(cont, device=logprobs.device)
                results[i] = logprobs[row, positions, targets].tolist()
            bar.update(len(batch))
    return results


def sample_replies(model, tokenizer, conversations: list[list[dict]], samples: int, max_new_tokens: int = 256,
                   batch_size: int = 8, temperature: float = sampling.TEMPERATURE, top_p: float = sampling.TOP_P,
                   seed: int = 0,
                   desc: str = "sampling") -> list[list[str]]:
    """`samples` sampled replies per conversation (self-consistency). Seeded, so a rerun samples the same chains
    on the same machine; every chain is returned so the caller can keep it beside the vote."""
    kwargs = sampling_kwargs(temperature=temperature, top_p=top_p, repetition_penalty=1.0, max_new_tokens=max_new_tokens)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return _generate(model, tokenizer, conversations, kwargs, samples, batch_size, desc)
    finally:
        torch.random.set_rng_state(generator_state)
