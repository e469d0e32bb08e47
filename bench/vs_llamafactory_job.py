"""The job of bench/vs_llamafactory.py, written once for both tools: settings, data split, configs, common scorer.

Each setting lives in JOB and reaches DoctorKit's recipe and LLaMA-Factory's YAML from there, so the two sides
cannot drift apart; the scorer gives every trained adapter the same held-back tokens with DoctorKit's masks.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from doctorkit.errors import DoctorKitError

N_TRAIN, N_EVAL, SPLIT_SEED = 400, 100, 0
JOB = {"max_seq_len": 512, "batch_size": 8, "grad_accum": 1, "lora_r": 32, "lora_alpha": 64, "lora_dropout": 0.05,
       "learning_rate": 2e-4, "lr_scheduler": "cosine", "epochs": 1, "seed": 42, "logging_steps": 10}


def split_data(path: Path, folder: Path) -> tuple[Path, Path]:
    """400 train + 100 eval dialogs, a seeded draw; written to the work folder only (never to the repository)."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(lines) < N_TRAIN + N_EVAL:
        raise DoctorKitError(f"{path}: {len(lines)} dialogs, the benchmark needs {N_TRAIN + N_EVAL}")
    random.Random(SPLIT_SEED).shuffle(lines)
    train, held = folder / "train.jsonl", folder / "eval.jsonl"
    train.write_text("\n".join(lines[:N_TRAIN]) + "\n", encoding="utf-8")
    held.write_text("\n".join(lines[N_TRAIN:N_TRAIN + N_EVAL]) + "\n", encoding="utf-8")
    return train, held


def save_tiny(folder: Path) -> Path:
    from doctorkit.builtin.tiny import build_tiny
    model, tokenizer = build_tiny()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# ----------------------------------------------------------------------------------------- configs ---

def our_recipe(arm: str, model: Path, train: Path, held: Path, out: Path) -> dict:
    return {
        "model": str(model), "method": "lora", "output_dir": str(out), "seed": JOB["seed"], "dtype": "fp32",
        "attn_implementation": "auto", "gradient_checkpointing": False,
        "data": {"path": str(train), "val_path": str(held), "format": "sharegpt", "overlong": "truncate",
                 "packing": arm == "ours-packed", "group_by_length": arm == "ours-grouped"},
        "train": {"epochs": JOB["epochs"], "max_steps": -1, "max_seq_len": JOB["max_seq_len"],
                  "batch_size": JOB["batch_size"], "grad_accum": JOB["grad_accum"],
                  "learning_rate": JOB["learning_rate"], "lr_scheduler": JOB["lr_scheduler"], "warmup_ratio": 0.0,
                  "optimizer": "adamw_torch", "logging_steps": JOB["logging_steps"], "save_steps": 10 ** 6},
        "lora": {"r": JOB["lora_r"], "alpha": JOB["lora_alpha"], "dropout": JOB["lora_dropout"],
                 "target_modules": "all-linear"},
    }


def lf_config(arm: str, model: Path, dataset_dir: Path, out: Path) -> dict:
    return {
        "model_name_or_path": str(model), "trust_remote_code": False,
        "stage": "sft", "do_train": True, "do_eval": True, "finetuning_type": "lora",
        "lora_rank": JOB["lora_r"], "lora_alpha": JOB["lora_alpha"], "lora_dropout": JOB["lora_dropout"],
        "lora_target": "all",
        "disable_gradient_checkpointing": True,  # LLaMA-Factory's default is on; DoctorKit's LoRA default is off
        "dataset": "med_train", "eval_dataset": "med_eval", "dataset_dir": str(dataset_dir), "template": "chatml",
        "cutoff_len": JOB["max_seq_len"], "overwrite_cache": True, "preprocessing_num_workers": None,
        "packing": arm == "lf-neat-packing", "neat_packing": arm == "lf-neat-packing",
        "output_dir": str(out), "logging_steps": JOB["logging_steps"], "save_strategy": "no", "plot_loss": False,
        "overwrite_output_dir": True, "report_to": "none",
        "per_device_train_batch_size": JOB["batch_size"], "per_device_eval_batch_size": JOB["batch_size"],
        "gradient_accumulation_steps": JOB["grad_accum"], "learning_rate": JOB["learning_rate"],
        "num_train_epochs": float(JOB["epochs"]), "lr_scheduler_type": JOB["lr_scheduler"], "warmup_steps": 0,
        "optim": "adamw_torch", "weight_decay": 0.0, "max_grad_norm": 1.0,
        "bf16": False, "fp16": False, "seed": JOB["seed"], "data_seed": JOB["seed"],
        "eval_strategy": "no", "dataloader_num_workers": 0,
    }


def dataset_info(folder: Path, train: Path, held: Path) -> None:
    entry = lambda f: {"file_name": str(f), "formatting": "sharegpt", "columns": {"messages": "conversations"},  # noqa: E731
                       "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}}
    (folder / "dataset_info.json").write_text(json.dumps({"med_train": entry(train), "med_eval": entry(held)}, indent=1),
                                              encoding="utf-8")


# --------------------------------------------------------------------------------------- eval loss ---

class CommonEval:
    """Every adapter scored on the same held-back tokens and masks (DoctorKit's), token-averaged: a check that
    both tools trained the same thing, independent of how each one batches or packs its own evaluation."""

    def __init__(self, model_dir: Path, held: Path, threads: int):
        import torch
        from transformers import AutoModelForCausalLM

        from doctorkit.data import prepare
        from doctorkit.model import load_tokenizer
        from doctorkit.recipe import Recipe

        torch.set_num_threads(threads)
        tokenizer = load_tokenizer(model_dir)
        recipe = Recipe.model_validate({"model": str(model_dir), "data": {"path": str(held), "val_path": str(held),
                                        "format": "sharegpt"}, "train": {"max_seq_len": JOB["max_seq_len"]}})
        self.rows = list(prepare(recipe, tokenizer).eval)
        self.model_dir = model_dir
        self.base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)

    def loss(self, adapter: Path | None) -> float:
        """Token-averaged loss of the base model with this adapter (None: the untrained base)."""
        import copy

        import torch
        from peft import PeftModel

        model = (PeftModel.from_pretrained(copy.deepcopy(self.base), adapter) if adapter else self.base).eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for row in self.rows:
                ids = torch.tensor([row["input_ids"]])
                labels = torch.tensor([row["labels"]])
                logits = model(input_ids=ids).logits[0, :-1]
                target = labels[0, 1:]
                keep = target != -100
                total += torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="sum").item()
                count += int(keep.sum())
        return total / count


def count_supervised(model_dir: Path, train: Path) -> tuple[int, int]:
    """(supervised tokens, all tokens) of the training set: DoctorKit's masks, the tiny tokenizer, 512 truncation."""
    from doctorkit.data import prepare
    from doctorkit.model import load_tokenizer
    from doctorkit.recipe import Recipe

    recipe = Recipe.model_validate({"model": str(model_dir), "data": {"path": str(train), "format": "sharegpt"},
                                    "train": {"max_seq_len": JOB["max_seq_len"]}})
    report = prepare(recipe, load_tokenizer(model_dir)).report
    return report.supervised_tokens, report.train_tokens
