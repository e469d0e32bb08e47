"""The student: load any AutoModelForSeq2SeqLM (or builtin:tiny-mt), and translate many segments fast."""
from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from doctorkit.errors import DoctorKitError
from doctorkit.offline import missing_hub_model, missing_model_hint

BUILTIN = "builtin:"


def pick_device(name: str = "auto") -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def load_student(name: str, device: str = "cpu"):
    """(model, tokenizer) from a hub id, a local folder or builtin:tiny-mt; one line if it is none of these."""
    if name.startswith(BUILTIN):
        from translate.tiny_mt import build_tiny_mt
        try:
            model, tokenizer = build_tiny_mt(name[len(BUILTIN):])
        except ValueError:
            raise DoctorKitError(f"student.model '{name}': unknown builtin model (available: builtin:tiny-mt)") from None
        return model.to(device), tokenizer
    from transformers import AutoModelForSeq2SeqLM

    from doctorkit.model import load_tokenizer
    tokenizer = load_tokenizer(name, chat=False, key="student.model")   # a seq2seq model's: no chat template
    try:
        model = AutoModelForSeq2SeqLM.from_pretrained(name)
    except (OSError, ValueError, KeyError) as err:
        if missing_hub_model(name):
            raise DoctorKitError(f"student.model '{name}' is not on this machine; "
                                 f"{missing_model_hint(name, 'student.model')}") from None
        where = "folder" if Path(name).exists() else "hub id"
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise DoctorKitError(f"student.model '{name}': cannot load it as a seq2seq translation model "
                             f"from this {where}: {reason}") from None
    return model.to(device), tokenizer


@torch.inference_mode()
def translate_texts(model, tokenizer, texts: list[str], batch_size: int = 32, num_beams: int = 1,
                    max_new_tokens: int = 256, max_source_len: int = 512,
                    progress: tqdm | None = None) -> list[str]:
    """Translations in the order given. Batches are cut from length-sorted texts so each batch pads little."""
    model.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)  # longest first: OOM shows early
    results: list[str] = [""] * len(texts)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        inputs = tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True, truncation=True,
                           max_length=max_source_len).to(device)
        # a translation is rarely twice as long as its source: the cap stops a degenerate model early
        cap = min(max_new_tokens, 2 * inputs["input_ids"].shape[1] + 16)
        output = model.generate(**inputs, num_beams=num_beams, max_new_tokens=cap)
        for i, text in zip(batch, tokenizer.batch_decode(output, skip_special_tokens=True)):
            results[i] = text.strip()
        if progress is not None:
            progress.update(len(batch))
    return results
