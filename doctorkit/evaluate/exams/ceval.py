"""C-Eval CSV, one file per subject and split: `id,question,A,B,C,D,answer,explanation` (test: no answers)."""
from doctorkit.evaluate.exams.fields import answer_letters, clean_options, question_text

NAME, KIND, SUBJECT_FROM_FILE = "ceval", "csv", True


def matches(record: dict) -> bool:
    return {"question", "A", "B", "C", "D", "answer"} <= set(record)


def to_item(record: dict) -> dict:
    options = clean_options({k: record.get(k) for k in "ABCD"})
    return {"question": question_text(record, "question"), "options": options,
            "answer": answer_letters(record.get("answer"), options),
            "explanation": (record.get("explanation") or "").strip() or None}
