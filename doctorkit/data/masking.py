"""Render a conversation with the tokenizer's own chat template and mark which tokens carry the loss.

Why hand-written: TRL's `assistant_only_loss` needs `{% generation %}` markers that the templates of
Qwen2.5, GLM-4 and Llama-3 do not have. Instead we find each assistant reply by rendering twice, template
agnostic: the conversation up to turn i with the generation prompt (the prefix), then with turn i (the
full). The characters the full adds after the prefix are the reply plus whatever the template writes
after it; we keep the reply and its end-of-turn token and drop trailing newlines. One tokenization with
offsets then maps that character region to tokens.

End of turn: ChatML writes <|im_end|>, Llama-3 <|eot_id|>. GLM-4 writes nothing: the next <|user|> role
token ends the turn (it is in GLM-4's eos list, so we supervise it), and a final reply gets the eos token
appended, so the model learns to stop either way.
"""
from __future__ import annotations

import bisect
import functools
import re
import weakref

IGNORE = -100
# Turn terminators of the families we know; only those that are single tokens of a tokenizer are used.
KNOWN_TERMINATORS = ["<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>", "</s>",
                     "<|endoftext|>", "<|end_of_text|>", "<|user|>", "<|observation|>"]
_terminator_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def turn_terminators(tokenizer) -> list[str]:
    """Token strings that end an assistant turn for this tokenizer (each a single token of it)."""
    try:
        return _terminator_cache[tokenizer]
    except (KeyError, TypeError):
        pass
    candidates = list(tokenizer.init_kwargs.get("doctorkit_eos_tokens") or [])  # doctorkit.builtin.tiny stores its own
    candidates += [tokenizer.eos_token] if tokenizer.eos_token else []
    candidates += KNOWN_TERMINATORS
    found = []
    for text in dict.fromkeys(candidates):
        if len(tokenizer.encode(text, add_special_tokens=False)) == 1 and text not in found:
            found.append(text)
    try:
        _terminator_cache[tokenizer] = found
    except TypeError:
        pass
    return found


def render(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def assistant_regions(tokenizer, messages: list[dict], full: str, stop_at: int, last_only: bool):
    """[(start, end)] character spans of `full` to supervise, or None when the template is not prefix-stable.

    Turns starting at or after `stop_at` (the truncation point) are not rendered: a 30,000-character
    conversation cut to 1,024 tokens costs a few renders, not one per turn.
    """
    terminators = turn_terminators(tokenizer)
    pattern = re.compile("|".join(re.escape(t) for t in terminators)) if terminators else None
    after_reply = re.compile(r"\s*(" + "|".join(re.escape(t) for t in terminators) + ")") if terminators else None
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    regions = []
    for i in turns[-1:] if last_only else turns:
        prefix = render(tokenizer, messages[:i], add_generation_prompt=True)
        if len(prefix) >= stop_at:
            break
        upto = full if i == len(messages) - 1 else render(tokenizer, messages[:i + 1])
        if not upto.startswith(prefix):
            return None
        added = upto[len(prefix):]
        found = pattern.search(added) if pattern else None
        if found:  # reply and its terminator; what follows (newlines) is not the model's to say
            end = len(prefix) + found.end()
        else:  # nothing ends the turn inside it (GLM-4): a terminator may follow in the full text
            end = len(prefix) + len(added.rstrip())
        if not full.startswith(upto[:end]):
            return None
        if not found and after_reply:
            follow = after_reply.match(full, end)
            end = follow.end() if follow else end
        regions.append((len(prefix), end))
    return regions


@functools.lru_cache(maxsize=8)
def longest_token_chars(tokenizer) -> int:
    """Characters in the tokenizer's longest vocabulary entry: no token covers more text than this."""
    return max(map(len, tokenizer.get_vocab()), default=1)


def fit_chars(tokenizer, messages: list[dict], max_seq_len: int, train_on: str = "all_turns",
              overlong: str = "truncate") -> list[dict] | str:
    """Measure a conversation in characters before tokenizing it (hostile data: one 50 MB record).

    Text longer than max_seq_len x (longest token) characters holds more than max_seq_len tokens whatever
    it says, so it is `overlong` under data.overlong: skip; under truncate it is cut to twice that many
    characters, which leaves the first max_seq_len tokens (all that truncation keeps) as they were.
    """
    limit = max_seq_len * longest_token_chars(tokenizer)
    if sum(len(m["content"]) for m in messages) <= limit:
        return messages
    if overlong == "skip":
        return "overlong"
    kept, room = [], 2 * limit
    for message in messages:
        if room <= 0:
            break
        kept.append({**message, "content": message["content"][:room]})
        room -= len(kept[-1]["content"])
    if len(kept) < len(messages) and train_on == "last_turn":
        return "truncated_away"  # the last reply starts beyond the tokens truncation keeps
    return kept


def tokenize_conversation(tokenizer, messages: list[dict], max_seq_len: int, train_on: str = "all_turns",
                          overlong: str = "truncate") -> dict | str:
    """{"input_ids", "labels", "truncated"} for one checked conversation, or a skip reason (see checks.py).

    labels are -100 except on assistant replies and their end-of-turn token (every assistant turn, or
    only the last with train_on="last_turn"). Truncated to max_seq_len unless overlong="skip".
    """
    messages = fit_chars(tokenizer, messages, max_seq_len, train_on, overlong)
    if isinstance(messages, str):
        return messages
    full = render(tokenizer, messages)
    encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(encoded["input_ids"]), list(encoded["offset_mapping"])
    truncated = len(ids) > max_seq_len
    if truncated and overlong == "skip":
        return "overlong"
    stop_at = offsets[max_seq_len][0] if truncated else len(full) + 1
    regions = assistant_regions(tokenizer, messages, full, stop_at, last_only=train_on == "last_turn")
    if regions is None:
        return "template"
    last_end = regions[-1][1] if regions else 0
    if regions and last_end >= len(full.rstrip()) and not _ends_with_terminator(tokenizer, full[:last_end]):
        # The template wrote no terminator after the final reply (GLM-4): append eos so the model learns to stop.
        eos = tokenizer.eos_token or turn_terminators(tokenizer)[0]
        ids.append(tokenizer.convert_tokens_to_ids(eos))
        offsets.append((len(full), len(full) + len(eos)))
        regions[-1] = (regions[-1][0], len(full) + len(eos))
        truncated = len(ids) > max_seq_len
        if truncated and overlong == "skip":
            return "overlong"
    ids, offsets = ids[:max_seq_len], offsets[:max_seq_len]
    starts = [start for start, _ in regions]
    labels = []
    for token, (start, _) in zip(ids, offsets):
        k = bisect.bisect_right(starts, start) - 1  # the last region starting at or before this token
        labels.append(token if k >= 0 and start < regions[k][1] else IGNORE)
    if all(label == IGNORE for label in labels):
        return "truncated_away"
    return {"input_ids": ids, "labels": labels, "truncated": truncated}


def _ends_with_terminator(tokenizer, text: str) -> bool:
    return any(text.endswith(t) for t in turn_terminators(tokenizer))
