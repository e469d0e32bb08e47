"""Evaluation: dialog metrics and multiple-choice accuracy for a run, optionally beside its base model.

CLI: `python -m doctorkit.evaluate RUN_DIR|MODEL --data FILE --task dialog|mcq [--option KEY=VALUE] [--base] [--json]`.
Python: `evaluate(target, data, task, ...)`, `evaluate_model(model, tokenizer, data, task, out_dir, ...)`
(the demo's compare view), `evaluate_after_training(run_dir, recipe)` (doctorkit.train, eval.* keys).
Tasks (each with its own options) live in doctorkit/evaluate/tasks/, one file each, or come from
`register(name, task)`; exam layouts (CMB, CMExam, MedQA, ...) in doctorkit/evaluate/exams/, one file each;
`--suite SUITE.yaml` (tuned vs base on several exams) in suite.py.
"""
from doctorkit.evaluate.command import main, run
from doctorkit.evaluate.report import format_summary
from doctorkit.evaluate.runner import check_eval_config, evaluate, evaluate_after_training, evaluate_model
from doctorkit.evaluate.tasks import EvalOptions, available_tasks, get_task, register, unregister

__all__ = ["main", "run", "evaluate", "evaluate_model", "evaluate_after_training", "check_eval_config",
           "format_summary", "EvalOptions",
           "available_tasks", "get_task", "register", "unregister"]
