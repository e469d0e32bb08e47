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
from doctorkit.noise import log_to
from doctorkit.recipe import recipe_arguments, recipe_from_args, save_recipe
from doctorkit import atomic
from doctorkit.rundir import (ADAPTER, CHECKPOINTS, LOCK, LOSS_PNG, METRICS, RECIPE, TB, TOKENIZER, RunLock,
                              changed_resume_keys, recipe_value, resumable_checkpoint, write_metrics)

STARTED_RECIPE = Path(CHECKPOINTS) / RECIPE  # the recipe a run started with: --resume compares against it


def parse_args(argv):
    parser = recipe_arguments(argparse.ArgumentParser(prog="python -m doctorkit.train", description=__doc__.splitlines()[0]))
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output_dir")
    parser.add_argument("--overwrite", action="store_true", help="delete an existing run in output_dir first")
    return parser.parse_args(argv)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool, recipe=None) -> str | None:
    """Returns the checkpoint to resume from, if any; refuses to mix two runs in one directory.

    Rank 0 holds the run directory's lock (rundir.RunLock) until release_run_dir: a second training into
    the same folder is refused at once. --resume takes the newest whole checkpoint (cut-off ones are
    named and removed), starts from step 0 when there is none, and refuses settings the checkpoint
    cannot take (rundir.changed_resume_keys).

    Under torchrun every rank runs this. All ranks look at the folder before any rank changes it (first
    barrier), so they all take the same decision and raise the same error; rank 0 alone deletes an old run,
    and nobody goes on until it is gone (second barrier); only rank 0 writes into it afterwards. Without these, a slow rank could find rank 0's
    fresh files and refuse, or list a folder rank 0 is deleting.
    """
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())  # joins torchrun's process group; no-op alone
    if state.is_main_process:  # a refusal here ends rank 0, and torchrun then stops the other ranks
        atomic.check_writable(run_dir, "output_dir")
        _LOCKS[run_dir.resolve()] = RunLock(run_dir)
    try:
        checkpoint, incomplete = _check_run_dir(run_dir, resume, overwrite, recipe, state.is_main_process)
    except BaseException:
        release_run_dir(run_dir)
        raise
    state.wait_for_everyone()
    if state.is_main_process:
        if checkpoint is None and overwrite and not resume:
            for item in run_dir.iterdir():  # everything but the lock we hold
                if item.name != LOCK:
                    shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
        for path in incomplete:
            shutil.rmtree(path, ignore_errors=True)
    state.wait_for_everyone()
    return checkpoint


_LOCKS: dict[Path, RunLock] = {}


def release_run_dir(run_dir: Path) -> None:
    lock = _LOCKS.pop(Path(run_dir).resolve(), None)
    if lock is not None:
        lock.release()


def _check_run_dir(run_dir: Path, resume: bool, overwrite: bool, recipe=None, speak: bool = True):
    """(checkpoint to resume from or None, incomplete checkpoints to remove)."""
    if resume:
        if recipe is not None:
            check_resume_settings(run_dir, recipe)
        last, skipped = resumable_checkpoint(run_dir / CHECKPOINTS)
        for path, why in skipped if speak else []:
            print(f"skipping incomplete checkpoint {path}: {why}")
        if speak:
            print(f"resuming from {last}" if last else
                  f"{run_dir}: no complete checkpoint yet (they are written every train.save_steps); starting from step 0")
        return last, [path for path, _ in skipped]
    if run_dir.exists() and any(item.name != LOCK for item in run_dir.iterdir()):
        if not overwrite:
            raise DoctorKitError(f"{run_dir}: already holds a run; use --resume to continue it, --overwrite to "
                                 f"replace it, or --set output_dir=another/folder")
    return None, []


def check_resume_settings(run_dir: Path, recipe) -> None:
    """--resume with a changed model, method or adapter shape cannot load the checkpoint: say which key."""
    from doctorkit.methods import get_method
    from doctorkit.recipe import load_recipe

    started = run_dir / STARTED_RECIPE
    if not started.is_file():
        return
    saved = load_recipe(started)
    keys = ("model", "method") + getattr(get_method(recipe.method), "RESUME_KEYS", ())
    for key in changed_resume_keys(saved, recipe, keys)[:1]:
        raise DoctorKitError(f"{run_dir}: --resume with a changed {key} (the checkpoints were trained with "
                             f"{recipe_value(saved, key)!r}, the recipe now says {recipe_value(recipe, key)!r}); set it back, "
                             f"or train into another output_dir")


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


def make_trainer(loss: str = "lean", packing_layout: str | None = None, **kwargs):
    from transformers import Trainer
    from trl import SFTTrainer

    from doctorkit.batching import ShuffledLengthGroups
    from doctorkit.loss import lean_causal_lm_loss
    from doctorkit.packing import PackedRowsCollator

    class DoctorKitSFTTrainer(SFTTrainer):
        def _get_train_sampler(self, train_dataset=None):
            if self.args.train_sampling_strategy != "group_by_length":
                return super()._get_train_sampler(train_dataset)
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            # length groups in random order, not transformers' longest-first mega-batches (doctorkit/batching.py)
            return ShuffledLengthGroups([len(ids) for ids in dataset["input_ids"]], self.args.train_batch_size)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            fused_kernel = loss == "lean" and not self.args.use_cpu
            if fused_kernel or not model.training:
                rows = inputs["input_ids"].shape[0] if "attention_mask" not in inputs else 1
                result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
                if model.training and rows > 1:  # TRL counts one row of a mask-free batch (packing_layout rows)
                    others = torch.tensor(inputs["input_ids"][1:].numel(), device=inputs["input_ids"].device)
                    self._total_train_tokens += self.accelerator.gather_for_metrics(others).sum().item()
                    self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
                return result
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

    trainer = DoctorKitSFTTrainer(**kwargs)
    if packing_layout == "rows":  # TRL only offers its flattening collator with bfd packing (doctorkit/packing.py)
        trainer.data_collator = PackedRowsCollator(trainer.processing_class.pad_token_id)
    return trainer


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
        "data_mix": report.mix,
        "deid_replacements": report.deid_replacements,
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
    if recipe.method == "dpo":  # preference stage: own data and trainer, same run directory (doctorkit/dpo.py)
        from doctorkit.dpo import train_dpo
        return train_dpo(recipe, resume=resume, overwrite=overwrite)

    run_dir = Path(recipe.output_dir)
    checkpoint = prepare_run_dir(run_dir, resume, overwrite, recipe)
    try:
        with atomic.disk_errors(run_dir):
            return _train(recipe, run_dir, checkpoint)
    finally:
        release_run_dir(run_dir)


def _train(recipe, run_dir: Path, checkpoint: str | None) -> Path:
    from transformers import set_seed

    from doctorkit import packing
    from doctorkit.data import prepare
    from doctorkit.methods import get_method, resolve_gradient_checkpointing
    from doctorkit.model import load_model_and_tokenizer
    from doctorkit.plots import plot_losses

    set_seed(recipe.seed)
    method = get_method(recipe.method)
    method.validate(recipe)
    resolve_gradient_checkpointing(recipe, method)
    if recipe.eval.data:  # a wrong eval file should fail now, not after hours of training
        from doctorkit.evaluate import check_eval_config
        check_eval_config(recipe)

    if is_main_process() and not (run_dir / STARTED_RECIPE).is_file():  # what --resume compares against
        (run_dir / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
        save_recipe(recipe, run_dir / STARTED_RECIPE)

    model, tokenizer = load_model_and_tokenizer(recipe, extra_kwargs=method.load_kwargs(recipe))
    data = prepare(recipe, tokenizer)
    if is_main_process():
        print(data.report.summary())
        log_to(run_dir)   # library messages so far and from now on: RUN/library.log (doctorkit.noise)

    model = method.wrap(model, recipe)
    layout = packing.configure(recipe, model)
    if layout and is_main_process():
        print(packing.describe(layout, model))
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / TB)
    trainer = make_trainer(loss=recipe.train.loss, packing_layout=layout, model=model,
                           args=trainer_args(recipe, run_dir, data.eval is not None, model.dtype),
                           train_dataset=data.train, eval_dataset=data.eval, processing_class=tokenizer)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=checkpoint)
    runtime = time.perf_counter() - started
    if data.eval is not None:
        trainer.evaluate()

    if trainer.is_world_process_zero():  # under torchrun only rank 0 writes the run directory
        with atomic.folder(run_dir / ADAPTER) as folder:
            model.save_pretrained(folder)
        with atomic.folder(run_dir / TOKENIZER) as folder:
            tokenizer.save_pretrained(folder)
        if data.canaries:   # data.canaries: what `evaluate RUN --task canary` ranks
            from doctorkit.deid.canary import write_canaries
            write_canaries(run_dir, data.canaries)
        metrics = collect_metrics(trainer, data.report, runtime, model)
        write_metrics(run_dir, metrics)
        plot_losses(metrics["log_history"], run_dir / LOSS_PNG, title=f"{recipe.method} on {recipe.model}")
        save_recipe(recipe, run_dir / RECIPE)  # last: its presence marks a finished run (doctorkit.rundir)
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
