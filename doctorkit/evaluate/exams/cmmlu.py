"""CMMLU CSV, one file per subject: `,Question,A,B,C,D,Answer` (the first column is an unnamed row number)."""
from doctorkit.evaluate.exams.fields import answer_letters, clean_options, question_text

NAME, KIND, SUBJECT_FROM_FILE = "cmmlu", "csv", True


def matches(record: dict) -> bool:
    return {"Question", "A", "B", "C", "D", "Answer"} <= set(record)


def to_item(record: dict) -> dict:
    options = clean_options({k: record.get(k) for k in "ABCD"})
    return {"question": question_text(record, "Question"), "options": options,
            "answer": answer_letters(record.get("Answer"), options)}
