"""CMB (CMB-Exam) JSON list: exam_type, exam_class, exam_subject, question, answer, question_type, option{A..E}.

question_type 多项选择题 asks for several letters ("ACD"); the type is published, so it decides `multi`.
"""
from doctorkit.evaluate.exams.fields import answer_letters, clean_options, question_text

NAME, KIND, SUBJECT_FROM_FILE = "cmb", "json", False
MULTI_TYPES = ("多项选择题", "多选题")


def matches(record: dict) -> bool:
    return "question" in record and isinstance(record.get("option"), dict)


def to_item(record: dict) -> dict:
    options = clean_options(record["option"])
    return {"question": question_text(record, "question"), "options": options,
            "answer": answer_letters(record.get("answer"), options),
            "subject": record.get("exam_subject") or record.get("exam_class") or None,
            "multi": str(record.get("question_type") or "").strip() in MULTI_TYPES}
