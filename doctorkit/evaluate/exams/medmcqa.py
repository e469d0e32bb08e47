"""MedMCQA JSON (one object per line): question, opa, opb, opc, opd, cop (the correct option, 1-based),
subject_name, exp."""
from doctorkit.evaluate.exams.fields import clean_options, question_text

NAME, KIND, SUBJECT_FROM_FILE = "medmcqa", "json", False


def matches(record: dict) -> bool:
    return {"question", "opa", "opb", "cop"} <= set(record)


def to_item(record: dict) -> dict:
    options = clean_options({letter: record.get(key) for letter, key in zip("ABCD", ("opa", "opb", "opc", "opd"))})
    try:
        cop = int(record.get("cop"))
    except (TypeError, ValueError):
        raise ValueError(f"'cop' must be the 1-based number of the correct option, got {record.get('cop')!r}") from None
    if not 1 <= cop <= len(options):
        raise ValueError(f"'cop' {cop} is outside 1..{len(options)} (MedMCQA numbers options 1-based)")
    return {"question": question_text(record, "question"), "options": options, "answer": "ABCD"[cop - 1],
            "subject": record.get("subject_name") or None}
