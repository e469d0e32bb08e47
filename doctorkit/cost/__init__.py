"""`python -m doctorkit.cost RECIPE`: peak GPU memory, hours and money for a recipe, before renting a GPU.

Memory is a breakdown of named components (doctorkit.cost.memory), time is FLOPs over the GPU's peak times an
efficiency factor calibrated from measured GPU runs (doctorkit.cost.speed), money is hours times the hourly price.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from doctorkit.cost.catalog import GPUS, find_gpu
from doctorkit.cost.estimate import estimate
from doctorkit.cost.report import render
from doctorkit.errors import DoctorKitError, cli_main
from doctorkit.recipe import recipe_arguments, recipe_from_args

__all__ = ["estimate", "main", "run"]


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="doctorkit cost", description=__doc__.splitlines()[0])
    recipe_arguments(parser)
    parser.add_argument("--gpu", help="estimate for this GPU (" + ", ".join(g.name for g in GPUS) + ")")
    parser.add_argument("--price-per-hour", type=float, help="your hourly USD price for --gpu")
    parser.add_argument("--samples", type=int, help="scale the recipe's data to N samples (same length mix)")
    parser.add_argument("--tokens-per-sample", type=int,
                        help="average tokens per sample, instead of reading the data (use with --samples)")
    parser.add_argument("--results", type=Path, help="folder of measured GPU runs to calibrate from, e.g. bench/results "
                        "(default: the runs shipped in doctorkit/cost/measured)")
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON (all sizes in bytes)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.price_per_hour is not None and not args.gpu:
        raise DoctorKitError("--price-per-hour: name the GPU it is for with --gpu")
    for flag in ("samples", "tokens_per_sample"):
        if getattr(args, flag) is not None and getattr(args, flag) <= 0:
            raise DoctorKitError(f"--{flag.replace('_', '-')}: must be a positive number")
    if args.price_per_hour is not None and args.price_per_hour < 0:
        raise DoctorKitError("--price-per-hour: must not be negative")
    args.gpu = find_gpu(args.gpu) if args.gpu else None
    result = estimate(recipe_from_args(args), args)
    print(json.dumps(result, indent=2, ensure_ascii=False) if args.json else render(result))
    return 0


def run(argv: list[str] | None = None) -> None:
    cli_main(main, argv)
