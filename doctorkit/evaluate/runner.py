"""Evaluate a model on a task, optionally beside its base, and write the results folder:

    OUT/predictions.jsonl        one record per sample (dialog: prompt, reference, prediction;
                                 mcq: id, subject, type, gold, pred, correct, credit, and the
                                 option scores (loglik) or every chain's reply and letters (generate))
    OUT/base_predictions.jsonl   the same for the base model (--base)
    OUT/metrics.json             every number printed, recomputable from the files above
    OUT/eval.png                 the headline numbers as a chart
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

from doctorkit import atomic
from doctorkit.errors import DoctorKitError
from doctorkit.evaluate.loading import Target, has_adapter, load_target
from doctorkit.evaluate.records import write_jsonl
from doctorkit.evaluate.report import plot_summary
from doctorkit.evaluate.tasks import EvalOptions, get_task
from doctorkit.rundir import read_metrics, write_metrics

PREDICTIONS, BASE_PREDICTIONS, METRICS_FILE, PLOT = ("predictions.jsonl", "base_predictions.jsonl",
                                                     "metrics.json", "eval.png")


def default_out_dir(target: Target, task: str, data: str | Path) -> Path:
    folder = f"{task}-{Path(data).stem}"
    if target.run_dir is not None:
        return target.run_dir / "eval" / folder
    return Path("runs") / "eval" / re.sub(r"[^A-Za-z0-9._-]+", "_", target.label) / folder


def drop_contaminated(items: list[dict], train_path) -> tuple[list[dict], dict]:
    """Exam items minus those sharing >= MIN_CHARS characters with the training file (doctorkit.data.overlap)."""
    from doctorkit.data.overlap import MIN_CHARS, check

    flagged = {row["id"] for row in check(train_path, items)["flagged"]}
    kept = [item for item in items if item["id"] not in flagged]
    if not kept:
        raise DoctorKitError(f"--exclude-contaminated {train_path}: every exam item shares >= {MIN_CHARS} characters with it")
    return kept, {"train": str(train_path), "min_chars": MIN_CHARS, "dropped": len(flagged),
                  "dropped_ids": sorted(flagged)}


def evaluate_model(model, tokenizer, data, task: str, out_dir, base: bool = False, options: EvalOptions | None = None,
                   max_samples: int | None = None, label: str = "model", scorer=None,
                   exclude_contaminated=None) -> dict:
    """Python API (also used by the demo's compare view): evaluate an already loaded model, write OUT, return
    the summary that metrics.json holds. `base=True` also scores the model with its adapter switched off."""
    task_module = get_task(task)
    options = options or EvalOptions()
    if base and not has_adapter(model):
        raise DoctorKitError(f"--base: {label} has no adapter to switch off (give a LoRA / QLoRA / P-tuning run directory)")
    loaded = task_module.load(data, max_samples, options)
    contamination = None
    if exclude_contaminated:
        if task != "mcq":
            raise DoctorKitError("--exclude-contaminated works with --task mcq (exam items)")
        loaded.items, contamination = drop_contaminated(loaded.items, exclude_contaminated)
    started = time.perf_counter()
    was_training = model.training
    model.eval()
    records = task_module.predict(model, tokenizer, loaded.items, options, scorer=scorer, desc=f"{task} (model)")
    base_records = None
    if base:
        with model.disable_adapter():
            base_records = task_module.predict(model, tokenizer, loaded.items, options, scorer=scorer, desc=f"{task} (base)")
    model.train(was_training)

    results = {"model": task_module.score(records)}
    if base_records is not None:
        results["base"] = task_module.score(base_records)
    summary = {
        "task": task, "data": str(data), "model": label, "options": options.as_dict(),
        "samples": len(loaded.items), "skipped": len(loaded.skipped), "skipped_examples": loaded.skipped[:5],
        "headline": task_module.HEADLINE, "results": results,
        "runtime_s": round(time.perf_counter() - started, 2),
    }
    if contamination:
        summary["contamination"] = contamination
    if base_records is not None:
        summary["difference"] = {key: round(results["model"][key] - results["base"][key], 4)
                                 for key in task_module.HEADLINE}

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / PREDICTIONS, records)
    summary["files"] = {"model": PREDICTIONS}
    if base_records is not None:
        write_jsonl(out_dir / BASE_PREDICTIONS, base_records)
        summary["files"]["base"] = BASE_PREDICTIONS
    summary["out_dir"] = str(out_dir)
    plot_summary(summary, out_dir / PLOT)
    atomic.write_text(out_dir / METRICS_FILE, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary


def evaluate(target: str, data, task: str, out_dir=None, base: bool = False, options: EvalOptions | None = None,
             max_samples: int | None = None, device: str | None = None, exclude_contaminated=None) -> dict:
    """Python API: load a run directory / model folder / model name, evaluate it, return the summary."""
    if not Path(data).exists():
        raise DoctorKitError(f"{data}: evaluation data file not found")
    options = options or EvalOptions()
    get_task(task).load(data, 1, options)  # wrong file for the task: say so before loading a large model
    if out_dir is not None:
        atomic.check_writable(out_dir, "--out")
    loaded = load_target(target, device)
    if options.system_prompt is None:
        options.system_prompt = loaded.system_prompt
    out_dir = out_dir or default_out_dir(loaded, task, data)
    return evaluate_model(loaded.model, loaded.tokenizer, data, task, out_dir, base, options, max_samples, loaded.label,
                          exclude_contaminated=exclude_contaminated)


def check_eval_config(recipe) -> None:
    """Before training: the eval.* file exists and its first records fit eval.task (one-line error if not)."""
    get_task(recipe.eval.task).load(recipe.eval.data, max_samples=1)


def evaluate_after_training(run_dir, recipe) -> dict:
    """Called by doctorkit.train when the recipe sets eval.data: evaluates the finished run with the eval.*
    keys, writes RUN_DIR/eval/<task>-<data>/, and records the summary under "eval" in RUN_DIR/metrics.json.
    Returns {} when eval.data is unset."""
    cfg = recipe.eval
    if not cfg.data:
        return {}
    options = EvalOptions(max_new_tokens=cfg.max_new_tokens)
    summary = evaluate(str(run_dir), cfg.data, cfg.task, base=cfg.base, options=options, max_samples=cfg.max_samples)
    metrics_path = Path(run_dir) / "metrics.json"
    metrics = read_metrics(run_dir) if metrics_path.is_file() else {}
    metrics["eval"] = {k: summary[k] for k in ("task", "data", "samples", "skipped", "results", "out_dir")
                       if k in summary} | ({"difference": summary["difference"]} if "difference" in summary else {})
    write_metrics(run_dir, metrics)
    return summary

