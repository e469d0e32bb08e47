"""Fine-tune a chat model from a recipe: `python -m doctorkit.train recipes/lora.yaml [--set k=v] [--resume]`.

The recipe's method names its training stage (doctorkit.methods STAGE); the stage runs in doctorkit.stages:
SFT (doctorkit/stages/sft.py: TRL's SFTTrainer) or DPO (doctorkit/stages/dpo.py: TRL's DPOTrainer), both in the
same run-directory lifecycle (doctorkit/stages/__init__.py).
"""
from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from doctorkit.errors import cli_main
from doctorkit.recipe import recipe_arguments, recipe_from_args
# Names kept here for callers of doctorkit.train (tests, bench): the SFT stage's trainer and the shared lifecycle.
from doctorkit.stages import (STAGES, collect_metrics, is_main_process, prepare_run_dir,  # noqa: F401
                              release_run_dir, shared_training_args)
from doctorkit.stages.sft import make_trainer, trainer_args  # noqa: F401


def parse_args(argv):
    parser = recipe_arguments(argparse.ArgumentParser(prog="python -m doctorkit.train", description=__doc__.splitlines()[0]))
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output_dir")
    parser.add_argument("--overwrite", action="store_true", help="delete an existing run in output_dir first")
    return parser.parse_args(argv)


def train(recipe, resume: bool = False, overwrite: bool = False) -> Path:
    """Train `recipe` under its method's stage."""
    from doctorkit.methods import get_method

    return importlib.import_module(STAGES[get_method(recipe.method).STAGE]).train(recipe, resume, overwrite)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    recipe = recipe_from_args(args)
    train(recipe, resume=args.resume, overwrite=args.overwrite)
    return 0


def run(argv: list[str] | None = None) -> None:
    cli_main(main, argv)


if __name__ == "__main__":
    run()
