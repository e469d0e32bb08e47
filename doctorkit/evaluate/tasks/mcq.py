"""Multiple-choice exams: CMB, CMExam, MedQA, MedMCQA, CMMLU, C-Eval as published, or our JSONL
({"question", "options": {"A": ...}, "answer": "B" | "ACD", "subject"?}); layouts in doctorkit/evaluate/exams/.

Scoring (option `mode`, flag `--mcq-mode`):
  loglik    (default) every option is scored by its log-likelihood as the start of the assistant's reply to
            the question with all options listed. Single-answer: the argmax. Multi-answer: every option whose
            softmax probability over the options is at least --multi-threshold (default 1/n), and at least
            the two best (choices.choose_several);
            `--multi-threshold calibrate` fits it on the dev file's multi-answer questions. `--mcq-score letter` scores the option letter, `text` the
            option's own text (mean log-prob per token, so long options are not penalised).
  generate  the model answers and the letters it names are the prediction (choices.parse_letters; none:
            counted wrong, pred null). `--cot` asks for reasoning first and reads the letters after "答案：";
            `--samples N` samples N chains and takes the majority vote (every chain kept in the record).
`--shots K --shots-from DEV` puts K solved dev questions (same subject first) before each question.
Metrics: exact-set accuracy with a 95% Wilson interval, partial credit (choices.credit), each overall,
by question type (single / multi) and per subject.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Annotated, Literal, Optional, Union

from pydantic import Field

from doctorkit import sampling
from doctorkit.errors import DoctorKitError
from doctorkit.evaluate.batching import continuation_logprobs, generate_replies, prompt_ids, sample_replies
from doctorkit.evaluate.choices import (best_threshold, choose_several, credit, parse_letters, pick_shots,
                                       question_messages, vote)
from doctorkit.evaluate.exams import layout_names, read_exam
from doctorkit.evaluate.metrics import accuracy_with_ci
from doctorkit.evaluate.tasks import EvalOptions, option

SUMMARY = "multiple-choice exams (CMB, CMExam, MedQA, MedMCQA, CMMLU, C-Eval, JSONL), single and multi-answer"
HEADLINE = ["accuracy", "partial_credit"]
COT_TOKENS = 256  # room for a reasoning chain when --max-new-tokens is left at its default


@dataclass
class Options(EvalOptions):
    mode: Literal["loglik", "generate"] = option(
        "loglik", "--mcq-mode", "loglik: argmax option log-likelihood; generate: parse the generated letter")
    score: Literal["letter", "text"] = option(
        "letter", "--mcq-score", "loglik target: the option letter (sum log-prob) or its text (mean log-prob per token)")
    format: str = option("auto", "--format", "exam layout (default: detected): " + ", ".join(layout_names()))
    shots: Annotated[int, Field(ge=0)] = option(0, "--shots", "K solved dev questions before each question")
    shots_from: Optional[str] = option(None, "--shots-from",
                                       "dev/validation file or folder the shots come from (never the test items)")
    cot: bool = option(False, "--cot", "chain-of-thought: reason first, answer after 答案：")
    samples: Annotated[int, Field(ge=1)] = option(1, "--samples", "N sampled chains per question, majority vote")
    temperature: Annotated[float, Field(ge=0)] = option(sampling.TEMPERATURE, "--temperature", "sampling temperature for --samples")
    seed: int = option(0, "--seed", "sampling seed for --samples (reruns sample the same chains)")
    multi_threshold: Optional[Union[Annotated[float, Field(gt=0, lt=1)], Literal["calibrate"]]] = option(
        None, "--multi-threshold", "loglik, multi-answer: choose options with probability >= this (default 1/n "
                                   "options), or 'calibrate' on the --shots-from dev file")


def load(path, max_samples=None, options=None):
    return read_exam(path, getattr(options, "format", "auto"), max_samples)


def shots_for(items, options) -> dict:
    if not options.shots:
        return {}
    if not options.shots_from:
        raise DoctorKitError("--shots needs --shots-from DEV (a dev/validation file or folder; test items are never used as shots)")
    dev = load(options.shots_from, None, options).items
    return pick_shots(dev, items, options.shots)


def conversations_of(items, options, shots) -> list[list[dict]]:
    return [question_messages(item, options.system_prompt, shots.get(item.get("subject"), []), options.cot)
            for item in items]


def loglik_scores(model, tokenizer, conversations, items, options, desc="mcq") -> list[dict]:
    pairs, owners = [], []
    for n, (item, conversation) in enumerate(zip(items, conversations)):
        context = prompt_ids(tokenizer, conversation)
        for letter, text in item["options"].items():
            target = letter if options.score == "letter" else text
            pairs.append((context, tokenizer.encode(target, add_special_tokens=False)))
            owners.append((n, letter))
    logprobs = continuation_logprobs(model, tokenizer, pairs, options.batch_size, desc=desc)
    scores: list[dict] = [{} for _ in items]
    for (n, letter), values in zip(owners, logprobs):
        total = sum(values)
        scores[n][letter] = total if options.score == "letter" else total / max(len(values), 1)
    return scores


def multi_threshold(model, tokenizer, options, score_items) -> float | None:
    """--multi-threshold: a number, unset (1/n options), or `calibrate`: fitted on the dev file's multi-answer
    questions (scored zero-shot, so no dev question is its own example)."""
    if options.multi_threshold != "calibrate":
        return None if options.multi_threshold is None else float(options.multi_threshold)
    if not options.shots_from:
        raise DoctorKitError("--multi-threshold calibrate needs --shots-from DEV (dev questions to fit it on)")
    dev = [item for item in load(options.shots_from, None, options).items if item.get("multi")]
    if not dev:
        raise DoctorKitError(f"{options.shots_from}: no multi-answer questions to calibrate --multi-threshold on")
    scores = score_items(dev, conversations_of(dev, options, {}))
    return best_threshold(scores, [item["answer"] for item in dev])


def from_scores(item, option_scores, threshold) -> str:
    if item.get("multi"):
        return choose_several(option_scores, threshold)
    best = max(option_scores.values())
    return next(letter for letter, value in option_scores.items() if value == best)


def chains_for(model, tokenizer, conversations, options, desc) -> list[list[str]]:
    """The replies each question gets in generate mode: one greedy chain, or --samples sampled ones."""
    budget = options.max_new_tokens if options.cot else min(options.max_new_tokens, 16)
    if options.samples > 1:
        return sample_replies(model, tokenizer, conversations, options.samples, budget, options.batch_size,
                              options.temperature, seed=options.seed, desc=desc)
    replies = generate_replies(model, tokenizer, conversations, budget, options.batch_size,
                               options.repetition_penalty, desc=desc)
    return [[reply] for reply in replies]


def predict(model, tokenizer, items, options, scorer=None, desc="mcq") -> list[dict]:
    """`scorer(model, tokenizer, items, options) -> [{letter: score}]` replaces the model's scoring (tests)."""
    shots = shots_for(items, options)
    conversations = conversations_of(items, options, shots)
    generate = scorer is None and (options.mode == "generate" or options.cot or options.samples > 1)
    if generate:
        chains = chains_for(model, tokenizer, conversations, options, desc)
    else:
        def score_items(part, part_conversations):
            if scorer:
                return scorer(model, tokenizer, part, options)
            return loglik_scores(model, tokenizer, part_conversations, part, options, desc)

        threshold = multi_threshold(model, tokenizer, options, score_items)
        scores = score_items(items, conversations)
    records = []
    for n, item in enumerate(items):
        record = {"id": item["id"], "subject": item.get("subject"), "type": "multi" if item.get("multi") else "single",
                  "gold": item["answer"]}
        if generate:
            record["chains"] = [{"reply": reply, "pred": parse_letters(reply, item["options"])} for reply in chains[n]]
            record["pred"] = vote([c["pred"] for c in record["chains"]])
        else:
            record["scores"] = {k: round(v, 6) for k, v in scores[n].items()}
            record["pred"] = from_scores(item, scores[n], threshold)
            if item.get("multi"):
                record["threshold"] = threshold  # None: 1/n options (choices.choose_several)
        record["correct"] = record["pred"] == item["answer"]
        record["credit"] = credit(record["pred"], item["answer"])
        if shots:
            record["shots"] = [shot["id"] for shot in shots.get(item.get("subject"), [])]
        records.append(record)
    return records


def _scores(records: list[dict]) -> dict:
    metrics = accuracy_with_ci([r["correct"] for r in records])
    metrics["partial_credit"] = round(sum(r["credit"] for r in records) / len(records), 4) if records else 0.0
    return metrics


def score(records: list[dict]) -> dict:
    metrics = _scores(records)
    metrics["unanswered"] = sum(1 for r in records if r["pred"] is None)
    by_type, by_subject = defaultdict(list), defaultdict(list)
    for r in records:
        by_type[r.get("type", "single")].append(r)
        if r.get("subject"):
            by_subject[r["subject"]].append(r)
    metrics["by_type"] = {kind: _scores(rows) for kind, rows in sorted(by_type.items())}
    if by_subject:
        metrics["per_subject"] = {subject: _scores(rows) for subject, rows in sorted(by_subject.items())}
    return metrics


def drop_contaminated(items: list[dict], train_path) -> tuple[list[dict], dict]:
    """--exclude-contaminated: the items minus those sharing >= MIN_CHARS characters with the training file
    (doctorkit.data.overlap), and what was dropped (metrics.json "contamination")."""
    from doctorkit.data.overlap import MIN_CHARS, check

    flagged = {row["id"] for row in check(train_path, items)["flagged"]}
    kept = [item for item in items if item["id"] not in flagged]
    if not kept:
        raise DoctorKitError(f"--exclude-contaminated {train_path}: every exam item shares >= {MIN_CHARS} characters with it")
    return kept, {"train": str(train_path), "min_chars": MIN_CHARS, "dropped": len(flagged),
                  "dropped_ids": sorted(flagged)}


# ------------------------------------------------------------------ report ---

def _accuracy(metrics: dict) -> str:
    low, high = metrics["ci95"]
    return f"{metrics['accuracy']:.3f} [{low:.3f}, {high:.3f}]"


def headline(metrics: dict) -> list[tuple[str, str]]:
    return [("accuracy", _accuracy(metrics)), ("partial_credit", f"{metrics['partial_credit']:.2f}")]


def details(results: dict) -> list[str]:
    """Accuracy by question type and per subject, the base beside the model when it was scored."""
    lines = []
    for group, label, extra in (("by_type", "{}-answer", True), ("per_subject", "{}", False)):
        for name, scores in results["model"].get(group, {}).items():
            base = results.get("base", {}).get(group, {}).get(name)
            lines.append(f"  {label.format(name):<20}{_accuracy(scores):>26}" + (f"{_accuracy(base):>26}" if base else "")
                         + f"   n={scores['total']}" + (f"  partial credit {scores['partial_credit']:.3f}" if extra else ""))
    return lines


def chart(metrics: dict):
    """eval.png: accuracy overall and per subject, with the 95% intervals."""
    parts = [("overall", metrics)] + list(metrics.get("per_subject", {}).items())
    return "accuracy (95% CI)", [(name, part["accuracy"], tuple(part["ci95"])) for name, part in parts]
