"""`python -m translate <step> RECIPE [--set key=value]`: the translation-distillation pipeline.

Each step's module is imported only when it runs, so `seed` and `score` never load torch.
"""
from __future__ import annotations

import argparse
import importlib

from doctorkit import atomic
from doctorkit.errors import cli_main
from doctorkit.recipe import load_recipe, recipe_arguments
from translate.recipe import TranslateRecipe

# step: (module, function, one-line summary)
STEPS = {
    "seed": ("translate.seed", "seed", "teacher API translates a sample of the English data -> pairs.jsonl"),
    "distill": ("translate.distill", "distill", "fine-tune the student seq2seq model on the pairs, BLEU/chrF vs teacher"),
    "run": ("translate.bulk", "bulk", "translate the whole dataset with the student (resumable shards)"),
    "score": ("translate.score", "score", "BLEU/chrF of a translation file against references (sacrebleu)"),
    "cost": ("translate.cost", "cost", "teacher cost of the seed set, student time, teacher-only estimate"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m translate", description="Translation distillation: English medical data -> Chinese, "
        "cheaply: a teacher API translates a sample, a small student translates the rest.",
        epilog="example: python -m translate seed recipes/translate.yaml --set seed_set.n=100")
    steps = parser.add_subparsers(dest="step", required=True, metavar="STEP",
                                  title="steps (run in this order; each reads recipes/translate.yaml)")
    for name, (_, _, summary) in STEPS.items():
        step = recipe_arguments(steps.add_parser(name, help=summary, description=summary))
        if name == "distill":
            step.add_argument("--allow-partial", action="store_true",
                              help="train even though the seed step did not finish (pairs.jsonl is incomplete)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    recipe = load_recipe(args.recipe, args.overrides, schema=TranslateRecipe)
    if args.step != "score":  # every other step writes under work_dir: fail now, not after the teacher or the model
        atomic.check_writable(recipe.work_dir, "work_dir")
    module, function, _ = STEPS[args.step]
    extra = {"allow_partial": args.allow_partial} if args.step == "distill" else {}
    getattr(importlib.import_module(module), function)(recipe, **extra)
    return 0


def run(argv: list[str] | None = None) -> None:
    cli_main(main, argv)
