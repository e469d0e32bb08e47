"""The embedded tiny translator (`student.model: builtin:tiny-mt`): a real MarianMT architecture (the
family of the default student, Helsinki-NLP/opus-mt-en-zh), built offline in well under a second.

Its tokenizer is one byte-level BPE shared by source and target, trained on English and Chinese text
we wrote (the bundled Chinese sample and the stand-in teacher's glossary), so both languages split into
real sub-words and any other text still encodes through bytes. Weights come from a fixed seed, so
`builtin:tiny-mt` is the same model in every process. Random weights: it learns only what distill
teaches it, which is the point of a test model.
"""
from __future__ import annotations

import functools

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import MarianConfig, MarianMTModel, PreTrainedTokenizerFast

from doctorkit.builtin.sampledata import corpus_text
from translate.glossary import GLOSSARY

SEED = 4321
VOCAB_SIZE = 3000
SPECIALS = ["<pad>", "</s>", "<unk>"]   # ids 0, 1, 2
ENGLISH = """Doctor, I have been experiencing a headache and a mild fever for three days.
What could be the cause of my chest pain, and should I see a doctor?
It sounds like you may have an infection; we should run a blood test and a chest X-ray.
Take 500 mg of paracetamol every 6 hours, and do not exceed 4 g per day.
If the symptoms get worse, please go to the emergency department at once.
My mother has high blood pressure and diabetes; she takes metformin twice a day."""


@functools.lru_cache(maxsize=None)
def _bpe() -> str:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    text = [corpus_text(), ENGLISH, " ".join(GLOSSARY), "".join(GLOSSARY.values()),
            "".join(chr(c) for c in range(32, 127)), "。，？！；：（）"]
    tok.train_from_iterator(text, trainer=trainer)
    # every sequence ends with </s>, as Marian's own tokenizer does for source and target alike
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A $B </s>",
                                                       special_tokens=[("</s>", 1)])
    return tok.to_str()


def build_tokenizer() -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(_bpe()), pad_token="<pad>",
                                   eos_token="</s>", unk_token="<unk>", model_max_length=512)


def build_tiny_mt(name: str = "tiny-mt"):
    """(model, tokenizer) for builtin:tiny-mt; the same weights in every process."""
    if name != "tiny-mt":
        raise ValueError(name)
    tokenizer = build_tokenizer()
    config = MarianConfig(vocab_size=len(tokenizer), d_model=64, encoder_layers=2, decoder_layers=2,
                          encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128,
                          decoder_ffn_dim=128, max_position_embeddings=512, dropout=0.0,
                          pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, forced_eos_token_id=1,
                          scale_embedding=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = MarianMTModel(config)
    return model, tokenizer
