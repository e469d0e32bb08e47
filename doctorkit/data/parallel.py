"""Tokenize conversations in several processes (datasets.map(num_proc=...)), for corpora of 100k+ dialogs.

Each process renders and masks its share with the same tokenize_conversation as the single-process path; the
outcome of every conversation (rows, or the reason it was skipped) comes back in order and is counted into the
DataReport here, so the report and the rows are identical to a single-process run (tests/test_data_cache.py).
"""
from __future__ import annotations

import json
import os

AUTO_FROM = 5000       # below this, starting processes costs more than it saves
AUTO_MAX_PROC = 8


def processes(setting: int, n_conversations: int) -> int:
    """data.num_proc: 0 = auto (one per CPU core up to 8, from AUTO_FROM conversations on), else as given."""
    if setting > 0:
        return setting
    return min(os.cpu_count() or 1, AUTO_MAX_PROC) if n_conversations >= AUTO_FROM else 1


def _tokenize_one(example, tokenizer, max_seq_len, train_on, overlong, ground):
    from jinja2 import TemplateError

    from doctorkit.data.masking import tokenize_conversation

    messages = json.loads(example["messages"])
    if ground is not None:
        messages = ground(messages)[0]
    empty = {"input_ids": [], "labels": [], "truncated": 0}
    try:
        result = tokenize_conversation(tokenizer, messages, max_seq_len, train_on, overlong)
    except TemplateError as err:
        return {**empty, "skip": "template", "detail": str(err)}
    if isinstance(result, str):
        return {**empty, "skip": result, "detail": ""}
    return {"input_ids": result["input_ids"], "labels": result["labels"], "truncated": int(result["truncated"]),
            "skip": "", "detail": ""}


def tokenize_parallel(conversations, tokenizer, recipe, report, desc: str, ground, num_proc: int) -> list[dict]:
    import datasets

    table = datasets.Dataset.from_dict({"messages": [json.dumps(c, ensure_ascii=False) for c in conversations]})
    done = table.map(_tokenize_one, num_proc=num_proc, remove_columns=["messages"], desc=desc,
                     fn_kwargs={"tokenizer": tokenizer, "max_seq_len": recipe.train.max_seq_len,
                                "train_on": recipe.data.train_on, "overlong": recipe.data.overlong, "ground": ground})
    rows = []
    for row in done:
        if row["skip"] == "template":
            report.skip("template", "chat template", row["detail"])
        elif row["skip"]:
            report.skip(row["skip"])
        else:
            report.truncated += row["truncated"]
            rows.append({"input_ids": row["input_ids"], "labels": row["labels"]})
    return rows
