"""Dialog: reply to held-out conversations and compare with the doctor's real reply.

The last assistant turn of each conversation is the reference, the turns before it the context.
Files: any record format training reads (doctorkit.data.formats: messages, ShareGPT, Alpaca), JSONL or a
JSON list, in any encoding it detects.
"""
from __future__ import annotations

from doctorkit.data import formats
from doctorkit.data.readers import BadRecord
from doctorkit.evaluate.batching import generate_replies
from doctorkit.evaluate.metrics import REPETITION_N, dialog_scores
from doctorkit.evaluate.records import load_items

SUMMARY = "generate replies to held-out conversations; BLEU-4, chrF, ROUGE-L, length, repetition"
HEADLINE = ["bleu4", "chrf", "rougeL", "avg_pred_chars", f"repetition_{REPETITION_N}gram"]


def looks_like_dialog(record) -> bool:
    return formats.detect(record) is not None


def to_messages(record: dict) -> list[dict]:
    """The training readers' conversion (any registered format: messages, ShareGPT, Alpaca with history and
    system, or one of a user's own; doctorkit.data.formats)."""
    try:
        return formats.to_messages(record)
    except BadRecord as err:
        raise ValueError(str(err)) from None


def to_item(record: dict) -> dict:
    messages = to_messages(record)
    last = max((i for i, t in enumerate(messages) if t["role"] == "assistant"), default=None)
    if last is None:
        raise ValueError("no assistant turn to use as the reference")
    reference = messages[last]["content"].strip()
    if not reference:
        raise ValueError("empty reference (the last assistant turn has no text)")
    context = messages[:last]
    if not any(t["role"] == "user" and t["content"].strip() for t in context):
        raise ValueError("no user turn before the reference")
    return {"prompt": context, "reference": reference}


def load(path, max_samples=None, options=None):
    return load_items(path, max_samples, to_item, looks_like_dialog, "dialog records (messages / conversations)")


def predict(model, tokenizer, items, options, scorer=None, desc="dialog") -> list[dict]:
    """`scorer(model, tokenizer, conversations, options) -> list[str]` replaces generation (tests)."""
    conversations = []
    for item in items:
        context = item["prompt"]
        if options.system_prompt and not any(t["role"] == "system" for t in context):
            context = [{"role": "system", "content": options.system_prompt}] + context
        conversations.append(context)
    if scorer is not None:
        predictions = scorer(model, tokenizer, conversations, options)
    else:
        predictions = generate_replies(model, tokenizer, conversations, options.max_new_tokens,
                                       options.batch_size, options.repetition_penalty, desc=desc)
    return [{"id": item["id"], "prompt": conv, "reference": item["reference"], "prediction": pred}
            for item, conv, pred in zip(items, conversations, predictions)]


def score(records: list[dict]) -> dict:
    metrics = dialog_scores([r["prediction"] for r in records], [r["reference"] for r in records])
    return {"samples": len(records), **metrics}


def details(results: dict) -> list[str]:
    model = results["model"]
    return [f"BLEU {model['bleu_signature']}; chrF {model['chrf_signature']}"]


def chart(metrics: dict):
    """eval.png: the 0-100 scores; lengths (characters) and repetition (0-1) need scales of their own and are
    in the table."""
    return "score", [(key, metrics.get(key, 0), None) for key in HEADLINE if not key.startswith(("avg_", "repetition_"))]
