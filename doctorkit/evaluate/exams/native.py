"""Our own JSONL: {"question", "options": {"A": ...} or [...], "answer": "B" | "ACD" | ["A", "C"],
"subject"?, "type"?: "single" | "multi", "explanation"?}."""
from doctorkit.evaluate.exams.fields import answer_letters, clean_options, question_text

NAME, KIND, SUBJECT_FROM_FILE = "jsonl", "json", False


def matches(record: dict) -> bool:
    return "question" in record and "options" in record


def to_item(record: dict) -> dict:
    options = record.get("options")
    if isinstance(options, list):  # ["text A", "text B", ...] -> letters in order
        options = {chr(ord("A") + i): text for i, text in enumerate(options)}
    if not isinstance(options, dict):
        raise ValueError("'options' must map at least two letters to their text")
    options = clean_options(options)
    item = {"question": question_text(record, "question"), "options": options,
            "answer": answer_letters(record.get("answer"), options), "subject": record.get("subject"),
            "explanation": record.get("explanation")}
    if record.get("type") in ("single", "multi"):
        item["multi"] = record["type"] == "multi"
    return item
