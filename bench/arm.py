"""One measured training run ("arm") in its own process, so peak memory (RSS or CUDA) belongs to it alone.

    python -m bench.arm SPEC.json OUT.json

SPEC: {"arm": "ours" | "baseline", "recipe": {...}, "trainer_extra": {...}}. `ours` is `doctorkit.train`
unchanged; `baseline` is a plain transformers Trainer with DataCollatorForSeq2Seq (pad to the longest
sample of each batch), a random sampler and no packing, given the very same TrainingArguments our recipe
produces (`doctorkit.train.trainer_args`), the same model loading, PEFT wrapping and tokenized data.
Both arms are measured by the same two hooks on transformers.Trainer: a timer around `train()` and a
counter of the positions, real tokens and supervised tokens in every batch `training_step` receives.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch
import transformers

import doctorkit.stages.sft as dk_sft
import doctorkit.train as dk_train
from doctorkit.recipe import Recipe

COUNTS = {"positions": 0, "tokens": 0, "supervised_tokens": 0, "steps": 0, "train_s": 0.0, "train_cpu_s": 0.0,
          "steady_s": 0.0, "steady_cpu_s": 0.0, "rss_before_train": 0}
FIRST_STEP = {}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return usage.ru_utime + usage.ru_stime


def padded_tails(trainer, ids: torch.Tensor) -> int:
    if ids.shape[0] == 1 or trainer.processing_class is None:
        return 0
    is_pad = (ids == trainer.processing_class.pad_token_id).flip(-1).int()
    return int(is_pad.cumprod(-1).sum())  # pad tokens from each row's end back to its last real token


def install_hooks() -> None:
    """Count what each arm really computes; time only `Trainer.train` (no model loading, no saving)."""
    original_step, original_train = transformers.Trainer.training_step, transformers.Trainer.train

    def counting_step(self, model, inputs, *args, **kwargs):
        if "at" not in FIRST_STEP:
            FIRST_STEP.update(at=time.perf_counter(), cpu=cpu_seconds())
        ids = inputs["input_ids"]
        COUNTS["positions"] += ids.numel()
        mask = inputs.get("attention_mask")
        # padding-free batches carry no attention mask: every position is a real token, except the padded
        # tails of packed rows (data.packing_layout rows), which are runs of the pad token at a row's end
        COUNTS["tokens"] += int(mask.sum()) if mask is not None else ids.numel() - padded_tails(self, ids)
        COUNTS["supervised_tokens"] += int((inputs["labels"][:, 1:] != -100).sum())  # next-token targets
        COUNTS["steps"] += 1
        return original_step(self, model, inputs, *args, **kwargs)

    def timed_train(self, *args, **kwargs):
        COUNTS["rss_before_train"] = psutil.Process().memory_info().rss
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started, cpu_started = time.perf_counter(), cpu_seconds()
        result = original_train(self, *args, **kwargs)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        ended = time.perf_counter()
        COUNTS["train_s"] = ended - started
        # from the first step on: one-time setup (accelerate's gc.collect, dataloader) weighs on a short run
        # far more than on a real one, so rates use this steady-state time
        COUNTS["steady_s"] = ended - FIRST_STEP.get("at", started)
        # CPU seconds too: on a shared machine wall time also counts other people's jobs
        COUNTS["train_cpu_s"] = cpu_seconds() - cpu_started
        COUNTS["steady_cpu_s"] = cpu_seconds() - FIRST_STEP.get("cpu", cpu_started)   # the steady part, as steady_s
        return result

    transformers.Trainer.training_step, transformers.Trainer.train = counting_step, timed_train


def with_trainer_extra(extra: dict) -> None:
    """Bench-only switches that are not recipe keys (torch_compile, ...): set on the TrainingArguments."""
    if not extra:
        return
    original = dk_sft.trainer_args

    def patched(*args, **kwargs):
        targs = original(*args, **kwargs)
        for key, value in extra.items():
            setattr(targs, key, value)
        return targs

    dk_sft.trainer_args = patched   # the SFT stage's module: its _train looks the name up there


def run_ours(recipe: Recipe) -> None:
    dk_train.train(recipe, overwrite=True)


def run_baseline(recipe: Recipe) -> None:
    from transformers import DataCollatorForSeq2Seq, Trainer

    from doctorkit.data import prepare
    from doctorkit.methods import get_method
    from doctorkit.model import load_model_and_tokenizer

    transformers.set_seed(recipe.seed)
    if not torch.cuda.is_available():   # the malloc setting our arm gets from doctorkit.stages.run_stage
        from doctorkit.cpu_memory import keep_freed_blocks
        keep_freed_blocks()
    method = get_method(recipe.method)
    model, tokenizer = load_model_and_tokenizer(recipe, extra_kwargs=method.load_kwargs(recipe))
    data = prepare(recipe, tokenizer)
    model = method.wrap(model, recipe)  # PEFT, exactly as ours
    args = dk_train.trainer_args(recipe, Path(recipe.output_dir), False, model.dtype)
    args.train_sampling_strategy = "random"
    collator = DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100)
    Trainer(model=model, args=args, train_dataset=data.train, data_collator=collator).train()


def peak_memory() -> dict:
    if torch.cuda.is_available():
        return {"peak_memory_bytes": int(torch.cuda.max_memory_allocated()), "memory_kind": "cuda_max_allocated"}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return {"peak_memory_bytes": int(peak), "memory_kind": "process_peak_rss",
            "train_memory_bytes": int(peak - COUNTS["rss_before_train"])}


def main(argv: list[str] | None = None) -> int:
    spec_path, out_path = (argv if argv is not None else sys.argv[1:])[:2]
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    install_hooks()
    with_trainer_extra(spec.get("trainer_extra") or {})
    for flag, value in (spec.get("train_flags") or {}).items():  # module switches of the SFT stage
        setattr(dk_sft, flag, value)
    with tempfile.TemporaryDirectory(prefix="doctorkit-bench-") as tmp:
        recipe = Recipe.model_validate({**spec["recipe"], "output_dir": str(Path(tmp) / "run")})
        (run_ours if spec["arm"] == "ours" else run_baseline)(recipe)
    result = {**COUNTS, **peak_memory(), "torch_threads": torch.get_num_threads()}
    Path(out_path).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
