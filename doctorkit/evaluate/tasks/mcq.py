"""Multiple-choice exams (CMExam / CMMLU / MedQA style): {"question", "options": {"A": ...}, "answer", "subject"?}.

Scoring (`--mcq-mode`):
  loglik    (default) every option is scored by its log-likelihood as the start of the assistant's reply to
            the question with all options listed; the prediction is the argmax. `--mcq-score letter` scores
            the option letter (sum of its tokens' log-probs; one token in all templates we ship), `text`
            the option's own text (mean log-prob per token, so long options are not penalised).
  generate  the model answers greedily and the first standalone option letter in its reply is the prediction
            (no letter: counted wrong, pred null).
Accuracy comes with a 95% Wilson interval, overall and per subject.
"""
from __future__ import annotations

import re
from collections import defaultdict

from doctorkit.evaluate.batching import continuation_logprobs, generate_replies, prompt_ids
from doctorkit.evaluate.metrics import accuracy_with_ci
from doctorkit.evaluate.records import load_items

SUMMARY = "multiple-choice exams scored by option log-likelihood (or generated letter); accuracy with 95% CI"
HEADLINE = ["accuracy"]
INSTRUCTION = "以下是一道医学单项选择题，请只回答正确选项的字母。"
_LETTER = re.compile(r"(?<![A-Za-z])([A-Z])(?![A-Za-z])")


def looks_like_mcq(record) -> bool:
    return isinstance(record, dict) and "question" in record and "options" in record


def to_item(record: dict) -> dict:
    question = str(record.get("question") or "").strip()
    options = record.get("options")
    if isinstance(options, list):  # ["text A", "text B", ...] -> letters in order
        options = {chr(ord("A") + i): text for i, text in enumerate(options)}
    if not question:
        raise ValueError("empty question")
    if not isinstance(options, dict) or len(options) < 2:
        raise ValueError("'options' must map at least two letters to their text")
    options = {str(k).strip().upper(): str(v).strip() for k, v in options.items()}
    answer = str(record.get("answer") or "").strip().upper()
    if answer not in options:
        raise ValueError(f"answer '{answer}' is not one of the options {', '.join(options)}")
    return {"question": question, "options": options, "answer": answer, "subject": record.get("subject")}


def load(path, max_samples=None):
    return load_items(path, max_samples, to_item, looks_like_mcq, "multiple-choice records (question / options)")


def question_messages(item: dict, system_prompt: str | None = None) -> list[dict]:
    listed = "\n".join(f"{letter}. {text}" for letter, text in item["options"].items())
    messages = [{"role": "user", "content": f"{INSTRUCTION}\n\n{item['question']}\n{listed}\n答案："}]
    return ([{"role": "system", "content": system_prompt}] if system_prompt else []) + messages


def loglik_scores(model, tokenizer, items, options, desc="mcq") -> list[dict]:
    pairs, owners = [], []
    for n, item in enumerate(items):
        context = prompt_ids(tokenizer, question_messages(item, options.system_prompt))
        for letter, text in item["options"].items():
            target = letter if options.mcq_score == "letter" else text
            pairs.append((context, tokenizer.encode(target, add_special_tokens=False)))
            owners.append((n, letter))
    logprobs = continuation_logprobs(model, tokenizer, pairs, options.batch_size, desc=desc)
    scores: list[dict] = [{} for _ in items]
    for (n, letter), values in zip(owners, logprobs):
        total = sum(values)
        scores[n][letter] = total if options.mcq_score == "letter" else total / max(len(values), 1)
    return scores


def parse_letter(reply: str, letters) -> str | None:
    for found in _LETTER.findall(reply.upper()):
        if found in letters:
            return found
    return None


def predict(model, tokenizer, items, options, scorer=None, desc="mcq") -> list[dict]:
    """`scorer(model, tokenizer, items, options) -> [{letter: score}]` replaces the model's scoring (tests)."""
    replies = [None] * len(items)
    if scorer is not None:
        scores = scorer(model, tokenizer, items, options)
    elif options.mcq_mode == "generate":
        conversations = [question_messages(item, options.system_prompt) for item in items]
        replies = generate_replies(model, tokenizer, conversations, min(options.max_new_tokens, 16),
                                   options.batch_size, options.repetition_penalty, desc=desc)
        scores = []
        for item, reply in zip(items, replies):
            chosen = parse_letter(reply, item["options"])
            scores.append({letter: float(letter == chosen) for letter in item["options"]})
    else:
        scores = loglik_scores(model, tokenizer, items, options, desc=desc)
    records = []
    for item, option_scores, reply in zip(items, scores, replies):
        best = max(option_scores.values())
        winners = [letter for letter, value in option_scores.items() if value == best]
        # a generated reply without a letter scores all options 0: no prediction rather than a free guess
        pred = None if options.mcq_mode == "generate" and scorer is None and best == 0 else winners[0]
        record = {"id": item["id"], "subject": item["subject"], "gold": item["answer"], "pred": pred,
                  "correct": pred == item["answer"], "scores": {k: round(v, 6) for k, v in option_scores.items()}}
        if reply is not None:
            record["reply"] = reply
        records.append(record)
    return records


def score(records: list[dict]) -> dict:
    metrics = accuracy_with_ci([r["correct"] for r in records])
    metrics["unanswered"] = sum(1 for r in records if r["pred"] is None)
    by_subject = defaultdict(list)
    for r in records:
        if r.get("subject"):
            by_subject[r["subject"]].append(r["correct"])
    if by_subject:
        metrics["per_subject"] = {subject: accuracy_with_ci(hits) for subject, hits in sorted(by_subject.items())}
    return metrics
