"""Fine-tune a chat model from a recipe: `python -m doctorkit.train recipes/lora.yaml [--set k=v] [--resume]`.

Reads top to bottom as the job runs: recipe -> data -> model -> method -> trainer -> run directory.
TRL's SFTTrainer does the training (progress bar, checkpoints, TensorBoard, packing); we hand it data that
is already tokenized with our own loss masks, because the real chat templates we support (Qwen2.5, GLM-4,
Llama-3) carry no `{% generation %}` markers for its assistant_only_loss.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import time
from pathlib import Path

import torch

from doctorkit.errors import DoctorKitError, cli_main
from doctorkit.recipe import recipe_arguments, recipe_from_args, save_recipe
from doctorkit.rundir import ADAPTER, CHECKPOINTS, LOSS_PNG, METRICS, RECIPE, TB, TOKENIZER, write_metrics


def parse_args(argv):
    parser = recipe_arguments(argparse.ArgumentParser(prog="python -m doctorkit.train", description=__doc__.splitlines()[0]))
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output_dir")
    parser.add_argument("--overwrite", action="store_true", help="delete an existing run in output_dir first")
    return parser.parse_args(argv)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> str | None:
    """Returns the checkpoint to resume from, if any; refuses to mix two runs in one directory.

    Under torchrun every rank runs this. All ranks look at the folder before any rank changes it (first
    barrier), so they all take the same decision and raise the same error; rank 0 alone deletes an old run,
    and nobody goes on until it is gone (second barrier); only rank 0 writes into it afterwards. Without these, a slow rank could find rank 0's
    fresh files and refuse, or list a folder rank 0 is deleting.
    """
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())  # joins torchrun's process group; no-op alone
    checkpoint = _check_run_dir(run_dir, resume, overwrite)
    state.wait_for_everyone()
    if checkpoint is None and overwrite and state.is_main_process and run_dir.exists():
        shutil.rmtree(run_dir)
    state.wait_for_everyone()
    return checkpoint


def _check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    checkpoints = run_dir / CHECKPOINTS
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if resume:
        if last is None:
            raise DoctorKitError(f"{run_dir}: no checkpoint to resume from (checkpoints are written every train.save_steps)")
        return last
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise DoctorKitError(f"{run_dir}: already holds a run; use --resume to continue it, --overwrite to "
                                 f"replace it, or --set output_dir=another/folder")
    return None


def shared_training_args(recipe, output_dir: Path, has_eval: bool, dtype: torch.dtype) -> dict:
    """TrainingArguments every stage (SFT, DPO) takes from the recipe's train section, in one place."""
    from doctorkit.methods import resolve_optimizer

    t = recipe.train
    on_gpu = torch.cuda.is_available()
    return dict(
        output_dir=str(output_dir),
        max_steps=t.max_steps, num_train_epochs=t.epochs,
        per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.learning_rate, lr_scheduler_type=t.lr_scheduler, warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm, optim=resolve_optimizer(recipe),
        logging_steps=t.logging_steps, logging_first_step=True,
        save_strategy="steps", save_steps=t.save_steps, save_total_limit=t.save_total_limit,
        eval_strategy=("steps" if t.eval_steps else "no") if has_eval else "no", eval_steps=t.eval_steps,
        # explicit, because DPOConfig defaults to bf16 and checkpointing on: the recipe (or its method) decides
        bf16=on_gpu and dtype == torch.bfloat16, fp16=on_gpu and dtype == torch.float16, use_cpu=not on_gpu,
        activation_checkpointing=bool(recipe.gradient_checkpointing),  # transformers 5 name for gradient checkpointing
        activation_checkpointing_kwargs={"use_reentrant": False} if recipe.gradient_checkpointing else None,
        max_length=t.max_seq_len,
        dataloader_num_workers=t.num_workers,
        report_to=["tensorboard"], seed=recipe.seed, data_seed=recipe.seed,
        ddp_find_unused_parameters=False,
    )


def trainer_args(recipe, run_dir: Path, has_eval: bool, dtype: torch.dtype):
    from trl import SFTConfig

    data = recipe.data
    return SFTConfig(
        **shared_training_args(recipe, run_dir / CHECKPOINTS, has_eval, dtype),
        packing=data.packing, packing_strategy="bfd",
        train_sampling_strategy="group_by_length" if data.group_by_length and not data.packing else "random",
        remove_unused_columns=True, dataset_num_proc=None,
    )


# train.loss: lean (default) never builds the full [tokens, vocab] fp32 logits. On GPUs that is TRL's fused LM head
# (Triton: scores only supervised positions, in tiles). On a CPU TRL's fallback is a torch loop that also computes
# entropy and top-1 over the whole vocabulary (1.7x slower than the plain loss on builtin:tiny,
# bench/results/cpu-switches-tiny.json), so there our chunked cross-entropy runs instead (doctorkit/loss.py).
# full: the model's own loss (logits, their fp32 copy and gradient: ~7 GB at 4096 tokens x 152k vocabulary).


def make_trainer(loss: str = "lean", **kwargs):
    from transformers import Trainer
    from trl import SFTTrainer

    from doctorkit.loss import lean_causal_lm_loss

    class DoctorKitSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            fused_kernel = loss == "lean" and not self.args.use_cpu
            if fused_kernel or not model.training:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            inputs["use_cache"] = False  # a cache would turn off packed-sequence isolation (tests/test_packing.py)
            mask = inputs.get("attention_mask")  # padding-free batches have none: every position is a token
            self._total_train_tokens += int(mask.sum()) if mask is not None else inputs["input_ids"].numel()
            self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
            if loss == "full":
                return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)
            # the same reduction Trainer.compute_loss gets from the model: sum / items when the model takes loss
            # kwargs (then training_step does not divide by grad_accum again), else the batch mean
            num_items_in_batch = num_items_in_batch if self.model_accepts_loss_kwargs else None
            value = lean_causal_lm_loss(model, inputs, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                value = value * self.accelerator.num_processes  # as Trainer.compute_loss: items counted on all ranks
            return value

    return DoctorKitSFTTrainer(**kwargs)


def peak_memory_bytes() -> int:
    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def collect_metrics(trainer, report, runtime_s: float, model) -> dict:
    from doctorkit.model import count_parameters

    history = trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    tokens_seen = max([h.get("num_tokens", 0) for h in history] + [0])
    trainable, total = count_parameters(model)
    return {
        "train_loss_first": losses[0] if losses else None,
        "train_loss_last": losses[-1] if losses else None,
        "eval_loss": evals[-1] if evals else None,
        "global_step": trainer.state.global_step,
        "samples_used": report.samples_used,
        "samples_skipped": report.samples_skipped,
        "samples_truncated": report.truncated,
        "eval_samples": report.eval_samples,
        "train_tokens": report.train_tokens,
        "supervised_tokens": report.supervised_tokens,
        "tokens_seen": int(tokens_seen),
        "runtime_s": round(runtime_s, 3),
        "tokens_per_s": round(tokens_seen / runtime_s, 2) if runtime_s > 0 else None,
        "peak_memory_bytes": peak_memory_bytes(),
        "trainable_params": trainable,
        "total_params": total,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "log_history": history,
    }


def train(recipe, resume: bool = False, overwrite: bool = False) -> Path:
    from transformers import set_seed

    from doctorkit.data import prepare
    from doctorkit.methods import get_method, resolve_gradient_checkpointing
    from doctorkit.model import load_model_and_tokenizer
    from doctorkit.plots import plot_losses

    if recipe.method == "dpo":  # preference stage: own data and trainer, same run directory (doctorkit/dpo.py)
        from doctorkit.dpo import train_dpo
        return train_dpo(recipe, resume=resume, overwrite=overwrite)

    run_dir = Path(recipe.output_dir)
    checkpoint = prepare_run_dir(run_dir, resume, overwrite)
    set_seed(recipe.seed)
    method = get_method(recipe.method)
    method.validate(recipe)
    resolve_gradient_checkpointing(recipe, method)
    if recipe.eval.data:  # a wrong eval file should fail now, not after hours of training
        from doctorkit.evaluate import check_eval_config
        check_eval_config(recipe)

    model, tokenizer = load_model_and_tokenizer(recipe, extra_kwargs=method.load_kwargs(recipe))
    data = prepare(recipe, tokenizer)
    if is_main_process():
        print(data.report.summary())

    model = method.wrap(model, recipe)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / TB)
    trainer = make_trainer(loss=recipe.train.loss, model=model, args=trainer_args(recipe, run_dir, data.eval is not None, model.dtype),
                           train_dataset=data.train, eval_dataset=data.eval, processing_class=tokenizer)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=checkpoint)
    runtime = time.perf_counter() - started
    if data.eval is not None:
        trainer.evaluate()

    if trainer.is_world_process_zero():  # under torchrun only rank 0 writes the run directory
        model.save_pretrained(run_dir / ADAPTER)
        tokenizer.save_pretrained(run_dir / TOKENIZER)
        save_recipe(recipe, run_dir / RECIPE)
        metrics = collect_metrics(trainer, data.report, runtime, model)
        write_metrics(run_dir, metrics)
        plot_losses(metrics["log_history"], run_dir / LOSS_PNG, title=f"{recipe.method} on {recipe.model}")
        print(f"run directory: {run_dir}  (train loss {metrics['train_loss_first']:.3f} -> "
              f"{metrics['train_loss_last']:.3f}; {METRICS}, {LOSS_PNG}, {ADAPTER}/)")
        if recipe.eval.data:  # eval.* keys: score the run as users will load it, training copy freed first
            from doctorkit.evaluate import evaluate_after_training, format_summary
            del trainer, model
            torch.cuda.empty_cache()
            print(format_summary(evaluate_after_training(run_dir, recipe)))
    return run_dir


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    recipe = recipe_from_args(args)
    train(recipe, resume=args.resume, overwrite=args.overwrite)
    return 0


def run(argv: list[str] | None = None) -> None:
    cli_main(main, argv)


if __name__ == "__main__":
    run()
