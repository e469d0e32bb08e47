"""Read an English dataset into records with translatable fields, and write them back as messages.

The formats are read by the training kit's own readers (doctorkit.data.readers: messages, ShareGPT,
Alpaca with history, CSV; encoding detection), so what translate accepts is what train accepts. We keep
more than train needs: each record's id and other keys (copied to the output untouched), and a record
that cannot be translated stays in the list with a `problem`, so `run` can account for it as a reject.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from doctorkit.data.readers import BadRecord, detect_format, iter_csv_records, iter_json_records, read_text, \
    to_messages
from doctorkit.errors import DoctorKitError
from translate.recipe import SourceData

NO_FIELDS = ("no translatable fields (expected Alpaca instruction/input/output, ShareGPT conversations, "
             "messages with role/content, or the CSV columns named in data.columns)")
CONSUMED = {"messages", "conversations", "instruction", "input", "output", "history", "system"}


@dataclass
class Record:
    id: str
    messages: list[dict] = field(default_factory=list)   # [{"role", "content"}] in English
    extra: dict = field(default_factory=dict)            # other keys, copied to the output untouched
    problem: str | None = None                           # why it cannot be translated, if it cannot


def to_record(cfg: SourceData, index: int, default_id: str, raw: object, fmt: str | None) -> Record:
    if isinstance(raw, BadRecord):
        return Record(default_id, problem=str(raw))
    record_id = default_id
    if isinstance(raw, dict) and raw.get(cfg.id_key) not in (None, ""):
        record_id = str(raw[cfg.id_key])
    if fmt is None:
        return Record(record_id, problem=NO_FIELDS)
    try:
        messages = to_messages(raw, fmt)
    except BadRecord as err:
        return Record(record_id, problem=str(err))
    extra = {k: v for k, v in raw.items() if k not in CONSUMED and k != cfg.id_key} if fmt != "csv" else {}
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
    text = read_text(path, cfg.encoding)
    is_csv = cfg.format == "csv" or (cfg.format == "auto" and path.suffix.lower() in (".csv", ".tsv"))
    rows = (iter_csv_records(path, text, cfg.columns, lambda note: print(f"data: CSV columns {note}"))
            if is_csv else iter_json_records(path, text))
    records, fmt = [], "messages" if is_csv else (None if cfg.format == "auto" else cfg.format)
    for index, (_, raw) in enumerate(rows):
        if limit is not None and index >= limit:
            break
        fmt = fmt or detect_format(raw)   # from the first record that has a recognisable shape
        records.append(to_record(cfg, index, f"{path.stem}-{index}", raw, fmt))
    if not any(r.problem is None for r in records):
        raise DoctorKitError(f"{path}: {NO_FIELDS}")
    return records


def translated_record(record: Record, contents: list[str]) -> dict:
    """The output line: id, messages with the same roles in the same order, other keys untouched."""
    messages = [{"role": m["role"], "content": text} for m, text in zip(record.messages, contents)]
    return {"id": record.id, "messages": messages, **record.extra}
