"""Score a run: `python -m doctorkit.evaluate RUN_DIR|MODEL --data FILE --task dialog|mcq [--base] [--json]`,
or tuned vs base on several exams: `python -m doctorkit.evaluate RUN_DIR --suite SUITE.yaml`."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from doctorkit import argtypes
from doctorkit.errors import DoctorKitError, cli_main
from doctorkit.evaluate.tasks import SHARED, available_tasks, get_task


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m doctorkit.evaluate", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="tasks (--task NAME; its options: --option KEY=VALUE):\n"
                                            + "\n".join(map(_task_line, available_tasks())))
    parser.add_argument("target", help="run directory, exported model folder, hub id, or builtin:tiny")
    parser.add_argument("--data", help="evaluation file (JSONL or JSON list); mcq: an exam file or folder in any "
                                       "layout; canary: defaults to RUN_DIR/canaries.jsonl")
    parser.add_argument("--task", choices=available_tasks())
    parser.add_argument("--suite", help="SUITE.yaml: several exams, tuned vs base, one table (doctorkit/evaluate/suite.py)")
    parser.add_argument("--base", action="store_true", help="also evaluate the base model (adapter off), print the difference")
    parser.add_argument("--json", action="store_true", help="print metrics.json instead of the table")
    parser.add_argument("--out", help="results folder (default: RUN_DIR/eval/<task>-<data name>)")
    parser.add_argument("--max-samples", type=argtypes.positive_int, help="score only the first N usable records")
    parser.add_argument("--batch-size", type=argtypes.positive_int, default=8, help="prompts (dialog) or options (mcq) per forward pass")
    parser.add_argument("--max-new-tokens", type=argtypes.positive_int, default=256)
    parser.add_argument("--repetition-penalty", type=argtypes.penalty, default=1.0,
                        help="1.0 (default) measures the model's own repetition instead of hiding it")
    parser.add_argument("--system", help="system prompt (default: the run's data.system_prompt)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of the task (repeatable); each task's options are listed below, "
                             "the flags of some in their own group")
    parser.add_argument("--exclude-contaminated", metavar="TRAIN_FILE",
                        help="drop exam items sharing >= 13 characters with this training file (data overlap)")
    parser.add_argument("--device", help="cuda, cpu, ... (default: cuda when available)")
    for name in available_tasks():
        task_flags(parser, get_task(name))
    return parser.parse_args(argv)


def _task_line(name: str) -> str:
    task = get_task(name)
    own = task.own_options()
    return f"  {name:<8} {task.SUMMARY}" + (f"\n  {'':<8} options: {', '.join(own)}" if own else "")


def task_flags(parser, task) -> None:
    """A group per task: the options its Options fields name a flag for (--mcq-mode, --shots, ...), each stored
    under `option:FIELD` and unset unless given, so only flags given on the command line reach the task."""
    declared = [f for f in dataclasses.fields(task.Options) if f.name not in SHARED and f.metadata.get("flag")]
    group = parser.add_argument_group(f"{task.name} options (--task {task.name})") if declared else None
    for field in declared:
        kind = {"action": "store_const", "const": True} if field.type in (bool, "bool") else {"metavar": "VALUE"}
        default = f" (default: {field.default})" if field.default not in (None, False) else ""
        try:
            group.add_argument(field.metadata["flag"], dest=f"option:{field.name}", default=None,
                               help=field.metadata.get("help", "") + default, **kind)
        except argparse.ArgumentError:   # another task declared the flag first: it reaches whichever task is chosen
            pass


def option_values(args) -> dict:
    """The task's options from --option KEY=VALUE and from its flags, as given (the task converts them)."""
    values = {key.split(":", 1)[1]: value for key, value in vars(args).items()
              if key.startswith("option:") and value is not None}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DoctorKitError(f"--option {item}: expected KEY=VALUE")
        values[key.strip()] = value
    return values


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from doctorkit.evaluate.report import format_summary
    from doctorkit.evaluate.runner import evaluate

    if args.suite:
        from doctorkit.evaluate.suite import format_suite, run_suite
        suite = run_suite(args.target, args.suite, out_dir=args.out, device=args.device, batch_size=args.batch_size)
        print(json.dumps(suite, indent=2, ensure_ascii=False) if args.json else format_suite(suite))
        return 0
    if not args.task:
        raise DoctorKitError(f"give --task ({', '.join(available_tasks())}) with --data FILE, or --suite SUITE.yaml")
    if args.data is None:   # a task whose data lives in the run directory (canary) names its file
        default = getattr(get_task(args.task), "DEFAULT_DATA", None)
        if default is None or not Path(args.target).is_dir():
            raise DoctorKitError(f"--data is required for --task {args.task}")
        args.data = str(Path(args.target) / default)
    options = get_task(args.task).options(option_values(args), max_new_tokens=args.max_new_tokens,
                                          batch_size=args.batch_size, repetition_penalty=args.repetition_penalty,
                                          system_prompt=args.system)
    summary = evaluate(args.target, args.data, args.task, out_dir=args.out, base=args.base, options=options,
                       max_samples=args.max_samples, device=args.device, exclude_contaminated=args.exclude_contaminated)
    print(json.dumps(summary, indent=2, ensure_ascii=False) if args.json else format_summary(summary))
    return 0


def run(argv: list[str] | None = None) -> None:
    cli_main(main, argv)
