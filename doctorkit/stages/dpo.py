"""Preference alignment: `python -m doctorkit.train recipes/dpo.yaml` with `method: dpo` runs TRL's DPOTrainer.

recipe -> preference pairs -> base model (+ the SFT run's adapter) -> DPOTrainer, for dpo.rounds rounds -> run dir.

Which model is the reference. DPO scores the policy against the model it starts from. We always hand
DPOTrainer a PeftModel whose trainable "default" adapter is the starting point (the SFT run's adapter, the
previous round's, or a fresh zero-update adapter); TRL 1.16 then copies it into a frozen "ref" adapter and
computes reference log-probs with "ref" active (DPOTrainer.__init__, "re-training an existing adapter").
So the reference is exactly the SFT model. Passing the base model with a peft_config instead would make TRL
use the adapter-disabled model, i.e. the BASE, as reference. We prefer the frozen copy to merging the SFT
adapter into the base and adding a new one because a 4-bit (QLoRA) base cannot take a lossless merge, and
because the result stays a single adapter on the original base: every later tool loads it like a LoRA run,
and rounds chain by loading the previous round's adapter. The price is one extra LoRA forward per step.

Run directory as for SFT; with rounds > 1 each finished round's adapter and metrics also stay in
rounds/round-K/ (the next round starts from it, and --resume skips it).
"""
from __future__ import annotations

import gc
import os
import shutil
import time
from pathlib import Path

import torch

from doctorkit import atomic
from doctorkit.errors import DoctorKitError
from doctorkit.noise import log_to
from doctorkit.rundir import ADAPTER, CHECKPOINTS, TB, TOKENIZER, resumable_checkpoint, write_metrics
from doctorkit.stages import (collect_metrics, evaluate_after, finish_run, gathered_trainable_weights, is_main_process,
                              run_stage, shared_training_args)

ROUNDS = "rounds"


def resolve_from_run(recipe):
    """With dpo.from_run, the base model, adapter shape and quantization are the SFT run's; record them."""
    from doctorkit.rundir import read_run_recipe

    sft_dir = recipe.dpo.from_run
    if not sft_dir:
        return recipe
    sft = read_run_recipe(sft_dir)
    from doctorkit.methods import dpo as dpo_method

    if sft.method not in dpo_method.CONTINUES:
        raise DoctorKitError(f"dpo.from_run: {sft_dir} is a {sft.method} run; DPO continues LoRA or QLoRA adapters")
    if "model" in recipe.model_fields_set and recipe.model != sft.model:
        raise DoctorKitError(f"dpo.from_run: {sft_dir} was trained on '{sft.model}' but this recipe names model "
                             f"'{recipe.model}'; remove `model` or make them match")
    base_method = dpo_method.base_method_of(sft)
    return recipe.model_copy(update={"model": sft.model, "lora": sft.lora, "quantization": sft.quantization,
                                     "dpo": recipe.dpo.model_copy(update={"base_method": base_method})})


def round_data_path(recipe, k: int) -> str | None:
    """Round k (1-based) reads dpo.round_data[k-2] when given, else data.path (None)."""
    extra = recipe.dpo.round_data
    return extra[k - 2] if k >= 2 and k - 2 < len(extra) else None


def dpo_args(recipe, run_dir: Path, k: int, has_eval: bool, dtype: torch.dtype):
    from trl import DPOConfig

    return DPOConfig(**shared_training_args(recipe, run_dir / CHECKPOINTS / f"round-{k}", has_eval, dtype),
                     beta=recipe.dpo.beta, loss_type=[recipe.dpo.loss_type])


def build_trainer(recipe, run_dir: Path, k: int, start_adapter: Path | None, data, tokenizer):
    """The DPOTrainer of round k: policy = start adapter (trainable), reference = its frozen copy."""
    from trl import DPOTrainer

    from doctorkit.methods import get_method
    from doctorkit.model import load_model_and_tokenizer

    method = get_method("dpo")
    model, _ = load_model_and_tokenizer(recipe, extra_kwargs=method.load_kwargs(recipe))
    if start_adapter is None:
        model = method.wrap(model, recipe)
    else:
        model = method.continue_adapter(model, start_adapter, recipe)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / TB / f"round-{k}")
    trainer = DPOTrainer(model=model, args=dpo_args(recipe, run_dir, k, data.eval is not None, model.dtype),
                         train_dataset=data.train, eval_dataset=data.eval, processing_class=tokenizer)
    if "ref" not in trainer.model.peft_config:  # our reference guarantee rests on TRL making this copy
        raise RuntimeError("TRL did not create the frozen 'ref' adapter; the reference would be the base model")
    return trainer


def round_metrics(trainer, report, runtime: float, k: int, data_source: str) -> dict:
    metrics = collect_metrics(trainer, report, runtime, trainer.model)
    history = metrics["log_history"]
    for key, name in (("rewards/accuracies", "reward_accuracy"), ("rewards/margins", "reward_margin")):
        values = [h[key] for h in history if key in h]
        metrics[f"{name}_first"] = values[0] if values else None
        metrics[f"{name}_last"] = values[-1] if values else None
    evals = [h for h in history if "eval_rewards/accuracies" in h]
    metrics["eval_reward_accuracy"] = evals[-1]["eval_rewards/accuracies"] if evals else None
    return {"round": k, "data": data_source, **metrics}


def combined_history(rounds: list[dict]) -> list[dict]:
    """All rounds' log entries on one step axis, each tagged with its round (for loss.png and TensorBoard-less reading)."""
    out, offset = [], 0
    for r in rounds:
        for h in r["log_history"]:
            out.append({**h, "round": r["round"], "step": h.get("step", 0) + offset})
        offset += r["global_step"]
    return out


def summarize(rounds: list[dict]) -> dict:
    """metrics.json: the SFT keys (first/last over all rounds), reward series per logging step, and each round."""
    first, last = rounds[0], rounds[-1]
    history = combined_history(rounds)
    steps = [{"round": h["round"], "step": h["step"], "loss": h["loss"], "reward_margin": h.get("rewards/margins"),
              "reward_accuracy": h.get("rewards/accuracies")} for h in history if "loss" in h]
    return {**{k: v for k, v in last.items() if k not in ("round", "data", "log_history")},
            "train_loss_first": first["train_loss_first"], "reward_accuracy_first": first["reward_accuracy_first"],
            "reward_margin_first": first["reward_margin_first"],
            "global_step": sum(r["global_step"] for r in rounds),
            "runtime_s": round(sum(r["runtime_s"] for r in rounds), 3),
            "rounds": rounds, "dpo_steps": steps, "log_history": history}


def plot_dpo(history: list[dict], path: Path, title: str = "") -> None:
    """loss.png for DPO: loss on top, reward margin and accuracy below; dashed lines mark new rounds."""
    from doctorkit.plots import plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), dpi=110, sharex=True)
    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    margins = [(h["step"], h["rewards/margins"]) for h in history if "rewards/margins" in h]
    accuracy = [(h["step"], h["rewards/accuracies"]) for h in history if "rewards/accuracies" in h]
    if train:
        top.plot(*zip(*train), label="DPO loss", color="#1f77b4")
    if evals:
        top.plot(*zip(*evals), "o-", label="eval loss", color="#d62728")
    top.set_ylabel("loss")
    top.set_title(title, fontsize=9)
    if margins:
        bottom.plot(*zip(*margins), label="reward margin (chosen - rejected)", color="#2ca02c")
    bottom.set_ylabel("reward margin")
    right = bottom.twinx()
    if accuracy:
        right.plot(*zip(*accuracy), label="reward accuracy", color="#ff7f0e")
    right.set_ylim(-0.05, 1.05)
    right.set_ylabel("reward accuracy")
    later_rounds = {h["round"] for h in history if h.get("round", 1) > 1}
    starts = [min(h["step"] for h in history if h.get("round") == r) for r in sorted(later_rounds)]
    for ax in (top, bottom):
        for step in starts:
            ax.axvline(step, color="grey", linestyle="--", linewidth=0.8)
        ax.grid(alpha=0.3)
    bottom.set_xlabel("step (all rounds)")
    top.legend(fontsize=8)
    lines = bottom.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    bottom.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def last_checkpoint(folder: Path) -> str | None:
    """The newest whole checkpoint; cut-off ones (a kill or a full disk during a save) are named and removed."""
    last, skipped = resumable_checkpoint(folder)
    for path, why in skipped:
        if is_main_process():
            print(f"skipping incomplete checkpoint {path}: {why}")
            shutil.rmtree(path, ignore_errors=True)
    print(f"resuming from {last}" if last else f"{folder}: no complete checkpoint; this round starts from step 0")
    return last


def train(recipe, resume: bool = False, overwrite: bool = False) -> Path:
    """The DPO stage: the SFT stage's run-directory lifecycle (doctorkit.stages.run_stage), rounds inside it.
    --resume finds each round's own checkpoints, so the run directory's are not looked up."""
    recipe = resolve_from_run(recipe)
    return run_stage(recipe, resume, overwrite, lambda run_dir, _: _train_dpo(recipe, run_dir, resume),
                     checkpoints=False, check_settings=False)


def _train_dpo(recipe, run_dir: Path, resume: bool) -> Path:
    from transformers import set_seed

    from doctorkit.data.preference import paths_of, prepare_preferences
    from doctorkit.methods import get_method, resolve_gradient_checkpointing
    from doctorkit.model import load_tokenizer
    from doctorkit.rundir import read_metrics

    method = get_method("dpo")
    method.validate(recipe)
    resolve_gradient_checkpointing(recipe)  # unset: on for qlora, as for SFT
    if recipe.eval.data:  # a wrong eval file should fail now, not after training
        from doctorkit.evaluate import check_eval_config
        check_eval_config(recipe)
    set_seed(recipe.seed)
    sft_dir = Path(recipe.dpo.from_run) if recipe.dpo.from_run else None
    # the tokenizer the SFT adapter was trained with (its run's tokenizer/), else the base model's
    tokenizer = load_tokenizer(sft_dir if sft_dir and (sft_dir / TOKENIZER).is_dir() else recipe.model,
                               recipe.trust_remote_code)

    start = sft_dir / ADAPTER if sft_dir else None
    rounds: list[dict] = []
    for k in range(1, recipe.dpo.rounds + 1):
        final = k == recipe.dpo.rounds
        out_dir = run_dir if final else run_dir / ROUNDS / f"round-{k}"
        if resume and not final and (out_dir / ADAPTER).is_dir():  # finished in an earlier invocation
            rounds.append(read_metrics(out_dir))
            start = out_dir / ADAPTER
            continue
        source = round_data_path(recipe, k)
        data = prepare_preferences(recipe, tokenizer, source)
        source = source or ", ".join(paths_of(recipe.data.path))
        if is_main_process():
            print(f"DPO round {k}/{recipe.dpo.rounds} on {source} (pairs):\n{data.report.summary()}")
        trainer = build_trainer(recipe, run_dir, k, start, data, tokenizer)
        if is_main_process():
            log_to(run_dir)   # library messages so far and from now on: RUN/library.log (doctorkit.noise)
        checkpoint = last_checkpoint(run_dir / CHECKPOINTS / f"round-{k}") if resume else None
        started = time.perf_counter()
        trainer.train(resume_from_checkpoint=checkpoint)
        runtime = time.perf_counter() - started
        if data.eval is not None:
            trainer.evaluate()
        rounds.append(round_metrics(trainer, data.report, runtime, k, source))
        weights = gathered_trainable_weights(trainer.model)  # FSDP, ZeRO-3: every rank gathers (see sft.py)
        if trainer.is_world_process_zero():
            # only the trained "default" adapter: the frozen "ref" copy is TRL's bookkeeping, not part of the model
            with atomic.folder(out_dir / ADAPTER) as folder:
                trainer.model.save_pretrained(folder, selected_adapters=["default"], state_dict=weights)
            if not final:
                write_metrics(out_dir, rounds[-1])
        start = out_dir / ADAPTER
        del trainer
        gc.collect()

    if is_main_process():
        metrics = summarize(rounds)
        title = f"DPO ({recipe.dpo.loss_type}, beta {recipe.dpo.beta}) on {recipe.dpo.from_run or recipe.model}"
        finish_run(run_dir, recipe, tokenizer, metrics, lambda history, path: plot_dpo(history, path, title=title),
                   f"DPO loss {metrics['train_loss_first']:.3f} -> {metrics['train_loss_last']:.3f}, reward accuracy "
                   f"{metrics['reward_accuracy_first']:.2f} -> {metrics['reward_accuracy_last']:.2f}")
        evaluate_after(run_dir, recipe)
    return run_dir
