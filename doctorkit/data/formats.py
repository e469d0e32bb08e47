"""Conversation formats: each one registered object that every reader asks (as doctorkit.methods for methods).

A format is any object (a class instance here; a module or an object of a user's own works the same) with:

    detect(record)        -> True when a parsed record (always a dict) is in this format
    to_messages(record)   -> [{"role", "content"}, ...]; raises BadRecord naming what is missing
and, optional (their defaults are in DEFAULTS below):
    KEYS                  -> the record keys it reads; translate copies the others to its output untouched
                             (None: the whole record is the conversation, nothing is copied)
    SUFFIXES              -> file suffixes that choose it under format auto, before any record is read (.csv)
    records(path, text, columns, on_columns) -> (file:line, record or BadRecord): a format with its own file
                             layout (CSV); the others are JSON Lines or a JSON list (readers.iter_json_records)

Under format auto the first record that one format detects (asked in registration order) fixes the format
of the rest of the file. `read_file` is the one loop that does this; train (iter_file -> doctorkit.data),
cost, the data preview, translate, evaluate's dialog task and `deid` all read through it, and every text
goes through readers.read_text (the one encoding detector).

Adding a format: `register("name", obj)`. `data.format: name` in a recipe, translate's data.format and
`deid --format name` accept it, and format auto tries it after the built-in ones. Nothing else changes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, NamedTuple

from doctorkit.data.readers import BadRecord, iter_csv_records, iter_json_records, read_text
from doctorkit.errors import DoctorKitError
from doctorkit.registry import Registered

# ShareGPT speaker names seen in the wild, mapped to chat-template roles.
ROLE_NAMES = {
    "system": "system",
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "bot": "assistant", "model": "assistant",
}
AUTO = "auto"   # not a format: detect one per file (suffix, then the first recognisable record)


class UnknownFormat(BadRecord):
    """A record that no registered format recognises (format auto)."""


def turns(record: dict, key: str, name: str) -> list[dict]:
    """record[key] as messages. Both spellings are accepted in both formats: exports mix role/content and
    from/value freely. A top-level "system" text (a ShareGPT variant) becomes the first turn."""
    items = record.get(key)
    if not isinstance(items, list):
        raise BadRecord(f"missing '{key}' list ({name} format)")
    messages = []
    for number, turn in enumerate(items, 1):
        if not isinstance(turn, dict):
            raise BadRecord(f"turn {number} is not an object")
        speaker = turn.get("role", turn.get("from"))
        content = turn.get("content", turn.get("value"))
        role = ROLE_NAMES.get(str(speaker).lower()) if speaker is not None else None
        if role is None:
            raise BadRecord(f"turn {number} has unknown role {speaker!r}")
        if not isinstance(content, str):
            raise BadRecord(f"turn {number} has no text content")
        messages.append({"role": role, "content": content})
    has_system = bool(messages) and messages[0]["role"] == "system"
    if isinstance(record.get("system"), str) and record["system"].strip() and not has_system:
        messages.insert(0, {"role": "system", "content": record["system"]})
    return messages


class Turns:
    """A list of turns under one key: {"messages": [{"role", "content"}, ...]} (OpenAI chat layout) or
    {"conversations": [{"from", "value"}, ...]} (ShareGPT; from = human/user/gpt/assistant/system)."""

    def __init__(self, key: str, name: str):
        self.key, self.name = key, name
        self.KEYS = (key, "system")

    def detect(self, record: dict) -> bool:
        return self.key in record

    def to_messages(self, record: dict) -> list[dict]:
        return turns(record, self.key, self.name)


class Alpaca:
    """instruction, optional input, output; optional history [[question, answer], ...] and system."""
    KEYS = ("instruction", "input", "output", "history", "system")

    def detect(self, record: dict) -> bool:
        return "instruction" in record and "output" in record

    def to_messages(self, record: dict) -> list[dict]:
        for key in ("instruction", "output"):
            if not isinstance(record.get(key), str):
                raise BadRecord(f"missing '{key}' text (alpaca format)")
        messages = []
        if isinstance(record.get("system"), str) and record["system"].strip():
            messages.append({"role": "system", "content": record["system"]})
        history = record.get("history") or []
        if not isinstance(history, list):
            raise BadRecord("'history' must be a list of [question, answer] pairs")
        for number, pair in enumerate(history, 1):
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
                raise BadRecord(f"history item {number} is not a [question, answer] pair")
            messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
        extra = record.get("input")
        prompt = record["instruction"] + (f"\n{extra}" if isinstance(extra, str) and extra.strip() else "")
        return messages + [{"role": "user", "content": prompt}, {"role": "assistant", "content": record["output"]}]


class Csv(Turns):
    """A CSV export with a patient and a doctor column (data.columns, or recognised from the header);
    readers.iter_csv_records turns each row into a messages record."""
    SUFFIXES = (".csv", ".tsv")

    def __init__(self):
        super().__init__("messages", "messages")
        self.KEYS = None

    def detect(self, record: dict) -> bool:
        return False   # chosen by its suffix or by name, never from a record

    def records(self, path: Path, text: str, columns, on_columns=None):
        return iter_csv_records(path, text, columns, on_columns)


FORMATS = {"messages": Turns("messages", "messages"), "sharegpt": Turns("conversations", "sharegpt"),
           "alpaca": Alpaca(), "csv": Csv()}
DEFAULTS = {"KEYS": None, "SUFFIXES": (), "records": None}


class Format(Registered):
    """A registered format, with DEFAULTS filled in for what it leaves out. `name` is its recipe name."""

    DEFAULTS = DEFAULTS


def register(name: str, fmt) -> None:
    """Make `name` a valid data.format (train, cost, translate, deid) and a candidate for format auto."""
    if name == AUTO:
        raise DoctorKitError(f"'{AUTO}' is not a format name (it means: detect the format)")
    FORMATS[name] = fmt


def unregister(name: str) -> None:
    """Undo register (tests)."""
    del FORMATS[name]


def names() -> list[str]:
    """Registered formats, in the order format auto asks them."""
    return list(FORMATS)


def choices() -> list[str]:
    """What a data.format / --format may say: auto or a registered format."""
    return [AUTO, *FORMATS]


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise DoctorKitError(f"data format '{name}' is not registered (available: {', '.join(choices())})")
    return Format(name, FORMATS[name])


def detect(record: object) -> str | None:
    """The name of the first registered format that recognises `record`, or None."""
    if not isinstance(record, dict):
        return None
    return next((name for name, fmt in FORMATS.items() if fmt.detect(record)), None)


def to_messages(record: object, name: str | None = None) -> list[dict]:
    """The record as [{role, content}, ...] in format `name` (None: detected); BadRecord says why not."""
    if not isinstance(record, dict):
        raise BadRecord(f"expected a JSON object, got {type(record).__name__}")
    name = name or detect(record)
    if name is None:
        detectable = [n for n in FORMATS if get_format(n).records is None]   # CSV is chosen by suffix or name
        raise UnknownFormat(f"cannot detect the format (keys: {', '.join(map(str, record)) or 'none'}; "
                            f"known: {', '.join(detectable)})")
    return get_format(name).to_messages(record)


def by_suffix(path: Path) -> str | None:
    return next((name for name in FORMATS if path.suffix.lower() in get_format(name).SUFFIXES), None)


class Read(NamedTuple):
    where: str                       # file:line
    raw: object                      # the record as parsed (a dict for JSON), or the BadRecord
    messages: list | BadRecord       # the conversation, or why it cannot be read
    format: str | None               # the format it was read as (None: unreadable or undetected)


def read_file(path: str | Path, fmt: str = AUTO, encoding: str = "auto", columns=None, on_columns=None,
              hint: str = "set data.format") -> Iterator[Read]:
    """Every record of one file, readable or not, in format `fmt` (auto: by suffix, else detected from the first
    record that a format recognises). `columns` and `on_columns` are for a format with its own layout (CSV)."""
    path = Path(path)
    text = read_text(path, encoding)
    name = (None if fmt == AUTO else get_format(fmt).name) or by_suffix(path)
    layout = get_format(name).records if name else None
    rows = layout(path, text, columns, on_columns) if layout else iter_json_records(path, text)
    for where, raw in rows:
        if isinstance(raw, BadRecord):
            yield Read(where, raw, raw, None)
            continue
        name = name or detect(raw)
        try:
            yield Read(where, raw, to_messages(raw, name), name)
        except BadRecord as err:
            yield Read(where, raw, UnknownFormat(f"{err}; {hint}") if isinstance(err, UnknownFormat) else err, name)


def iter_file(path: str | Path, data_cfg, on_columns=None) -> Iterator[tuple[str, list | BadRecord]]:
    """(file:line, messages or BadRecord) for every record of one training file, as the recipe's data says;
    for a CSV, `on_columns(note)` hears which columns were used."""
    path = Path(path)
    if not path.is_file():
        raise DoctorKitError(f"{path}: data file not found (data.path / data.val_path)")
    for read in read_file(path, data_cfg.format, data_cfg.encoding, data_cfg.columns, on_columns):
        yield read.where, read.messages
