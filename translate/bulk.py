"""`python -m translate run RECIPE`: translate a whole dataset with the distilled student.

Field by field: every turn is split into segments, the segments are translated, and each turn's
translation is joined back into that turn; roles, order, ids and other keys are copied, never parsed
out of model output. Records go in shards of `run.shard_size`; a shard is written to temporary files
and renamed into place, its `.done.json` marker last, so a killed run resumes at the first unfinished
shard. At the end the shards are merged into translated.jsonl (messages format, trainable by
doctorkit.train) and rejects.jsonl ({"id", "reason"}), and every input record is in exactly one of them.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from tqdm import tqdm

from doctorkit import atomic
from doctorkit.errors import DoctorKitError
from translate.records import Record, read_records, translated_record
from translate.recipe import TranslateRecipe, WorkFiles
from translate.segment import Unsplittable, join_field, split_field


def plan(record: Record, max_chars: int):
    """Each turn split into lines of segments, or the reason the record cannot be translated."""
    if record.problem:
        return None, record.problem
    try:
        return [split_field(m["content"], max_chars) for m in record.messages], None
    except Unsplittable as err:
        return None, f"over-long segment that could not be split: {err}"


def write_atomic(path: Path, lines: list[str]) -> None:
    atomic.write_text(path, "".join(line + "\n" for line in lines))


def translate_shard(records, recipe, model, tokenizer, progress) -> tuple[list[str], list[str], dict]:
    plans = [plan(r, recipe.segment.max_chars) for r in records]
    unique = sorted({s for turns, _ in plans if turns for lines in turns for line in lines for s in line})
    started = time.time()
    from translate.student import translate_texts
    cfg = recipe.student
    done = dict(zip(unique, translate_texts(model, tokenizer, unique, recipe.run.batch_size, cfg.num_beams,
                                            cfg.max_target_len, cfg.max_source_len, progress)))
    good, bad = [], []
    for record, (turns, problem) in zip(records, plans):
        if turns is not None:
            contents = [join_field([[done[s] for s in line] for line in lines]) for lines in turns]
            empty = [i for i, (lines, text) in enumerate(zip(turns, contents)) if any(lines) and not text.strip()]
            problem = f"student gave an empty translation for messages.{empty[0]}.content" if empty else None
        if problem:
            bad.append(json.dumps({"id": record.id, "reason": problem}, ensure_ascii=False))
        else:
            good.append(json.dumps(translated_record(record, contents), ensure_ascii=False))
    stats = {"seconds": time.time() - started, "segments": len(unique), "source_chars": sum(map(len, unique))}
    return good, bad, stats


def check_manifest(files: WorkFiles, manifest: dict) -> None:
    path = files.shards / "manifest.json"
    if path.is_file() and json.loads(path.read_text(encoding="utf-8")) != manifest:
        raise DoctorKitError(f"{files.shards}: shards come from another input, student or shard size; "
                             f"delete that folder to start over")
    files.shards.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, json.dumps(manifest, indent=2))


def bulk(recipe: TranslateRecipe) -> dict:
    from translate.student import load_student, pick_device
    files = WorkFiles(recipe)
    source = Path(recipe.run.input or recipe.data.path)
    records = read_records(recipe.data, source, recipe.run.max_records)
    if not (files.student / "config.json").is_file():
        raise DoctorKitError(f"{files.student}: no trained student; run `python -m translate distill` first")
    check_manifest(files, {"input": str(source.resolve()), "input_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
                           "records": len(records), "student_mtime": (files.student / "config.json").stat().st_mtime,
                           "shard_size": recipe.run.shard_size, "max_chars": recipe.segment.max_chars})
    size = recipe.run.shard_size
    shards = [records[i:i + size] for i in range(0, len(records), size)]
    names = [files.shards / f"shard-{i:05d}" for i in range(len(shards))]
    todo = [i for i, name in enumerate(names) if not Path(f"{name}.done.json").is_file()]
    device = pick_device(recipe.run.device)
    if todo:
        model, tokenizer = load_student(str(files.student), device)
        total = sum(len({s for r in shards[i] for turns in [plan(r, recipe.segment.max_chars)[0]] if turns
                         for lines in turns for line in lines for s in line}) for i in todo)
        print(f"run: {len(records)} records in {len(shards)} shards, {len(shards) - len(todo)} already done; "
              f"translating {total} segments on {device}")
        with tqdm(total=total, desc="student", unit="seg") as progress:
            for i in todo:
                good, bad, stats = translate_shard(shards[i], recipe, model, tokenizer, progress)
                write_atomic(Path(f"{names[i]}.jsonl"), good)
                write_atomic(Path(f"{names[i]}.rejects.jsonl"), bad)
                write_atomic(Path(f"{names[i]}.done.json"), [json.dumps(stats)])  # the marker goes last
    return merge(files, records, names, device, source)


def merge(files: WorkFiles, records, names, device: str, source: Path) -> dict:
    good = [line for n in names for line in Path(f"{n}.jsonl").read_text(encoding="utf-8").splitlines()]
    bad = [line for n in names for line in Path(f"{n}.rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    stats = [json.loads(Path(f"{n}.done.json").read_text(encoding="utf-8")) for n in names]
    accounted = sorted([json.loads(line)["id"] for line in good + bad])
    if accounted != sorted(r.id for r in records):  # a bug, not bad input: never let it pass silently
        raise RuntimeError(f"run: {len(records)} records in, {len(accounted)} out; the shards disagree with the input")
    write_atomic(files.translated, good)
    write_atomic(files.rejects, bad)
    reasons: dict[str, int] = {}
    for line in bad:
        reason = json.loads(line)["reason"].split(":")[0].split(" (")[0]
        reasons[reason] = reasons.get(reason, 0) + 1
    report = {"input": str(source), "records": len(records), "translated": len(good), "rejected": len(bad),
              "reject_reasons": reasons, "segments": sum(s["segments"] for s in stats),
              "source_chars": sum(s["source_chars"] for s in stats),
              "seconds": round(sum(s["seconds"] for s in stats), 2), "device": device}
    atomic.write_text(files.run_report, json.dumps(report, indent=2, ensure_ascii=False))
    print(f"run: {report['records']} records -> {report['translated']} translated ({files.translated}), "
          f"{report['rejected']} rejected ({files.rejects}{': ' + str(reasons) if reasons else ''}); "
          f"{report['segments']} segments in {report['seconds']:.1f} s")
    return report
