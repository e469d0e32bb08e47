"""Preference pairs for DPO: read, normalize to TRL's conversational layout, validate, count what is skipped.

Accepted records (one per JSONL line, or a JSON array), all normalized to
`{"prompt": [messages], "chosen": [assistant message], "rejected": [assistant message]}`:

    {"prompt": "question" | [messages], "chosen": ..., "rejected": ...}           TRL explicit prompt
    {"conversations": [{"from": "human", "value": ...}], "chosen": ..., "rejected": ...}   ShareGPT style
    {"messages": [messages], "chosen": ..., "rejected": ...}                        OpenAI messages style
    {"chosen": [messages + reply], "rejected": [messages + reply]}                  TRL implicit prompt

where a side is a string, one message dict ({"role", "content"} or {"from", "value"}) or a list of them.

Bad records are counted per reason, as for SFT data: malformed lines (or, with data.on_error=fail, a one-line
`file:line: reason` error), empty sides, identical chosen/rejected, prompts longer than dpo.max_prompt_len,
and pairs longer than train.max_seq_len (skipped, or kept and truncated by TRL with data.overlong=truncate).
"""
from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from doctorkit.errors import DoctorKitError

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "bot": "assistant",
         "model": "assistant", "chatgpt": "assistant", "system": "system"}
PROMPT_KEYS = ("prompt", "conversations", "messages")


class BadRecord(ValueError):
    """A record that cannot be a preference pair; `reason` is the counter key, the message the explanation."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class PreferenceReport:
    # the same fields as the SFT data report, so train.collect_metrics reads both
    source: str = ""
    samples_used: int = 0                 # pairs trained on
    samples_skipped: dict = field(default_factory=dict)  # reason -> count
    truncated: int = 0                    # pairs longer than train.max_seq_len kept (TRL truncates them)
    eval_samples: int = 0
    train_tokens: int = 0                 # prompt + chosen + rejected tokens of the training pairs
    supervised_tokens: int = 0            # chosen + rejected tokens (the ones DPO scores)

    def summary(self) -> str:
        skipped = ", ".join(f"{reason} {n}" for reason, n in sorted(self.samples_skipped.items())) or "none"
        return (f"preference data {self.source}: {self.samples_used} pairs for training, {self.eval_samples} for "
                f"eval; skipped: {skipped}; truncated: {self.truncated}")


@dataclass
class PreferenceData:
    train: object          # datasets.Dataset with prompt / chosen / rejected message lists
    eval: object | None
    report: PreferenceReport


# ------------------------------------------------------------------ reading ---

def read_records(path: Path, encoding: str = "auto") -> list[tuple[int, object]]:
    """(line number, parsed record or BadRecord) for a .jsonl file, or (index, record) for a JSON array."""
    if not path.is_file():
        raise DoctorKitError(f"{path}: preference data file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig" if encoding == "auto" else encoding)
    except (UnicodeDecodeError, LookupError) as err:
        raise DoctorKitError(f"{path}: cannot decode as {encoding} ({err.__class__.__name__}); "
                             f"set data.encoding, e.g. gb18030") from None
    if path.suffix == ".json":
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise DoctorKitError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
        if not isinstance(records, list):
            raise DoctorKitError(f"{path}: a .json preference file holds a list of records")
        return [(i + 1, r) for i, r in enumerate(records)]
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append((number, json.loads(line)))
        except json.JSONDecodeError as err:
            out.append((number, BadRecord("malformed", f"not valid JSON ({err.msg})")))
    return out


def to_message(item, where: str) -> dict:
    if isinstance(item, str):
        return {"role": "assistant", "content": item}
    if not isinstance(item, dict):
        raise BadRecord("malformed", f"{where}: expected a message object, got {type(item).__name__}")
    role = item.get("role", item.get("from"))
    content = item.get("content", item.get("value"))
    if role not in ROLES or not isinstance(content, str):
        raise BadRecord("malformed", f"{where}: a message needs a known role/from ({', '.join(sorted(ROLES))}) "
                                     f"and a string content/value")
    return {"role": ROLES[role], "content": content}


def to_messages(value, where: str, text_role: str = "user") -> list[dict]:
    if isinstance(value, str):
        return [{"role": text_role, "content": value}]
    if isinstance(value, dict):
        return [to_message(value, where)]
    if isinstance(value, list):
        return [to_message(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise BadRecord("malformed", f"'{where}' must be text, a message or a list of messages")


def split_implicit_prompt(chosen: list[dict], rejected: list[dict]) -> tuple[list, list, list]:
    """TRL's implicit layout: both sides are whole conversations; the prompt is everything before the last reply."""
    prompt = chosen[:-1]
    if not prompt or rejected[:-1] != prompt:
        raise BadRecord("malformed", "no prompt/conversations/messages key, and chosen and rejected are not "
                                     "conversations sharing the same prompt")
    return prompt, chosen[-1:], rejected[-1:]


def to_pair(record, system_prompt: str | None = None) -> dict:
    """One record -> {"prompt", "chosen", "rejected"} message lists, or BadRecord."""
    if isinstance(record, BadRecord):
        raise record
    if not isinstance(record, dict):
        raise BadRecord("malformed", f"expected a JSON object, got {type(record).__name__}")
    missing = [k for k in ("chosen", "rejected") if k not in record]
    if missing:
        raise BadRecord("malformed", f"missing key(s) {', '.join(missing)}")
    prompt_key = next((k for k in PROMPT_KEYS if k in record), None)
    chosen = to_messages(record["chosen"], "chosen", text_role="assistant")
    rejected = to_messages(record["rejected"], "rejected", text_role="assistant")
    if prompt_key is None:
        prompt, chosen, rejected = split_implicit_prompt(chosen, rejected)
    else:
        prompt = to_messages(record[prompt_key], prompt_key)
    if any(m["role"] != "assistant" for m in chosen + rejected):
        raise BadRecord("malformed", "chosen and rejected must be assistant replies")
    if not prompt or prompt[-1]["role"] != "user":
        raise BadRecord("malformed", f"'{prompt_key or 'prompt'}' must end with a user turn")
    if not any(m["content"].strip() for m in prompt if m["role"] == "user"):
        raise BadRecord("empty_prompt", "the prompt is empty")
    if not "".join(m["content"] for m in chosen).strip():
        raise BadRecord("empty_chosen", "chosen is empty")
    if not "".join(m["content"] for m in rejected).strip():
        raise BadRecord("empty_rejected", "rejected is empty")
    if [m["content"].strip() for m in chosen] == [m["content"].strip() for m in rejected]:
        raise BadRecord("identical", "chosen and rejected are identical: nothing to prefer")
    if system_prompt and prompt[0]["role"] != "system":
        prompt = [{"role": "system", "content": system_prompt}] + prompt
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


# --------------------------------------------------------------- validating ---

def token_lengths(tokenizer, pair: dict) -> tuple[int, int, int]:
    """Tokens of the prompt (with the assistant header), prompt+chosen and prompt+rejected, as TRL renders them."""
    def count(messages, **kwargs):
        return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)["input_ids"])
    return (count(pair["prompt"], add_generation_prompt=True), count(pair["prompt"] + pair["chosen"]),
            count(pair["prompt"] + pair["rejected"]))


def read_pairs(path: str | Path, recipe, tokenizer, report: PreferenceReport, limit: int | None = None) -> list[dict]:
    """Valid pairs of one file; skips are added to report.samples_skipped, data.on_error=fail stops at the first."""
    data, path = recipe.data, Path(path)
    skipped: Counter = Counter(report.samples_skipped)
    pairs = []
    for number, record in read_records(path, data.encoding):
        if limit is not None and len(pairs) >= limit:
            break
        try:
            pair = to_pair(record, data.system_prompt)
            prompt_len, chosen_len, rejected_len = token_lengths(tokenizer, pair)
            if prompt_len > recipe.dpo.max_prompt_len:
                raise BadRecord("prompt_too_long", f"prompt has {prompt_len} tokens > dpo.max_prompt_len "
                                                   f"{recipe.dpo.max_prompt_len}")
            overlong = max(chosen_len, rejected_len) > recipe.train.max_seq_len
            if overlong and data.overlong == "skip":
                raise BadRecord("overlong", f"{max(chosen_len, rejected_len)} tokens > train.max_seq_len "
                                            f"{recipe.train.max_seq_len}")
        except BadRecord as bad:
            if data.on_error == "fail":
                raise DoctorKitError(f"{path}:{number}: {bad} (data.on_error=skip counts and skips such pairs)") from None
            skipped[bad.reason] += 1
            continue
        report.truncated += int(overlong)
        pair["_tokens"] = (prompt_len, chosen_len, rejected_len)
        pairs.append(pair)
    report.samples_skipped = dict(skipped)
    return pairs


def prepare_preferences(recipe, tokenizer, path: str | None = None) -> PreferenceData:
    """Train (and eval) datasets of preference pairs from `path` (default data.path), with a report."""
    import datasets

    paths = path or recipe.data.path
    paths = [paths] if isinstance(paths, str) else list(paths)
    report = PreferenceReport(source=", ".join(paths))
    pairs = []
    for one in paths:
        pairs += read_pairs(one, recipe, tokenizer, report, limit=None)
    if recipe.data.max_samples is not None:
        pairs = pairs[: recipe.data.max_samples]
    if recipe.data.val_path and path is None:
        eval_pairs = read_pairs(recipe.data.val_path, recipe, tokenizer, PreferenceReport())
    else:
        n_eval = int(len(pairs) * recipe.data.val_ratio)
        held = set(random.Random(recipe.seed).sample(range(len(pairs)), n_eval))
        eval_pairs = [p for i, p in enumerate(pairs) if i in held]
        pairs = [p for i, p in enumerate(pairs) if i not in held]
    if not pairs:
        raise DoctorKitError(f"{report.source}: no usable preference pairs ({report.summary()})")
    report.samples_used, report.eval_samples = len(pairs), len(eval_pairs)
    report.train_tokens = sum(p + c + r for p, c, r in (x["_tokens"] for x in pairs))
    report.supervised_tokens = sum(c + r - 2 * p for p, c, r in (x["_tokens"] for x in pairs))

    def as_dataset(rows):
        return datasets.Dataset.from_list([{k: v for k, v in r.items() if k != "_tokens"} for r in rows])
    return PreferenceData(as_dataset(pairs), as_dataset(eval_pairs) if eval_pairs else None, report)
