"""How many tokens one epoch of the recipe's data is, and how long its rows are.

Conversations come from doctorkit.data.read_conversations (every format registered in doctorkit.data.formats).
Tokens are counted with the real tokenizer when it loads offline (builtin:tiny, a local folder, a cached hub
model), otherwise estimated from characters at the ratios below, plus a few template tokens per message.
"""
from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path

from doctorkit.errors import DoctorKitError

CJK_CHARS_PER_TOKEN = 1.4    # Chinese with Qwen/GLM/Llama-3-sized vocabularies (100k-150k entries)
OTHER_CHARS_PER_TOKEN = 4.0  # English and code
TEMPLATE_TOKENS_PER_MESSAGE = 5  # role markers and end-of-turn tokens of a chat template


@dataclasses.dataclass
class DataTokens:
    lengths: list[int]       # tokens per training sample, before truncation
    how: str                 # how they were counted


def read_samples(recipe) -> list[list[str]]:
    """Message texts of each training conversation (validation share and max_samples applied)."""
    paths = [recipe.data.path] if isinstance(recipe.data.path, str) else list(recipe.data.path)
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise DoctorKitError(f"data.path: {missing[0]} not found (give --tokens-per-sample with --samples to "
                             f"estimate without the data)")
    from doctorkit.data import read_conversations

    return training_share([[m.get("content", "") for m in conv] for conv in read_conversations(recipe.data, paths)],
                          recipe.data)


def training_share(samples: list, data) -> list:
    """The samples training keeps: data.max_samples first, then without the data.val_ratio share held out."""
    if data.max_samples:
        samples = samples[: data.max_samples]
    if data.val_ratio > 0 and not data.val_path:
        samples = samples[: max(1, round(len(samples) * (1 - data.val_ratio)))]
    return samples


def _load_tokenizer(recipe):
    from doctorkit.model import load_tokenizer

    try:  # offline: never reach for the network
        tok = load_tokenizer(recipe.model, recipe.trust_remote_code, chat=False, offline=True)
    except DoctorKitError:  # not available offline: fall back to the character estimate
        return None, ""
    return tok, ("the embedded tiny model's tokenizer" if recipe.model == "builtin:tiny" else
                 f"{recipe.model}'s tokenizer")


def estimate_from_chars(text: str) -> float:
    cjk = sum(1 for ch in text if "\u2e80" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff")
    return cjk / CJK_CHARS_PER_TOKEN + (len(text) - cjk) / OTHER_CHARS_PER_TOKEN


def trains_on_pairs(recipe) -> bool:
    """Whether the recipe's method reads preference pairs (its COST_TERMS "pairs": DPO), not conversations."""
    from doctorkit.methods import DEFAULT_COST_TERMS, get_method

    return {**DEFAULT_COST_TERMS, **get_method(recipe.method).COST_TERMS}["pairs"]


def read_pair_samples(recipe) -> list[list[str]]:
    """Per preference pair, the message texts of the prompt and of its longer reply (chosen or rejected, by
    characters): the row the pair's longer sequence fills, as doctorkit.cost runs both replies side by side."""
    from doctorkit.data.preference import iter_pairs, paths_of
    from doctorkit.data.report import DataReport

    def texts(messages: list[dict]) -> list[str]:
        return [m.get("content", "") for m in messages]

    samples, report = [], DataReport()
    for path in paths_of(recipe.data.path):
        for _, pair in iter_pairs(path, recipe, report):
            reply = max(pair["chosen"], pair["rejected"], key=lambda m: sum(len(t) for t in texts(m)))
            samples.append(texts(pair["prompt"]) + texts(reply))
    return training_share(samples, recipe.data)


def data_tokens(recipe) -> DataTokens:
    """Token lengths of the training samples: exact through doctorkit.data.prepare (preference pairs:
    doctorkit.data.preference.prepare_preferences, the longer of prompt+chosen and prompt+rejected) when the
    tokenizer (with a chat template) loads offline, else counted or estimated from the texts."""
    tokenizer, name = _load_tokenizer(recipe)
    pairs = trains_on_pairs(recipe)
    if tokenizer is not None and getattr(tokenizer, "chat_template", None) and getattr(tokenizer, "is_fast", False):
        if pairs:
            from doctorkit.data.preference import prepare_preferences

            lengths = prepare_preferences(recipe, tokenizer).report.lengths
            return DataTokens(lengths, f"counted with {name} and its chat template, per preference pair the longer "
                                       f"of prompt+chosen and prompt+rejected (doctorkit.data.preference)")
        from doctorkit.data import prepare

        lengths = prepare(recipe, tokenizer).report.lengths
        return DataTokens(lengths, f"counted with {name} and its chat template (doctorkit.data.prepare)")
    return count_tokens(read_pair_samples(recipe) if pairs else read_samples(recipe), tokenizer, name)


def count_tokens(samples: list[list[str]], tokenizer=None, name: str = "") -> DataTokens:
    overhead = lambda texts: TEMPLATE_TOKENS_PER_MESSAGE * len(texts)  # noqa: E731
    if tokenizer is not None:
        flat = [t for texts in samples for t in texts]
        ids = tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
        lengths, i = [], 0
        for texts in samples:
            lengths.append(sum(len(x) for x in ids[i:i + len(texts)]) + overhead(texts))
            i += len(texts)
        return DataTokens(lengths, f"counted with {name} (+{TEMPLATE_TOKENS_PER_MESSAGE} template tokens per message)")
    lengths = [math.ceil(sum(estimate_from_chars(t) for t in texts)) + overhead(texts) for texts in samples]
    return DataTokens(lengths, f"estimated from characters: {CJK_CHARS_PER_TOKEN} Chinese characters or "
                               f"{OTHER_CHARS_PER_TOKEN:g} other characters per token, +{TEMPLATE_TOKENS_PER_MESSAGE} "
                               f"template tokens per message (no tokenizer available offline)")


def epoch_tokens(lengths: list[int], seq: int, batch: int, packing: bool, group_by_length: bool,
                 overlong: str = "truncate", seed: int = 42) -> tuple[int, int]:
    """(tokens the GPU processes in one epoch, padding included; number of rows)."""
    kept = [min(n, seq) for n in lengths if overlong == "truncate" or n <= seq]
    if not kept:
        return 0, 0
    if packing:   # padding-free rows of up to seq tokens
        return sum(kept), math.ceil(sum(kept) / seq)
    order = sorted(kept, reverse=True) if group_by_length else random.Random(seed).sample(kept, len(kept))
    padded = sum(max(order[i:i + batch]) * len(order[i:i + batch]) for i in range(0, len(order), batch))
    return padded, len(kept)
