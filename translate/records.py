"""Read an English dataset into records with translatable fields, and write them back as messages.

The formats are read through the training kit's registry (doctorkit.data.formats: messages, ShareGPT,
Alpaca with history, CSV, or a registered one; encoding detection), so what translate accepts is what train
accepts. We keep more than train needs: each record's id and the keys no format reads (copied to the output
untouched), and a record that cannot be translated stays in the list with a `problem`, so `run` can account
for it as a reject.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from doctorkit.data.formats import Read, UnknownFormat, get_format, names, read_file
from doctorkit.errors import DoctorKitError
from translate.recipe import SourceData

NO_FIELDS = ("no translatable fields (expected Alpaca instruction/input/output, ShareGPT conversations, "
             "messages with role/content, or the CSV columns named in data.columns)")


@dataclass
class Record:
    id: str
    messages: list[dict] = field(default_factory=list)   # [{"role", "content"}] in English
    extra: dict = field(default_factory=dict)            # other keys, copied to the output untouched
    problem: str | None = None                           # why it cannot be translated, if it cannot


def consumed_keys() -> set[str]:
    """Keys never copied to the output: those of every format, not only the record's own, since another format's
    text field (an Alpaca "input" in a ShareGPT record) is English that would reach the output untranslated."""
    return {key for name in names() for key in get_format(name).KEYS or ()}


def to_record(cfg: SourceData, default_id: str, read: Read) -> Record:
    raw, messages = read.raw, read.messages
    record_id = default_id
    if isinstance(raw, dict) and raw.get(cfg.id_key) not in (None, ""):
        record_id = str(raw[cfg.id_key])
    if isinstance(messages, UnknownFormat):
        return Record(record_id, problem=NO_FIELDS)
    if isinstance(messages, Exception):
        return Record(record_id, problem=str(messages))
    extra = {}
    if get_format(read.format).KEYS is not None:   # KEYS None: the whole record is the conversation
        consumed = consumed_keys() | {cfg.id_key}
        extra = {k: v for k, v in raw.items() if k not in consumed}
    record = Record(record_id, messages=messages, extra=extra)
    empty = [i for i, m in enumerate(messages) if not m["content"].strip()]
    if not messages:
        record.problem = NO_FIELDS
    elif empty:
        record.problem = f"empty field messages.{empty[0]}.content ({messages[empty[0]]['role']})"
    return record


def read_records(cfg: SourceData, path: str | Path, limit: int | None = None) -> list[Record]:
    """All records of the file, readable or not; errors if none has a translatable field."""
    path = Path(path)
    if not path.is_file():
        raise DoctorKitError(f"{path}: data file not found")
    reads = read_file(path, cfg.format, cfg.encoding, cfg.columns, lambda note: print(f"data: CSV columns {note}"))
    records = []
    for index, read in enumerate(reads):
        if limit is not None and index >= limit:
            break
        records.append(to_record(cfg, f"{path.stem}-{index}", read))
    if not any(r.problem is None for r in records):
        raise DoctorKitError(f"{path}: {NO_FIELDS}")
    return records


def translated_record(record: Record, contents: list[str]) -> dict:
    """The output line: id, messages with the same roles in the same order, other keys untouched."""
    messages = [{"role": m["role"], "content": text} for m, text in zip(record.messages, contents)]
    return {"id": record.id, "messages": messages, **record.extra}
