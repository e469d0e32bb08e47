"""`python -m doctorkit.cost RECIPE`: peak GPU memory, hours and money for a recipe, before renting a GPU.

Memory is a breakdown of named components (doctorkit.cost.memory), time is FLOPs over the GPU's peak times an
efficiency factor calibrated from measured GPU runs (doctorkit.cost.speed), money is hours times the hourly price.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from doctorkit.cost.catalog import GPUS, find_gpu
from doctorkit.cost.estimate import auto_batch, estimate, largest_batch_that_fits
from doctorkit.cost.report import render
from doctorkit import argtypes
from doctorkit.errors import DoctorKitError, cli_main
from doctorkit.recipe import recipe_arguments, recipe_from_args

__all__ = ["auto_batch", "estimate", "largest_batch_that_fits", "main", "run"]


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="doctorkit cost", description=__doc__.splitlines()[0])
    recipe_arguments(parser)
    parser.add_argument("--gpu", help="estimate for this GPU (" + ", ".join(g.name for g in GPUS) + ")")
    parser.add_argument("--price-per-hour", type=argtypes.non_negative_float, help="your hourly USD price for --gpu")
    parser.add_argument("--samples", type=argtypes.positive_int, help="scale the recipe's data to N samples (same length mix)")
    parser.add_argument("--tokens-per-sample", type=argtypes.positive_int,
                        help="average tokens per sample, instead of reading the data (use with --samples)")
    parser.add_argument("--results", type=lambda text: Path(argtypes.existing_path(text)), help="folder of measured GPU runs to calibrate from, e.g. bench/results "
                        "(default: the runs shipped in doctorkit/cost/measured)")
    parser.add_argument("--auto-batch", action="store_true",
                        help="estimate with the largest train.batch_size that fits --gpu (or the cheapest GPU), "
                             "train.grad_accum set to keep the effective batch")
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
    recipe = recipe_from_args(args)
    result = estimate(recipe, args)
    if args.auto_batch:
        result = estimate_with_auto_batch(recipe, args, result)
    print(json.dumps(result, indent=2, ensure_ascii=False) if args.json else render(result))
    return 0


def estimate_with_auto_batch(recipe, args, first: dict) -> dict:
    """Re-estimate with the chosen GPU's auto batch (doctorkit.cost.estimate.auto_batch) written into the recipe."""
    row = next((r for r in first["gpus"] if r["gpu"] == first["gpu"]), None)
    if row is None or row["auto_batch_size"] == 0:
        raise DoctorKitError("--auto-batch: not even train.batch_size=1 fits " + (first["gpu"] or "any GPU of the catalog"))
    recipe.train.batch_size, recipe.train.grad_accum = row["auto_batch_size"], row["auto_grad_accum"]
    args.gpu = args.gpu or find_gpu(row["gpu"])
    result = estimate(recipe, args)
    result["assumptions"].insert(0, f"--auto-batch: train.batch_size={recipe.train.batch_size} "
                                    f"train.grad_accum={recipe.train.grad_accum} on {row['gpu']} (same effective batch)")
    return result


def run(argv: list[str] | None = None) -> None:
    cli_main(main, argv)
