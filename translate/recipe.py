"""The translate recipe (recipes/translate.yaml): one schema for all five steps.

Sections follow doctorkit.recipe (extra="forbid", one-line errors through `load_recipe`); every key has
its default and a comment here and is documented in recipes/README.md under "translate.yaml".
All files a step writes live under `work_dir`, so the steps find each other's output without more keys.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field

from doctorkit.recipe import CsvColumns, DataFormat, LoraConfig, Section, StepsOrUnset

MEDICAL_PROMPT = (
    "You are a professional medical translator. Translate the user's English text into fluent, natural "
    "Simplified Chinese as used by Chinese doctors and patients. Keep every drug name, dose, unit, number, "
    "lab value and abbreviation exactly (a drug with no standard Chinese name stays in English). Do not add, "
    "drop, explain or answer anything. Reply with the translation only."
)


class SourceData(Section):
    path: str = "data/english.json"  # English dataset: .json / .jsonl / .csv
    format: DataFormat = "auto"      # auto: from the first record; or alpaca, sharegpt, messages, csv, a registered one
    encoding: str = "auto"           # "auto" detects (UTF-8, GB18030, ...) or name one
    columns: CsvColumns = Field(default_factory=CsvColumns)  # CSV only: which column is which
    id_key: str = "id"               # JSON record id field; others (and CSV rows) get "<file stem>-<index>"


class SegmentConfig(Section):
    max_chars: int = Field(400, ge=1)            # longer texts are split at sentences, then clauses, then spaces


class TeacherConfig(Section):
    base_url: str = "https://api.openai.com/v1"  # any OpenAI-compatible chat endpoint
    model: str = "gpt-3.5-turbo"     # ChatGPT by default
    api_key_env: str = "OPENAI_API_KEY"  # name of the environment variable holding the key
    prompt: str = MEDICAL_PROMPT     # system prompt; part of the cache key, so editing it re-translates
    temperature: float = Field(0.0, ge=0)        # 0: the most literal, repeatable translation
    max_tokens: int = Field(1024, ge=1)          # per reply
    concurrency: int = Field(4, ge=1)            # requests in flight at once
    timeout_s: float = Field(60.0, gt=0)         # per request
    max_retries: int = Field(6, ge=0)            # extra attempts on 429 / 5xx / timeout / dropped connection / garbage
    backoff_s: float = Field(1.0, ge=0)          # first wait before a retry; doubles each time (plus jitter)
    backoff_max_s: float = Field(30.0, ge=0)     # cap on one wait (also caps a server's Retry-After)
    price_input_per_1m: float = Field(0.5, ge=0) # USD per 1M prompt tokens (gpt-3.5-turbo-0125 list price)
    price_output_per_1m: float = Field(1.5, ge=0) # USD per 1M completion tokens
    deid: bool = True                # de-identify every segment before it leaves the machine (translate/privacy.py)
    allow_identifiable: bool = False  # needed to turn deid off for a teacher not on 127.0.0.1 / localhost


class SeedConfig(Section):
    n: int = Field(500, ge=1)                    # records to send to the teacher
    sample: Literal["random", "stratified"] = "stratified"  # stratified: equal share from each length band
    strata: int = Field(4, ge=1)                 # length bands for stratified sampling


class StudentConfig(Section):
    model: str = "Helsinki-NLP/opus-mt-en-zh"  # any AutoModelForSeq2SeqLM: hub id, folder, or builtin:tiny-mt
    method: Literal["full", "lora"] = "full"   # lora trains adapters, then merges them into the saved model
    lora: LoraConfig = Field(default_factory=LoraConfig)  # used when method is lora
    holdout: float = Field(0.1, ge=0, lt=1)            # share of the seed pairs kept out of training for BLEU / chrF
    max_source_len: int = Field(256, ge=1)       # tokens; longer segments are truncated in training
    max_target_len: int = Field(256, ge=1)       # tokens of a reference translation in training
    epochs: float = Field(3.0, gt=0)
    max_steps: StepsOrUnset = -1     # -1: run `epochs` epochs
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(5.0e-5, gt=0)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)  # share of steps with a linear warmup
    weight_decay: float = Field(0.01, ge=0)
    logging_steps: int = Field(20, ge=1)
    num_beams: int = Field(4, ge=1)              # beam search when translating (1: greedy, fastest)
    eval_batch_size: int = Field(32, ge=1)       # segments per generate() call when scoring the held-out slice


class RunConfig(Section):
    input: Optional[str] = None      # file to translate in bulk (default: data.path), read like `data`
    batch_size: int = Field(32, ge=1)            # segments per generate() call (sorted by length to cut padding)
    shard_size: int = Field(500, ge=1)           # records per shard; a killed run resumes at the first missing shard
    device: str = "auto"             # auto: cuda if present, else cpu
    max_records: Optional[int] = Field(None, ge=1) # translate only the first N records (quick trials)


class ScoreConfig(Section):
    hypotheses: Optional[str] = None  # translations: .txt (a line each) or .jsonl (see key)
    references: Optional[str] = None  # references, same order and count
    key: str = "zh"                  # .jsonl: dotted path of the text, e.g. zh or messages.1.content
    ref_key: Optional[str] = None    # .jsonl references: their own path (default: key)


class CostConfig(Section):
    gpu_price_per_hour: float = Field(2.0, ge=0) # USD per hour of the machine that trains and runs the student


class TranslateRecipe(Section):
    work_dir: str = "runs/translate"  # every step reads and writes here
    seed: int = Field(42, ge=0)                  # sampling, hold-out split and training
    data: SourceData = Field(default_factory=SourceData)
    segment: SegmentConfig = Field(default_factory=SegmentConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    seed_set: SeedConfig = Field(default_factory=SeedConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    cost: CostConfig = Field(default_factory=CostConfig)


class WorkFiles:
    """Where each step's output lives inside work_dir (one place, so steps agree)."""

    def __init__(self, recipe: TranslateRecipe):
        self.root = Path(recipe.work_dir)
        self.cache = self.root / "teacher_cache.sqlite"
        self.pairs = self.root / "pairs.jsonl"
        self.seed_report = self.root / "seed_report.json"
        self.student = self.root / "student"
        self.heldout = self.root / "heldout.jsonl"
        self.distill_report = self.root / "distill_report.json"
        self.shards = self.root / "shards"
        self.translated = self.root / "translated.jsonl"
        self.rejects = self.root / "rejects.jsonl"
        self.run_report = self.root / "run_report.json"
        self.cost = self.root / "cost.json"
