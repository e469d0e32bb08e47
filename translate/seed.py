"""`python -m translate seed RECIPE`: pick N English records, have the teacher translate their segments.

Output: work_dir/pairs.jsonl, one {"id", "field", "segment", "en", "zh"} line per segment, and
seed_report.json with tokens and cost. The pairs file is rebuilt on every run: cached translations are
written at once, new ones the moment they arrive; the SQLite cache is what makes a rerun free.
"""
from __future__ import annotations

import json
import random
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

from tqdm import tqdm

from doctorkit import atomic
from translate.cache import TeacherCache, cache_key
from translate.privacy import outgoing_filter
from translate.records import Record, read_records
from translate.recipe import TranslateRecipe, WorkFiles
from translate.segment import Unsplittable, split_field


def record_chars(record: Record) -> int:
    return sum(len(m["content"]) for m in record.messages)


def choose(records: list[Record], n: int, how: str, strata: int, seed: int) -> list[Record]:
    """N records, random or an equal share from each length band (so long answers are not all missed)."""
    rng = random.Random(seed)
    if n >= len(records):
        return list(records)
    if how == "random":
        return rng.sample(records, n)
    ordered = sorted(records, key=record_chars)
    bands = [ordered[i * len(ordered) // strata:(i + 1) * len(ordered) // strata] for i in range(strata)]
    chosen: list[Record] = []
    for i, band in enumerate(bands):
        share = n // strata + (1 if i < n % strata else 0)
        chosen += rng.sample(band, min(share, len(band)))
    return chosen


def segments_of(record: Record, max_chars: int) -> list[tuple[str, int, str]]:
    """(field, segment index, English text) for every segment of a record."""
    out = []
    for turn, message in enumerate(record.messages):
        pieces = [s for line in split_field(message["content"], max_chars) for s in line]
        out += [(f"messages.{turn}.content", i, text) for i, text in enumerate(pieces)]
    return out


def price(cfg, prompt_tokens: int, completion_tokens: int) -> float:
    return (prompt_tokens * cfg.price_input_per_1m + completion_tokens * cfg.price_output_per_1m) / 1e6


def seed(recipe: TranslateRecipe) -> dict:
    from translate.teacher import Teacher  # imports openai; here so a key check is the first thing we do
    outgoing, scrubber = outgoing_filter(recipe.teacher, recipe.seed)   # teacher.deid: before anything is sent
    teacher = Teacher(recipe.teacher)
    files = WorkFiles(recipe)
    files.root.mkdir(parents=True, exist_ok=True)
    readable = [r for r in read_records(recipe.data, recipe.data.path) if r.problem is None]
    chosen = choose(readable, recipe.seed_set.n, recipe.seed_set.sample, recipe.seed_set.strata, recipe.seed)

    occurrences: dict[str, list[tuple[str, str, int]]] = {}   # English text -> where it occurs
    skipped = 0
    for record in chosen:
        record = Record(record.id, messages=outgoing(record.messages, record.id), extra=record.extra)
        try:
            segs = segments_of(record, recipe.segment.max_chars)
        except Unsplittable:
            skipped += 1
            continue
        for field, index, text in segs:
            occurrences.setdefault(text, []).append((record.id, field, index))

    # Written before the first request: a seed that dies midway leaves complete=false for distill to see.
    atomic.write_text(files.seed_report, json.dumps({"complete": False, "records": len(chosen),
                                                     "unique_segments": len(occurrences)}, indent=2))
    cfg, cache = recipe.teacher, TeacherCache(files.cache)
    keys = {text: cache_key(cfg.model, cfg.prompt, text) for text in occurrences}
    totals = {"prompt_tokens": 0, "completion_tokens": 0, "new_prompt_tokens": 0, "new_completion_tokens": 0}
    started = time.time()
    with files.pairs.open("w", encoding="utf-8") as out:
        def write(text: str, reply, new: bool) -> None:
            for record_id, field, index in occurrences[text]:
                out.write(json.dumps({"id": record_id, "field": field, "segment": index, "en": text,
                                      "zh": reply.translation}, ensure_ascii=False) + "\n")
            out.flush()
            totals["prompt_tokens"] += reply.prompt_tokens
            totals["completion_tokens"] += reply.completion_tokens
            if new:
                totals["new_prompt_tokens"] += reply.prompt_tokens
                totals["new_completion_tokens"] += reply.completion_tokens

        todo = []
        for text in occurrences:
            cached = cache.get(keys[text])
            if cached:
                write(text, cached, new=False)
            else:
                todo.append(text)
        pool, futures = ThreadPoolExecutor(max_workers=max(1, cfg.concurrency)), {}
        try:
            futures = {pool.submit(teacher.translate, text): text for text in todo}
            for future in tqdm(as_completed(futures), total=len(futures), desc="teacher", unit="seg"):
                text = futures[future]
                reply = future.result()
                cache.put(keys[text], cfg.model, text, reply)  # paid for: stored before anything else
                write(text, reply, new=True)
        finally:
            # on an error or Ctrl-C, requests already in flight still finish: keep what they paid for
            pool.shutdown(wait=True, cancel_futures=True)
            for future, text in futures.items():
                if future.done() and not future.cancelled() and future.exception() is None \
                        and cache.get(keys[text]) is None:
                    cache.put(keys[text], cfg.model, text, future.result())
            cache.close()

    report = {
        "complete": True,
        "records": len(chosen), "records_skipped_unsplittable": skipped,
        "segments": sum(len(v) for v in occurrences.values()), "unique_segments": len(occurrences),
        "cached": len(occurrences) - len(todo), "teacher_calls": len(todo),
        "attempts": teacher.attempts, "retries": teacher.retries,
        "source_chars": sum(len(t) for t in occurrences), **totals,
        "cost_usd": price(cfg, totals["prompt_tokens"], totals["completion_tokens"]),
        "paid_this_run_usd": price(cfg, totals["new_prompt_tokens"], totals["new_completion_tokens"]),
        "teacher_model": cfg.model, "seconds": round(time.time() - started, 2),
        "deid": cfg.deid, "deid_replacements": dict(sorted(scrubber.counts.items())) if scrubber else {},
    }
    atomic.write_text(files.seed_report, json.dumps(report, indent=2))
    print(f"seed: {report['records']} records -> {report['unique_segments']} segments "
          f"({report['cached']} cached, {report['teacher_calls']} new calls, {report['retries']} retries); "
          f"tokens {report['prompt_tokens']} in / {report['completion_tokens']} out; "
          f"seed set ${report['cost_usd']:.4f}, paid now ${report['paid_this_run_usd']:.4f} -> {files.pairs}")
    return report
