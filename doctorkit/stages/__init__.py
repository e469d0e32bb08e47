"""Training stages and the run-directory lifecycle they share.

SFT is doctorkit.stages.sft, DPO doctorkit.stages.dpo; `python -m doctorkit.train` picks one. Every stage runs
through `run_stage`: prepare the run directory (rank 0 takes its lock; the rank barriers of
prepare_run_dir), then the stage's own body (data report, trainer, metrics), then `finish_run` (tokenizer,
metrics.json, the loss picture, recipe.yaml last as the mark of a finished run) and `evaluate_after` (eval.*).
The stage a recipe runs under is its method's STAGE (doctorkit.methods); STAGES maps it to the stage's module.
"""
from __future__ import annotations

import os
import resource
import shutil
from pathlib import Path

import torch

from doctorkit import atomic
from doctorkit.errors import DoctorKitError
from doctorkit.rundir import (ADAPTER, CHECKPOINTS, LOCK, LOSS_PNG, METRICS, RECIPE, TOKENIZER, RunLock,
                              changed_resume_keys, recipe_value, resumable_checkpoint, write_metrics)

# stage name (a method's STAGE) -> the module whose train(recipe, resume, overwrite) runs it
STAGES = {"sft": "doctorkit.stages.sft", "dpo": "doctorkit.stages.dpo"}
STARTED_RECIPE = Path(CHECKPOINTS) / RECIPE  # the recipe a run started with: --resume compares against it


def run_stage(recipe, resume: bool, overwrite: bool, body, checkpoints: bool = True, check_settings: bool = True):
    """prepare_run_dir, then body(run_dir, checkpoint) with disk errors as one line, the lock released at the end.
    checkpoints=False: the stage finds its own checkpoints (DPO: one folder per round)."""
    run_dir = Path(recipe.output_dir)
    checkpoint = prepare_run_dir(run_dir, resume, overwrite, recipe if check_settings else None, checkpoints)
    if not torch.cuda.is_available():   # every step's activations would page-fault anew (doctorkit/cpu_memory.py)
        from doctorkit.cpu_memory import keep_freed_blocks
        keep_freed_blocks()
    try:
        with atomic.disk_errors(run_dir):
            return body(run_dir, checkpoint)
    finally:
        release_run_dir(run_dir)


def finish_run(run_dir: Path, recipe, tokenizer, metrics: dict, plot, summary: str) -> None:
    """Rank 0, after the stage saved its adapter: tokenizer, metrics.json, the loss picture, recipe.yaml last."""
    from doctorkit.recipe import save_recipe

    with atomic.folder(run_dir / TOKENIZER) as folder:
        tokenizer.save_pretrained(folder)
    write_metrics(run_dir, metrics)
    plot(metrics["log_history"], run_dir / LOSS_PNG)
    save_recipe(recipe, run_dir / RECIPE)  # last: its presence marks a finished run (doctorkit.rundir)
    print(f"run directory: {run_dir}  ({summary}; {METRICS}, {LOSS_PNG}, {ADAPTER}/)")


def evaluate_after(run_dir: Path, recipe) -> None:
    """eval.* keys: score the run as users will load it (the stage frees its training copy first)."""
    if recipe.eval.data:
        from doctorkit.evaluate import evaluate_after_training, format_summary
        torch.cuda.empty_cache()
        print(format_summary(evaluate_after_training(run_dir, recipe)))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool, recipe=None, checkpoints: bool = True) -> str | None:
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
        checkpoint, incomplete = _check_run_dir(run_dir, resume, overwrite, recipe, state.is_main_process, checkpoints)
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


def _check_run_dir(run_dir: Path, resume: bool, overwrite: bool, recipe=None, speak: bool = True,
                   checkpoints: bool = True):
    """(checkpoint to resume from or None, incomplete checkpoints to remove)."""
    if resume and not checkpoints:  # the stage resumes from its own checkpoint folders
        return None, []
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
    saved = load_recipe(started, saved=True)
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
        # TRL's OffloadActivations needs an accelerator to offload from; on a CPU the activations already are in RAM
        activation_offloading=on_gpu and t.offloads_activations(bool(recipe.gradient_checkpointing)),
        max_length=t.max_seq_len,
        dataloader_num_workers=t.num_workers,
        report_to=["tensorboard"], seed=recipe.seed, data_seed=recipe.seed,
        ddp_find_unused_parameters=False,
    )


def gathered_trainable_weights(model) -> dict | None:
    """Every rank calls this before rank 0 saves the adapter. Under FSDP each rank holds shards (DTensors) of the
    trainable weights and under DeepSpeed ZeRO-3 partitions (weights with a ds_id, emptied between forwards);
    save_pretrained on rank 0 alone fails on the former and writes empty tensors for the latter. Gathering is a
    collective, hence all ranks; only the trainable weights are gathered, not the frozen base. None when nothing is
    sharded (one process, DDP, ZeRO-2): save_pretrained then reads the model itself, as before."""
    from torch.distributed.tensor import DTensor

    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if any(hasattr(p, "ds_id") for p in trainable.values()):
        import deepspeed  # present: only DeepSpeed gives weights a ds_id

        with deepspeed.zero.GatheredParameters(list(trainable.values()), modifier_rank=None):
            return {name: p.detach().cpu().clone() for name, p in trainable.items()}
    if not any(isinstance(p, DTensor) for p in trainable.values()):
        return None
    return {name: (p.full_tensor() if isinstance(p, DTensor) else p).detach().cpu() for name, p in trainable.items()}


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
