"""Evaluate a model on a task, optionally beside its base, and write the results folder:

    OUT/predictions.jsonl        one record per sample (dialog: prompt, reference, prediction;
                                 mcq: id, subject, type, gold, pred, correct, credit, and the
                                 option scores (loglik) or every chain's reply and letters (generate))
    OUT/base_predictions.jsonl   the same for the base model (--base)
    OUT/metrics.json             every number printed, recomputable from the files above
    OUT/eval.png                 the headline numbers as a chart
"""
from __future__ import annotations

import re
import time
from pathlib import Path

from doctorkit import atomic, rundir
from doctorkit.errors import DoctorKitError
from doctorkit.evaluate.loading import Target, has_adapter, load_target
from doctorkit.evaluate.report import plot_summary
from doctorkit.evaluate.tasks import EvalOptions, available_tasks, get_task


def default_out_dir(target: Target, task: str, data: str | Path) -> Path:
    folder = f"{task}-{Path(data).stem}"
    if target.run_dir is not None:
        return rundir.eval_dir(target.run_dir, folder)
    return rundir.eval_dir(None, re.sub(r"[^A-Za-z0-9._-]+", "_", target.label), folder)


def evaluate_model(model, tokenizer, data, task: str, out_dir, base: bool = False, options: EvalOptions | None = None,
                   max_samples: int | None = None, label: str = "model", scorer=None,
                   exclude_contaminated=None) -> dict:
    """Python API (also used by the demo's compare view): evaluate an already loaded model, write OUT, return
    the summary that metrics.json holds. `base=True` also scores the model with its adapter switched off."""
    task_module = get_task(task)
    options = task_module.given(options)
    if base and not has_adapter(model):
        raise DoctorKitError(f"--base: {label} has no adapter to switch off (give a LoRA / QLoRA / P-tuning run directory)")
    loaded = task_module.load(data, max_samples, options)
    contamination = None
    if exclude_contaminated:
        if task_module.drop_contaminated is None:
            able = [name for name in available_tasks() if get_task(name).drop_contaminated is not None]
            raise DoctorKitError(f"--exclude-contaminated works with --task {' / '.join(able)}, not {task}")
        loaded.items, contamination = task_module.drop_contaminated(loaded.items, exclude_contaminated)
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

    records_by_model = {"model": records} | ({"base": base_records} if base_records is not None else {})
    rundir.write_eval(out_dir, summary, records_by_model, plot_summary)
    return summary


def evaluate(target: str, data, task: str, out_dir=None, base: bool = False, options: EvalOptions | None = None,
             max_samples: int | None = None, device: str | None = None, exclude_contaminated=None) -> dict:
    """Python API: load a run directory / model folder / model name, evaluate it, return the summary."""
    if not Path(data).exists():
        raise DoctorKitError(f"{data}: evaluation data file not found")
    options = get_task(task).given(options)
    get_task(task).load(data, 1, options)  # wrong file for the task: say so before loading a large model
    if out_dir is not None:
        atomic.check_writable(out_dir, "--out")
    loaded = load_target(target, device)
    if options.system_prompt is None:
        options.system_prompt = loaded.system_prompt
    out_dir = out_dir or default_out_dir(loaded, task, data)
    return evaluate_model(loaded.model, loaded.tokenizer, data, task, out_dir, base, options, max_samples, loaded.label,
                          exclude_contaminated=exclude_contaminated)


def eval_options(cfg) -> EvalOptions:
    """The recipe's eval.options for eval.task (one-line error naming the task's options if one is unknown)."""
    return get_task(cfg.task).options(cfg.options, max_new_tokens=cfg.max_new_tokens)


def check_eval_config(recipe) -> None:
    """Before training: eval.options fit eval.task, the eval.* file exists and its first records fit the task."""
    get_task(recipe.eval.task).load(recipe.eval.data, 1, eval_options(recipe.eval))


def evaluate_after_training(run_dir, recipe) -> dict:
    """Called by doctorkit.train when the recipe sets eval.data: evaluates the finished run with the eval.*
    keys, writes RUN_DIR/eval/<task>-<data>/, and records the summary under "eval" in RUN_DIR/metrics.json.
    Returns {} when eval.data is unset."""
    cfg = recipe.eval
    if not cfg.data:
        return {}
    summary = evaluate(str(run_dir), cfg.data, cfg.task, base=cfg.base, options=eval_options(cfg),
                       max_samples=cfg.max_samples)
    rundir.record_eval(run_dir, {k: summary[k] for k in ("task", "data", "samples", "skipped", "results", "out_dir",
                                                         "difference") if k in summary})
    return summary

