"""Medical exams as their authors publish them: one module per layout (a detector and a converter),
registered here once, so adding a layout is adding one file and one line below.

Each layout module provides:

    NAME                 the --format name
    KIND                 "csv" or "json" (JSON list or JSON Lines)
    SUBJECT_FROM_FILE    True when the layout names each subject's file after it (CMMLU, C-Eval)
    matches(record)      True when the first record (a dict; a CSV row keyed by the header) has this layout
    to_item(record)      {"question", "options": {letter: text}, "answer": "ACD", "subject", "multi"?}
                         or ValueError naming what is wrong (the record is skipped and counted)

An item's `answer` is its correct letters, sorted, joined ("B", "ACD"); `multi` says a question asks for
several letters. Layouts that publish a question type (CMB) set it from that; otherwise it is the number of
correct letters (CMExam publishes none), and the prompt tells the model the type, as the paper tells a candidate.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

from doctorkit.errors import DoctorKitError
from doctorkit.evaluate.exams import ceval, cmb, cmexam, cmmlu, medmcqa, medqa, native
from doctorkit.evaluate.records import Loaded

# Most specific first: CMB and MedQA records also carry "question"/"answer" like ours.
LAYOUTS = [cmb, medqa, medmcqa, native, ceval, cmmlu, cmexam]
EXAM_SUFFIXES = (".csv", ".json", ".jsonl")
_SPLIT_SUFFIX = re.compile(r"_(test|dev|val|validation|train)$")


def layout_names() -> list[str]:
    return [layout.NAME for layout in LAYOUTS]


def _formats_line() -> str:
    return ("known exam formats: cmmlu (CSV ,Question,A,B,C,D,Answer), ceval (CSV id,question,A-D,answer), "
            "cmb (JSON question, option{A..E}, answer, question_type), cmexam (CSV Question, Options, Answer), "
            "medqa (JSONL question, options, answer_idx), medmcqa (JSON question, opa-opd, cop), "
            "jsonl (ours: question, options, answer)")


def subject_from_file(path: Path) -> str:
    """clinical_medicine_test.csv -> clinical_medicine (C-Eval names splits in the file name)."""
    return _SPLIT_SUFFIX.sub("", path.stem)


def exam_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in EXAM_SUFFIXES and p.is_file())
        if not files:
            raise DoctorKitError(f"{path}: folder holds no exam files (.csv, .json, .jsonl)")
        return files
    if not path.is_file():
        raise DoctorKitError(f"{path}: exam file not found")
    return [path]


def iter_rows(path: Path):
    """(`file:line`, record or None for an unreadable one) of one exam file; CSV rows keyed by the header."""
    from doctorkit.data.readers import BadRecord, iter_json_records, read_text

    text = read_text(path)
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines(keepends=True))
        for row in reader:
            yield f"{path}:{reader.line_num}", None if None in row else row
        return
    for where, record in iter_json_records(path, text):
        yield where, None if isinstance(record, BadRecord) else record


def find_layout(record, where: str, fmt: str):
    if fmt != "auto":
        layout = next((layout for layout in LAYOUTS if layout.NAME == fmt), None)
        if layout is None:
            raise DoctorKitError(f"unknown exam format '{fmt}' ({_formats_line()})")
        if not (isinstance(record, dict) and layout.matches(record)):
            raise DoctorKitError(f"{where}: not the {fmt} layout (found: {_keys(record)}; {_formats_line()})")
        return layout
    if isinstance(record, dict):
        for layout in LAYOUTS:
            if layout.matches(record):
                return layout
    raise DoctorKitError(f"{where}: not multiple-choice records in a known layout (found: {_keys(record)}; "
                         f"{_formats_line()}); wrong file or wrong --task?")


def _keys(record) -> str:
    return ", ".join(str(k) for k in record) if isinstance(record, dict) else type(record).__name__


def read_exam(path, fmt: str = "auto", max_samples: int | None = None) -> Loaded:
    """Items of an exam file, a folder of per-subject files, or a list of either (e.g. the medical subjects
    of CMMLU), and the records skipped (`file:line: reason`)."""
    paths = [Path(p) for p in path] if isinstance(path, (list, tuple)) else [Path(path)]
    loaded = Loaded(items=[])
    for file, per_subject in [(f, p.is_dir() or len(paths) > 1) for p in paths for f in exam_files(p)]:
        layout = None
        for where, record in iter_rows(file):
            if record is None:
                loaded.skipped.append(f"{where}: not valid JSON" if file.suffix.lower() != ".csv" else f"{where}: malformed CSV row")
                continue
            layout = layout or find_layout(record, where, fmt)
            try:
                item = layout.to_item(record)
            except ValueError as err:
                loaded.skipped.append(f"{where}: {err}")
                continue
            if per_subject or layout.SUBJECT_FROM_FILE:
                item["subject"] = item.get("subject") or subject_from_file(file)
            item.setdefault("multi", len(item["answer"]) > 1)
            item.setdefault("subject", None)
            item["format"] = layout.NAME
            item["id"] = str(record.get("id") or "") or where.rsplit("/", 1)[-1]
            loaded.items.append(item)
            if max_samples and len(loaded.items) >= max_samples:
                return loaded
    if not loaded.items:
        reasons = f" (first: {loaded.skipped[0]})" if loaded.skipped else ""
        raise DoctorKitError(f"{', '.join(map(str, paths))}: no usable multiple-choice records{reasons}")
    return loaded
