"""`python -m translate distill RECIPE`: fine-tune the student on the teacher's pairs, score it.

A seeded slice of the unique pairs is held out; the student translates it before and after training,
and both are scored with sacrebleu against the teacher's translations of the same slice (the teacher is
the reference here: the question is how close the cheap model gets to the expensive one). Training is
transformers' Seq2SeqTrainer (full fine-tuning, or LoRA through PEFT then merged, so `run` loads one
plain model folder either way).
"""
from __future__ import annotations

import json
import random
import time

from doctorkit import atomic
from doctorkit.errors import DoctorKitError
from doctorkit.rundir import read_json
from translate.recipe import TranslateRecipe, WorkFiles
from translate.score import corpus_scores



def seq2seq_lora(model, lora):
    """student.method lora: PEFT LoRA on the seq2seq student, merged into the saved model after training."""
    from peft import LoraConfig, TaskType, get_peft_model

    return get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_2_SEQ_LM, r=lora.r, lora_alpha=lora.alpha,
                                            lora_dropout=lora.dropout, target_modules=lora.target_modules,
                                            use_dora=lora.use_dora, use_rslora=lora.use_rslora))


# The student's training modes (translate.recipe StudentConfig.method): full fine-tuning adds no adapter.
STUDENT_ADAPTERS = {"full": None, "lora": seq2seq_lora}

def read_pairs(path) -> list[tuple[str, str]]:
    """Unique (English, Chinese) pairs in a stable order: repeated boilerplate must not dominate training."""
    if not path.is_file():
        raise DoctorKitError(f"{path}: no seed pairs; run `python -m translate seed` first")
    seen: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            seen.setdefault(row["en"], row["zh"])
    return sorted(seen.items())


def split_pairs(pairs, holdout: float, seed: int):
    shuffled = list(pairs)
    random.Random(seed).shuffle(shuffled)
    n_held = max(1, round(len(shuffled) * holdout)) if len(shuffled) > 1 else 0
    return shuffled[n_held:], shuffled[:n_held]


def check_seed_complete(files: WorkFiles, allow_partial: bool) -> None:
    """seed writes seed_report.json with complete=false when it starts and true when every planned segment
    is in pairs.jsonl; a killed seed must not quietly become a smaller training set."""
    if not files.pairs.is_file():
        return  # read_pairs says what to do
    report = read_json(files.seed_report) if files.seed_report.is_file() else None
    if report is not None and report.get("complete", True):  # reports from before this key are whole
        return
    have = len({json.loads(line)["en"] for line in files.pairs.read_text(encoding="utf-8").splitlines() if line.strip()})
    planned = f"of the {report['unique_segments']} planned segments" if report else "segments (no seed_report.json)"
    if not allow_partial:
        raise DoctorKitError(f"{files.pairs}: incomplete seed set: {have} {planned}; the seed step did not finish. "
                             f"Rerun `python -m translate seed` (finished translations are cached, free) or pass "
                             f"--allow-partial to train on what is there")
    print(f"distill: --allow-partial: training on an incomplete seed set ({have} {planned})")


def distill(recipe: TranslateRecipe, allow_partial: bool = False) -> dict:
    import torch
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments, set_seed

    from translate.student import load_student, pick_device, translate_texts

    files, cfg = WorkFiles(recipe), recipe.student
    check_seed_complete(files, allow_partial)
    train_pairs, held = split_pairs(read_pairs(files.pairs), cfg.holdout, recipe.seed)
    if not train_pairs:
        raise DoctorKitError(f"{files.pairs}: too few pairs to train on ({len(held)} held out)")
    set_seed(recipe.seed)
    model, tokenizer = load_student(cfg.model, pick_device(recipe.run.device))
    held_en, held_zh = [en for en, _ in held], [zh for _, zh in held]

    def translate_held():
        return translate_texts(model, tokenizer, held_en, cfg.eval_batch_size, cfg.num_beams,
                               cfg.max_target_len, cfg.max_source_len)

    before = translate_held() if held else []
    adapter = STUDENT_ADAPTERS[cfg.method]  # student.method is translate's own (full | lora), not doctorkit.methods
    if adapter:
        model = adapter(model, cfg.lora)

    def encode(batch):
        return tokenizer(batch["en"], text_target=batch["zh"], max_length=cfg.max_source_len, truncation=True)

    dataset = Dataset.from_dict({"en": [p[0] for p in train_pairs], "zh": [p[1] for p in train_pairs]})
    dataset = dataset.map(encode, batched=True, remove_columns=["en", "zh"])
    dataset = dataset.map(lambda row: {"labels": row["labels"][:cfg.max_target_len]})
    args = Seq2SeqTrainingArguments(
        output_dir=str(files.root / "student_checkpoints"), per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        warmup_steps=cfg.warmup_ratio, weight_decay=cfg.weight_decay, logging_steps=cfg.logging_steps,
        save_strategy="no", report_to="none", seed=recipe.seed, use_cpu=not torch.cuda.is_available(),
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                             data_collator=DataCollatorForSeq2Seq(tokenizer, model=model))
    started = time.time()
    result = trainer.train()
    train_seconds = time.time() - started
    if adapter:
        model = model.merge_and_unload()
    with atomic.folder(files.student) as folder:  # `run` never finds a half-written student
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    after = translate_held() if held else []
    atomic.write_text(files.heldout, "".join(json.dumps({"en": en, "zh": zh, "student": student, "base": base},
                                                        ensure_ascii=False) + "\n"
                                             for en, zh, base, student in zip(held_en, held_zh, before, after)))
    report = {"student_model": cfg.model, "method": cfg.method, "pairs_train": len(train_pairs),
              "pairs_heldout": len(held), "steps": result.global_step, "train_loss": result.training_loss,
              "train_seconds": round(train_seconds, 2), "device": str(next(model.parameters()).device),
              "before": corpus_scores(before, held_zh) if held else None,
              "after": corpus_scores(after, held_zh) if held else None}
    atomic.write_text(files.distill_report, json.dumps(report, indent=2, ensure_ascii=False))
    print(f"distill: {len(train_pairs)} pairs, {result.global_step} steps in {train_seconds:.1f} s -> {files.student}")
    if held:
        print(f"held-out {len(held)} segments, reference = teacher ({recipe.teacher.model}):")
        print(f"  student before: BLEU {report['before']['bleu']:.2f}  chrF {report['before']['chrf']:.2f}")
        print(f"  student after:  BLEU {report['after']['bleu']:.2f}  chrF {report['after']['chrf']:.2f}")
        print(f"  {report['after']['bleu_signature']}\n  {report['after']['chrf_signature']}")
    return report
