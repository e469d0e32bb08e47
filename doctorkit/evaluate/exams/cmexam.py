"""CMExam CSV: Question, Options (one text field, one `A 选项…` per line), Answer (one or several letters),
Explanation, plus annotation columns we do not need."""
import re

from doctorkit.evaluate.exams.fields import answer_letters, question_text

NAME, KIND, SUBJECT_FROM_FILE = "cmexam", "csv", False
_OPTION_LINE = re.compile(r"^\s*([A-Z])[\s.、．:：)）]+(.*\S)\s*$")


def matches(record: dict) -> bool:
    return {"Question", "Options", "Answer"} <= set(record)


def parse_options(text: str) -> dict:
    options = {}
    for line in str(text or "").splitlines():
        found = _OPTION_LINE.match(line)
        if found:
            options[found.group(1)] = found.group(2).strip()
    if len(options) < 2:
        raise ValueError("'Options' holds fewer than two 'A text' lines")
    return options


def to_item(record: dict) -> dict:
    options = parse_options(record.get("Options"))
    return {"question": question_text(record, "Question"), "options": options,
            "answer": answer_letters(record.get("Answer"), options),
            "explanation": (record.get("Explanation") or "").strip() or None}
