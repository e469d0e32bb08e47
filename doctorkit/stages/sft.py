"""The SFT stage (`python -m doctorkit.train` with an SFT method: lora, qlora, ptuning, ...).

Reads top to bottom as the job runs: recipe -> data -> model -> method -> trainer -> run directory.
TRL's SFTTrainer does the training (progress bar, checkpoints, TensorBoard, packing); we hand it data that
is already tokenized with our own loss masks, because the real chat templates we support (Qwen2.5, GLM-4,
Llama-3) carry no `{% generation %}` markers for its assistant_only_loss.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from doctorkit import atomic
from doctorkit.noise import log_to
from doctorkit.recipe import save_recipe
from doctorkit.rundir import ADAPTER, CHECKPOINTS, TB
from doctorkit.stages import (STARTED_RECIPE, collect_metrics, evaluate_after, finish_run, gathered_trainable_weights,
                              is_main_process, run_stage, shared_training_args)


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

        def _count_tokens(self, local, device) -> None:
            """Adds this step's tokens on every rank to TRL's num_tokens, as TRL does (a collective: all ranks
            call it). On the batch's device: NCCL gathers only GPU tensors."""
            local = torch.as_tensor(local, device=device)
            self._total_train_tokens += self.accelerator.gather_for_metrics(local).sum().item()
            self._metrics["train"]["num_tokens"] = [self._total_train_tokens]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            fused_kernel = loss == "lean" and not self.args.use_cpu
            if fused_kernel or not model.training:
                rows = inputs["input_ids"].shape[0] if "attention_mask" not in inputs else 1
                result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
                if model.training and rows > 1:  # TRL counts one row of a mask-free batch (packing_layout rows)
                    self._count_tokens(inputs["input_ids"][1:].numel(), inputs["input_ids"].device)
                return result
            inputs["use_cache"] = False  # a cache would turn off packed-sequence isolation (tests/test_packing.py)
            mask = inputs.get("attention_mask")  # padding-free batches have none: every position is a token
            ids = inputs["input_ids"]
            self._count_tokens(mask.sum() if mask is not None else ids.numel(), ids.device)
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


def train(recipe, resume: bool = False, overwrite: bool = False) -> Path:
    """The SFT stage inside the shared run-directory lifecycle (doctorkit.stages.run_stage)."""
    return run_stage(recipe, resume, overwrite, lambda run_dir, checkpoint: _train(recipe, run_dir, checkpoint))


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
    resolve_gradient_checkpointing(recipe)
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

    weights = gathered_trainable_weights(model)  # FSDP, ZeRO-3: every rank takes part in gathering the shards
    if trainer.is_world_process_zero():  # under torchrun only rank 0 writes the run directory
        with atomic.folder(run_dir / ADAPTER) as folder:
            model.save_pretrained(folder, state_dict=weights)
        if data.canaries:   # data.canaries: what `evaluate RUN --task canary` ranks
            from doctorkit.deid.canary import write_canaries
            write_canaries(run_dir, data.canaries)
        metrics = collect_metrics(trainer, data.report, runtime, model)
        finish_run(run_dir, recipe, tokenizer, metrics,
                   lambda history, path: plot_losses(history, path, title=f"{recipe.method} on {recipe.model}"),
                   f"train loss {metrics['train_loss_first']:.3f} -> {metrics['train_loss_last']:.3f}")
        del trainer, model   # the training copy is freed before evaluation loads the run as users will
        evaluate_after(run_dir, recipe)
    return run_dir
