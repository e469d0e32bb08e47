"""Training data: read the recipe's files, check each conversation, split, render with the chat template and
mask the loss. `prepare(recipe, tokenizer)` is what training calls; `python -m doctorkit.data` previews it.

Data flows one way: files -> conversations (readers, checks) -> token ids + labels (masking) -> datasets.
"""
from __future__ import annotations

import dataclasses
import random

import datasets
from jinja2 import TemplateError
from tqdm.auto import tqdm

from doctorkit.data.checks import REASONS, check_conversation, with_system_prompt
from doctorkit.data.masking import IGNORE, fit_chars, render, tokenize_conversation, turn_terminators
from doctorkit.data.formats import iter_file
from doctorkit.data.readers import BadRecord
from doctorkit.data.report import DataReport, percentiles
from doctorkit.errors import DoctorKitError

__all__ = ["prepare", "Prepared", "DataReport", "read_conversations", "tokenize_conversation", "render",
           "turn_terminators", "percentiles", "IGNORE", "REASONS", "run"]
PROGRESS_FROM = 2000  # show a progress bar only when tokenizing takes long enough to wonder


@dataclasses.dataclass
class Prepared:
    train: datasets.Dataset
    eval: datasets.Dataset | None
    report: DataReport
    canaries: list = dataclasses.field(default_factory=list)   # data.canaries: written to the run directory


def _paths(path) -> list[str]:
    return [path] if isinstance(path, str) else list(path)


def read_conversations(data_cfg, path, report: DataReport | None = None) -> list[list[dict]]:
    """Valid conversations of one file or a list of files; skips are counted in `report`.

    A malformed record is `file:line: reason`: skipped and counted, or raised with data.on_error: fail.
    """
    report = report if report is not None else DataReport()
    conversations = []
    for one_path in _paths(path):
        for where, item in iter_file(one_path, data_cfg, report.csv_columns.append):
            if isinstance(item, BadRecord):
                report.malformed(where, str(item), data_cfg.on_error)
                continue
            reason = check_conversation(item)
            if reason:
                report.skip(reason, where)
                continue
            conversations.append(with_system_prompt(item, data_cfg.system_prompt))
    return conversations


def split(conversations: list, ratio: float, seed: int) -> tuple[list, list]:
    """(train, eval) by ratio, the same for the same seed; at least one of each when ratio > 0."""
    if ratio <= 0 or len(conversations) < 2:
        return conversations, []
    order = list(range(len(conversations)))
    random.Random(seed).shuffle(order)
    n_eval = min(len(order) - 1, max(1, round(ratio * len(order))))
    held_out = set(order[:n_eval])
    train = [c for i, c in enumerate(conversations) if i not in held_out]
    return train, [c for i, c in enumerate(conversations) if i in held_out]


def tokenize_all(conversations, tokenizer, recipe, report: DataReport, desc: str, ground=None) -> list[dict]:
    data = recipe.data
    from doctorkit.data.parallel import processes, tokenize_parallel
    num_proc = processes(data.num_proc, len(conversations))
    if num_proc > 1:  # corpus scale: datasets.map over processes, same rows and counts (doctorkit/data/parallel.py)
        return tokenize_parallel(conversations, tokenizer, recipe, report, desc, ground, num_proc)
    rows = []
    bar = tqdm(conversations, desc=desc, unit="conv", leave=False, disable=len(conversations) < PROGRESS_FROM)
    for messages in bar:
        messages = fit_chars(tokenizer, messages, recipe.train.max_seq_len, data.train_on, data.overlong)
        if isinstance(messages, str):  # measured in characters: too long to be worth tokenizing at all
            report.skip(messages)
            continue
        if ground is not None:   # data.knowledge: the same grounding chat and the demo apply when serving
            messages = ground(messages)[0]
        try:
            result = tokenize_conversation(tokenizer, messages, recipe.train.max_seq_len, data.train_on,
                                           data.overlong)
        except TemplateError as err:  # e.g. a template that refuses system turns ("System role not supported")
            report.skip("template", "chat template", str(err))
            continue
        if isinstance(result, str):
            report.skip(result)
            continue
        report.truncated += result["truncated"]
        rows.append(result)
    return rows


def _dataset(rows: list[dict]) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"input_ids": [r["input_ids"] for r in rows],
                                       "labels": [r["labels"] for r in rows]})


def prepare(recipe, tokenizer) -> Prepared:
    """Train and eval datasets (input_ids, labels; no padding) and the report of what was used and skipped."""
    data = recipe.data
    if not getattr(tokenizer, "is_fast", False):  # loss masks map characters to tokens through offsets
        raise DoctorKitError(f"model '{recipe.model}': its tokenizer has no fast (Rust) version; DoctorKit needs "
                             f"one to place the loss on assistant replies")
    from doctorkit.data import cache
    # data.canaries are drawn with the rows and written to the run directory: such runs always prepare anew
    key = cache.cache_key(recipe, tokenizer) if cache.cache_root() and not data.canaries else None
    hit = cache.load(key) if key else None
    if hit:  # --resume or a second run on the same data: seconds instead of re-tokenizing the corpus
        train_set, eval_set, report = hit
        report.cache = str(cache.cache_root() / key)
        return Prepared(train_set, eval_set, report)
    report = DataReport()
    if data.mix:  # several files by ratio (doctorkit/data/mix.py)
        from doctorkit.data.mix import mixed_conversations
        pool = mixed_conversations(data, report, recipe.seed, read_conversations)
    else:
        pool = read_conversations(data, data.path, report)
    if data.max_samples is not None:
        pool = pool[:data.max_samples]
    if data.val_path:
        train_convs, eval_convs = pool, read_conversations(data, data.val_path, report)[:data.max_samples]
    else:
        train_convs, eval_convs = split(pool, data.val_ratio, recipe.seed)
    from doctorkit.deid.training import privacy_step   # data.deid, data.canaries
    train_convs, eval_convs, canaries = privacy_step(data, recipe.seed, train_convs, eval_convs, report)
    from doctorkit.knowledge import KnowledgeSettings, grounder
    knowledge = KnowledgeSettings.from_data_config(data)
    ground = grounder(knowledge, tokenizer) if knowledge else None
    train_rows = tokenize_all(train_convs, tokenizer, recipe, report, "tokenizing train", ground)
    eval_rows = tokenize_all(eval_convs, tokenizer, recipe, report, "tokenizing eval", ground)
    if not train_rows:
        counts = ", ".join(f"{r} {n}" for r, n in sorted(report.samples_skipped.items())) or "the files hold no records"
        raise DoctorKitError(f"{', '.join(_paths(data.path))}: no usable training conversation ({counts})"
                             + (f"; first problem: {report.problems[0]}" if report.problems else ""))
    report.samples_used = len(train_rows)
    report.lengths = [len(r["input_ids"]) for r in train_rows]
    report.train_tokens = sum(report.lengths)
    report.supervised_tokens = sum(sum(1 for x in r["labels"] if x != IGNORE) for r in train_rows)
    report.eval_samples = len(eval_rows)
    report.eval_lengths = [len(r["input_ids"]) for r in eval_rows]
    report.eval_tokens = sum(report.eval_lengths)
    prepared = Prepared(_dataset(train_rows), _dataset(eval_rows) if eval_rows else None, report, canaries)
    if key:
        cache.save(key, prepared.train, prepared.eval, report)
    return prepared


def run(argv: list[str] | None = None) -> None:
    """`doctorkit data ...` (doctorkit/cli.py) lands here; the command lives in __main__.py."""
    from doctorkit.data.__main__ import run as run_command
    run_command(argv)
