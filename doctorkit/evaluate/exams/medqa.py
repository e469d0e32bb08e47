"""MedQA JSONL (MCMLE in Chinese, USMLE in English): question, options{A..E}, answer (text), answer_idx
(letter), meta_info (e.g. step1)."""
from doctorkit.evaluate.exams.fields import answer_letters, clean_options, question_text

NAME, KIND, SUBJECT_FROM_FILE = "medqa", "json", False


def matches(record: dict) -> bool:
    return "answer_idx" in record and isinstance(record.get("options"), dict)


def to_item(record: dict) -> dict:
    options = clean_options(record["options"])
    return {"question": question_text(record, "question"), "options": options,
            "answer": answer_letters(record.get("answer_idx"), options),
            "subject": record.get("meta_info") or None}
