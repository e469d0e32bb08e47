"""Score a run: `python -m doctorkit.evaluate RUN_DIR|MODEL --data FILE --task dialog|mcq [--base] [--json]`."""
from __future__ import annotations

import argparse
import json

from doctorkit import argtypes
from doctorkit.errors import cli_main
from doctorkit.evaluate.tasks import EvalOptions, available_tasks, get_task


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m doctorkit.evaluate", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="tasks:\n" + "\n".join(f"  {n:<8} {get_task(n).SUMMARY}" for n in available_tasks()))
    parser.add_argument("target", help="run directory, exported model folder, hub id, or builtin:tiny")
    parser.add_argument("--data", required=True, help="evaluation file (JSONL or JSON list)")
    parser.add_argument("--task", required=True, choices=available_tasks())
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
    parser.add_argument("--device", help="cuda, cpu, ... (default: cuda when available)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from doctorkit.evaluate.report import format_summary
    from doctorkit.evaluate.runner import evaluate

    options = EvalOptions(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                          repetition_penalty=args.repetition_penalty, system_prompt=args.system,
                          mcq_mode=args.mcq_mode, mcq_score=args.mcq_score)
    summary = evaluate(args.target, args.data, args.task, out_dir=args.out, base=args.base, options=options,
                       max_samples=args.max_samples, device=args.device)
    print(json.dumps(summary, indent=2, ensure_ascii=False) if args.json else format_summary(summary))
    return 0


def run(argv: list[str] | None = None) -> None:
    cli_main(main, argv)
