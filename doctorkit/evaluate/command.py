"""Score a run: `python -m doctorkit.evaluate RUN_DIR|MODEL --data FILE --task dialog|mcq [--base] [--json]`,
or tuned vs base on several exams: `python -m doctorkit.evaluate RUN_DIR --suite SUITE.yaml`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from doctorkit import argtypes, sampling
from doctorkit.errors import DoctorKitError, cli_main
from doctorkit.evaluate.tasks import EvalOptions, available_tasks, get_task


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m doctorkit.evaluate", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="tasks:\n" + "\n".join(f"  {n:<8} {get_task(n).SUMMARY}" for n in available_tasks()))
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
    parser.add_argument("--mcq-mode", choices=["loglik", "generate"], default="loglik",
                        help="loglik: argmax option log-likelihood; generate: parse the generated letter")
    parser.add_argument("--mcq-score", choices=["letter", "text"], default="letter",
                        help="loglik target: the option letter (sum log-prob) or its text (mean log-prob per token)")
    exam = parser.add_argument_group("exams (--task mcq)")
    exam.add_argument("--format", default="auto", help="exam layout (default: detected): " + ", ".join(_layouts()))
    exam.add_argument("--shots", type=int, default=0, help="K solved dev questions before each question")
    exam.add_argument("--shots-from", help="dev/validation file or folder the shots come from (never the test items)")
    exam.add_argument("--cot", action="store_true", help="chain-of-thought: reason first, answer after 答案：")
    exam.add_argument("--samples", type=int, default=1, help="N sampled chains per question, majority vote")
    exam.add_argument("--temperature", type=float, default=sampling.TEMPERATURE,
                      help=f"sampling temperature for --samples (default {sampling.TEMPERATURE})")
    exam.add_argument("--seed", type=int, default=0, help="sampling seed for --samples")
    exam.add_argument("--multi-threshold", type=_threshold,
                      help="loglik, multi-answer: choose options with probability >= this (default 1/n options), "
                           "or 'calibrate' on the --shots-from dev file")
    exam.add_argument("--exclude-contaminated", metavar="TRAIN_FILE",
                      help="drop exam items sharing >= 13 characters with this training file (data overlap)")
    parser.add_argument("--device", help="cuda, cpu, ... (default: cuda when available)")
    return parser.parse_args(argv)


def _threshold(text: str):
    if text == "calibrate":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability or 'calibrate', got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a probability between 0 and 1, got {value}")
    return value


def _layouts() -> list[str]:
    from doctorkit.evaluate.exams import layout_names
    return layout_names()


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
    if args.samples < 1 or args.shots < 0:
        raise DoctorKitError("--samples must be >= 1 and --shots >= 0")
    options = EvalOptions(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                          repetition_penalty=args.repetition_penalty, system_prompt=args.system,
                          mcq_mode=args.mcq_mode, mcq_score=args.mcq_score, exam_format=args.format,
                          shots=args.shots, shots_from=args.shots_from, cot=args.cot, samples=args.samples,
                          temperature=args.temperature, seed=args.seed, multi_threshold=args.multi_threshold)
    summary = evaluate(args.target, args.data, args.task, out_dir=args.out, base=args.base, options=options,
                       max_samples=args.max_samples, device=args.device, exclude_contaminated=args.exclude_contaminated)
    print(json.dumps(summary, indent=2, ensure_ascii=False) if args.json else format_summary(summary))
    return 0


def run(argv: list[str] | None = None) -> None:
    cli_main(main, argv)
