"""Writers of small exam files in each layout as its authors publish it (no exam data in the repository):
the same questions, written as CMMLU, C-Eval, CMB, CMExam, MedQA, MedMCQA or our JSONL."""
from __future__ import annotations

import csv
import json
import random
from pathlib import Path

MULTI_LAYOUTS = {"cmb", "cmexam", "jsonl"}  # layouts that publish multi-answer questions


def questions(n: int, seed: int, multi: bool, letters: str = "ABCD", prefix: str = "") -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = rng.choice([2, 3]) if multi and i % 3 == 0 else 1
        answer = "".join(sorted(rng.sample(letters, k)))
        out.append({"question": f"{prefix}第{i}题：患者{i}岁，最可能的诊断是", "options": {c: f"诊断{c}{i}" for c in letters},
                    "answer": answer, "subject": ["内科学", "外科学"][i % 2], "multi": k > 1})
    return out


def _csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write(layout: str, folder: Path, items: list[dict]) -> Path:
    """The exam in `layout`, under `folder`; returns the file (or folder, for per-subject layouts) to read."""
    folder.mkdir(parents=True, exist_ok=True)
    if layout == "cmmlu":  # one CSV per subject, unnamed first column
        for subject in ("clinical_knowledge", "anatomy"):
            part = [q for n, q in enumerate(items) if (n % 2 == 0) == (subject == "anatomy")]
            _csv(folder / f"{subject}.csv", ["", "Question", "A", "B", "C", "D", "Answer"],
                 [[n, q["question"], *q["options"].values(), q["answer"]] for n, q in enumerate(part)])
        return folder
    if layout == "ceval":
        return _csv(folder / "clinical_medicine_val.csv", ["id", "question", "A", "B", "C", "D", "answer", "explanation"],
                    [[n, q["question"], *q["options"].values(), q["answer"], "1. 解析"] for n, q in enumerate(items)])
    if layout == "cmexam":
        return _csv(folder / "test_with_annotations.csv", ["Question", "Options", "Answer", "Explanation", "Disease Group"],
                    [[q["question"], "\n".join(f"{k} {v}" for k, v in q["options"].items()), q["answer"], "解析", "内科"]
                     for q in items])
    if layout == "cmb":
        rows = [{"exam_type": "医师考试", "exam_class": "执业医师", "exam_subject": q["subject"], "question": q["question"],
                 "answer": q["answer"], "question_type": "多项选择题" if q["multi"] else "单项选择题",
                 "option": {**q["options"], "E": q["options"].get("E", "")}} for q in items]
        path = folder / "CMB-test-choice-answer.json"
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
        return path
    if layout == "medqa":
        rows = [{"question": q["question"], "answer": q["options"][q["answer"]], "options": q["options"],
                 "meta_info": "step1", "answer_idx": q["answer"]} for q in items]
    elif layout == "medmcqa":
        rows = [{"id": f"m{n}", "question": q["question"], **{f"op{c}": q["options"][L] for c, L in zip("abcd", "ABCD")},
                 "cop": "ABCD".index(q["answer"]) + 1, "choice_type": "single", "exp": "", "subject_name": q["subject"]}
                for n, q in enumerate(items)]
    else:  # our JSONL
        rows = [{"id": f"q{n}", "question": q["question"], "options": q["options"], "answer": q["answer"],
                 "subject": q["subject"], **({"type": "multi"} if q["multi"] else {})} for n, q in enumerate(items)]
    path = folder / f"{layout}.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path
