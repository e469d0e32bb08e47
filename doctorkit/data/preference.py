"""Preference pairs for DPO: read, normalize to TRL's conversational layout, validate, count what is skipped.

Accepted records (one per JSONL line, or a JSON list), all normalized to
`{"prompt": [messages], "chosen": [assistant message], "rejected": [assistant message]}`:

    {"prompt": "question" | [messages], "chosen": ..., "rejected": ...}           TRL explicit prompt
    {"conversations": [{"from": "human", "value": ...}], "chosen": ..., "rejected": ...}   ShareGPT style
    {"messages": [messages], "chosen": ..., "rejected": ...}                        OpenAI messages style
    {"chosen": [messages + reply], "rejected": [messages + reply]}                  TRL implicit prompt

where a side is a string, one message dict ({"role", "content"} or {"from", "value"}) or a list of them.

Reading, encodings, `file:line` places, role names and the checks are the SFT data module's
(doctorkit/data/readers.py, formats.py, checks.py), so a pair is skipped for the same reasons as an SFT conversation
(`malformed`, `empty_message`, `not_alternating`, `ends_on_user`, `overlong`, `template`), plus
`identical` (chosen == rejected: nothing to prefer) and `prompt_too_long` (over dpo.max_prompt_len).
Over-long pairs are skipped, or with data.overlong=truncate kept, counted, and cut by TRL's collator.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import datasets
from jinja2 import TemplateError

from doctorkit.data import split
from doctorkit.data.checks import check_conversation, with_system_prompt
from doctorkit.data.formats import to_messages as conversation_messages
from doctorkit.data.readers import BadRecord, iter_json_records, read_text
from doctorkit.data.report import DataReport
from doctorkit.errors import DoctorKitError

PROMPT_KEYS = ("prompt", "conversations", "messages")   # the first one present holds the prompt


@dataclass
class PreferenceData:
    train: object          # datasets.Dataset with prompt / chosen / rejected message lists
    eval: object | None
    report: DataReport     # samples = pairs; lengths = the longer side (prompt + reply) of each pair


# ------------------------------------------------------------------ reading ---

def to_messages(value, key: str, text_role: str) -> list[dict]:
    """A prompt or a side as messages: text (as `text_role`), one message, or a list of messages."""
    if isinstance(value, str):
        return [{"role": text_role, "content": value}]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise BadRecord(f"'{key}' must be text, a message or a list of messages")
    try:
        return conversation_messages({"messages": value}, "messages")
    except BadRecord as err:
        raise BadRecord(f"'{key}': {err}") from None


def split_implicit_prompt(chosen: list[dict], rejected: list[dict]) -> tuple[list, list, list]:
    """TRL's implicit layout: both sides are whole conversations; the prompt is everything before the last reply."""
    prompt = chosen[:-1]
    if not prompt or rejected[:-1] != prompt:
        raise BadRecord("no prompt/conversations/messages key, and chosen and rejected are not conversations "
                        "sharing the same prompt")
    return prompt, chosen[-1:], rejected[-1:]


def to_pair(record) -> dict:
    """One record -> {"prompt", "chosen", "rejected"} message lists; BadRecord when it is not a preference pair."""
    if isinstance(record, BadRecord):
        raise record
    if not isinstance(record, dict):
        raise BadRecord(f"expected a JSON object, got {type(record).__name__}")
    missing = [k for k in ("chosen", "rejected") if k not in record]
    if missing:
        raise BadRecord(f"missing key(s) {', '.join(missing)} (a preference pair needs chosen and rejected)")
    chosen = to_messages(record["chosen"], "chosen", "assistant")
    rejected = to_messages(record["rejected"], "rejected", "assistant")
    key = next((k for k in PROMPT_KEYS if k in record), None)
    if key is None:
        prompt, chosen, rejected = split_implicit_prompt(chosen, rejected)
    elif isinstance(record[key], list) and key != "prompt":  # ShareGPT / messages list (+ ShareGPT "system")
        prompt = conversation_messages({k: record[k] for k in (key, "system") if k in record})   # format detected
    else:
        prompt = to_messages(record[key], key, "user")
    if any(m["role"] != "assistant" for m in chosen + rejected):
        raise BadRecord("chosen and rejected must be assistant replies")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def check_pair(pair: dict) -> str | None:
    """None if the pair can be trained on, else the reason name (SFT's checks on prompt + each side)."""
    for side in ("chosen", "rejected"):
        reason = check_conversation(pair["prompt"] + pair[side])
        if reason:
            return reason
    if [m["content"].strip() for m in pair["chosen"]] == [m["content"].strip() for m in pair["rejected"]]:
        return "identical"
    return None


# --------------------------------------------------------------- validating ---

def token_lengths(tokenizer, pair: dict) -> tuple[int, int, int]:
    """Tokens of the prompt (with the assistant header), prompt+chosen and prompt+rejected, as TRL renders them."""
    def count(messages, **kwargs):
        return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)["input_ids"])
    return (count(pair["prompt"], add_generation_prompt=True), count(pair["prompt"] + pair["chosen"]),
            count(pair["prompt"] + pair["rejected"]))


def iter_pairs(path: str | Path, recipe, report: DataReport) -> Iterator[tuple[str, dict]]:
    """(file:line, pair) for every well-formed pair of one file, data.system_prompt added to its prompt; skips are
    counted in `report`, data.on_error=fail stops at a malformed record. No tokenizer needed (doctorkit.cost)."""
    data, path = recipe.data, Path(path)
    if not path.is_file():
        raise DoctorKitError(f"{path}: preference data file not found (data.path / dpo.round_data)")
    if path.suffix.lower() in (".csv", ".tsv"):
        raise DoctorKitError(f"{path}: preference data is JSONL or JSON (prompt/conversations/messages, chosen, rejected)")
    for where, record in iter_json_records(path, read_text(path, data.encoding)):
        try:
            pair = to_pair(record)
        except BadRecord as err:
            report.malformed(where, str(err), data.on_error)
            continue
        reason = check_pair(pair)
        if reason:
            report.skip(reason, where)
            continue
        pair["prompt"] = with_system_prompt(pair["prompt"], data.system_prompt)
        yield where, pair


def read_pairs(path: str | Path, recipe, tokenizer, report: DataReport) -> list[dict]:
    """Valid pairs of one file, with their token lengths; skips are counted in `report` (iter_pairs, and pairs
    whose prompt or length the recipe's limits refuse)."""
    data = recipe.data
    pairs = []
    for where, pair in iter_pairs(path, recipe, report):
        try:
            prompt_len, chosen_len, rejected_len = token_lengths(tokenizer, pair)
        except TemplateError as err:
            report.skip("template", where, str(err))
            continue
        longest = max(chosen_len, rejected_len)
        if prompt_len > recipe.dpo.max_prompt_len:
            report.skip("prompt_too_long", where, f"prompt has {prompt_len} tokens > dpo.max_prompt_len")
            continue
        if longest > recipe.train.max_seq_len:
            if data.overlong == "skip":
                report.skip("overlong", where, f"{longest} tokens > train.max_seq_len")
                continue
            report.truncated += 1
        pair["_tokens"] = (prompt_len, chosen_len, rejected_len)
        pairs.append(pair)
    return pairs


def paths_of(path) -> list[str]:
    return [path] if isinstance(path, str) else list(path)


def prepare_preferences(recipe, tokenizer, path: str | None = None) -> PreferenceData:
    """Train (and eval) datasets of preference pairs from `path` (default data.path), with the data report.

    The eval pairs come from data.val_path (round 1 only) or a data.val_ratio split, fixed by the seed.
    """
    data = recipe.data
    report = DataReport()
    pairs = [pair for one in paths_of(path or data.path) for pair in read_pairs(one, recipe, tokenizer, report)]
    pairs = pairs[:data.max_samples] if data.max_samples is not None else pairs
    if data.val_path and path is None:
        eval_pairs = [p for one in paths_of(data.val_path) for p in read_pairs(one, recipe, tokenizer, report)]
        eval_pairs = eval_pairs[:data.max_samples] if data.max_samples is not None else eval_pairs
    else:
        pairs, eval_pairs = split(pairs, data.val_ratio, recipe.seed)
    if not pairs:
        counts = ", ".join(f"{r} {n}" for r, n in sorted(report.samples_skipped.items())) or "the files hold no records"
        raise DoctorKitError(f"{', '.join(paths_of(path or data.path))}: no usable preference pairs ({counts})"
                             + (f"; first problem: {report.problems[0]}" if report.problems else ""))
    report.samples_used, report.eval_samples = len(pairs), len(eval_pairs)
    report.lengths = [max(c, r) for _, c, r in (x["_tokens"] for x in pairs)]
    report.eval_lengths = [max(c, r) for _, c, r in (x["_tokens"] for x in eval_pairs)]
    report.train_tokens = sum(c + r - p for p, c, r in (x["_tokens"] for x in pairs))  # prompt counted once
    report.supervised_tokens = sum(c + r - 2 * p for p, c, r in (x["_tokens"] for x in pairs))  # the scored replies
    report.eval_tokens = sum(c + r - p for p, c, r in (x["_tokens"] for x in eval_pairs))

    def as_dataset(rows):
        return datasets.Dataset.from_list([{k: v for k, v in r.items() if k != "_tokens"} for r in rows])
    return PreferenceData(as_dataset(pairs), as_dataset(eval_pairs) if eval_pairs else None, report)
