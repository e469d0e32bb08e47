"""`python -m doctorkit.data preview|stats RECIPE`: see what training will learn before paying for it.

preview  prints rendered samples with the supervised (loss-bearing) text marked 【like this】
         (green instead on a terminal, unless --plain).
stats    prints counts, skips by reason and token-length percentiles; --json for machines.
overlap  TRAIN_FILE EXAM_FILE: per exam item, the longest character run shared with the training data;
         items at or over --min-chars (13) are flagged (contamination; doctorkit/data/overlap.py).
"""
from __future__ import annotations

import argparse
import json
import sys

from doctorkit.data import IGNORE, percentiles, prepare
from doctorkit import argtypes
from doctorkit.errors import DoctorKitError, cli_main
from doctorkit.recipe import recipe_arguments, recipe_from_args

GREEN, RESET = "\033[32m", "\033[0m"


def _tokenizer_for(recipe):
    """The recipe model's tokenizer (only the tokenizer: previews need no weights)."""
    from doctorkit.model import load_tokenizer

    return load_tokenizer(recipe.model, recipe.trust_remote_code)


def marked_text(tokenizer, input_ids: list[int], labels: list[int], color: bool) -> str:
    """The sample's text with each supervised run of tokens wrapped in 【】 (or shown in green)."""
    parts, start = [], 0
    for end in range(1, len(input_ids) + 1):
        if end == len(input_ids) or (labels[end] != IGNORE) != (labels[start] != IGNORE):
            text = tokenizer.decode(input_ids[start:end])
            if labels[start] != IGNORE:
                text = f"{GREEN}{text}{RESET}" if color else f"【{text}】"
            parts.append(text)
            start = end
    return "".join(parts)


def preview(prepared, tokenizer, n: int, color: bool) -> None:
    print(prepared.report.summary())
    for index in range(min(n, len(prepared.train))):
        row = prepared.train[index]
        supervised = sum(label != IGNORE for label in row["labels"])
        print(f"\n--- train sample {index}: {len(row['input_ids'])} tokens, {supervised} supervised "
              f"({'green' if color else 'marked'}) ---")
        print(marked_text(tokenizer, row["input_ids"], row["labels"], color))


def stats_dict(report) -> dict:
    out = {key: getattr(report, key) for key in ("samples_used", "samples_skipped", "train_tokens",
                                                 "supervised_tokens", "eval_samples", "eval_tokens", "truncated",
                                                 "deid_replacements", "deid_records", "canaries")}
    out["train_length"] = percentiles(report.lengths)
    out["eval_length"] = percentiles(report.eval_lengths)
    out["problems"] = report.problems[:20]
    out["csv_columns"] = report.csv_columns
    return out


def print_stats(stats: dict) -> None:
    print(f"train samples      {stats['samples_used']}")
    print(f"eval samples       {stats['eval_samples']}")
    print(f"train tokens       {stats['train_tokens']:,} ({stats['supervised_tokens']:,} supervised)")
    print(f"eval tokens        {stats['eval_tokens']:,}")
    print(f"truncated          {stats['truncated']}")
    if stats["deid_records"]:
        print(f"de-identified      {stats['deid_records']} conversations: "
              + ", ".join(f"{kind} {n}" for kind, n in stats["deid_replacements"].items()))
    skipped = stats["samples_skipped"]
    print(f"skipped            {sum(skipped.values())}")
    for reason, count in sorted(skipped.items(), key=lambda kv: -kv[1]):
        print(f"  {reason:<16} {count}")
    for split in ("train", "eval"):
        p = stats[f"{split}_length"]
        print(f"{split} length (tokens) p50 {p['p50']}  p90 {p['p90']}  p99 {p['p99']}  max {p['max']}")
    for note in stats["csv_columns"]:
        print(f"CSV columns        {note}")
    for note in stats["problems"]:
        print(f"  {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m doctorkit.data", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    show = recipe_arguments(commands.add_parser("preview", help="rendered samples with supervised text marked"))
    show.add_argument("--n", type=argtypes.positive_int, default=3, help="how many training samples to print")
    show.add_argument("--plain", action="store_true", help="mark with 【】 even on a colour terminal")
    count = recipe_arguments(commands.add_parser("stats", help="counts, skips by reason, length percentiles"))
    count.add_argument("--json", action="store_true", help="print one JSON object")
    shared = commands.add_parser("overlap", help="exam items sharing long character runs with training data")
    shared.add_argument("train", help="training file (any format training reads)")
    shared.add_argument("exam", help="exam file or folder (any layout evaluate reads)")
    shared.add_argument("--format", default="auto", help="exam layout (default: detected)")
    shared.add_argument("--min-chars", type=int, default=13, help="flag items sharing a run this long")
    shared.add_argument("--json", action="store_true", help="print one JSON object (flagged items under 'flagged')")
    args = parser.parse_args(argv)
    if args.command == "overlap":
        return overlap_command(args)
    recipe = recipe_from_args(args)
    tokenizer = _tokenizer_for(recipe)
    prepared = prepare(recipe, tokenizer)
    if args.command == "preview":
        preview(prepared, tokenizer, args.n, color=sys.stdout.isatty() and not args.plain)
    elif args.json:
        print(json.dumps(stats_dict(prepared.report), ensure_ascii=False, indent=2))
    else:
        print_stats(stats_dict(prepared.report))
    return 0


def overlap_command(args) -> int:
    from doctorkit.data.overlap import check
    from doctorkit.evaluate.exams import read_exam  # exam layouts live with evaluation; only the CLI needs them

    items = read_exam(args.exam, args.format).items
    result = check(args.train, items, args.min_chars)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return 0
    print(f"{result['items_checked']} exam items checked against {args.train}: {len(result['flagged'])} share "
          f">= {args.min_chars} characters")
    for row in result["flagged"]:
        print(f"  {row['id']:<24} {row['longest']:>5}  {row['shared'][:60]}")
    return 0


def run(argv: list[str] | None = None) -> None:
    cli_main(main, argv)


if __name__ == "__main__":
    run()
