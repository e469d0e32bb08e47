"""`python -m translate cost RECIPE`: what distillation cost, against translating everything with the teacher.

Reads the reports the other steps left in work_dir. The all-teacher estimate scales the seed set's own
token counts: prompt tokens per character sent (system prompt + English text, both English, so one
rate) and completion tokens per English character, applied to the bulk run's segments and characters.
Writes cost.json and cost.png (two bars: distillation vs teacher-only).
"""
from __future__ import annotations

import json

from doctorkit import atomic
from doctorkit.errors import DoctorKitError
from translate.recipe import TranslateRecipe, WorkFiles
from translate.seed import price


def _load(path, step: str) -> dict:
    if not path.is_file():
        raise DoctorKitError(f"{path}: missing; run `python -m translate {step}` first")
    return json.loads(path.read_text(encoding="utf-8"))


def estimate(recipe: TranslateRecipe) -> dict:
    files, teacher = WorkFiles(recipe), recipe.teacher
    seed, distill, bulk = (_load(files.seed_report, "seed"), _load(files.distill_report, "distill"),
                           _load(files.run_report, "run"))
    sent_chars = seed["unique_segments"] * len(teacher.prompt) + seed["source_chars"]
    prompt_rate = seed["prompt_tokens"] / max(1, sent_chars)
    completion_rate = seed["completion_tokens"] / max(1, seed["source_chars"])
    est_prompt = round(prompt_rate * (bulk["segments"] * len(teacher.prompt) + bulk["source_chars"]))
    est_completion = round(completion_rate * bulk["source_chars"])
    hourly = recipe.cost.gpu_price_per_hour
    report = {
        "teacher_model": seed["teacher_model"], "seed_records": seed["records"], "seed_segments": seed["unique_segments"],
        "seed_tokens": seed["prompt_tokens"] + seed["completion_tokens"], "seed_teacher_usd": seed["cost_usd"],
        "train_seconds": distill["train_seconds"], "train_usd": distill["train_seconds"] / 3600 * hourly,
        "bulk_records": bulk["records"], "bulk_translated": bulk["translated"], "bulk_segments": bulk["segments"],
        "bulk_seconds": bulk["seconds"], "bulk_usd": bulk["seconds"] / 3600 * hourly,
        "teacher_only_tokens_est": est_prompt + est_completion,
        "teacher_only_usd_est": price(teacher, est_prompt, est_completion),
    }
    report["distillation_usd"] = report["seed_teacher_usd"] + report["train_usd"] + report["bulk_usd"]
    return report


def cost(recipe: TranslateRecipe) -> dict:
    r = estimate(recipe)
    files = WorkFiles(recipe)
    atomic.write_text(files.cost, json.dumps(r, indent=2))
    t = recipe.teacher
    rows = [
        ("seed set, teacher", f"{r['seed_records']:,} records, {r['seed_segments']:,} segments, "
                              f"{r['seed_tokens']:,} tokens", r["seed_teacher_usd"]),
        ("student training", f"{r['train_seconds']:,.1f} s", r["train_usd"]),
        ("bulk, student", f"{r['bulk_records']:,} records, {r['bulk_segments']:,} segments, "
                          f"{r['bulk_seconds']:,.1f} s", r["bulk_usd"]),
        ("distillation total", "", r["distillation_usd"]),
        ("bulk, teacher only", f"{r['bulk_records']:,} records, ~{r['teacher_only_tokens_est']:,} tokens (estimated)",
         r["teacher_only_usd_est"]),
    ]
    lines = [f"cost report: teacher {r['teacher_model']} at ${t.price_input_per_1m:g} in / "
             f"${t.price_output_per_1m:g} out per 1M tokens; student machine ${recipe.cost.gpu_price_per_hour:g}/h"]
    lines += [f"  {label:<20}{what:<52}${usd:>9.4f}" for label, what, usd in rows]
    print("\n".join(lines))
    _plot(r, files.root / "cost.png")
    return r


def _plot(r: dict, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3))
    parts = [("seed (teacher)", r["seed_teacher_usd"]), ("training", r["train_usd"]), ("bulk (student)", r["bulk_usd"])]
    left = 0.0
    for label, value in parts:
        ax.barh("distillation", value, left=left, label=label)
        left += value
    ax.barh("teacher only (est.)", r["teacher_only_usd_est"], color="grey")
    ax.set_xlabel("USD")
    ax.set_title(f"Translating {r['bulk_records']:,} records")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
