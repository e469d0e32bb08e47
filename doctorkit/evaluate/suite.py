"""Suites: several exams, the tuned model against its base, one table.

    python -m doctorkit.evaluate RUN_DIR --suite SUITE.yaml [--out DIR]

SUITE.yaml lists exams (paths relative to the suite file); see data/suite_sample.yaml. Each exam is scored
with and without the adapter (doctorkit.evaluate.runner, --task mcq), then per exam: both accuracies with 95%
Wilson intervals, the difference, and the exact McNemar p-value of the paired answers. Exams with
`slice: general` (non-medical knowledge) are averaged apart from the medical ones, so a run that gains in
medicine and loses general knowledge shows it. Writes OUT/suite.json, OUT/suite.png and OUT/<exam>/ per exam.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Optional, Union

from pydantic import Field

from doctorkit import rundir
from doctorkit.errors import DoctorKitError
from doctorkit.evaluate.loading import has_adapter, load_target
from doctorkit.evaluate.metrics import mcnemar_exact
from doctorkit.evaluate.runner import evaluate_model
from doctorkit.evaluate.tasks import get_task
from doctorkit.recipe import Section, load_recipe

SIGNIFICANT = 0.05
TASK = "mcq"   # a suite is exams: every one is scored by the mcq task, tuned and base


class SuiteExam(Section):
    name: str                        # how the table names it (Chinese is fine)
    path: Union[str, list[str]]      # exam file or folder, or a list (e.g. CMMLU's medical subjects); relative to the suite file
    format: str = "auto"             # exam layout; auto detects it
    slice: Literal["medical", "general"] = "medical"  # general: the forgetting check
    mode: Literal["loglik", "generate"] = "loglik"
    cot: bool = False                # chain-of-thought prompting (generate)
    samples: int = 1                 # self-consistency chains (generate)
    shots: int = 0
    shots_from: Optional[str] = None  # dev file or folder, relative to the suite file
    max_samples: Optional[int] = None


class Suite(Section):
    exams: list[SuiteExam] = Field(min_length=1)
    max_new_tokens: int = 256                  # generate / cot exams: reply budget
    exclude_contaminated: Optional[str] = None  # training file: drop exam items sharing >= 13 characters with it


def _resolve(suite_path: Path, path):
    if path is None:
        return None
    if isinstance(path, list):
        return [_resolve(suite_path, p) for p in path]
    p = Path(path)
    return str(p if p.is_absolute() or not (suite_path.parent / p).exists() else suite_path.parent / p)


def _folder(name: str, n: int) -> str:
    return f"{n:02d}-" + (re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "exam")


def compare(name: str, slice_: str, out: Path, summary: dict) -> dict:
    """One table row, recomputed from the two prediction files (paired by item id)."""
    tuned = {r["id"]: r["correct"] for r in rundir.read_predictions(out, "model")}
    base = {r["id"]: r["correct"] for r in rundir.read_predictions(out, "base")}
    ids = sorted(tuned)
    results = summary["results"]
    return {"name": name, "slice": slice_, "samples": len(ids), "out_dir": str(out),
            "tuned": {k: results["model"][k] for k in ("accuracy", "ci95", "partial_credit")},
            "base": {k: results["base"][k] for k in ("accuracy", "ci95", "partial_credit")},
            "difference": round(results["model"]["accuracy"] - results["base"]["accuracy"], 4),
            "mcnemar": mcnemar_exact([tuned[i] for i in ids], [base[i] for i in ids])}


def slice_means(rows: list[dict]) -> dict:
    means = {}
    for slice_ in ("medical", "general"):
        part = [r for r in rows if r["slice"] == slice_]
        if part:
            tuned = sum(r["tuned"]["accuracy"] for r in part) / len(part)
            base = sum(r["base"]["accuracy"] for r in part) / len(part)
            means[slice_] = {"exams": len(part), "tuned": round(tuned, 4), "base": round(base, 4),
                             "difference": round(tuned - base, 4)}
    return means


def run_suite(target: str, suite_file, out_dir=None, device: str | None = None, batch_size: int = 8) -> dict:
    suite_path = Path(suite_file)
    suite = load_recipe(suite_path, schema=Suite)
    for exam in suite.exams:  # a missing file fails now, not after the first exams ran
        for path in exam.path if isinstance(exam.path, list) else [exam.path]:
            if not Path(_resolve(suite_path, path)).exists():
                raise DoctorKitError(f"{suite_path}: exam '{exam.name}': {path} not found")
    loaded = load_target(target, device)
    if not has_adapter(loaded.model):
        raise DoctorKitError(f"--suite compares tuned with base: {target} has no adapter to switch off "
                             f"(give a LoRA / QLoRA / P-tuning run directory)")
    out = Path(out_dir) if out_dir else rundir.eval_dir(loaded.run_dir, f"suite-{suite_path.stem}")
    rows = []
    for n, exam in enumerate(suite.exams, 1):
        options = get_task(TASK).options({"mode": exam.mode, "format": exam.format, "shots": exam.shots, "cot": exam.cot,
                                           "shots_from": _resolve(suite_path, exam.shots_from), "samples": exam.samples},
                                          batch_size=batch_size, system_prompt=loaded.system_prompt,
                                          max_new_tokens=suite.max_new_tokens)
        exam_out = out / _folder(exam.name, n)
        summary = evaluate_model(loaded.model, loaded.tokenizer, _resolve(suite_path, exam.path), TASK, exam_out,
                                 base=True, options=options, max_samples=exam.max_samples, label=loaded.label,
                                 exclude_contaminated=_resolve(suite_path, suite.exclude_contaminated))
        rows.append(compare(exam.name, exam.slice, exam_out, summary))
        if "contamination" in summary:
            rows[-1]["contaminated_dropped"] = summary["contamination"]["dropped"]
    result = {"suite": str(suite_path), "model": loaded.label, "test": "exact McNemar (binomial), two-sided",
              "exams": rows, "slices": slice_means(rows), "out_dir": str(out),
              "exclude_contaminated": _resolve(suite_path, suite.exclude_contaminated)}
    from doctorkit.evaluate.suite_chart import plot_suite
    result["files"] = plot_suite(rows, out)
    rundir.write_suite(out, result)
    return result


def format_suite(result: dict) -> str:
    def acc(part):
        return f"{part['accuracy']:.3f} [{part['ci95'][0]:.3f}, {part['ci95'][1]:.3f}]"

    lines = [f"suite {result['suite']}: {result['model']} (tuned) vs its base; 95% Wilson intervals; {result['test']}",
             f"{'exam':<20}{'slice':<9}{'n':>5}{'tuned':>24}{'base':>24}{'diff':>9}{'p':>9}"]
    for row in result["exams"]:
        mark = " *" if row["mcnemar"]["p_value"] < SIGNIFICANT else ""
        lines.append(f"{row['name']:<20}{row['slice']:<9}{row['samples']:>5}{acc(row['tuned']):>24}{acc(row['base']):>24}"
                     f"{row['difference']:>+9.3f}{row['mcnemar']['p_value']:>9.4f}{mark}")
    for slice_, mean in result["slices"].items():
        lines.append(f"{slice_ + ' (mean)':<29}{mean['exams']:>5}{mean['tuned']:>24.3f}{mean['base']:>24.3f}"
                     f"{mean['difference']:>+9.3f}")
    dropped = sum(row.get("contaminated_dropped", 0) for row in result["exams"])
    if result.get("exclude_contaminated"):
        lines.append(f"dropped {dropped} contaminated items (sharing >= 13 characters with {result['exclude_contaminated']})")
    lines.append(f"* p < {SIGNIFICANT}; wrote {result['out_dir']}/ ({rundir.SUITE}, {', '.join(result['files'])}, one folder per exam)")
    return "\n".join(lines)
